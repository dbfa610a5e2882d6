"""Customer lifetime value from the churn and value models.

``CLV = Σ_{k=1..K} margin · E[spend_k] · S_k / (1 + d)^k − cost``

Assumptions (documented, deliberately simple):

* period ``k`` is the k-th horizon of length H after the cut-off; ``E[spend_k]`` is the value model's
  expected spend for the next horizon, assumed stationary for a customer still active;
* survival is geometric with the current churn probability p: ``S_1 = 1`` (the value model's
  expectation already includes the chance of not buying in the first period) and
  ``S_k = (1 − p)^(k−1)``;
* cash flows are discounted at the end of each period at rate ``d`` per period; ``cost`` is a
  per-customer cost (e.g. the retention budget) subtracted once.
"""

from __future__ import annotations

import numpy as np


def clv(expected_spend, churn_probability, *, periods: int, margin: float, discount_rate: float,
        cost: float | np.ndarray = 0.0) -> np.ndarray:
    """Vectorised CLV; see the module docstring for the formula and its assumptions."""
    spend = np.asarray(expected_spend, dtype=float)
    p = np.clip(np.asarray(churn_probability, dtype=float), 0.0, 1.0)
    if periods < 1:
        raise ValueError("periods must be >= 1")
    k = np.arange(1, periods + 1)
    survival = (1.0 - p)[:, None] ** (k - 1)[None, :]
    disc = (1.0 + discount_rate) ** -k
    return margin * spend * (survival * disc[None, :]).sum(axis=1) - cost
