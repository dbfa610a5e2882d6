"""Metrics for churn (classification) and value (regression/ranking) predictions."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


def expected_calibration_error(y, p, bins: int = 10) -> float:
    """ECE with equal-width probability bins: Σ_b n_b/n · |mean(y_b) − mean(p_b)|."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(total)


def lift_at(y, score, frac: float = 0.1) -> tuple[float, float]:
    """(lift, capture rate) of the top ``frac`` by score."""
    y, score = np.asarray(y, float), np.asarray(score, float)
    n = max(1, int(round(len(y) * frac)))
    top = np.argsort(-score, kind="stable")[:n]
    rate = y.mean()
    lift = y[top].mean() / rate if rate > 0 else float("nan")
    capture = y[top].sum() / y.sum() if y.sum() > 0 else float("nan")
    return float(lift), float(capture)


def churn_metrics(y, p) -> dict[str, float]:
    """Churn metrics of predicted probabilities against observed churn.

    Parameters
    ----------
    y
        Observed churn, 1 (churned) or 0, one per customer.
    p
        Predicted churn probabilities, same order.

    Returns
    -------
    dict
        ``roc_auc``, ``pr_auc`` (average precision), ``log_loss`` (probabilities clipped to
        [1e-6, 1 − 1e-6]), ``brier``, ``ece`` (expected calibration error, 10 equal-width bins),
        ``lift_top10`` and ``capture_top10`` (lift and share of churners among the 10 % highest scores).
    """
    y, p = np.asarray(y, int), np.asarray(p, float)
    lift, capture = lift_at(y, p, 0.1)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "ece": expected_calibration_error(y, p),
        "lift_top10": lift,
        "capture_top10": capture,
    }


def _gini(actual, pred) -> float:
    actual, pred = np.asarray(actual, float), np.asarray(pred, float)
    order = np.lexsort((np.arange(len(pred)), -pred))
    a = actual[order]
    cum = np.cumsum(a) / a.sum()
    n = len(a)
    return float(cum.sum() / n - (n + 1) / (2 * n))


def normalized_gini(actual, pred) -> float:
    """Gini of ``pred`` as a ranking of ``actual``, divided by the Gini of the perfect ranking."""
    perfect = _gini(actual, actual)
    return _gini(actual, pred) / perfect if perfect else float("nan")


def decile_mape(actual, pred) -> float:
    """Mean absolute percentage error of decile totals, deciles by prediction (Wang, Liu & Miao 2019)."""
    actual, pred = np.asarray(actual, float), np.asarray(pred, float)
    order = np.argsort(-pred, kind="stable")
    errs = []
    for chunk in np.array_split(order, 10):
        a, p = actual[chunk].sum(), pred[chunk].sum()
        if a > 0:
            errs.append(abs(p - a) / a)
    return float(np.mean(errs)) if errs else float("nan")


def value_metrics(actual, pred) -> dict[str, float]:
    """Value metrics of predicted spend (or CLV) against realised value.

    Parameters
    ----------
    actual
        Realised value per customer.
    pred
        Predicted value, same order.

    Returns
    -------
    dict
        ``mae``, ``rmse``, ``normalized_gini`` (ranking quality: 1 = the perfect order), ``spearman``,
        ``decile_mape`` (mean absolute percentage error of decile totals, deciles by prediction),
        ``total_actual``, ``total_predicted`` and ``total_error_pct`` (predicted vs actual total, in %).
    """
    actual, pred = np.asarray(actual, float), np.asarray(pred, float)
    core = value_core_metrics(actual, pred)
    return {
        "mae": core["mae"],
        "rmse": float(np.sqrt(((actual - pred) ** 2).mean())),
        "normalized_gini": core["normalized_gini"],
        "spearman": float(spearmanr(actual, pred).statistic),
        "decile_mape": decile_mape(actual, pred),
        **{k: core[k] for k in ("total_actual", "total_predicted", "total_error_pct")},
    }


def value_core_metrics(actual, pred) -> dict[str, float]:
    """The cheap part of :func:`value_metrics` (what ``clvml monitor`` follows on every segment):
    ``mae``, ``normalized_gini``, ``total_actual``, ``total_predicted``, ``total_error_pct``."""
    actual, pred = np.asarray(actual, float), np.asarray(pred, float)
    total_a, total_p = actual.sum(), pred.sum()
    return {
        "mae": float(np.abs(actual - pred).mean()),
        "normalized_gini": normalized_gini(actual, pred),
        "total_actual": float(total_a),
        "total_predicted": float(total_p),
        "total_error_pct": float(100 * (total_p - total_a) / total_a) if total_a else float("nan"),
    }
