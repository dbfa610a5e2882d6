"""YAML configuration, validated by pydantic: the root :class:`Config` and the loader; one module per
section beside it (``data``, ``features``, ``models``, ``scoring``, ``analytics``, ``engine``).

Every section is a strict model: unknown or misspelled keys are rejected with their full key path and
a suggestion, and all problems are reported at once in a single :class:`~clvml.errors.ConfigError`.
Relative paths in a config file are resolved against the folder holding that file, so a scheduled job
behaves the same whatever its working directory.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from clvml.config.analytics import (
    BANDS,
    TIERS,
    BudgetConfig,
    ExperimentConfig,
    LifecycleConfig,
    RFMConfig,
    RFMRule,
    RiskBands,
    SegmentsConfig,
)
from clvml.config.base import SIZE, _check_identifier, _Strict
from clvml.config.data import TABLE_NAMES, CampaignSpec, DataConfig, Policies, SyntheticConfig, TableSource
from clvml.config.engine import DuckDBEngine, EngineConfig, SparkEngine
from clvml.config.features import CutoffConfig, FeatureConfig, LabelConfig
from clvml.config.models import (
    TUNABLE,
    BacktestConfig,
    ChurnModelConfig,
    CLVConfig,
    LGBMParams,
    ModelConfig,
    SearchRange,
    TuneConfig,
    ValueModelConfig,
)
from clvml.config.monitoring import MonitoringConfig
from clvml.config.promote import PROMOTE_METRICS, PromoteConfig
from clvml.config.scoring import OutputConfig, ScoringConfig, TrackingConfig
from clvml.config.yaml_loader import ConfigLoader, ConfigYAMLError, load_yaml
from clvml.errors import ConfigError

__all__ = [
    "BANDS", "SIZE", "TABLE_NAMES", "TIERS", "TUNABLE", "BacktestConfig", "BudgetConfig", "CLVConfig",
    "CampaignSpec", "ChurnModelConfig", "Config", "CutoffConfig", "DataConfig", "DuckDBEngine", "EngineConfig",
    "ExperimentConfig", "FeatureConfig", "LGBMParams", "LabelConfig", "LifecycleConfig", "ModelConfig",
    "MonitoringConfig",
    "OutputConfig", "Policies", "RFMConfig", "RFMRule", "RiskBands", "ScoringConfig", "SearchRange",
    "SegmentsConfig", "SparkEngine", "SyntheticConfig", "TableSource", "TrackingConfig", "TuneConfig",
    "ValueModelConfig", "ConfigLoader", "_check_identifier", "_format_errors", "load_config", "parse_config",
    "PROMOTE_METRICS", "PromoteConfig",
]


class Config(_Strict):
    """A whole clvml run configuration."""

    name: str = "clvml"
    seed: int = 0
    #: what relative paths are relative to: the folder of the config file (default), or the working
    #: directory of the run (the packaged demo config, which lives inside the installed package)
    paths_relative_to: Literal["config", "cwd"] = "config"
    data: DataConfig
    cutoffs: CutoffConfig
    engine: EngineConfig = Field(default_factory=EngineConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    clv: CLVConfig = Field(default_factory=CLVConfig)
    backtest: BacktestConfig = Field(default_factory=BacktestConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    segments: SegmentsConfig = Field(default_factory=SegmentsConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    experiments: ExperimentConfig = Field(default_factory=ExperimentConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    promote: PromoteConfig = Field(default_factory=PromoteConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", v):
            raise ValueError("name must be 1-64 characters of letters, digits, '.', '_' or '-'")
        return v

    @model_validator(mode="after")
    def _needs_transaction_features(self) -> Config:
        if "transactions" not in self.features.families:
            raise ValueError(
                "features.families must include transactions: the CLV's purchase dynamics "
                "(clv.survival: btyd), the recency baseline of every evaluation and the BTYD features read "
                "the transaction features (tx_recency_days, tx_tenure_days, tx_purchase_days_all); "
                f"got [{', '.join(self.features.families)}]")
        return self

    def resolve_paths(self, base: Path) -> Config:
        """Make relative paths absolute against ``base`` (the config file's folder), or against the
        working directory when ``paths_relative_to`` is ``cwd``."""
        if self.paths_relative_to == "cwd":
            base = Path.cwd()

        def fix(p: Path | None) -> Path | None:
            return None if p is None else (p if p.is_absolute() else (base / p).resolve())

        for src in self.data.tables.values():
            src.path = fix(src.path)
            if src.url and src.url.startswith("sqlite:///") and not src.url[10:].startswith("/"):
                src.url = "sqlite:///" + str((base / src.url[10:]).resolve())
        if self.data.synthetic is not None:
            self.data.synthetic.path = fix(self.data.synthetic.path)
        self.output.dir = fix(self.output.dir)
        self.scoring.out = fix(self.scoring.out)
        self.scoring.shadow_out = fix(self.scoring.shadow_out)
        self.experiments.assignments = fix(self.experiments.assignments)
        db = self.scoring.database
        if db and "://" not in db and not Path(db).is_absolute():
            self.scoring.database = str((base / db).resolve())
        self.output.model_dir = fix(self.output.model_dir)
        self.engine.duckdb.temp_directory = fix(self.engine.duckdb.temp_directory)
        if self.tracking.uri and self.tracking.uri.startswith("sqlite:///") and not self.tracking.uri[
            10:
        ].startswith("/"):
            self.tracking.uri = "sqlite:///" + str((base / self.tracking.uri[10:]).resolve())
        return self

    def flat(self) -> dict[str, str]:
        """The config flattened to ``a.b.c -> value`` strings (for MLflow params)."""
        out: dict[str, str] = {}

        def walk(prefix: str, obj: Any) -> None:
            if isinstance(obj, dict):
                for k, v in obj.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                out[prefix] = str(obj)

        walk("", self.model_dump(mode="json"))
        return out


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the pydantic model reached by following ``loc`` from ``model``."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:  # a dict key such as tables.<name>: stay on the value model
                continue
            current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    args = getattr(annotation, "__args__", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for a in args or ():
        m = _model_in(a)
        if m is not None:
            return m
    return None


def _format_errors(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            known = _fields_at(Config, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            allowed = f" Allowed keys here: {', '.join(known)}." if known else ""
            problems.append(f"{path}: unknown key{hint}.{allowed}")
        elif err["type"] == "missing":
            problems.append(f"{path}: required key is missing")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            # a check across sections names its keys itself: the whole config is no useful "got"
            got = "" if not loc else f" (got {_masked(err.get('input'))!r})"
            problems.append(f"{path}: {msg}{got}")
    return problems


def _masked(value: Any) -> Any:
    """A config value as shown in an error: every URL in it with its password masked."""
    from clvml.config.database import redact_url

    if isinstance(value, str):
        return redact_url(value) if "://" in value else value
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_masked(v) for v in value)
    return value


def parse_config(raw: dict[str, Any], source: str | None = None, base: Path | None = None) -> Config:
    """Validate a config mapping; raise :class:`ConfigError` listing every problem."""
    if not isinstance(raw, dict):
        raise ConfigError(["the config must be a YAML mapping of keys to values"], source)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc), source) from None
    return cfg.resolve_paths(base or Path.cwd())


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError([f"config file {path} does not exist"], str(path))
    try:
        raw = load_yaml(path.read_text()) or {}
    except ConfigYAMLError as exc:
        raise ConfigError([str(exc)], str(path)) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], str(path)) from None
    return parse_config(raw, source=str(path), base=path.resolve().parent)
