"""Marketing segments: RFM, lifecycle stages, value tiers, churn-risk bands and the action matrix.

Every rule is learned once (``fit``) on a reference population, usually the latest training cut-off,
and then applied to any number of customers as fixed thresholds. Scoring in chunks therefore gives the
same segment as scoring everyone at once, and a customer's segment changes only when the customer
changes, not because the rest of the base moved.

Inputs are the point-in-time features (``tx_recency_days``, ``tx_tenure_days``, ``tx_ipt_last``,
``tx_orders_<w>``, ``tx_spend_<w>``) plus the model's ``churn_probability`` and ``clv``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clvml.config import BANDS, TIERS, SegmentsConfig
from clvml.errors import NotFittedError

__all__ = ["BANDS", "STAGES", "TIERS", "Segmenter", "allocate_budget", "quantile_score"]
STAGES = ("new", "active", "returning", "dormant", "churned")


def _edges(values: pd.Series, q: int) -> np.ndarray:
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(float)
    if not len(v):
        raise ValueError(f"cannot learn quantiles from an empty column ({values.name})")
    return np.quantile(v, np.arange(1, q) / q)


def quantile_score(values: pd.Series, edges: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Score 1..len(edges)+1: one more than the number of learned edges a value beats.

    A value equal to an edge does not beat it, so tied customers always share a score (with many
    one-order customers, frequency scores can skip a number: that is the data, not an error).
    Missing values score 1.
    """
    v = pd.to_numeric(values, errors="coerce").to_numpy(float)
    if higher_is_better:
        s = np.searchsorted(edges, v, side="left") + 1
    else:
        s = len(edges) + 1 - np.searchsorted(edges, v, side="right")
    return np.where(np.isnan(v), 1, s).astype("int8")


