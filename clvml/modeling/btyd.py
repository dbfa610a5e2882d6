"""BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma (Fader, Hardie & Lee 2005b), fitted by maximum
likelihood with numpy/scipy. Time is counted in an explicit unit (days per unit, e.g. 7 for weeks).

The fit never crashes on real data: parameters are optimised on the log scale within bounds; when the
optimum sits on a bound (e.g. a → 0: no detectable dropout) the boundary solution is returned with a
:class:`BoundaryWarning` and the diagnostics are kept in ``diagnostics_``.
"""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pandas as pd
from scipy.special import gammaln

from clvml.modeling.mle import LOG_BOUNDS, BoundaryWarning, _fit  # noqa: F401  (re-exported)


def rfm_summary(transactions: pd.DataFrame, calibration_end: dt.date | str, *, unit_days: float = 7.0,
                holdout_end: dt.date | str | None = None) -> pd.DataFrame:
    """Per-customer frequency (repeat purchase days), recency ``t_x``, age ``T`` and mean repeat spend.

    This is also the calibration/holdout split helper for your own evaluations:

    * purchases are rows with ``amount >= 0``; refund rows (negative) are not purchases and are counted
      in ``df.attrs['excluded_refund_rows']``; same-day purchases are merged into one purchase day;
    * calibration covers the days up to **and including** ``calibration_end``; the holdout covers the
      days **after** it up to **and including** ``holdout_end`` (later days are ignored, counted in
      ``df.attrs['rows_after_holdout']``);
    * ``T`` counts from the first purchase day to ``calibration_end``; ``recency`` from the first to the
      last calibration purchase day; both in units of ``unit_days`` days (7: weeks);
    * customers first seen in the holdout are excluded; their count is in
      ``df.attrs['excluded_new_in_holdout']``.
    """
    cal_end = pd.Timestamp(calibration_end)
    refunds = transactions["amount"] < 0
    t = transactions[~refunds]
    t = t.assign(day=pd.to_datetime(t["ts"]).dt.normalize())
    daily = t.groupby(["customer_id", "day"], as_index=False)["amount"].sum()
    first = daily.groupby("customer_id")["day"].min()
    cal = daily[daily.day <= cal_end]
    g = cal.groupby("customer_id")
    first_c = g["day"].min()
    last_c = g["day"].max()
    n = g.size()
    out = pd.DataFrame({
        "frequency": n - 1,
        "recency": (last_c - first_c).dt.days / unit_days,
        "T": ((cal_end - first_c).dt.days + 1 - 1) / unit_days,
        "first_amount": cal.sort_values("day").groupby("customer_id")["amount"].first(),
    })
    rep = cal.merge(first_c.rename("first_day"), left_on="customer_id", right_index=True)
    rep = rep[rep.day > rep.first_day]
    out["monetary_value"] = rep.groupby("customer_id")["amount"].mean().reindex(out.index).fillna(0.0)
    if holdout_end is not None:
        h_end = pd.Timestamp(holdout_end)
        hold = daily[(daily.day > cal_end) & (daily.day <= h_end)]
        hg = hold.groupby("customer_id")
        out["holdout_purchases"] = hg.size().reindex(out.index).fillna(0).astype(int)
        out["holdout_spend"] = hg["amount"].sum().reindex(out.index).fillna(0.0)
        out["holdout_duration"] = ((h_end - cal_end).days) / unit_days
    out.attrs["excluded_new_in_holdout"] = int((first > cal_end).sum())
    out.attrs["excluded_refund_rows"] = int(refunds.sum())
    out.attrs["rows_after_holdout"] = (0 if holdout_end is None
                                       else int((daily.day > pd.Timestamp(holdout_end)).sum()))
    return out


def _bgnbd_ll(params: np.ndarray, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore"):
        a4 = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + tx),
                      -np.inf)
    return a1 + a2 + np.logaddexp(a3, a4)


