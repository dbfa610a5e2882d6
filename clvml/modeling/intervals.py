"""Prediction intervals for expected value and CLV: split-conformal calibration on held-out time.

Realised spend is zero-inflated and heavy-tailed, and its spread grows with its level, so the interval
is **multiplicative** and **binned by the prediction**: on a calibration set of (prediction, realised)
pairs from held-out time (a cut-off the model never trained on), the predictions are cut into ``bins``
quantile bins and in each the ratios ``r = realised / prediction`` give

    lo = prediction · q_lo(bin),  hi = prediction · q_hi(bin)

with ``q_lo`` the ``β/2`` quantile of the bin's ratios and ``q_hi`` the quantile that leaves ``β`` of
them outside in total: when a bin's lower quantile is 0 (more than ``β/2`` of its customers buy
nothing), zero is inside the interval and the whole ``β`` goes to the upper tail.

Realised spend has a point mass at zero, so a bin where more than ``1 − α`` of the customers buy
nothing has the interval [0, 0] and covers more than nominal (90 % of them if 90 % buy nothing):
no interval can cover exactly 80 % of a point mass. So the tail budget ``β`` (the same in every bin)
is raised above ``α`` until the *pooled* coverage on the calibration set is the nominal one, with the
split-conformal finite-sample correction (``⌈(n + 1)(1 − α)⌉ / n``; quantile levels likewise): the
bins without a large point mass give back the over-coverage of those with one, but at most down to
``1 − max_tail·α`` (60 % for an 80 % interval), so that the customers who do buy keep a real interval
when most of the population buys nothing (CDNOW: 83 % buy nothing in 13 weeks). Coverage is then
nominal overall as long as the scored customers' ratios are distributed like the calibration
cut-off's; the backtest measures it on later held-out time.
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
    max_tail
        The tail budget is raised at most to ``max_tail · α``: no bin's interval leaves out more than
        that share of its calibration customers (2: an 80 % interval covers at least 60 % in every
        bin), even when most customers buy nothing and the pooled coverage stays above nominal.
    """

    def __init__(self, *, coverage: float = 0.8, bins: int = 10, min_per_bin: int = 50, max_tail: float = 2.0):
        self.coverage = coverage
        self.bins = bins
        self.min_per_bin = min_per_bin
        self.max_tail = max_tail

    def fit(self, predicted, realised, bin_by=None) -> ConformalIntervals:
        """Calibrate on ``(predicted, realised)`` pairs. ``bin_by`` (default ``predicted``): the value the
        bins are cut on, when the intervals will be asked for a different prediction than the one the
        ratios come from (a shorter window's CLV calibrating the configured one's: the bins follow the
        configured CLV, the ratios the window that could be observed)."""
        p, y = np.asarray(predicted, float), np.asarray(realised, float)
        q = p if bin_by is None else np.asarray(bin_by, float)
        if q.shape != p.shape:
            raise ValueError(f"bin_by has shape {q.shape}, predicted {p.shape}")
        keep = np.isfinite(p) & np.isfinite(y) & np.isfinite(q)
        p, y, q = p[keep], y[keep], q[keep]
        if len(p) == 0:
            raise ValueError("no calibration pairs")
        nb = max(1, min(self.bins, len(p) // self.min_per_bin))
        self.edges_ = np.unique(np.quantile(q, np.linspace(0, 1, nb + 1)[1:-1]))
        b = np.searchsorted(self.edges_, q, side="right")
        r = y / np.maximum(p, 1e-9)
        groups = [np.sort(r[b == j]) for j in range(len(self.edges_) + 1)]
        target = min(1.0, math.ceil((len(r) + 1) * self.coverage) / len(r))
        # the tail budget beta of every bin, raised until the pooled coverage is the nominal one
        lo_beta, hi_beta = 0.0, 1.0 - self.coverage
        if self._coverage(groups, hi_beta) > target:
            lo_beta, hi_beta = hi_beta, min(1.0, self.max_tail * (1.0 - self.coverage))
            for _ in range(40):
                mid = (lo_beta + hi_beta) / 2
                lo_beta, hi_beta = (mid, hi_beta) if self._coverage(groups, mid) >= target else (lo_beta, mid)
        self.tail_ = lo_beta if lo_beta > 0 else hi_beta
        bounds = [self._bounds(g, self.tail_) for g in groups]
        self.lo_ = np.array([lo for lo, _ in bounds])
        self.hi_ = np.array([hi for _, hi in bounds])
        self.n_ = len(p)
        return self

    @staticmethod
    def _bounds(g: np.ndarray, beta: float) -> tuple[float, float]:
        """The ratio interval of one bin (sorted ratios ``g``) leaving ``beta`` of it outside."""
        if len(g) == 0:
            return 0.0, float("inf")
        q_lo = _conformal_quantile(g, beta / 2)
        if not q_lo > 0 or np.searchsorted(g, q_lo, side="left") / len(g) > beta / 2:
            q_lo = 0.0  # a point mass at zero: zero is inside, the whole budget goes to the upper tail
        below = np.searchsorted(g, q_lo, side="left") / len(g)
        return q_lo, _conformal_quantile(g, min(1.0, 1.0 - beta + below))

    def _coverage(self, groups: list[np.ndarray], beta: float) -> float:
        inside = 0
        for g in groups:
            lo, hi = self._bounds(g, beta)
            inside += np.searchsorted(g, hi, side="right") - np.searchsorted(g, lo, side="left")
        return inside / sum(len(g) for g in groups)

    def predict(self, predicted, scale=None) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` for ``predicted``; the bin is chosen by ``predicted``, the ratios are applied to
        ``scale`` (default ``predicted``: e.g. the discounted CLV while binning on the undiscounted)."""
        p = np.asarray(predicted, float)
        s = p if scale is None else np.asarray(scale, float)
        b = np.searchsorted(self.edges_, p, side="right")
        return s * self.lo_[b], s * self.hi_[b]