@dataclass
class Segmenter:
    """Learns the segment thresholds of a :class:`~clvml.config.SegmentsConfig` and applies them.

    Parameters
    ----------
    config
        Rules, quantiles, tiers, bands and actions (defaults documented on each field).
    """

    config: SegmentsConfig

    def __post_init__(self) -> None:
        self.rfm_edges_: dict[str, np.ndarray] | None = None
        self.lifecycle_days_: dict[str, float] | None = None
        self.clv_edges_: np.ndarray | None = None

    # -- fitting ---------------------------------------------------------------------------------
    @property
    def _rfm_cols(self) -> dict[str, str]:
        w = "all" if self.config.rfm.window_days is None else f"{self.config.rfm.window_days}d"
        return {"recency": "tx_recency_days", "frequency": f"tx_orders_{w}", "monetary": f"tx_spend_{w}"}

    def required_columns(self) -> list[str]:
        return [*self._rfm_cols.values(), "tx_tenure_days", "tx_ipt_last"]

    def _check(self, features: pd.DataFrame) -> None:
        missing = [c for c in self.required_columns() if c not in features.columns]
        if missing:
            raise ValueError(
                f"segments need the feature column(s) {missing}: build the transactions family (with "
                f"window {self.config.rfm.window_days} for RFM, or set segments.rfm.window_days)")

    def fit(self, features: pd.DataFrame, clv: Sequence[float], gaps: Sequence[float]) -> Segmenter:
        """Learn the thresholds from a reference population.

        Parameters
        ----------
        features
            Point-in-time features of the reference customers (one cut-off).
        clv
            Predicted CLV of the same customers (for value-tier cut points).
        gaps
            Inter-purchase times in days observed in the base (for the lifecycle thresholds).
        """
        self._check(features)
        cfg = self.config
        q = cfg.rfm.quantiles
        cols = self._rfm_cols
        self.rfm_edges_ = {k: _edges(features[c], q) for k, c in cols.items()}
        gaps = np.asarray(gaps, float)
        gaps = gaps[np.isfinite(gaps)]
        lc = cfg.lifecycle

        def learned(fixed: float | None, quantile: float) -> float:
            if fixed is not None:
                return float(fixed)
            if not len(gaps):
                raise ValueError("no repeat purchases to learn the lifecycle thresholds from: set "
                                 "segments.lifecycle.active_days and churned_days")
            return float(np.quantile(gaps, quantile))

        active = learned(lc.active_days, lc.active_quantile)
        churned = max(learned(lc.churned_days, lc.churned_quantile), active + 1)
        self.lifecycle_days_ = {"active": active, "churned": churned,
                                "new": float(lc.new_days) if lc.new_days is not None else active}
        shares = cfg.value_tiers
        top = np.cumsum([shares[t] for t in TIERS[:-1]])  # share of customers above each cut point
        self.clv_edges_ = np.quantile(np.asarray(clv, float), 1 - top)[::-1].copy()
        return self

    def _fitted(self) -> None:
        if self.rfm_edges_ is None or self.lifecycle_days_ is None or self.clv_edges_ is None:
            raise NotFittedError("this Segmenter is not fitted yet: call fit() first")

    # -- applying --------------------------------------------------------------------------------
    def rfm(self, features: pd.DataFrame) -> pd.DataFrame:
        """``rfm_r``, ``rfm_f``, ``rfm_m`` scores (5 best), ``rfm_code`` and ``rfm_segment``."""
        self._fitted()
        self._check(features)
        cols, e = self._rfm_cols, self.rfm_edges_
        r = quantile_score(features[cols["recency"]], e["recency"], higher_is_better=False)
        f = quantile_score(features[cols["frequency"]], e["frequency"])
        m = quantile_score(features[cols["monetary"]], e["monetary"])
        seg = np.full(len(features), self.config.rfm.fallback, dtype=object)
        done = np.zeros(len(features), bool)
        for rule in self.config.rfm.rules:
            hit = ~done & rule.matches(r, f, m)
            seg[hit] = rule.name
            done |= hit
        code = pd.Series(r).astype(str) + pd.Series(f).astype(str) + pd.Series(m).astype(str)
        return pd.DataFrame({"rfm_r": r, "rfm_f": f, "rfm_m": m, "rfm_code": code.to_numpy(),
                             "rfm_segment": seg})

    def lifecycle(self, features: pd.DataFrame) -> np.ndarray:
        """Stage per customer: churned (silent longer than ``churned`` days), dormant (longer than
        ``active`` days), new (first purchase within ``new`` days), returning (the last gap was longer
        than ``active`` days: came back after a silent spell), else active."""
        self._fitted()
        d = self.lifecycle_days_
        rec = pd.to_numeric(features["tx_recency_days"], errors="coerce").to_numpy(float)
        rec = np.where(np.isnan(rec), np.inf, rec)  # no purchase at all (refunds only): silent
        ten = pd.to_numeric(features["tx_tenure_days"], errors="coerce").to_numpy(float)
        gap = pd.to_numeric(features["tx_ipt_last"], errors="coerce").fillna(0).to_numpy(float)
        return np.select(
            [rec > d["churned"], rec > d["active"], ten <= d["new"], gap > d["active"]],
            ["churned", "dormant", "new", "returning"], default="active").astype(object)

    def value_tier(self, clv: Sequence[float]) -> np.ndarray:
        """high / potential / general / low by the learned CLV cut points."""
        self._fitted()
        v = np.asarray(clv, float)
        idx = np.searchsorted(self.clv_edges_, v, side="right")  # 0: low … 3: high
        return np.asarray(TIERS[::-1], dtype=object)[idx]

    def risk_band(self, churn_probability: Sequence[float]) -> np.ndarray:
        """low / medium / high churn risk by the configured probability thresholds."""
        lo, hi = self.config.risk_bands.medium, self.config.risk_bands.high
        p = np.asarray(churn_probability, float)
        return np.select([p >= hi, p >= lo], ["high", "medium"], default="low").astype(object)

    def action(self, tier: Sequence[str], band: Sequence[str]) -> np.ndarray:
        """The action matrix's entry for each (value tier, risk band)."""
        table = self.config.actions
        return np.array([table[t][b] for t, b in zip(tier, band, strict=True)], dtype=object)

    def transform(self, features: pd.DataFrame, churn_probability: Sequence[float],
                  clv: Sequence[float]) -> pd.DataFrame:
        """Every segment column for the given customers (same row order as ``features``)."""
        out = self.rfm(features)
        out.insert(0, "lifecycle_stage", self.lifecycle(features))
        tier, band = self.value_tier(clv), self.risk_band(churn_probability)
        out.insert(0, "risk_band", band)
        out.insert(0, "value_tier", tier)
        out["recommended_action"] = self.action(tier, band)
        return out


