"""Prediction intervals for expected value and CLV: split-conformal calibration on held-out time.

Realised spend is zero-inflated and heavy-tailed, and its spread grows with its level, so the interval
is **multiplicative** and **binned by the prediction**: on a calibration set of (prediction, realised)
pairs from held-out time (a cut-off the model never trained on), the predictions are cut into ``bins``
quantile bins and in each the ratios ``r = realised / prediction`` give

    lo = prediction · q_lo(bin),  hi = prediction · q_hi(bin)

with ``q_lo`` the ``α/2`` quantile of the bin's ratios and ``q_hi`` the quantile that leaves exactly
``α`` of them outside in total: when a bin's lower quantile is 0 (more than ``α/2`` of its customers
buy nothing), zero is inside the interval and the whole ``α`` goes to the upper tail, instead of
over-covering. Quantile levels use the split-conformal finite-sample correction
(``⌈(n + 1)·level⌉ / n``). Coverage is then ``1 − α`` per bin as long as the ratios of the scored
customers are distributed like those of the calibration cut-off: the backtest measures it on later
held-out time.
"""

from __future__ import annotations

import math

import numpy as np


def _conformal_quantile(r: np.ndarray, level: float) -> float:
    n = len(r)
    if n == 0:
        return float("nan")
    k = min(n, max(1, math.ceil((n + 1) * level)))
    return float(np.sort(r)[k - 1])


class ConformalIntervals:
    """Binned multiplicative split-conformal intervals (see the module docstring).

    Parameters
    ----------
    coverage
        Nominal coverage ``1 − α`` (0.8: an 80 % interval).
    bins
        Quantile bins of the prediction (fewer when the calibration set is small: at least
        ``min_per_bin`` pairs per bin).
    """

    def __init__(self, *, coverage: float = 0.8, bins: int = 10, min_per_bin: int = 50):
        self.coverage = coverage
        self.bins = bins
        self.min_per_bin = min_per_bin

    def fit(self, predicted, realised) -> ConformalIntervals:
        p, y = np.asarray(predicted, float), np.asarray(realised, float)
        keep = np.isfinite(p) & np.isfinite(y)
        p, y = p[keep], y[keep]
        if len(p) == 0:
            raise ValueError("no calibration pairs")
        nb = max(1, min(self.bins, len(p) // self.min_per_bin))
        self.edges_ = np.unique(np.quantile(p, np.linspace(0, 1, nb + 1)[1:-1]))
        b = np.searchsorted(self.edges_, p, side="right")
        r = y / np.maximum(p, 1e-9)
        alpha = 1.0 - self.coverage
        lo, hi = [], []
        for j in range(len(self.edges_) + 1):
            rj = r[b == j]
            q_lo = _conformal_quantile(rj, alpha / 2) if len(rj) else 0.0
            q_lo = q_lo if q_lo > 0 and (rj < q_lo).mean() <= alpha / 2 else 0.0
            outside_low = float((rj < q_lo).mean()) if len(rj) else 0.0
            q_hi = _conformal_quantile(rj, 1.0 - alpha + outside_low) if len(rj) else float("inf")
            lo.append(q_lo)
            hi.append(q_hi)
        self.lo_, self.hi_ = np.array(lo), np.array(hi)
        self.n_ = len(p)
        return self

    def predict(self, predicted, scale=None) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` for ``predicted``; the bin is chosen by ``predicted``, the ratios are applied to
        ``scale`` (default ``predicted``: e.g. the discounted CLV while binning on the undiscounted)."""
        p = np.asarray(predicted, float)
        s = p if scale is None else np.asarray(scale, float)
        b = np.searchsorted(self.edges_, p, side="right")
        return s * self.lo_[b], s * self.hi_[b]
