"""YAML configuration, validated by pydantic.

Every section is a strict model: unknown or misspelled keys are rejected with their full key path and
a suggestion, and all problems are reported at once in a single :class:`~clvml.errors.ConfigError`.
Relative paths in a config file are resolved against the folder holding that file, so a scheduled job
behaves the same whatever its working directory.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clvml.errors import ConfigError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: a memory size as DuckDB accepts it ('4GB', '512 MiB'); checked before it reaches a SET statement
SIZE = re.compile(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


def _check_identifier(value: str, what: str) -> str:
    if not _IDENT.match(value):
        raise ValueError(
            f"{what} {value!r} is not a plain identifier (letters, digits and _; not starting with a "
            "digit; at most 128 characters). Rename the column/table or quote-free alias it."
        )
    return value


class TableSource(_Strict):
    """Where one table comes from and how its columns map onto the canonical schema."""

    path: Path | None = Field(None, description="Parquet/CSV file or folder, or DuckDB database file.")
    format: Literal["parquet", "csv", "duckdb"] | None = Field(
        None, description="Inferred from the file suffix when omitted."
    )
    table: str | None = Field(None, description="Table name inside a DuckDB database file.")
    columns: dict[str, str] = Field(
        default_factory=dict, description="canonical column name -> column name in your data."
    )
    event_types: dict[str, list[str]] = Field(
        default_factory=dict, description="canonical event type -> your values that mean it."
    )
    timestamp_format: str | None = Field(None, description="strptime format for text timestamps.")

    @field_validator("table")
    @classmethod
    def _table_ident(cls, v: str | None) -> str | None:
        return None if v is None else _check_identifier(v, "table name")

    @field_validator("columns")
    @classmethod
    def _columns_ident(cls, v: dict[str, str]) -> dict[str, str]:
        for canonical, user in v.items():
            _check_identifier(canonical, "canonical column")
            _check_identifier(user, "column")
        return v


class CampaignSpec(_Strict):
    """A randomised incentive in the synthetic world (:class:`clvml.datasets.synthetic.Campaign`)."""

    date: dt.date
    campaign_id: str = "retention-1"
    window_days: int = Field(30, gt=0)
    treat_share: float = Field(0.5, gt=0, lt=1)
    lift: float = Field(2.0, ge=0, description="Lift of the daily purchase probability (lapsed buyers).")
    recent_days: int = Field(60, gt=0)
    recent_factor: float = Field(0.15, ge=0)
    gold_factor: float = Field(0.25, ge=0)
    seed: int = 1


class SyntheticConfig(_Strict):
    """Generate a synthetic world into ``path`` before reading it (the demo's data)."""

    n_customers: int = Field(20_000, gt=0)
    start: dt.date = dt.date(2023, 1, 1)
    end: dt.date = dt.date(2024, 12, 31)
    seed: int = 7
    path: Path = Path("data/synthetic")
    truth_horizon_days: int = Field(90, gt=0)
    truth_every_days: int = Field(30, gt=0)
    campaigns: list[CampaignSpec] = Field(default_factory=list, description="Randomised incentives; "
                                          "their assignments are written to <path>/assignments.parquet.")


class Policies(_Strict):
    """What to do with rows that break a rule. ``error`` stops; ``drop`` removes and counts them."""

    duplicates: Literal["error", "drop"] = "error"
    future_events: Literal["error", "drop"] = "error"
    unknown_event_types: Literal["error", "drop"] = "error"
    orphan_customers: Literal["error", "drop", "keep"] = "error"
    null_keys: Literal["error", "drop"] = "error"


TABLE_NAMES = ("customers", "transactions", "activity", "social", "after_sales")


class DataConfig(_Strict):
    as_of: dt.datetime | None = Field(
        None, description="Data snapshot time: events at or after it are errors (or dropped)."
    )
    synthetic: SyntheticConfig | None = None
    tables: dict[str, TableSource] = Field(default_factory=dict)
    policies: Policies = Field(default_factory=Policies)

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, v: dict[str, TableSource]) -> dict[str, TableSource]:
        unknown = [k for k in v if k not in TABLE_NAMES]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(k, TABLE_NAMES, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"unknown table(s) {', '.join(hints)}; known: {', '.join(TABLE_NAMES)}")
        return v

    @model_validator(mode="after")
    def _need_transactions(self) -> DataConfig:
        if self.synthetic is None and "transactions" not in self.tables:
            raise ValueError(
                "no transactions table: add data.tables.transactions (it is the one required table) "
                "or data.synthetic to generate a world"
            )
        return self


