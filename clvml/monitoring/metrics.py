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

from clvml.evaluation.clv_eval import TIERS, clv_metrics, tier_capture, tier_shares
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


def _roc_pr_auc(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """ROC AUC and average precision of labels ``y`` (0/1) under scores ``s`` sorted in decreasing
    order (ties in any order): the computations of scikit-learn's ``roc_auc_score`` and
    ``average_precision_score`` after their sort, operation for operation (so the figures are the
    same to the bit; ``tests/test_monitor_fast.py`` checks it), without sorting again."""
    from scipy.integrate import trapezoid

    thr = np.concatenate([np.nonzero(np.diff(s))[0], np.asarray([y.size - 1])])
    tps = np.cumsum(y.astype(np.float64) * 1.0, dtype=np.float64)[thr]
    fps = 1 + thr.astype(np.float64) - tps
    # roc_curve(drop_intermediate=True), then auc (trapezoid)
    f, t = fps, tps
    if f.shape[0] > 2:
        keep = np.where(np.concatenate([np.asarray([True]), np.logical_or(np.diff(f, 2), np.diff(t, 2)),
                                        np.asarray([True])]))[0]
        f, t = f[keep], t[keep]
    t = np.concatenate([np.asarray([0.0]), t])
    f = np.concatenate([np.asarray([0.0]), f])
    roc = float(trapezoid(t / t[-1], f / f[-1]))
    # precision_recall_curve(drop_intermediate=False), then the step integral
    ps = tps + fps
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(ps != 0, np.divide(tps, ps), 0.0)
    recall = tps / tps[-1]
    precision = np.concatenate((np.flip(precision), np.asarray([1.0])))
    recall = np.concatenate((np.flip(recall), np.asarray([0.0])))
    ap = float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))
    return roc, ap


def _gini_of(a: np.ndarray) -> float:
    """:func:`clvml.evaluation.metrics._gini` of realised values already in the predicted order."""
    cum = np.cumsum(a) / a.sum()
    n = len(a)
    return float(cum.sum() / n - (n + 1) / (2 * n))


