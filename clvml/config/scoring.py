"""The ``scoring``, ``tracking`` and ``output`` sections."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, field_serializer, field_validator

from clvml.config.base import _check_identifier, _check_size, _Strict
from clvml.config.database import redact_url


class TrackingConfig(_Strict):
    uri: str | None = Field(None, description="Default: MLFLOW_TRACKING_URI, else a local store.")
    experiment: str = "clvml"
    enabled: bool = True
    register_model: bool = Field(True, description="Register each trained model as a new version of <name>.")
    alias: str | None = Field("candidate", description="Registry alias moved to the new version "
                              "(score with models:/<name>@<alias>).")


class ScoringConfig(_Strict):
    """The scheduled scoring job (``clvml score``)."""

    # scoring.database may hold a password: pydantic's own error text must not quote it
    model_config = ConfigDict(**_Strict.model_config, hide_input_in_errors=True)

    out: Path | None = Field(None, description="Parquet root, partitioned by as_of (default "
                             "<output.dir>/scores).")
    shadow_out: Path | None = Field(None, description="Parquet root of the challenger's shadow scores "
                                    "(clvml score --shadow), partitioned by as_of like the production "
                                    "scores (default <output.dir>/shadow_scores).")
    database: str | None = Field(None, description="Write to a table of this DuckDB database file, or "
                                 "of any database Ibis connects to by URL (sqlite:///…, postgres://…), "
                                 "instead of Parquet. ${NAME} is read from the environment when connecting; "
                                 "the password is masked wherever the URL is shown.")
    table: str = "clvml_scores"
    chunk_customers: int = Field(125_000, gt=0, description="Customers scored per chunk (memory bound).")
    memory_budget: str | None = Field(
        "4GiB", description="On DuckDB without engine.duckdb.memory_limit: the peak memory the job aims at. "
        "DuckDB's memory_limit is set to this minus an estimate of the chunks' own memory (see "
        "clvml.scoring.job.duckdb_memory_limit), and DuckDB spills the validated tables beyond it to "
        "engine.duckdb.temp_directory. null: DuckDB's default (80% of RAM).")
    drift_warn: float = Field(0.1, gt=0, description="Warn when a feature's or score's PSI exceeds this.")
    drift_stop: float | None = Field(0.5, gt=0, description="Fail, writing nothing, above this PSI "
                                     "(null: never stop).")
    drift_columns: Literal["scores", "all"] = Field(
        "all", description="Which PSIs may stop the run: scores only, or features and scores.")
    lock_timeout_s: float = Field(0, ge=0, description="Wait this long for a concurrent run of the same "
                                  "as_of to finish before failing.")
    max_shrink: float = Field(0.5, ge=0, le=1, description="Refuse (exit 3) scores with more than this "
                              "share fewer rows than the as_of's previous output or the model's training "
                              "population; an empty output is always refused.")
    allow_shrink: bool = Field(False, description="Write the scores even when they are empty or shrink "
                               "by more than max_shrink (the CLI's --allow-shrink).")
    keep_replaced_s: float = Field(600, ge=0, description="Keep a replaced Parquet partition this long "
                                   "(aside, in the work folder) for readers that started before the swap.")

    @field_validator("memory_budget")
    @classmethod
    def _budget(cls, v: str | None) -> str | None:
        return _check_size(v, "'4GiB' or '3500MB'")

    @field_validator("table")
    @classmethod
    def _table_ident(cls, v: str) -> str:
        return _check_identifier(v, "table name")

    @field_serializer("database", when_used="json")
    def _mask_database(self, v: str | None) -> str | None:  # logs, MLflow params, manifests: no password
        return None if v is None else redact_url(v)


class OutputConfig(_Strict):
    dir: Path = Path("outputs")
    model_dir: Path = Path("models")