class CutoffConfig(_Strict):
    """The prediction dates stacked for training. Either ``dates`` or ``start``/``every_days``."""

    dates: list[dt.date] | None = None
    start: dt.date | None = None
    end: dt.date | None = Field(None, description="Default: the latest date with a complete horizon.")
    every_days: int = Field(30, gt=0)
    validation: int = Field(1, ge=1, description="How many of the latest labelled cut-offs are held out.")

    @model_validator(mode="after")
    def _one_way(self) -> CutoffConfig:
        if self.dates is None and self.start is None:
            raise ValueError("give either cutoffs.dates or cutoffs.start (with every_days)")
        if self.dates is not None and self.start is not None:
            raise ValueError("give cutoffs.dates or cutoffs.start, not both")
        return self


class FeatureConfig(_Strict):
    windows: list[int] = Field(default_factory=lambda: [30, 90, 180, 365])
    families: list[Literal["transactions", "activity", "social", "after_sales", "profile"]] = Field(
        default_factory=lambda: ["transactions", "activity", "social", "after_sales", "profile"]
    )

    @field_validator("windows")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(w <= 0 for w in v):
            raise ValueError("windows must be a non-empty list of positive day counts")
        return sorted(set(v))


class LabelConfig(_Strict):
    horizon_days: int = Field(90, gt=0)
    churn_definition: Literal["no_purchase", "no_activity", "cancellation"] = "no_purchase"
    cancellation_event: str = "account_closed"
    value_target: Literal["spend", "margin"] = "spend"


class LGBMParams(_Strict):
    """LightGBM settings shared by the churn and value models (extra LightGBM params in ``params``)."""

    n_estimators: int = Field(2000, gt=0, description="Upper bound; early stopping picks the number.")
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(50, ge=1)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    early_stopping_rounds: int = Field(50, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)


class ChurnModelConfig(LGBMParams):
    calibration: Literal["isotonic", "platt", "none"] = "isotonic"


class ValueModelConfig(LGBMParams):
    form: Literal["hurdle", "tweedie", "frequency", "offset"] = Field(
        "hurdle", description="offset: boosted from btyd_expected_spend (needs model.btyd_features).")
    tweedie_variance_power: float = Field(1.5, gt=1, lt=2)


class ModelConfig(_Strict):
    churn: ChurnModelConfig = Field(default_factory=ChurnModelConfig)
    value: ValueModelConfig = Field(default_factory=ValueModelConfig)
    btyd_features: bool = False

    @model_validator(mode="after")
    def _offset_needs_btyd(self) -> ModelConfig:
        if self.value.form == "offset" and not self.btyd_features:
            raise ValueError("model.value.form: offset boosts from the BG/NBD prediction "
                             "btyd_expected_spend; set model.btyd_features: true")
        return self


class CLVConfig(_Strict):
    periods: int = Field(4, gt=0, description="K horizons of length labels.horizon_days.")
    margin: float = Field(0.3, ge=0, le=1, description="Margin rate applied to spend.")
    discount_rate: float = Field(0.02, ge=0, description="Discount rate per horizon period.")
    cost: float = Field(0.0, ge=0, description="Per-customer cost over the CLV period.")


