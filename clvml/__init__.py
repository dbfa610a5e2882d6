"""clvml: churn and customer-lifetime-value modelling.

Data flow: data (contracts, validation, readers, synthetic world) → features (point-in-time builders)
→ labels → modeling (LightGBM churn/value, CLV) → evaluation → tracking (MLflow) → scoring.
"""

from clvml._version import __version__  # noqa: E402
from clvml.analytics.experiments import (  # noqa: E402
    baseline_from_history,
    evaluate_experiment,
    experiment_outcomes,
    power_of,
    sample_size,
)
from clvml.analytics.repurchase import interpurchase_times  # noqa: E402
from clvml.analytics.segments import Segmenter, allocate_budget  # noqa: E402
from clvml.analytics.uplift import UpliftModel, qini_coefficient, qini_curve, targeting_list  # noqa: E402
from clvml.config import Config, load_config, parse_config  # noqa: E402
from clvml.data.dataset import Dataset, load_dataset  # noqa: E402
from clvml.data.validation import ValidationReport  # noqa: E402
from clvml.datasets import load_cdnow_sample  # noqa: E402
from clvml.datasets.synthetic import Campaign, SyntheticWorld, simulate  # noqa: E402
from clvml.engine import connect_engine  # noqa: E402
from clvml.errors import (  # noqa: E402
    ClvmlError,
    ConfigError,
    DataSourceError,
    DataValidationError,
    EngineError,
    ModelIncompatibleError,
    ModelNotFoundError,
)
from clvml.evaluation.backtest import BacktestResult, backtest  # noqa: E402
from clvml.evaluation.cdnow import compare_on_cdnow  # noqa: E402
from clvml.evaluation.metrics import churn_metrics, normalized_gini, value_metrics  # noqa: E402
from clvml.explain.drivers import (  # noqa: E402
    contributions,
    family_importance,
    global_importance,
    segment_drivers,
)
from clvml.explain.reasons import reason_codes  # noqa: E402
from clvml.features import (  # noqa: E402
    build_features,
    catalog,
    feature_specs,
    to_pandas,
    write_features,
)
from clvml.labels import build_labels  # noqa: E402
from clvml.modeling import ChurnModel, ValueModel, clv  # noqa: E402
from clvml.modeling.btyd import BTYDModel  # noqa: E402
from clvml.modeling.training import split_by_cutoff  # noqa: E402
from clvml.scoring.bundle import ModelBundle, load_bundle  # noqa: E402
from clvml.scoring.drift import DriftReference  # noqa: E402
from clvml.scoring.job import ScoreResult, score  # noqa: E402

__all__ = [
    "__version__",
    "Campaign", "UpliftModel", "baseline_from_history", "evaluate_experiment", "experiment_outcomes",
    "power_of", "qini_coefficient", "qini_curve", "sample_size", "targeting_list",
    "BTYDModel", "BacktestResult", "DriftReference", "ScoreResult", "Segmenter", "allocate_budget",
    "interpurchase_times", "score", "ChurnModel", "ClvmlError", "Config", "ConfigError", "DataSourceError",
    "DataValidationError", "Dataset", "ModelBundle", "ModelIncompatibleError", "ModelNotFoundError", "SyntheticWorld",
    "ValidationReport", "ValueModel", "backtest", "build_features", "build_labels", "catalog",
    "churn_metrics", "clv", "compare_on_cdnow", "contributions", "family_importance", "feature_specs",
    "global_importance", "load_bundle", "load_cdnow_sample", "load_config", "load_dataset",
    "normalized_gini", "parse_config", "reason_codes", "segment_drivers", "simulate", "split_by_cutoff",
    "to_pandas", "value_metrics", "write_features", "connect_engine", "EngineError",
]
