"""Pareto/NBD (Schmittlein, Morrison & Colombo 1987), fitted by maximum likelihood with numpy/scipy.

While alive a customer buys at Poisson rate λ ~ Gamma(r, α) and dies after an exponential lifetime of
rate μ ~ Gamma(s, β). The likelihood follows Fader, Hardie & Lee (2005), "A note on deriving the
Pareto/NBD model and related expressions":

``L = Γ(r+x) α^r β^s / Γ(r) · [ 1 / ((α+T)^(r+x) (β+T)^s) + s/(r+s+x) · A₀ ]``

where ``A₀`` is a difference of two Gauss hypergeometric terms (one at ``t_x``, one at ``T``) whose form
depends on whether ``α ≥ β``. Evaluated naively the ``₂F₁`` terms overflow for large ``x`` and lose all
precision as ``z → 1``; here each term is rewritten with Euler's transformation into
``₂F₁(1, ·; r+s+x+1; z)`` (a series of positive terms bounded by ``1/(1−z)``) and the rest is kept in log
space, so the log-likelihood is finite for every admissible parameter. The same ``A₀`` is
``(r+s+x)·∫_{t_x}^T (α+τ)^{-(r+x)} (β+τ)^{-(s+1)} dτ`` (the integral form; the tests check against it).

Time is counted in one unit (``unit_days`` days, 7 = weeks). Fits never crash on real data: the
parameters are optimised on the log scale within bounds and boundary optima are returned with a
:class:`~clvml.modeling.btyd.BoundaryWarning`, exactly as for :class:`~clvml.modeling.btyd.BGNBD`.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaln, hyp2f1

from clvml.modeling.mle import PurchaseModel

NAMES = ["r", "alpha", "s", "beta"]


def _log_term(r: float, alpha: float, s: float, beta: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``log( ₂F₁(...; z(y)) / (max(α,β)+y)^(r+s+x) )``: one half of ``A₀`` at time ``y``, in log space.

    α ≥ β: ``₂F₁(r+s+x, s+1; r+s+x+1; z)`` with ``z = (α−β)/(α+y)`` equals
    ``(1−z)^(−s) ₂F₁(1, r+x; r+s+x+1; z)``, so the term is ``F / ((α+y)^(r+x) (β+y)^s)``.
    α < β: ``₂F₁(r+s+x, r+x; r+s+x+1; z)`` with ``z = (β−α)/(β+y)`` equals
    ``(1−z)^(1−r−x) ₂F₁(1, s+1; r+s+x+1; z)``, so the term is ``F (α+y) / ((α+y)^(r+x) (β+y)^(s+1))``.
    """
    c = r + s + x + 1.0
    la, lb = np.log(alpha + y), np.log(beta + y)
    if alpha >= beta:
        f = hyp2f1(1.0, r + x, c, (alpha - beta) / (alpha + y))
        return np.log(f) - (r + x) * la - s * lb
    f = hyp2f1(1.0, s + 1.0, c, (beta - alpha) / (beta + y))
    return np.log(f) - (r + x - 1.0) * la - (s + 1.0) * lb


def _log_parts(params, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log of the constant, log of the alive-at-T part, log of the died-in-(t_x, T] part) of the likelihood."""
    r, alpha, s, beta = params
    const = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
    hi, lo = _log_term(r, alpha, s, beta, x, tx), _log_term(r, alpha, s, beta, x, T)
    with np.errstate(divide="ignore", invalid="ignore"):
        # A0 = term(t_x) - term(T) >= 0 (the terms decrease in time); 0 when t_x = T
        log_a0 = hi + np.log(-np.expm1(np.minimum(lo - hi, 0.0)))
    dead = np.log(s) - np.log(r + s + x) + log_a0
    return const, alive, np.where(np.isnan(dead), -np.inf, dead)


def _pareto_nbd_ll(params, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    const, alive, dead = _log_parts(params, x, tx, T)
    return const + np.logaddexp(alive, dead)


def _ratio_term(k: float | np.ndarray, base: np.ndarray, grown: np.ndarray) -> np.ndarray:
    """``(1 − (base/grown)^k) / k``, continuous at ``k = 0`` (where it is ``log(grown/base)``)."""
    lr = np.log(grown) - np.log(base)
    k = np.asarray(k, float)
    safe = np.where(np.abs(k) < 1e-10, 1.0, k)
    return np.where(np.abs(k) < 1e-10, lr, -np.expm1(-safe * lr) / safe)


class ParetoNBD(PurchaseModel):
    """Pareto/NBD purchase model. ``fit(frequency, recency, T)`` in one time unit.

    Parameters
    ----------
    unit_days
        Length of the model's time unit in days (7 = weeks); only stored, for the caller's bookkeeping.

    Attributes
    ----------
    r_, alpha_, s_, beta_
        Gamma(r, α) purchase rates and Gamma(s, β) dropout rates.
    params_
        The same as a dict.
    diagnostics_
        ``log_likelihood``, ``gradient_norm``, ``converged``, ``message``, ``at_bound``.
    """

    NAMES = tuple(NAMES)
    _ll = staticmethod(_pareto_nbd_ll)

    def p_alive(self, frequency, recency, T) -> np.ndarray:
        """P(alive at T | x, t_x, T) = the alive-at-T share of the likelihood."""
        x, tx, TT = (np.asarray(v, float) for v in (frequency, recency, T))
        _, alive, dead = _log_parts(self._params, x, tx, TT)
        return np.exp(alive - np.logaddexp(alive, dead))

    def p_no_purchase(self, t, frequency, recency, T) -> np.ndarray:
        """P(no purchase in (T, T + t]): the churn score.

        Observing ``(x, t_x)`` over ``(0, T]`` and nothing more over ``(T, T+t]`` is the same event as
        observing ``(x, t_x)`` over ``(0, T+t]``, so this is ``L(x, t_x, T+t) / L(x, t_x, T)``.
        """
        x, tx, TT = (np.asarray(v, float) for v in (frequency, recency, T))
        return np.exp(_pareto_nbd_ll(self._params, x, tx, TT + t) - _pareto_nbd_ll(self._params, x, tx, TT))

    def expected_purchases(self, t, frequency, recency, T) -> np.ndarray:
        """E[purchases in (T, T + t] | x, t_x, T] for each customer (t in the model's time unit).

        ``(r+x)(β+T) / ((α+T)(s−1)) · [1 − ((β+T)/(β+T+t))^(s−1)] · P(alive)``; the bracket over
        ``(s−1)`` is evaluated stably, including at ``s = 1``.
        """
        x, tx, TT = (np.asarray(v, float) for v in (frequency, recency, T))
        r, al, s, be = self._params
        rate = (r + x) / (al + TT) * (be + TT)
        return rate * _ratio_term(s - 1.0, be + TT, be + TT + t) * self.p_alive(x, tx, TT)

    def expected_purchases_new(self, t) -> np.ndarray:
        """E[repeat purchases in (0, t]] for a customer who has just made the first purchase."""
        r, al, s, be = self._params
        t = np.asarray(t, float)
        return r * be / al * _ratio_term(s - 1.0, np.full_like(t, be), be + t)