def allocate_budget(scores: pd.DataFrame, budget: float, *, method: str = "shares",
                    shares: Mapping[str, float] | None = None, cost_per_contact: float = 1.0,
                    save_rate: float = 0.1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a retention budget across customers and report it per value tier.

    The expected value retained by contacting customer *i* is ``save_rate × churn_probability_i ×
    clv_i``: the contact saves a fraction ``save_rate`` of the customers who would otherwise churn (take
    it from your last incentive experiment) and a saved customer is worth their CLV.

    Parameters
    ----------
    scores
        ``customer_id``, ``value_tier``, ``churn_probability`` and ``clv`` per customer.
    budget
        Total money to spend.
    method
        ``shares``: each tier gets its share of the budget (default 80/15/4/1 %), spent within the tier
        on its customers with the highest expected retained value first. ``optimal``: contacts go to
        the customers with the highest retained value per unit of cost across all tiers, and only while
        a contact returns more than it costs.
    shares
        Budget share per tier for ``shares`` (must sum to 1).
    cost_per_contact
        Cost of one retention contact.
    save_rate
        Fraction of would-be churners a contact retains.

    Returns
    -------
    (customers, tiers)
        ``customers``: input rows plus ``retained_value`` and ``contact`` (bool), ordered by priority.
        ``tiers``: per tier, customers, contacted, budget, spent and expected retained value.
    """
    if budget < 0 or cost_per_contact <= 0 or not 0 <= save_rate <= 1:
        raise ValueError("budget must be >= 0, cost_per_contact > 0 and save_rate in [0, 1]")
    shares = dict(shares or {"high": 0.80, "potential": 0.15, "general": 0.04, "low": 0.01})
    if method == "shares" and abs(sum(shares.values()) - 1) > 1e-9:
        raise ValueError(f"budget shares must sum to 1, got {sum(shares.values())}")
    df = scores[["customer_id", "value_tier", "churn_probability", "clv"]].copy()
    df["retained_value"] = save_rate * df["churn_probability"] * df["clv"].clip(lower=0)
    df = df.sort_values(["retained_value", "customer_id"], ascending=[False, True], kind="mergesort")
    if method == "optimal":
        n = int(budget // cost_per_contact)
        worth = (df["retained_value"] > cost_per_contact).to_numpy()
        df["contact"] = worth & (np.arange(len(df)) < n)
        tier_budget = df.groupby("value_tier")["contact"].sum() * cost_per_contact
    elif method == "shares":
        tier_budget = pd.Series({t: budget * shares.get(t, 0.0) for t in TIERS})
        rank = df.groupby("value_tier").cumcount()
        df["contact"] = rank < (df["value_tier"].map(tier_budget).fillna(0) // cost_per_contact)
    else:
        raise ValueError(f"unknown budget method {method!r}: use 'shares' or 'optimal'")
    g = df.groupby("value_tier")
    tiers = pd.DataFrame({
        "customers": g.size(), "contacted": g["contact"].sum(),
        "budget": tier_budget, "spent": g["contact"].sum() * cost_per_contact,
        "retained_value": df["retained_value"].where(df["contact"], 0).groupby(df["value_tier"]).sum(),
    }).reindex(list(TIERS)).fillna(0)
    tiers.index.name = "value_tier"
    return df.reset_index(drop=True), tiers
