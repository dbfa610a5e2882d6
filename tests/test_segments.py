"""Segments on hand-built tables with exact expected outputs."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from clvml.analytics.repurchase import interpurchase_times
from clvml.analytics.segments import Segmenter, allocate_budget, quantile_score
from clvml.config import SegmentsConfig, parse_config
from clvml.data.dataset import load_dataset
from clvml.errors import ConfigError, NotFittedError
from tests.conftest import tx


def features(**cols) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    base = {"tx_recency_days": [10.0] * n, "tx_orders_all": [1] * n, "tx_spend_all": [10.0] * n,
            "tx_tenure_days": [400.0] * n, "tx_ipt_last": [np.nan] * n}
    base.update(cols)
    return pd.DataFrame(base)


def test_quantile_scores_share_ties_and_handle_missing():
    edges = np.array([1.0, 1.0, 2.0, 5.0])  # learned from a base where most bought once
    s = pd.Series([1, 2, 3, 5, 9, np.nan])
    assert quantile_score(s, edges).tolist() == [1, 3, 4, 4, 5, 1]
    # recency: lower is better; a value on an edge does not beat it
    assert quantile_score(pd.Series([0, 1, 3, 9]), np.array([1.0, 2.0, 4.0, 8.0]),
                          higher_is_better=False).tolist() == [5, 4, 3, 1]


def test_rfm_segments_follow_the_documented_grid():
    ref = features(tx_recency_days=[5.0, 15, 25, 35, 45, 55, 65, 75, 85, 95],
                   tx_orders_all=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
                   tx_spend_all=[10.0, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    seg = Segmenter(SegmentsConfig()).fit(ref, clv=np.arange(10.0), gaps=[10, 20, 30])
    np.testing.assert_allclose(seg.rfm_edges_["recency"], [23, 41, 59, 77])
    np.testing.assert_allclose(seg.rfm_edges_["frequency"], [2.8, 4.6, 6.4, 8.2])
    cases = features(tx_recency_days=[5.0, 5, 5, 30, 95, 95, 95, 60, 50],
                     tx_orders_all=[10, 1, 3, 10, 10, 5, 1, 1, 5],
                     tx_spend_all=[100.0, 10, 30, 100, 100, 50, 10, 10, 50])
    out = seg.rfm(cases)
    assert out.rfm_code.tolist() == ["555", "511", "522", "455", "155", "133", "111", "211", "333"]
    assert out.rfm_segment.tolist() == ["champions", "new", "potential_loyalists", "loyal", "cannot_lose",
                                        "at_risk", "lost", "hibernating", "need_attention"]


def test_lifecycle_thresholds_learned_from_interpurchase_times():
    gaps = np.arange(1, 101, dtype=float)  # 80th percentile 80.2 days, 95th 95.05
    seg = Segmenter(SegmentsConfig()).fit(features(tx_recency_days=[1.0, 2.0]), [1.0, 2.0], gaps)
    assert seg.lifecycle_days_ == pytest.approx({"active": 80.2, "churned": 95.05, "new": 80.2})
    f = features(tx_recency_days=[10.0, 10, 10, 90, 200, np.nan],
                 tx_tenure_days=[30.0, 400, 400, 400, 400, 400],
                 tx_ipt_last=[np.nan, 20, 150, 20, 20, np.nan])
    assert seg.lifecycle(f).tolist() == ["new", "active", "returning", "dormant", "churned", "churned"]
    fixed = SegmentsConfig(lifecycle={"active_days": 30, "churned_days": 60})
    seg2 = Segmenter(fixed).fit(features(tx_recency_days=[1.0, 2.0]), [1.0, 2.0], gaps=[])
    assert seg2.lifecycle(f).tolist() == ["new", "active", "returning", "churned", "churned", "churned"]
    with pytest.raises(ValueError, match="no repeat purchases"):
        Segmenter(SegmentsConfig()).fit(features(tx_recency_days=[1.0]), [1.0], gaps=[])


def test_value_tiers_risk_bands_and_actions():
    clv = np.arange(1, 101, dtype=float)  # shares 5/15/40/40 %
    seg = Segmenter(SegmentsConfig()).fit(features(tx_recency_days=list(clv)), clv, gaps=[5, 10])
    tiers = pd.Series(seg.value_tier(clv)).value_counts().to_dict()
    assert tiers == {"low": 40, "general": 40, "potential": 15, "high": 5}
    assert seg.value_tier([100.0, 0.0, 1000.0]).tolist() == ["high", "low", "high"]
    assert seg.risk_band([0.1, 0.3, 0.59, 0.6, 0.99]).tolist() == ["low", "medium", "medium", "high", "high"]
    assert seg.action(["high", "low", "potential"], ["high", "high", "low"]).tolist() == [
        "vip_retention_call", "no_action", "upsell"]
    out = seg.transform(features(tx_recency_days=[5.0, 400.0]), [0.9, 0.1], [100.0, 1.0])
    assert out[["value_tier", "risk_band", "recommended_action"]].values.tolist() == [
        ["high", "high", "vip_retention_call"], ["low", "low", "automated_reminder"]]
    with pytest.raises(NotFittedError):
        Segmenter(SegmentsConfig()).rfm(features(tx_recency_days=[1.0]))


def test_budget_allocation_by_shares_and_optimal():
    scores = pd.DataFrame({
        "customer_id": list("abcdef"),
        "value_tier": ["high", "high", "potential", "general", "low", "low"],
        "churn_probability": [0.5, 0.9, 0.8, 0.5, 0.9, 0.1],
        "clv": [1000.0, 100, 500, 200, 50, 10],
    })  # retained value at save_rate 0.1: 50, 9, 40, 10, 4.5, 0.1
    cust, tiers = allocate_budget(scores, 100, method="shares", cost_per_contact=10, save_rate=0.1)
    assert cust.customer_id.tolist() == ["a", "c", "d", "b", "e", "f"]  # priority order
    assert cust.set_index("customer_id").contact.to_dict() == {
        "a": True, "b": True, "c": True, "d": False, "e": False, "f": False}  # 80/15/4/1 of 100
    assert tiers.loc["high", "budget"] == 80 and tiers.loc["high", "spent"] == 20
    assert tiers.loc["potential", "retained_value"] == pytest.approx(40)
    cust, tiers = allocate_budget(scores, 25, method="optimal", cost_per_contact=10, save_rate=0.1)
    # two contacts affordable; only those returning more than their cost (50 and 40 > 10)
    assert cust[cust.contact].customer_id.tolist() == ["a", "c"]
    assert tiers.spent.sum() == 20 and tiers.retained_value.sum() == pytest.approx(90)
    with pytest.raises(ValueError, match="sum to 1"):
        allocate_budget(scores, 10, shares={"high": 0.5, "low": 0.2})


def test_interpurchase_times_are_point_in_time_and_ignore_refunds():
    ds = load_dataset(frames={"transactions": tx([
        ("a", "2024-01-01", 10), ("a", "2024-01-01 15:00", 5), ("a", "2024-01-11", 10),
        ("a", "2024-01-20", -10), ("a", "2024-02-10", 10), ("b", "2024-01-05", 10),
        ("b", "2024-01-06", 10)])})
    assert sorted(interpurchase_times(ds.tables["transactions"])) == [1.0, 10.0, 30.0]
    assert sorted(interpurchase_times(ds.tables["transactions"], dt.date(2024, 2, 10))) == [1.0, 10.0]


def test_segment_config_errors_are_reported_together():
    raw = {"data": {"tables": {"transactions": {"path": "t.csv"}}}, "cutoffs": {"start": "2024-01-01"},
           "segments": {"value_tiers": {"high": 0.5, "low": 0.3}, "risk_bands": {"medium": 0.7, "high": 0.4},
                        "actions": {"high": {"high": "call"}}}}
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    text = str(err.value)
    assert "segments.risk_bands" in text and "medium (0.7) must be below high (0.4)" in text
