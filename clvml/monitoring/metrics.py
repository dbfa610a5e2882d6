"""The figures of one group of scored customers against what they then did (pure functions).

Every metric comes from :mod:`clvml.evaluation.metrics` and :mod:`clvml.evaluation.clv_eval`, the
functions the backtest uses, so a realised figure and the backtest's promise are the same quantity.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from clvml.evaluation.clv_eval import TIERS, clv_metrics, tier_capture
from clvml.evaluation.metrics import expected_calibration_error, value_core_metrics

#: monitored metric -> (task, metric) of the backtest figures a bundle records
EXPECTED = {
    "churn_roc_auc": ("churn", "roc_auc"), "churn_pr_auc": ("churn", "pr_auc"), "churn_ece": ("churn", "ece"),
    "value_mae": ("value", "mae"), "value_normalized_gini": ("value", "normalized_gini"),
    "value_total_error_pct": ("value", "total_error_pct"),
    "clv_mae": ("clv", "mae"), "clv_normalized_gini": ("clv", "normalized_gini"),
    "clv_total_error_pct": ("clv", "total_error_pct"),
    **{f"clv_capture_top{round(100 * s)}": ("clv", f"capture_top{round(100 * s)}") for s in TIERS},
}


class _undefined_is_nan(warnings.catch_warnings):  # noqa: N801 - used as a context manager
    """Silence the warnings of figures undefined for a group (a Gini with no realised value, a rank
    correlation of constant values): they are NaN in the table, which is the message."""

    def __enter__(self):
        out = super().__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)
        from scipy.stats import ConstantInputWarning

        warnings.simplefilter("ignore", ConstantInputWarning)
        return out


def horizon_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """Churn and value figures of customers whose horizon has matured.

    Parameters
    ----------
    frame
        One row per customer: ``churn_probability`` and ``expected_value`` (the scores), ``churn``
        (0/1, realised over ``[as_of, as_of + H)``) and ``value`` (realised value target over the same
        days).

    Returns
    -------
    dict
        ``predicted_churn_rate``, ``observed_churn_rate``, ``churn_roc_auc``, ``churn_pr_auc`` (NaN
        when only one class occurred), ``churn_ece``; ``value_mae``, ``value_normalized_gini``,
        ``value_total_error_pct`` (predicted minus realised total, in % of the realised total),
        ``value_total_actual``, ``value_total_predicted``; ``value_capture_topP`` (share of the
        realised value held by the predicted top P %) and ``value_best_topP`` (the best possible).
    """
    y = frame["churn"].to_numpy(int)
    p = frame["churn_probability"].to_numpy(float)
    out = {"predicted_churn_rate": float(p.mean()), "observed_churn_rate": float(y.mean())}
    # the figures of clvml.evaluation.metrics.churn_metrics / value_metrics that are monitored, by the
    # same calls on the same arrays (the others — log loss, Brier, lift, RMSE, Spearman, decile MAPE —
    # are not computed: a million-customer partition has 13 segments)
    if 0 < y.sum() < len(y):
        out.update(churn_roc_auc=float(roc_auc_score(y, p)), churn_pr_auc=float(average_precision_score(y, p)),
                   churn_ece=expected_calibration_error(y, p))
    else:
        out.update(churn_roc_auc=math.nan, churn_pr_auc=math.nan,
                   churn_ece=expected_calibration_error(y, p))
    actual, pred = frame["value"].to_numpy(float), frame["expected_value"].to_numpy(float)
    v: dict[str, float] = {}
    if len(actual) > 1:
        with _undefined_is_nan():
            v = value_core_metrics(actual, pred)
    for k in ("mae", "normalized_gini", "total_error_pct", "total_actual", "total_predicted"):
        out[f"value_{k}"] = float(v.get(k, math.nan))
    out.update({f"value_{k}": float(x) for k, x in tier_capture(actual, pred).items()})
    return out


def clv_window_metrics(actual: np.ndarray, pred: np.ndarray, complete: bool, days_observed: int
                       ) -> dict[str, float]:
    """CLV predicted at the as_of against the value realised since.

    A complete window (all ``K·H`` days observed) gets the backtest's CLV metrics
    (:func:`~clvml.evaluation.clv_eval.clv_metrics`, prefixed ``clv_``); a partial one only what can
    be said so far: ``clv_realised_so_far`` and ``clv_predicted`` (totals), their ratio
    ``clv_realised_share`` and ``clv_days_observed``. The two kinds are never mixed (the caller marks
    the rows ``complete`` or ``partial``).
    """
    actual, pred = np.asarray(actual, float), np.asarray(pred, float)
    if complete:
        with _undefined_is_nan():
            return {f"clv_{k}": float(v) for k, v in clv_metrics(actual, pred).items()}
    total_p = float(pred.sum())
    return {"clv_realised_so_far": float(actual.sum()), "clv_predicted": total_p,
            "clv_realised_share": float(actual.sum() / total_p) if total_p else math.nan,
            "clv_days_observed": float(days_observed)}
