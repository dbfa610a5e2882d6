"""Customer lifetime value from any BTYD purchase model and a Gamma-Gamma spend.

``CLV = margin · spend · Σ_{k=1..K} (E[N(kH)] − E[N((k−1)H)]) / (1 + d)^k``

where ``E[N(u)]`` is the purchase model's expected number of purchases in ``(T, T + u]`` given the
customer's history (it already accounts for the chance that the customer is no longer alive), ``H`` is
the period length, ``d`` the discount rate per period (cash flows discounted at the end of each period)
and ``spend`` the expected spend per purchase (e.g. :meth:`~clvml.modeling.btyd.GammaGamma.expected_spend`).
This is the expected discounted *residual* value: what the customer will still spend after ``T``.
"""

from __future__ import annotations

import numpy as np


def discounted_residual_value(model, spend, frequency, recency, T, *, periods: int, period_days: float,
                              discount_rate: float, unit_days: float = 7.0, margin: float = 1.0) -> np.ndarray:
    """Expected discounted residual spend per customer; see the module docstring for the formula.

    Parameters
    ----------
    model
        A fitted purchase model with ``expected_purchases(t, frequency, recency, T)``
        (:class:`~clvml.modeling.btyd.BGNBD`, :class:`~clvml.modeling.pareto_nbd.ParetoNBD`,
        :class:`~clvml.modeling.mbgnbd.MBGNBD`).
    spend
        Expected spend per purchase, one per customer (or a scalar).
    frequency, recency, T
        The customers' summaries in the model's time unit.
    periods
        Number of periods ``K`` (>= 1).
    period_days
        Period length ``H`` in days.
    discount_rate
        Discount rate per period.
    unit_days
        Length of the model's time unit in days.
    margin
        Profit margin applied to the spend.
    """
    if periods < 1:
        raise ValueError("periods must be >= 1")
    x, tx, TT = (np.asarray(v, float) for v in (frequency, recency, T))
    step = period_days / unit_days
    cumulative = np.stack([np.zeros_like(x)] + [np.asarray(model.expected_purchases(k * step, x, tx, TT), float)
                                                for k in range(1, periods + 1)])
    disc = (1.0 + discount_rate) ** -np.arange(1, periods + 1)
    return margin * np.asarray(spend, float) * (np.diff(cumulative, axis=0) * disc[:, None]).sum(axis=0)
