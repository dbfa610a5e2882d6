"""Maximum-likelihood fitting shared by the BTYD models: parameters optimised on the log scale within
bounds, with boundary solutions detected and reported (never a crash on real data)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

LOG_BOUNDS = (np.log(1e-6), np.log(1e5))


class BoundaryWarning(UserWarning):
    """A parameter estimate sits on its bound; predictions still work."""



def _fit(nll, x0: np.ndarray, names: list[str]) -> tuple[np.ndarray, dict]:
    # four parameters: BLAS threads only contend (3x slower on a busy 2-core machine, bench/RESULTS.md)
    with threadpool_limits(limits=1, user_api="blas"):
        res = minimize(nll, np.log(x0), method="L-BFGS-B", bounds=[LOG_BOUNDS] * len(x0),
                       options={"maxiter": 5000, "ftol": 1e-14, "gtol": 1e-9})
    theta = np.asarray(res.x, float)
    best = float(nll(theta))
    at_bound = []
    # A flat likelihood towards a bound (e.g. a -> 0 when no dropout is detectable) stalls the optimiser
    # short of the bound: a parameter is on its bound if moving it there loses no likelihood.
    for i, name in enumerate(names):
        for bound in LOG_BOUNDS:
            trial = theta.copy()
            trial[i] = bound
            value = float(nll(trial))
            if np.isfinite(value) and value <= best + 1e-6 * max(1.0, abs(best)):
                theta, best = trial, min(best, value)
                at_bound.append(f"{name}={'lower' if bound == LOG_BOUNDS[0] else 'upper'} bound "
                                f"{np.exp(bound):g}")
                break
    eps = 1e-6
    grad = np.array([(nll(theta + eps * e) - nll(theta - eps * e)) / (2 * eps) for e in np.eye(len(theta))])
    diag = {"log_likelihood": -best, "gradient_norm": float(np.linalg.norm(grad)),
            "converged": bool(res.success), "message": str(res.message), "at_bound": at_bound}
    if at_bound:
        warnings.warn(f"{'; '.join(at_bound)}: the likelihood is maximised on the boundary, returning the "
                      f"boundary solution (log-likelihood {diag['log_likelihood']:.3f}, gradient norm "
                      f"{diag['gradient_norm']:.2e}); predictions remain valid", BoundaryWarning, stacklevel=3)
    return np.exp(theta), diag


class PurchaseModel:
    """What the four-parameter BTYD purchase models share: keyword-only ``unit_days``, a maximum-
    likelihood ``fit(frequency, recency, T)`` on the log scale with boundary fits reported, the fitted
    parameters as ``<name>_`` attributes and ``params_``, and the per-customer log-likelihood.

    Subclasses set ``NAMES`` (the parameter names) and ``_ll`` (``params, x, t_x, T -> log-likelihood
    per customer``).
    """

    NAMES: tuple[str, ...] = ()

    def __init__(self, *, unit_days: float = 7.0):
        self.unit_days = unit_days

    @staticmethod
    def _ll(params, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(self, frequency, recency, T):
        """Maximum likelihood on repeat frequency ``x``, recency ``t_x`` and age ``T`` per customer."""
        x, tx, TT = (np.asarray(v, float) for v in (frequency, recency, T))

        def nll(theta):
            value = -self._ll(np.exp(theta), x, tx, TT).sum()
            return value if np.isfinite(value) else 1e300

        p, self.diagnostics_ = _fit(nll, np.ones(len(self.NAMES)), list(self.NAMES))
        for name, value in zip(self.NAMES, p, strict=True):
            setattr(self, f"{name}_", value)
        self.params_ = dict(zip(self.NAMES, p, strict=True))
        return self

    @property
    def _params(self) -> tuple[float, ...]:
        return tuple(getattr(self, f"{name}_") for name in self.NAMES)

    def log_likelihood(self, frequency, recency, T) -> np.ndarray:
        """Per-customer log-likelihood at the fitted parameters."""
        x, tx, TT = (np.asarray(v, float) for v in (frequency, recency, T))
        return self._ll(self._params, x, tx, TT)
