"""The ``engine`` section: DuckDB (default) or Spark."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from clvml.config.base import _check_size, _Strict


class DuckDBEngine(_Strict):
    """Settings of the embedded DuckDB engine (the default)."""

    memory_limit: str | None = Field(None, description="e.g. '4GB': above it DuckDB spills to disk "
                                     "(default: 80% of RAM).")
    temp_directory: Path | None = Field(None, description="Where DuckDB spills (default: .tmp in the "
                                        "working folder).")
    threads: int | None = Field(None, gt=0)

    @field_validator("memory_limit")
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        return _check_size(v, "'4GB' or '512MB'")


class SparkEngine(_Strict):
    """Settings of the Spark engine (``pip install clvml[spark]``; Java 17 or newer)."""

    master: str | None = Field(
        "local[*]", description="Spark master URL; null = whatever spark-submit / the cluster sets.")
    app_name: str = "clvml"
    conf: dict[str, str] = Field(default_factory=dict, description="Extra Spark settings, e.g. "
                                 "spark.executor.memory: 8g.")


class EngineConfig(_Strict):
    """Which engine runs the queries (reading, validation, features): ``engine: duckdb | spark`` or a
    mapping with the backend's settings."""

    backend: Literal["duckdb", "spark"] = "duckdb"
    duckdb: DuckDBEngine = Field(default_factory=DuckDBEngine)
    spark: SparkEngine = Field(default_factory=SparkEngine)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        return {"backend": v} if isinstance(v, str) else v