class TrackingConfig(_Strict):
    uri: str | None = Field(None, description="Default: MLFLOW_TRACKING_URI, else a local store.")
    experiment: str = "clvml"
    enabled: bool = True
    register_model: bool = Field(True, description="Register each trained model as a new version of <name>.")
    alias: str | None = Field("candidate", description="Registry alias moved to the new version "
                              "(score with models:/<name>@<alias>).")


class ScoringConfig(_Strict):
    """The scheduled scoring job (``clvml score``)."""

    out: Path | None = Field(None, description="Parquet root, partitioned by as_of (default "
                             "<output.dir>/scores).")
    database: str | None = Field(None, description="Write to a table of this DuckDB database file, or "
                                 "of any database Ibis connects to by URL (sqlite:///…, postgres://…), "
                                 "instead of Parquet.")
    table: str = "clvml_scores"
    chunk_customers: int = Field(125_000, gt=0, description="Customers scored per chunk (memory bound).")
    drift_warn: float = Field(0.1, gt=0, description="Warn when a feature's or score's PSI exceeds this.")
    drift_stop: float | None = Field(0.5, gt=0, description="Fail, writing nothing, above this PSI "
                                     "(null: never stop).")
    drift_columns: Literal["scores", "all"] = Field(
        "all", description="Which PSIs may stop the run: scores only, or features and scores.")
    lock_timeout_s: float = Field(0, ge=0, description="Wait this long for a concurrent run of the same "
                                  "as_of to finish before failing.")

    @field_validator("table")
    @classmethod
    def _table_ident(cls, v: str) -> str:
        return _check_identifier(v, "table name")


class ExperimentConfig(_Strict):
    """Retention-incentive experiments (``clvml experiment …``)."""

    assignments: Path | None = Field(None, description="Assignment table (Parquet or CSV): customer_id, "
                                     "group, assigned_ts[, campaign_id, segment columns].")
    window_days: int = Field(30, gt=0, description="Outcome window after assignment.")
    control: str = Field("control", description="Label of the control group.")
    alpha: float = Field(0.05, gt=0, lt=1, description="1 - confidence level of the intervals.")
    by: list[str] = Field(default_factory=list, description="Segment columns for per-segment effects.")
    uplift_metric: Literal["repurchased", "spend"] = "repurchased"
    test_share: float = Field(0.3, gt=0, lt=1, description="Customers held out to measure the Qini "
                              "coefficient of the uplift model.")
    value: float = Field(1.0, ge=0, description="Worth of one unit of the uplift metric (e.g. margin per "
                         "incremental repurchase).")
    cost: float = Field(0.0, ge=0, description="Cost of one contact.")
    budget: float | None = Field(None, gt=0, description="Total contact budget (caps the targets).")


class OutputConfig(_Strict):
    dir: Path = Path("outputs")
    model_dir: Path = Path("models")


class BacktestConfig(_Strict):
    """Rolling-origin backtest: explicit ``origins`` (labelled cut-offs), else the latest ``last``."""

    origins: list[dt.date] | None = None
    last: int = Field(3, ge=1, description="Without origins: how many of the latest labelled cut-offs.")


TUNABLE = {"learning_rate": float, "num_leaves": int, "min_child_samples": int, "subsample": float,
           "colsample_bytree": float, "reg_lambda": float}


