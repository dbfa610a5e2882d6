"""clvml: churn and customer-lifetime-value modelling.

Data flow: datasets/data (contracts, validation, readers, synthetic world) → features (point-in-time
builders) → labels → modeling (BTYD, LightGBM churn/value, CLV) → evaluation / explain → scoring;
analytics beside; jobs and the CLI on top.

Every public name is importable from here, but nothing is imported until it is first used (PEP 562),
so ``import clvml`` and ``clvml --help`` stay fast: LightGBM, MLflow, SHAP and SciPy load only when a
name that needs them is touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from clvml._version import __version__

#: module -> the public names it provides
_EXPORTS: dict[str, tuple[str, ...]] = {
    "clvml.analytics.experiments": (
        "baseline_from_history",
        "evaluate_experiment",
        "experiment_outcomes",
        "power_of",
        "sample_size",
    ),
    "clvml.analytics.repurchase": ("interpurchase_times",),
    "clvml.analytics.segments": ("allocate_budget", "Segmenter"),
    "clvml.analytics.uplift": ("qini_coefficient", "qini_curve", "targeting_list", "UpliftModel"),
    "clvml.config": ("Config", "load_config", "parse_config"),
    "clvml.data.dataset": ("Dataset", "load_dataset"),
    "clvml.data.validation": ("ValidationReport",),
    "clvml.datasets": ("load_cdnow_sample",),
    "clvml.datasets.synthetic": ("BehaviourChange", "Campaign", "simulate", "SyntheticWorld"),
    "clvml.engine": ("connect_engine",),
    "clvml.errors": (
        "ClvmlError",
        "ConfigError",
        "DatabaseUnreachableError",
        "DataSourceError",
        "DataValidationError",
        "EngineError",
        "FeatureDefinitionError",
        "ModelIncompatibleError",
        "ModelNotFoundError",
        "ShrinkError",
        "UnusableModelError",
    ),
    "clvml.evaluation.backtest": ("backtest", "BacktestResult"),
    "clvml.evaluation.cdnow": ("compare_on_cdnow",),
    "clvml.evaluation.metrics": ("churn_metrics", "normalized_gini", "value_metrics"),
    "clvml.explain.drivers": ("contributions", "family_importance", "global_importance", "segment_drivers"),
    "clvml.explain.reasons": ("reason_codes",),
    "clvml.features": ("build_features", "catalog", "feature_specs", "to_arrow", "to_pandas", "write_features"),
    "clvml.features.custom": ("register_feature", "unregister_feature", "PointInTime"),
    "clvml.features.registry": ("Say",),
    "clvml.labels": ("build_labels",),
    "clvml.modeling": ("ChurnModel", "clv", "ValueModel"),
    "clvml.modeling.btyd": ("BGNBD", "BTYDModel", "GammaGamma"),
    "clvml.modeling.mbgnbd": ("MBGNBD",),
    "clvml.modeling.pareto_nbd": ("ParetoNBD",),
    "clvml.modeling.training": ("split_by_cutoff",),
    "clvml.monitoring": ("monitor", "MonitorResult"),
    "clvml.scoring.bundle": ("load_bundle", "ModelBundle"),
    "clvml.scoring.drift": ("DriftReference",),
    "clvml.scoring.job": ("score", "ScoreResult"),
    "clvml.scoring.shadow": ("score_with_shadow",),
    "clvml.monitoring.challenger": ("compare_champion_challenger", "Comparison"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "__version__",
    "allocate_budget",
    "backtest",
    "BacktestResult",
    "baseline_from_history",
    "BehaviourChange",
    "BGNBD",
    "BTYDModel",
    "build_features",
    "build_labels",
    "Campaign",
    "catalog",
    "churn_metrics",
    "ChurnModel",
    "clv",
    "ClvmlError",
    "compare_on_cdnow",
    "Config",
    "ConfigError",
    "connect_engine",
    "contributions",
    "DatabaseUnreachableError",
    "Dataset",
    "DataSourceError",
    "DataValidationError",
    "DriftReference",
    "EngineError",
    "evaluate_experiment",
    "experiment_outcomes",
    "family_importance",
    "feature_specs",
    "FeatureDefinitionError",
    "GammaGamma",
    "global_importance",
    "interpurchase_times",
    "load_bundle",
    "load_cdnow_sample",
    "load_config",
    "load_dataset",
    "MBGNBD",
    "ModelBundle",
    "ModelIncompatibleError",
    "ModelNotFoundError",
    "monitor",
    "MonitorResult",
    "normalized_gini",
    "ParetoNBD",
    "parse_config",
    "PointInTime",
    "power_of",
    "qini_coefficient",
    "qini_curve",
    "reason_codes",
    "register_feature",
    "sample_size",
    "Say",
    "score",
    "score_with_shadow",
    "compare_champion_challenger",
    "Comparison",
    "ScoreResult",
    "segment_drivers",
    "ShrinkError",
    "Segmenter",
    "simulate",
    "split_by_cutoff",
    "SyntheticWorld",
    "targeting_list",
    "to_arrow",
    "to_pandas",
    "unregister_feature",
    "UnusableModelError",
    "UpliftModel",
    "ValidationReport",
    "value_metrics",
    "ValueModel",
    "write_features",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'clvml' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:  # static analysers and IDEs see the real objects
    from clvml.analytics.experiments import (
        baseline_from_history,
        evaluate_experiment,
        experiment_outcomes,
        power_of,
        sample_size,
    )
    from clvml.analytics.repurchase import interpurchase_times
    from clvml.analytics.segments import Segmenter, allocate_budget
    from clvml.analytics.uplift import UpliftModel, qini_coefficient, qini_curve, targeting_list
    from clvml.config import Config, load_config, parse_config
    from clvml.data.dataset import Dataset, load_dataset
    from clvml.data.validation import ValidationReport
    from clvml.datasets import load_cdnow_sample
    from clvml.datasets.synthetic import BehaviourChange, Campaign, SyntheticWorld, simulate
    from clvml.engine import connect_engine
    from clvml.errors import (
        ClvmlError,
        ConfigError,
        DatabaseUnreachableError,
        DataSourceError,
        DataValidationError,
        EngineError,
        FeatureDefinitionError,
        ModelIncompatibleError,
        ModelNotFoundError,
        ShrinkError,
        UnusableModelError,
    )
    from clvml.evaluation.backtest import BacktestResult, backtest
    from clvml.evaluation.cdnow import compare_on_cdnow
    from clvml.evaluation.metrics import churn_metrics, normalized_gini, value_metrics
    from clvml.explain.drivers import contributions, family_importance, global_importance, segment_drivers
    from clvml.explain.reasons import reason_codes
    from clvml.features import build_features, catalog, feature_specs, to_arrow, to_pandas, write_features
    from clvml.features.custom import PointInTime, register_feature, unregister_feature
    from clvml.features.registry import Say
    from clvml.labels import build_labels
    from clvml.modeling import ChurnModel, ValueModel, clv
    from clvml.modeling.btyd import BGNBD, BTYDModel, GammaGamma
    from clvml.modeling.mbgnbd import MBGNBD
    from clvml.modeling.pareto_nbd import ParetoNBD
    from clvml.modeling.training import split_by_cutoff
    from clvml.monitoring import MonitorResult, monitor
    from clvml.monitoring.challenger import Comparison, compare_champion_challenger
    from clvml.scoring.bundle import ModelBundle, load_bundle
    from clvml.scoring.drift import DriftReference
    from clvml.scoring.job import ScoreResult, score
    from clvml.scoring.shadow import score_with_shadow