class BGNBD:
    """Beta-geometric/NBD purchase model. ``fit(frequency, recency, T)`` in one time unit."""

    def __init__(self, *, unit_days: float = 7.0):
        self.unit_days = unit_days

    def fit(self, frequency, recency, T) -> BGNBD:
        x, tx, TT = (np.asarray(v, float) for v in (frequency, recency, T))

        def nll(theta):
            return -_bgnbd_ll(np.exp(theta), x, tx, TT).sum()

        p, self.diagnostics_ = _fit(nll, np.array([1.0, 1.0, 1.0, 1.0]), ["r", "alpha", "a", "b"])
        self.r_, self.alpha_, self.a_, self.b_ = p
        self.params_ = dict(zip(["r", "alpha", "a", "b"], p, strict=True))
        return self

    def p_alive(self, frequency, recency, T) -> np.ndarray:
        x, tx, TT = (np.asarray(v, float) for v in (frequency, recency, T))
        r, al, a, b = self.r_, self.alpha_, self.a_, self.b_
        ratio = np.exp(np.log(a) - np.log(b + np.maximum(x, 1) - 1) + (r + x) * (np.log(al + TT) - np.log(al + tx)))
        return np.where(x > 0, 1.0 / (1.0 + ratio), 1.0)

    def p_no_purchase(self, t, frequency, recency, T) -> np.ndarray:
        """P(no purchase in (T, T + t]): the churn score (P(alive) is 1 for every one-time buyer).

        Dead customers never buy; an alive one buys nothing with probability ``((α+T)/(α+T+t))^(r+x)``
        (dropout only happens right after a purchase), so ``1 − P(alive) + P(alive)·that``.
        """
        x, tx, TT = (np.asarray(v, float) for v in (frequency, recency, T))
        pa = self.p_alive(x, tx, TT)
        quiet = np.exp((self.r_ + x) * (np.log(self.alpha_ + TT) - np.log(self.alpha_ + TT + t)))
        return 1.0 - pa + pa * quiet

    def expected_purchases(self, t, frequency, recency, T) -> np.ndarray:
        """E[purchases in (T, T + t]] for each customer (t in the model's time unit)."""
        from scipy.special import hyp2f1

        x, tx, TT = (np.asarray(v, float) for v in (frequency, recency, T))
        r, al, a, b = self.r_, self.alpha_, self.a_, self.b_
        z = t / (al + TT + t)
        num = (a + b + x - 1) / (a - 1) * (1 - ((al + TT) / (al + TT + t)) ** (r + x)
                                           * hyp2f1(r + x, b + x, a + b + x - 1, z))
        den = 1 + np.where(x > 0, a / (b + x - 1) * ((al + TT) / (al + tx)) ** (r + x), 0.0)
        return num / den

    def expected_purchases_new(self, t) -> np.ndarray:
        """E[repeat purchases in (0, t]] for a customer who has just made the first purchase."""
        from scipy.special import hyp2f1

        r, al, a, b = self.r_, self.alpha_, self.a_, self.b_
        t = np.asarray(t, float)
        return (a + b - 1) / (a - 1) * (1 - (al / (al + t)) ** r * hyp2f1(r, b, a + b - 1, t / (al + t)))


class GammaGamma:
    """Gamma-Gamma spend model on repeat customers (frequency > 0, mean repeat spend)."""

    def fit(self, frequency, monetary_value) -> GammaGamma:
        x, m = np.asarray(frequency, float), np.asarray(monetary_value, float)
        keep = (x > 0) & (m > 0)
        x, m = x[keep], m[keep]

        def nll(theta):
            p, q, v = np.exp(theta)
            ll = (gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(v) + (p * x - 1) * np.log(m)
                  + p * x * np.log(x) - (p * x + q) * np.log(x * m + v))
            return -ll.sum()

        p, self.diagnostics_ = _fit(nll, np.array([1.0, 1.0, 1.0]), ["p", "q", "v"])
        self.p_, self.q_, self.v_ = p
        self.params_ = {"p": p[0], "q": p[1], "v": p[2]}
        return self

    def expected_spend(self, frequency, monetary_value) -> np.ndarray:
        x, m = np.asarray(frequency, float), np.asarray(monetary_value, float)
        p, q, v = self.p_, self.q_, self.v_
        pop = p * v / (q - 1)
        return np.where(x > 0, (q - 1) / (p * x + q - 1) * pop + p * x / (p * x + q - 1) * m, pop)


def _naive_utc(ts: pd.Series) -> pd.Series:
    """Timestamps as naive UTC (cut-offs are naive midnights in UTC)."""
    ts = pd.to_datetime(ts)
    return ts.dt.tz_convert("UTC").dt.tz_localize(None) if ts.dt.tz is not None else ts


PURCHASE_MODELS = ("bgnbd", "pareto_nbd", "mbgnbd")


def _purchase_model(name: str, unit_days: float):
    if name == "bgnbd":
        return BGNBD(unit_days=unit_days)
    if name == "pareto_nbd":
        from clvml.modeling.pareto_nbd import ParetoNBD

        return ParetoNBD(unit_days=unit_days)
    if name == "mbgnbd":
        from clvml.modeling.mbgnbd import MBGNBD

        return MBGNBD(unit_days=unit_days)
    raise ValueError(f"unknown purchase model {name!r}: expected one of {', '.join(PURCHASE_MODELS)}")