class SearchRange(_Strict):
    """One tuned parameter: uniform (or log-uniform) between ``low`` and ``high``."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


def _default_space() -> dict[str, SearchRange]:
    return {
        f"{m}.{k}": SearchRange(**v) for m in ("churn", "value") for k, v in {
            "learning_rate": {"low": 0.02, "high": 0.2, "log": True},
            "num_leaves": {"low": 7, "high": 127, "log": True},
            "min_child_samples": {"low": 20, "high": 400, "log": True},
            "colsample_bytree": {"low": 0.3, "high": 1.0},
        }.items()
    }


class TuneConfig(_Strict):
    """Optuna study over LightGBM parameters, scored on the time-ordered validation cut-offs."""

    n_trials: int = Field(20, ge=1)
    origins: int = Field(2, ge=1, description="Score each trial at the latest N labelled cut-offs, in "
                         "time order, training only on earlier ones; a trial can be pruned after each.")
    timeout_s: float | None = Field(None, gt=0)
    objective: Literal["churn_auc", "value_gini", "both"] = Field(
        "both", description="both: mean of churn ROC AUC and value normalized Gini.")
    space: dict[str, SearchRange] = Field(default_factory=_default_space)

    @field_validator("space")
    @classmethod
    def _known(cls, v: dict[str, SearchRange]) -> dict[str, SearchRange]:
        bad = [k for k in v if k.count(".") != 1 or k.split(".")[0] not in ("churn", "value")
               or k.split(".")[1] not in TUNABLE]
        if bad:
            raise ValueError(f"unknown tuning parameter(s) {bad}: use churn.<p> or value.<p> with p one of "
                             f"{sorted(TUNABLE)}")
        if not v:
            raise ValueError("the search space is empty")
        return v


TIERS = ("high", "potential", "general", "low")
BANDS = ("low", "medium", "high")


class RFMRule(_Strict):
    """A named RFM segment: customers whose scores fall in every given inclusive range."""

    name: str
    r: tuple[int, int] = (1, 5)
    f: tuple[int, int] = (1, 5)
    m: tuple[int, int] = (1, 5)

    def matches(self, r, f, m):
        return ((r >= self.r[0]) & (r <= self.r[1]) & (f >= self.f[0]) & (f <= self.f[1])
                & (m >= self.m[0]) & (m <= self.m[1]))


def _rfm_grid() -> list[RFMRule]:
    # the classic recency x frequency grid; the first matching rule wins
    rules = [("champions", (5, 5), (4, 5)), ("loyal", (3, 4), (4, 5)),
             ("potential_loyalists", (4, 5), (2, 3)), ("new", (5, 5), (1, 1)), ("promising", (4, 4), (1, 1)),
             ("need_attention", (3, 3), (3, 3)), ("about_to_sleep", (3, 3), (1, 2)),
             ("cannot_lose", (1, 2), (5, 5)), ("at_risk", (1, 2), (3, 4)), ("lost", (1, 1), (1, 2)),
             ("hibernating", (2, 2), (1, 2))]
    return [RFMRule(name=n, r=r, f=f) for n, r, f in rules]


class RFMConfig(_Strict):
    """RFM quintile scores and the named segments built from them."""

    quantiles: int = Field(5, ge=2, le=10, description="Score levels (5: quintiles).")
    window_days: int | None = Field(None, description="Frequency/monetary window (a features.windows "
                                    "entry); null: all history.")
    rules: list[RFMRule] = Field(default_factory=_rfm_grid, description="First matching rule wins.")
    fallback: str = "other"


class LifecycleConfig(_Strict):
    """Thresholds in days; left empty they are learned from the base's inter-purchase times."""

    active_days: float | None = Field(None, gt=0, description="Silent longer than this: dormant.")
    churned_days: float | None = Field(None, gt=0, description="Silent longer than this: churned.")
    new_days: float | None = Field(None, gt=0, description="First purchase within this: new "
                                   "(default: active_days).")
    active_quantile: float = Field(0.8, gt=0, lt=1, description="Learned active_days: this quantile of "
                                   "inter-purchase times.")
    churned_quantile: float = Field(0.95, gt=0, lt=1)


