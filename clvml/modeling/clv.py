"""Customer lifetime value from the churn and value models.

``CLV = Σ_{k=1..K} margin · E[spend_1] · w_k / (1 + d)^k − cost``

* period ``k`` is the k-th horizon of length H after the cut-off; ``E[spend_1]`` is the value model's
  (LightGBM's) expected spend over the first horizon: it sets each customer's **level and ranking**;
* ``w_k`` carries that level to period ``k`` (``w_1 = 1``). Two constructions:

  - ``survival="btyd"`` (default): each customer's own BTYD dynamics,
    ``w_k = (E[N(kH)] − E[N((k−1)H)]) / E[N(H)]``, the share of a purchase model's (BG/NBD by default)
    expected purchases in period k relative to period 1, given the customer's frequency, recency and
    age. It separates *no purchase this period* from *gone*: an alive customer who buys twice a year
    keeps most of their expected spend period after period, while one whose silence is long for their
    own rhythm decays fast. The purchase model's population parameters are fitted on the purchases
    before the cut-off (:class:`CLVShape`); the customer's summary comes from the features
    (``tx_purchase_days_all``, ``tx_recency_days``, ``tx_tenure_days``), so a bundle computes it at
    scoring without the raw history;
  - ``survival="geometric"`` (the former construction, kept for comparison):
    ``w_k = (1 − p)^(k−1)`` with p the churn probability, i.e. P(no purchase in the next H). p is not
    the probability of having left: an alive customer who buys twice a year has p ≈ 0.6 for 90 days,
    so this assumes 60 % of them vanish every period, and undervalues infrequent buyers (measured in
    docs/guide/models.md: −16 % to −19 % of realised value in total on the synthetic world, −38 % on
    CDNOW).

* cash flows are discounted at the end of each period at rate ``d`` per period; ``cost`` is a
  per-customer cost (e.g. the retention budget) subtracted once.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

SURVIVALS = ("btyd", "geometric")


def clv(expected_spend, churn_probability=None, *, periods: int, margin: float, discount_rate: float,
        cost: float | np.ndarray = 0.0, survival: str = "geometric", period_weights=None) -> np.ndarray:
    """Vectorised CLV; see the module docstring for the formula and its assumptions.

    ``period_weights`` (n × K, ``w_k``) is required for ``survival="btyd"`` (see
    :meth:`CLVShape.weights`); ``churn_probability`` for ``"geometric"``.
    """
    spend = np.asarray(expected_spend, dtype=float)
    if periods < 1:
        raise ValueError("periods must be >= 1")
    k = np.arange(1, periods + 1)
    if survival == "geometric":
        p = np.clip(np.asarray(churn_probability, dtype=float), 0.0, 1.0)
        weights = (1.0 - p)[:, None] ** (k - 1)[None, :]
    elif survival == "btyd":
        if period_weights is None:
            raise ValueError("survival='btyd' needs period_weights (CLVShape.weights)")
        weights = np.asarray(period_weights, float)
        if weights.shape != (len(spend), periods):
            raise ValueError(f"period_weights has shape {weights.shape}, expected {(len(spend), periods)}")
    else:
        raise ValueError(f"unknown survival {survival!r}: expected one of {', '.join(SURVIVALS)}")
    disc = (1.0 + discount_rate) ** -k
    return margin * spend * (weights * disc[None, :]).sum(axis=1) - cost


FORMULA = ("periods", "margin", "discount_rate", "cost", "survival")


def formula_params(settings: dict) -> dict:
    """The arguments of :func:`clv` among the ``clv`` config settings (a bundle's ``clv_params``)."""
    return {k: v for k, v in settings.items() if k in FORMULA}


def period_weights(model, frequency, recency, T, *, periods: int, period_days: float,
                   unit_days: float) -> np.ndarray:
    """``w_k = (E[N(kH)] − E[N((k−1)H)]) / E[N(H)]`` for k = 1..K (n × K; ``w_1 = 1``) from a fitted
    purchase model (BG/NBD, Pareto/NBD, MBG/NBD) and the customers' summaries in its time unit.
    Customers the model expects to buy nothing at all get ``w_k = 1`` (their level is ~0 anyway)."""
    x, tx, TT = (np.asarray(v, float) for v in (frequency, recency, T))
    step = period_days / unit_days
    cum = np.stack([np.zeros_like(x)] + [np.asarray(model.expected_purchases(k * step, x, tx, TT), float)
                                         for k in range(1, periods + 1)], axis=1)
    inc = np.diff(cum, axis=1)
    first = inc[:, :1]
    ok = np.isfinite(inc).all(axis=1, keepdims=True) & (first > 1e-12)
    return np.where(ok, inc / np.where(ok, first, 1.0), 1.0)


class CLVShape:
    """The BTYD dynamics of :func:`clv` with ``survival="btyd"``: a purchase model's population
    parameters fitted on the purchases before a cut-off, applied to each customer's summary.

    Parameters
    ----------
    periods, period_days
        ``K`` periods of ``H`` days (the CLV periods and the label horizon).
    model
        ``"bgnbd"`` (default), ``"pareto_nbd"`` or ``"mbgnbd"``.
    unit_days
        The purchase model's time unit in days.
    """

    def __init__(self, *, periods: int, period_days: float, model: str = "bgnbd", unit_days: float = 7.0):
        self.periods = periods
        self.period_days = period_days
        self.model = model
        self.unit_days = unit_days

    def fit(self, transactions: pd.DataFrame, cutoff: dt.date | str) -> CLVShape:
        """Fit on ``customer_id, ts, amount`` strictly before ``cutoff``."""
        from clvml.modeling.btyd import BTYDModel

        btyd = BTYDModel(unit_days=self.unit_days, model=self.model).fit(transactions, cutoff)
        self.purchase_model_ = btyd.purchase_model_
        self.cutoff_ = btyd.cutoff_
        return self

    def weights(self, frequency, recency, T, periods: int | None = None) -> np.ndarray:
        """``w_k`` (n × K) for customers summarised in the model's time unit (K: ``periods``, default
        the shape's own)."""
        return period_weights(self.purchase_model_, frequency, recency, T, periods=periods or self.periods,
                              period_days=self.period_days, unit_days=self.unit_days)

    def weights_from_features(self, features: pd.DataFrame, periods: int | None = None) -> np.ndarray:
        """``w_k`` from the transaction features of a cut-off (the BTYD summary as of the day before the
        cut-off: repeat purchase days, first to last purchase day, first purchase to that day).
        Customers without a purchase get ``w_k = 1``."""
        missing = [c for c in FEATURES if c not in features.columns]
        if missing:
            raise ValueError(f"the BTYD CLV shape needs the transaction features {', '.join(missing)} "
                             "(features.families must include transactions)")
        days = features["tx_purchase_days_all"].to_numpy(float)
        tenure = features["tx_tenure_days"].to_numpy(float)
        rec = features["tx_recency_days"].to_numpy(float)
        buyer = (days >= 1) & np.isfinite(rec)
        x = np.where(buyer, days - 1, 0.0)
        age = np.where(buyer, np.maximum(tenure - 1, 0.0), 0.0)  # first purchase to the day before
        t_x = np.where(buyer, np.clip(tenure - rec, 0.0, age), 0.0)
        w = self.weights(x, t_x / self.unit_days, age / self.unit_days, periods)
        return np.where(buyer[:, None], w, 1.0)


FEATURES = ("tx_purchase_days_all", "tx_tenure_days", "tx_recency_days")
