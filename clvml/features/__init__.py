"""Point-in-time feature builders (one module per history) and the generated feature catalog."""

from clvml.features import activity, after_sales, profile, social, transactions  # noqa: F401
from clvml.features.builder import (
    DEFAULT_WINDOWS,
    RoundedWholeWarning,
    as_cutoffs,
    build_features,
    catalog,
    feature_specs,
    to_arrow,
    to_pandas,
)
from clvml.features.registry import REGISTRY, FeatureSpec
from clvml.features.writer import FeatureFiles, write_features

__all__ = ["DEFAULT_WINDOWS", "REGISTRY", "FeatureFiles", "FeatureSpec", "RoundedWholeWarning", "as_cutoffs",
           "build_features", "catalog", "feature_specs", "to_arrow", "to_pandas", "write_features"]
