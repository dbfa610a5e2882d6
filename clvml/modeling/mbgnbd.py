"""Modified BG/NBD (Batislam, Denizel & Filiztekin 2007), fitted by maximum likelihood with numpy/scipy.

As in BG/NBD, a customer buys at Poisson rate λ ~ Gamma(r, α) while alive and may drop out with
probability p ~ Beta(a, b) after each purchase, but here also right after the first purchase (time 0).
So after ``x`` repeat purchases there were ``x + 1`` dropout chances and P(alive) is below 1 even for
one-time buyers (BG/NBD holds them alive by construction). Per customer

``L = B(a, b+x+1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
    + B(a+1, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x))``

(alive at ``T``; died right after the purchase at ``t_x``), evaluated in log space. Time is counted in
one unit (``unit_days`` days, 7 = weeks). Fits never crash on real data: parameters are optimised on
the log scale within bounds and boundary optima are returned with a
:class:`~clvml.modeling.btyd.BoundaryWarning`, exactly as for :class:`~clvml.modeling.btyd.BGNBD`.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln, hyp2f1

from clvml.modeling.mle import PurchaseModel

NAMES = ["r", "alpha", "a", "b"]


def _log_parts(params, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log of the alive-at-T part, log of the died-after-t_x part) of the likelihood."""
    r, alpha, a, b = params
    common = (gammaln(r + x) - gammaln(r) + r * np.log(alpha)
              + gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x + 1))
    alive = common + np.log(b + x) - (r + x) * np.log(alpha + T)
    dead = common + np.log(a) - (r + x) * np.log(alpha + tx)
    return alive, dead


def _mbgnbd_ll(params, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    return np.logaddexp(*_log_parts(params, x, tx, T))


class MBGNBD(PurchaseModel):
    """Modified beta-geometric/NBD purchase model. ``fit(frequency, recency, T)`` in one time unit.

    Parameters
    ----------
    unit_days
        Length of the model's time unit in days (7 = weeks); only stored, for the caller's bookkeeping.

    Attributes
    ----------
    r_, alpha_, a_, b_
        Gamma(r, α) purchase rates and Beta(a, b) dropout probabilities.
    params_
        The same as a dict.
    diagnostics_
        ``log_likelihood``, ``gradient_norm``, ``converged``, ``message``, ``at_bound``.
    """

    NAMES = tuple(NAMES)
    _ll = staticmethod(_mbgnbd_ll)

    def p_alive(self, frequency, recency, T) -> np.ndarray:
        """P(alive at T | x, t_x, T) = ``1 / (1 + a/(b+x) · ((α+T)/(α+t_x))^(r+x))``, also for x = 0."""
        x, tx, TT = (np.asarray(v, float) for v in (frequency, recency, T))
        alive, dead = _log_parts(self._params, x, tx, TT)
        return np.exp(alive - np.logaddexp(alive, dead))

    def p_no_purchase(self, t, frequency, recency, T) -> np.ndarray:
        """P(no purchase in (T, T + t]): the churn score, ``L(x, t_x, T+t) / L(x, t_x, T)``.

        Equivalently ``1 − P(alive) + P(alive)·((α+T)/(α+T+t))^(r+x)``.
        """
        x, tx, TT = (np.asarray(v, float) for v in (frequency, recency, T))
        return np.exp(_mbgnbd_ll(self._params, x, tx, TT + t) - _mbgnbd_ll(self._params, x, tx, TT))

    def expected_purchases(self, t, frequency, recency, T) -> np.ndarray:
        """E[purchases in (T, T + t] | x, t_x, T] for each customer (t in the model's time unit).

        Alive at T the posterior is λ ~ Gamma(r+x, α+T), p ~ Beta(a, b+x+1), and an alive customer
        buys ``(1 − e^(−λpt))/p`` times in expectation, so
        ``(a+b+x)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x+1; a+b+x; t/(α+T+t))] · P(alive)``.
        """
        x, tx, TT = (np.asarray(v, float) for v in (frequency, recency, T))
        r, al, a, b = self._params
        z = t / (al + TT + t)
        alive = (a + b + x) / (a - 1) * (1 - ((al + TT) / (al + TT + t)) ** (r + x)
                                         * hyp2f1(r + x, b + x + 1, a + b + x, z))
        return alive * self.p_alive(x, tx, TT)

    def expected_purchases_new(self, t) -> np.ndarray:
        """E[repeat purchases in (0, t]] for a customer who has just made the first purchase.

        ``b/(a−1) · [1 − (α/(α+t))^r ₂F₁(r, b+1; a+b; t/(α+t))]``.
        """
        r, al, a, b = self._params
        t = np.asarray(t, float)
        return b / (a - 1) * (1 - (al / (al + t)) ** r * hyp2f1(r, b + 1, a + b, t / (al + t)))
