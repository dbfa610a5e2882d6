"""Long-horizon evaluation of CLV against realised value, and of prediction intervals.

CLV is what marketing acts on (budgets split over CLV tiers), so it is scored like any other
prediction, on held-out time: at an origin with ``K·H`` days of data after it, each customer's
predicted CLV over the ``K`` periods (undiscounted, no cost, so it is comparable) against the margin
they actually produced over the same ``K`` periods.

Metrics (:func:`clv_metrics`): MAE, normalized Gini, Spearman, total predicted vs realised, and **tier
capture**: the share of the realised value held by the customers the prediction puts in its top 1 %,
5 % and 20 % (``capture_top1`` …), beside the best possible share, that of the customers who really
produced the most (``best_top1`` …). A tier is ``ceil(share · n)`` customers; ties in the prediction
are broken by row order, so the result is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import spearmanr

from clvml.evaluation.metrics import normalized_gini

TIERS = (0.01, 0.05, 0.20)


def tier_size(n: int, share: float) -> int:
    """Customers in the top ``share`` of ``n`` (at least one)."""
    return max(1, math.ceil(share * n - 1e-9))


def tier_capture(actual, pred, shares=TIERS) -> dict[str, float]:
    """Share of the realised total held by the top ``share`` by ``pred`` (``capture_topP``) and by the
    top ``share`` by ``actual`` itself (``best_topP``, the best any prediction can do)."""
    actual, pred = np.asarray(actual, float), np.asarray(pred, float)
    return tier_shares(actual[np.lexsort((np.arange(len(pred)), -pred))], actual, shares)


def tier_shares(ranked, actual, shares=TIERS) -> dict[str, float]:
    """:func:`tier_capture` from ``ranked``, the realised values ordered by the prediction (highest
    first; ties in row order), and ``actual`` (the same values in any order)."""
    total = actual.sum()
    by_best = np.sort(actual)[::-1]
    out = {}
    for s in shares:
        k = tier_size(len(actual), s)
        tag = f"top{round(100 * s):d}"
        out[f"capture_{tag}"] = float(ranked[:k].sum() / total) if total else float("nan")
        out[f"best_{tag}"] = float(by_best[:k].sum() / total) if total else float("nan")
    return out


def clv_metrics(actual, pred, shares=TIERS) -> dict[str, float]:
    """MAE, normalized Gini, Spearman, totals and tier capture of CLV ``pred`` against realised
    ``actual`` (one value per customer, same order)."""
    actual, pred = np.asarray(actual, float), np.asarray(pred, float)
    total_a, total_p = actual.sum(), pred.sum()
    return {
        "mae": float(np.abs(actual - pred).mean()),
        "normalized_gini": normalized_gini(actual, pred),
        "spearman": float(spearmanr(actual, pred).statistic),
        "total_actual": float(total_a),
        "total_predicted": float(total_p),
        "total_error_pct": float(100 * (total_p - total_a) / total_a) if total_a else float("nan"),
        **tier_capture(actual, pred, shares),
    }


def interval_metrics(actual, lo, hi) -> dict[str, float]:
    """Coverage (share of ``actual`` inside ``[lo, hi]``), mean width, and the shares below and above."""
    actual, lo, hi = (np.asarray(v, float) for v in (actual, lo, hi))
    return {
        "coverage": float(((actual >= lo) & (actual <= hi)).mean()),
        "below": float((actual < lo).mean()),
        "above": float((actual > hi).mean()),
        "mean_width": float((hi - lo).mean()),
    }