class GroupFigures:
    """:func:`horizon_metrics` and :func:`clv_window_metrics` of many groups (segments) of one
    partition's customers, to the bit, with each sort done once for the partition.

    Every figure that needs an order (ROC/PR AUC, Gini, tier capture, Spearman) takes the partition's
    order, computed once, restricted to the group: a stable order restricted to a subset is the
    subset's stable order, so a group gets exactly the permutation its own sort would give. The
    arithmetic after the sort is that of the reference functions. Groups are given as a boolean mask
    over the partition's customers (``None``: all of them).
    """

    def __init__(self, y: np.ndarray, p: np.ndarray, actual: np.ndarray, pred: np.ndarray,
                 clv_actual: np.ndarray | None = None, clv_pred: np.ndarray | None = None) -> None:
        self.y, self.p = np.asarray(y, int), np.asarray(p, float)
        self.actual, self.pred = np.asarray(actual, float), np.asarray(pred, float)
        self.clv_actual = None if clv_actual is None else np.asarray(clv_actual, float)
        self.clv_pred = None if clv_pred is None else np.asarray(clv_pred, float)
        self._orders: dict[str, np.ndarray] = {}

    def _order(self, key: str, mask: np.ndarray | None) -> np.ndarray:
        """Positions sorted by ``key``: ``p`` by decreasing churn probability (ties in any order),
        the others by decreasing value, ties in row order (``lexsort((arange, -x))``)."""
        if key not in self._orders:
            if key == "p":
                self._orders[key] = np.argsort(self.p)[::-1]
            else:
                self._orders[key] = np.argsort(-getattr(self, key), kind="stable")
        o = self._orders[key]
        return o if mask is None else o[mask[o]]

    def horizon(self, mask: np.ndarray | None = None) -> dict[str, float]:
        """:func:`horizon_metrics` of the group ``mask``."""
        def sub(x):
            return x if mask is None else x[mask]

        y, p = sub(self.y), sub(self.p)
        out = {"predicted_churn_rate": float(p.mean()), "observed_churn_rate": float(y.mean())}
        if 0 < y.sum() < len(y):
            o = self._order("p", mask)
            roc, ap = _roc_pr_auc(self.y[o], self.p[o])
            out.update(churn_roc_auc=roc, churn_pr_auc=ap, churn_ece=expected_calibration_error(y, p))
        else:
            out.update(churn_roc_auc=math.nan, churn_pr_auc=math.nan, churn_ece=expected_calibration_error(y, p))
        actual, pred = sub(self.actual), sub(self.pred)
        v: dict[str, float] = {}
        if len(actual) > 1:
            with _undefined_is_nan():
                v = self._value_core(actual, pred, mask, "actual", "pred")
        for k in ("mae", "normalized_gini", "total_error_pct", "total_actual", "total_predicted"):
            out[f"value_{k}"] = float(v.get(k, math.nan))
        out.update({f"value_{k}": float(x) for k, x in self._tiers(actual, mask, "actual", "pred").items()})
        return out

    def clv(self, mask: np.ndarray | None, complete: bool, days_observed: int) -> dict[str, float]:
        """:func:`clv_window_metrics` of the group ``mask``."""
        actual = self.clv_actual if mask is None else self.clv_actual[mask]
        pred = self.clv_pred if mask is None else self.clv_pred[mask]
        if not complete:
            return clv_window_metrics(actual, pred, complete, days_observed)
        with _undefined_is_nan():
            core = self._value_core(actual, pred, mask, "clv_actual", "clv_pred")
            m = {"mae": core["mae"], "normalized_gini": core["normalized_gini"],
                 "spearman": self._spearman(actual, pred, mask),
                 "total_actual": core["total_actual"], "total_predicted": core["total_predicted"],
                 "total_error_pct": core["total_error_pct"],
                 **self._tiers(actual, mask, "clv_actual", "clv_pred")}
        return {f"clv_{k}": float(v) for k, v in m.items()}

    def _value_core(self, actual, pred, mask, a_key: str, p_key: str) -> dict[str, float]:
        """:func:`~clvml.evaluation.metrics.value_core_metrics` with the orders of the partition."""
        full = getattr(self, a_key)
        total_a, total_p = actual.sum(), pred.sum()
        perfect = _gini_of(full[self._order(a_key, mask)])
        gini = _gini_of(full[self._order(p_key, mask)]) / perfect if perfect else float("nan")
        return {"mae": float(np.abs(actual - pred).mean()), "normalized_gini": gini,
                "total_actual": float(total_a), "total_predicted": float(total_p),
                "total_error_pct": float(100 * (total_p - total_a) / total_a) if total_a else float("nan")}

    def _tiers(self, actual, mask, a_key: str, p_key: str) -> dict[str, float]:
        """:func:`~clvml.evaluation.clv_eval.tier_capture` with the partition's order by prediction."""
        return tier_shares(getattr(self, a_key)[self._order(p_key, mask)], actual, TIERS)

    def _spearman(self, actual, pred, mask) -> float:
        """``scipy.stats.spearmanr(actual, pred).statistic`` with the ranks from the partition's orders
        (average ranks of ties; then the same ``np.corrcoef`` on the same array layout)."""
        from scipy.stats import spearmanr

        n = len(actual)
        if n <= 1 or (actual[0] == actual).all() or (pred[0] == pred).all():
            return math.nan
        if not (np.isfinite(actual).all() and np.isfinite(pred).all()):
            return float(spearmanr(actual, pred).statistic)  # NaN / inf: scipy's own rules
        local = None if mask is None else np.cumsum(mask) - 1
        buff = np.empty((2, n))
        for row, key in ((0, "clv_actual"), (1, "clv_pred")):
            o = self._order(key, mask)[::-1]  # increasing (ties in reverse row order: same average ranks)
            x = getattr(self, key)[o]
            first = np.concatenate([np.asarray([True]), x[:-1] != x[1:]])
            idx = np.arange(n)[first]
            counts = np.diff(idx, append=np.asarray([n], dtype=idx.dtype))
            ranks = np.arange(1, n + 1, dtype=float)[first] + (counts.astype(float) - 1) / 2
            buff[row, o if local is None else local[o]] = np.repeat(ranks, counts)
        return float(np.corrcoef(buff.T, rowvar=0)[1, 0])