class BTYDModel:
    """BG/NBD (or Pareto/NBD, MBG/NBD) + Gamma-Gamma fitted on the purchases strictly before a cut-off.

    The classic baseline of every evaluation, and the source of the optional ``btyd_*`` features.
    Fits that end on a boundary are kept (with the warning recorded in ``warnings_``).

    Parameters
    ----------
    unit_days
        Length of the model's time unit in days (7 = weeks); horizons are given in days.
    model
        The purchase model: ``"bgnbd"`` (default), ``"pareto_nbd"`` or ``"mbgnbd"``. The fitted model
        is ``purchase_model_`` (for BG/NBD also ``bgnbd_``).
    """

    def __init__(self, *, unit_days: float = 7.0, model: str = "bgnbd"):
        self.unit_days = unit_days
        self.model = model

    def fit(self, transactions: pd.DataFrame, cutoff: dt.date | str) -> BTYDModel:
        """``transactions``: ``customer_id, ts, amount``; only rows with ``ts < cutoff`` are used."""
        cutoff = pd.Timestamp(cutoff)
        ts = _naive_utc(transactions["ts"])
        past = transactions.assign(ts=ts)[ts < cutoff]
        self.summary_ = rfm_summary(past, cutoff - pd.Timedelta(days=1), unit_days=self.unit_days)
        s = self.summary_
        if s.empty:
            raise ValueError(f"no purchases before the cut-off {cutoff.date()}: nothing to fit")
        purchase = _purchase_model(self.model, self.unit_days)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", BoundaryWarning)
            self.purchase_model_ = purchase.fit(s["frequency"], s["recency"], s["T"])
            if self.model == "bgnbd":
                self.bgnbd_ = self.purchase_model_
            self.gamma_gamma_ = GammaGamma().fit(s["frequency"], s["monetary_value"])
        self.warnings_ = [str(w.message) for w in caught if issubclass(w.category, BoundaryWarning)]
        self.cutoff_ = cutoff
        return self

    def predict(self, horizon_days: float) -> pd.DataFrame:
        """Per customer seen before the cut-off: ``p_alive``, ``p_no_purchase`` (the churn score),
        ``expected_purchases`` and ``expected_spend`` over ``[cutoff, cutoff + horizon_days)``."""
        s, m = self.summary_, self.purchase_model_
        t = horizon_days / self.unit_days
        args = (s["frequency"], s["recency"], s["T"])
        n = m.expected_purchases(t, *args)
        return pd.DataFrame({
            "p_alive": m.p_alive(*args),
            "p_no_purchase": m.p_no_purchase(t, *args),
            "expected_purchases": n,
            "expected_spend": n * self.gamma_gamma_.expected_spend(s["frequency"], s["monetary_value"]),
        }, index=s.index)

    def clv(self, *, periods: int, period_days: float, discount_rate: float, margin: float = 1.0) -> pd.Series:
        """Expected discounted residual spend over ``periods`` periods of ``period_days`` days per customer.

        See :func:`clvml.modeling.btyd_clv.discounted_residual_value`; spend per purchase is the
        Gamma-Gamma conditional mean.
        """
        from clvml.modeling.btyd_clv import discounted_residual_value

        s = self.summary_
        value = discounted_residual_value(
            self.purchase_model_, self.gamma_gamma_.expected_spend(s["frequency"], s["monetary_value"]),
            s["frequency"], s["recency"], s["T"], periods=periods, period_days=period_days,
            discount_rate=discount_rate, unit_days=self.unit_days, margin=margin)
        return pd.Series(value, index=s.index, name="clv")


BTYD_FEATURES = ("btyd_p_alive", "btyd_p_no_purchase", "btyd_expected_purchases", "btyd_expected_spend")


def btyd_features(transactions: pd.DataFrame, cutoffs, horizon_days: float, *,
                  unit_days: float = 7.0) -> pd.DataFrame:
    """BTYD predictions as point-in-time features: one model fitted per cut-off on earlier purchases.

    Returns ``customer_id, cutoff`` and :data:`BTYD_FEATURES`.
    """
    frames = []
    first = _naive_utc(transactions["ts"]).min()
    for c in sorted(set(pd.Timestamp(c) for c in cutoffs)):
        if not first < c:  # nothing to fit on yet
            continue
        model = BTYDModel(unit_days=unit_days).fit(transactions, c)
        if model.summary_.empty:
            continue
        p = model.predict(horizon_days).add_prefix("btyd_")
        frames.append(p.rename_axis("customer_id").reset_index().assign(cutoff=c))
    cols = ["customer_id", "cutoff", *BTYD_FEATURES]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