class RiskBands(_Strict):
    """Churn-probability thresholds of the medium and high risk bands."""

    medium: float = Field(0.3, gt=0, lt=1)
    high: float = Field(0.6, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> RiskBands:
        if not self.medium < self.high:
            raise ValueError(f"medium ({self.medium}) must be below high ({self.high})")
        return self


def _default_actions() -> dict[str, dict[str, str]]:
    return {
        "high": {"high": "vip_retention_call", "medium": "vip_care", "low": "loyalty_reward"},
        "potential": {"high": "win_back_offer", "medium": "nurture_offer", "low": "upsell"},
        "general": {"high": "reactivation_email", "medium": "nurture_email", "low": "newsletter"},
        "low": {"high": "no_action", "medium": "automated_reminder", "low": "automated_reminder"},
    }


class BudgetConfig(_Strict):
    """Retention budget allocation (see :func:`clvml.analytics.segments.allocate_budget`)."""

    total: float = Field(10_000.0, ge=0)
    method: Literal["shares", "optimal"] = "shares"
    shares: dict[str, float] = Field(default_factory=lambda: {"high": 0.80, "potential": 0.15,
                                                              "general": 0.04, "low": 0.01})
    cost_per_contact: float = Field(5.0, gt=0)
    save_rate: float = Field(0.1, ge=0, le=1)


def _check_tiers(v: dict[str, Any], what: str) -> None:
    if set(v) != set(TIERS):
        raise ValueError(f"{what} must name exactly the tiers {list(TIERS)}, got {sorted(v)}")


class SegmentsConfig(_Strict):
    rfm: RFMConfig = Field(default_factory=RFMConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    value_tiers: dict[str, float] = Field(
        default_factory=lambda: {"high": 0.05, "potential": 0.15, "general": 0.40, "low": 0.40},
        description="Share of customers in each CLV tier, learned as CLV cut points at training.")
    risk_bands: RiskBands = Field(default_factory=RiskBands)
    actions: dict[str, dict[str, str]] = Field(default_factory=_default_actions,
                                               description="value tier -> risk band -> action.")
    budget: BudgetConfig = Field(default_factory=BudgetConfig)

    @model_validator(mode="after")
    def _complete(self) -> SegmentsConfig:
        _check_tiers(self.value_tiers, "segments.value_tiers")
        if abs(sum(self.value_tiers.values()) - 1) > 1e-6 or min(self.value_tiers.values()) <= 0:
            raise ValueError(f"segments.value_tiers shares must be positive and sum to 1, got "
                             f"{self.value_tiers}")
        _check_tiers(self.actions, "segments.actions")
        gaps = [f"{t}.{b}" for t in TIERS for b in BANDS if b not in self.actions[t]]
        if gaps:
            raise ValueError(f"segments.actions has no action for {gaps}: give one for every value tier "
                             f"x risk band ({list(BANDS)})")
        _check_tiers(self.budget.shares, "segments.budget.shares")
        if abs(sum(self.budget.shares.values()) - 1) > 1e-6:
            raise ValueError(f"segments.budget.shares must sum to 1, got {self.budget.shares}")
        return self


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
        if v is not None and not SIZE.fullmatch(v.strip()):
            raise ValueError("must look like '4GB' or '512MB'")
        return v


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


class Config(_Strict):
    """A whole clvml run configuration."""

    name: str = "clvml"
    seed: int = 0
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
    experiments: ExperimentConfig = Field(default_factory=ExperimentConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", v):
            raise ValueError("name must be 1-64 characters of letters, digits, '.', '_' or '-'")
        return v

    def resolve_paths(self, base: Path) -> Config:
        """Make relative paths absolute against ``base`` (the config file's folder)."""

        def fix(p: Path | None) -> Path | None:
            return None if p is None else (p if p.is_absolute() else (base / p).resolve())

        for src in self.data.tables.values():
            src.path = fix(src.path)
        if self.data.synthetic is not None:
            self.data.synthetic.path = fix(self.data.synthetic.path)
        self.output.dir = fix(self.output.dir)
        self.scoring.out = fix(self.scoring.out)
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
            problems.append(f"{path}: {msg} (got {err.get('input')!r})")
    return problems


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
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"], str(path)) from None
    return parse_config(raw, source=str(path), base=path.resolve().parent)
