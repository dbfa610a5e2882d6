"""A/B evaluation and power planning: exact outcomes on hand-built tables, published interval values,
and Monte Carlo checks that the intervals cover and the planned sample sizes reach their power."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clvml.analytics.experiments import (
    evaluate_experiment,
    experiment_outcomes,
    newcombe_interval,
    power_of,
    sample_size,
    validate_assignments,
)
from clvml.data.dataset import load_dataset
from clvml.errors import ConfigError, DataValidationError
from tests.conftest import tx


@pytest.fixture(scope="module")
def shop():
    return load_dataset(frames={"transactions": tx([
        ("a", "2024-03-01 00:00", 10),   # exactly at assignment: inside the window
        ("a", "2024-03-01 09:00", 5),    # same day: one purchase day, spend adds up
        ("a", "2024-03-05", -10),        # refund: not an order, not subtracted
        ("b", "2024-02-29 23:59", 50),   # just before assignment: outside
        ("b", "2024-03-31 00:00", 20),   # exactly at window end: outside
        ("c", "2024-03-30 23:59", 7),    # last minute of the window: inside
        ("c", "2024-03-15", 3),
        ("e", "2024-05-01", 1),          # makes the history run to May
    ])}).tables["transactions"]


def assign(rows, **extra):
    df = pd.DataFrame(rows, columns=["customer_id", "group", "assigned_ts"])
    return df.assign(**extra)


def test_outcomes_exact_on_window_boundaries(shop):
    a = assign([("a", "treatment", "2024-03-01"), ("b", "control", "2024-03-01"),
                ("c", "treatment", "2024-03-01"), ("d", "control", "2024-03-01"),
                ("e", "control", "2024-04-20")])
    oc = experiment_outcomes(a, shop, window_days=30)
    t = oc.table.set_index("customer_id")
    assert t.loc["a", ["repurchased", "purchases", "spend"]].tolist() == [1, 1, 15.0]
    assert t.loc["b", ["repurchased", "purchases", "spend"]].tolist() == [0, 0, 0.0]
    assert t.loc["c", ["repurchased", "purchases", "spend"]].tolist() == [1, 2, 10.0]
    assert t.loc["d", ["repurchased", "purchases", "spend"]].tolist() == [0, 0, 0.0]  # no history at all
    # e's window ends 2024-05-20, after the last transaction (2024-05-01): outcome unknown, counted
    assert "e" not in t.index and oc.excluded == {"window_incomplete": 1}
    assert oc.summary()["by_group"] == {"control": 2, "treatment": 2}


def test_assignment_problems_reported_at_once(shop):
    a = assign([("a", "treatment", "2024-03-01"), ("a", "control", "2024-03-01"),
                ("b", "promo", "2024-03-01"), ("c", "control", "not a date")])
    with pytest.raises(DataValidationError) as e:
        validate_assignments(a)
    text = str(e.value)
    assert "assignments.customer_id" in text and "2 row(s)" in text  # duplicate a
    assert "['control', 'promo', 'treatment']" in text  # three groups
    assert "assignments.assigned_ts" in text and "not a date" in text
    with pytest.raises(DataValidationError, match="missing column"):
        validate_assignments(pd.DataFrame({"customer_id": ["a"], "arm": ["control"]}))
    with pytest.raises(DataValidationError, match="'ctl'"):
        validate_assignments(assign([("a", "treatment", "2024-03-01"), ("b", "control", "2024-03-01")]),
                             control="ctl")


def test_newcombe_matches_published_example():
    # Newcombe (1998), Stat Med 17:873, example (a): 56/70 vs 48/80, method 10 -> 0.0524 to 0.3339
    lo, hi = newcombe_interval(56, 70, 48, 80)
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)


def test_effects_exact_and_per_segment():
    rng = np.random.default_rng(0)
    n = 400
    t = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "campaign_id": "x",
                      "group": np.where(np.arange(n) % 2 == 0, "treatment", "control"),
                      "tier": np.where(np.arange(n) < 200, "gold", "basic"),
                      "repurchased": (rng.random(n) < 0.3).astype(int),
                      "purchases": rng.poisson(1.0, n), "spend": rng.gamma(2.0, 20.0, n)})
    t.loc[t.index[-6:], "tier"] = "tiny"
    r = evaluate_experiment(t, by="tier", min_group=5)
    all_rate = r[(r.segment == "all") & (r.metric == "repurchased")].iloc[0]
    tr, ct = t[t.group == "treatment"], t[t.group == "control"]
    assert all_rate.effect == pytest.approx(tr.repurchased.mean() - ct.repurchased.mean(), abs=1e-12)
    lo, hi = newcombe_interval(tr.repurchased.sum(), len(tr), ct.repurchased.sum(), len(ct))
    assert (all_rate.ci_low, all_rate.ci_high) == pytest.approx((lo, hi))
    spend = r[(r.segment == "all") & (r.metric == "spend")].iloc[0]
    from scipy import stats
    welch = stats.ttest_ind(tr.spend, ct.spend, equal_var=False)
    assert spend.p_value == pytest.approx(welch.pvalue, rel=1e-9)
    ci = welch.confidence_interval(0.95)
    assert (spend.ci_low, spend.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    tiny = r[(r.segment == "tiny")]
    assert tiny.effect.isna().all() and (tiny.note == "fewer than 5 customers in an arm").all()
    seg = r[(r.segment_by == "tier") & (r.metric == "spend") & r.p_value.notna()]
    p = np.sort(seg.p_value.to_numpy())
    assert np.allclose(np.sort(seg.p_value_holm), np.minimum(np.maximum.accumulate(p * [2, 1]), 1))
    with pytest.raises(ConfigError, match="'region'"):
        evaluate_experiment(t, by="region")


def test_intervals_cover_at_nominal_rate():
    rng = np.random.default_rng(42)
    reps, n, hits_rate, hits_spend = 400, 300, 0, 0
    for _ in range(reps):
        g = np.where(np.arange(2 * n) < n, "treatment", "control")
        p = np.where(g == "treatment", 0.25, 0.2)
        mu = np.where(g == "treatment", 33.0, 30.0)
        t = pd.DataFrame({"customer_id": np.arange(2 * n).astype(str), "campaign_id": "x", "group": g,
                          "repurchased": (rng.random(2 * n) < p).astype(int), "purchases": 0,
                          "spend": rng.gamma(0.5, mu / 0.5)})  # skewed spend, like real spend
        r = evaluate_experiment(t).set_index("metric")
        hits_rate += r.loc["repurchased", "ci_low"] <= 0.05 <= r.loc["repurchased", "ci_high"]
        hits_spend += r.loc["spend", "ci_low"] <= 3.0 <= r.loc["spend", "ci_high"]
    assert 0.92 <= hits_rate / reps <= 0.98
    assert 0.92 <= hits_spend / reps <= 0.98


def test_sample_size_known_values_and_achieved_power():
    plan = sample_size(baseline=0.10, effect=0.02)
    assert (plan.n_control, plan.n_treatment, plan.total) == (3841, 3841, 7682)
    assert sample_size(baseline=0.10, effect=0.2, relative=True).n_control == 3841
    assert sample_size(baseline=30, effect=1, metric="mean", sd=10).n_control == 1570
    unequal = sample_size(baseline=0.10, effect=0.02, ratio=3)
    assert unequal.n_treatment == pytest.approx(3 * unequal.n_control, abs=1)
    assert unequal.n_control < plan.n_control < unequal.total
    assert 0.80 <= power_of(n_control=3841, baseline=0.10, effect=0.02) < 0.801
    # simulated: tests of the planned size reject about 80% of the time
    rng = np.random.default_rng(7)
    from scipy import stats
    x1 = rng.binomial(plan.n_treatment, 0.12, 2000)
    x0 = rng.binomial(plan.n_control, 0.10, 2000)
    pooled = (x1 + x0) / (2 * plan.n_control)
    z = (x1 - x0) / plan.n_control / np.sqrt(pooled * (1 - pooled) * 2 / plan.n_control)
    rejected = (2 * stats.norm.sf(np.abs(z)) < 0.05).mean()
    assert 0.77 <= rejected <= 0.83
    with pytest.raises(ConfigError, match="rates must be in"):
        sample_size(baseline=0.95, effect=0.1)
    with pytest.raises(ConfigError, match="standard deviation"):
        sample_size(baseline=30, effect=1, metric="mean")
