"""Evaluation: metrics (backtests and reports grow here)."""

from clvml.evaluation.metrics import (
    churn_metrics,
    decile_mape,
    expected_calibration_error,
    normalized_gini,
    value_metrics,
)

__all__ = ["churn_metrics", "decile_mape", "expected_calibration_error", "normalized_gini",
           "value_metrics"]
