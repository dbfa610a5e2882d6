"""clvml: churn and customer-lifetime-value modelling.

Data flow: data (contracts, validation, readers, synthetic world) → features (point-in-time builders)
→ labels → modeling (LightGBM churn/value, CLV) → evaluation → tracking (MLflow) → scoring.
"""

__version__ = "0.1.0"

from clvml.config import Config, load_config, parse_config  # noqa: E402
from clvml.data.dataset import Dataset, load_dataset  # noqa: E402
from clvml.data.synthetic import SyntheticWorld, simulate  # noqa: E402
from clvml.data.validation import ValidationReport  # noqa: E402
from clvml.errors import (  # noqa: E402
    ClvmlError,
    ConfigError,
    DataSourceError,
    DataValidationError,
    ModelIncompatibleError,
)
from clvml.evaluation.metrics import churn_metrics, normalized_gini, value_metrics  # noqa: E402
from clvml.features import (  # noqa: E402
    build_features,
    catalog,
    feature_specs,
    to_pandas,
    write_features,
)
from clvml.labels import build_labels  # noqa: E402
from clvml.modeling import ChurnModel, ValueModel, clv  # noqa: E402
from clvml.packaging import ModelBundle, load_bundle  # noqa: E402

__all__ = [
    "ChurnModel", "ClvmlError", "Config", "ConfigError", "DataSourceError", "DataValidationError",
    "Dataset", "ModelBundle", "ModelIncompatibleError", "SyntheticWorld", "ValidationReport",
    "ValueModel", "build_features", "build_labels", "catalog", "churn_metrics", "clv",
    "feature_specs", "load_bundle", "load_config", "load_dataset", "normalized_gini", "parse_config",
    "simulate", "to_pandas", "value_metrics", "write_features",
]
