"""CLV against realised value: the metrics on a hand-built table, the realised label, intervals."""

import numpy as np
import pytest

from clvml.evaluation.clv_eval import clv_metrics, interval_metrics, tier_capture, tier_size

# ten customers: realised margin over the K periods and a predicted CLV
ACTUAL = [100, 50, 30, 20, 0, 0, 0, 0, 0, 0]
PRED = [80, 90, 20, 30, 1, 0, 0, 0, 0, 0]


def test_tier_size_rounds_up_and_keeps_at_least_one():
    assert [tier_size(10, s) for s in (0.01, 0.05, 0.2)] == [1, 1, 2]
    assert [tier_size(1000, s) for s in (0.01, 0.05, 0.2)] == [10, 50, 200]
    assert tier_size(101, 0.2) == 21


def test_clv_metrics_on_a_hand_built_table():
    m = clv_metrics(ACTUAL, PRED)
    # top 1 % = top 5 % = 1 customer: the prediction's top is customer 1 (50 of 200), the best is 100
    assert m["capture_top1"] == m["capture_top5"] == pytest.approx(0.25)
    assert m["best_top1"] == m["best_top5"] == pytest.approx(0.5)
    # top 20 % = 2 customers: {1, 0} hold 150 of 200, as many as the best pair
    assert m["capture_top20"] == m["best_top20"] == pytest.approx(0.75)
    assert m["mae"] == pytest.approx(81 / 10)  # 20 + 40 + 10 + 10 + 1
    assert m["total_actual"] == 200 and m["total_predicted"] == 221
    assert m["total_error_pct"] == pytest.approx(10.5)
    # Lorenz sums: by prediction .25 .75 .85 1 (then 1s) -> 0.335; perfect .5 .75 .9 1 -> 0.365
    assert m["normalized_gini"] == pytest.approx(0.335 / 0.365)
    # perfect ranking: Spearman 1, capture = best
    p = clv_metrics([4, 3, 2, 1], [40, 30, 20, 10])
    assert p["spearman"] == pytest.approx(1.0) and p["normalized_gini"] == pytest.approx(1.0)
    assert p["capture_top20"] == p["best_top20"] == pytest.approx(0.4)


def test_tier_capture_breaks_ties_by_row_order():
    # all predictions equal: the top tier is the first row
    assert tier_capture([1, 9], [5, 5], shares=(0.5,)) == {"capture_top50": 0.1, "best_top50": 0.9}


def test_interval_metrics():
    m = interval_metrics([0, 5, 10, 20], [0, 6, 0, 0], [1, 8, 12, 15])
    assert m == {"coverage": 0.5, "below": 0.25, "above": 0.25, "mean_width": np.mean([1, 2, 12, 15])}


def test_conformal_intervals_cover_exchangeable_data_at_the_nominal_rate():
    from clvml.modeling.intervals import ConformalIntervals

    rng = np.random.default_rng(0)

    def draw(n):  # zero-inflated gamma spend whose level follows the prediction
        p = rng.lognormal(3, 1, n)
        y = np.where(rng.random(n) < 0.5, 0.0, rng.gamma(2.0, p, n))
        return p, y

    ci = ConformalIntervals(coverage=0.8).fit(*draw(20_000))
    p, y = draw(20_000)
    lo, hi = ci.predict(p)
    m = interval_metrics(y, lo, hi)
    assert abs(m["coverage"] - 0.8) < 0.015
    # half the customers buy nothing: zero is inside every interval, the 20 % outside are all above
    assert (lo == 0).all() and m["below"] == 0 and abs(m["above"] - 0.2) < 0.015
    # multiplicative: the interval scales with the prediction
    assert (hi[np.argsort(p)][-100:] > hi[np.argsort(p)][:100].max()).all()
    # scale: bins from one prediction, ratios applied to another
    lo2, hi2 = ci.predict(p, scale=2 * p)
    np.testing.assert_allclose(hi2, 2 * hi)


def test_btyd_shape_from_features_matches_the_btyd_summary(small_world):
    """The bundle computes each customer's BTYD summary from the transaction features; it must be the
    summary BTYDModel fits on (repeat purchase days, first to last purchase, age at the day before)."""
    import datetime as dt

    import pandas as pd

    from clvml.data.dataset import load_dataset
    from clvml.features import build_features, to_pandas
    from clvml.modeling.btyd import BTYDModel
    from clvml.modeling.clv import CLVShape

    cut = dt.date(2024, 6, 1)
    t = small_world.transactions[["customer_id", "ts", "amount"]]
    t = t[t.amount > 0]  # refund-only days: BTYD counts amount >= 0, the features amount > 0
    ds = load_dataset(frames={"transactions": t})
    feats = to_pandas(build_features(ds.tables, [cut], families=["transactions"]))
    shape = CLVShape(periods=4, period_days=90).fit(t, cut)
    s = BTYDModel().fit(t, cut).summary_.reindex(feats["customer_id"])
    want = shape.weights(s["frequency"], s["recency"], s["T"])
    got = shape.weights_from_features(feats)
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert (got[:, 0] == 1).all() and (np.diff(got, axis=1) <= 1e-12).all()  # w_1 = 1, then decaying
    assert pd.Series(got[:, -1]).between(0, 1).all()


def test_btyd_survival_keeps_an_alive_infrequent_buyer_and_geometric_does_not():
    """Issue 25: a customer who buys twice a year has P(no purchase in 90 days) ~ 0.6; the geometric
    survival takes that as 60 % gone per quarter, the BTYD shape knows a recent buyer is alive."""
    from clvml.modeling.btyd import BGNBD
    from clvml.modeling.clv import clv, period_weights

    m = BGNBD(unit_days=7.0)
    m.r_, m.alpha_, m.a_, m.b_ = 2.0, 52.0, 0.2, 4.0  # ~2 purchases a year, little dropout
    # 3 repeat purchases over 2 years, the last one 2 weeks ago: alive
    w = period_weights(m, [3], [102], [104], periods=4, period_days=91, unit_days=7.0)
    p0 = m.p_no_purchase(13, [3], [102], [104])
    assert 0.5 < p0[0] < 0.7
    kw = dict(periods=4, margin=1.0, discount_rate=0.0)
    btyd = clv([100.0], survival="btyd", period_weights=w, **kw)[0]
    geometric = clv([100.0], p0, survival="geometric", **kw)[0]
    assert btyd > 360 and geometric < 230


def test_long_horizon_truth_leaves_the_world_unchanged():
    import datetime as dt

    import pandas as pd

    from clvml.datasets.synthetic import simulate

    cuts = [dt.date(2023, 9, 1), dt.date(2023, 12, 1)]
    kw = dict(cutoffs=cuts, seed=4, horizon_days=90)
    plain = simulate(600, "2023-01-01", "2024-06-30", **kw)
    long = simulate(600, "2023-01-01", "2024-06-30", long_truth=[cuts[0]], long_horizon_days=270, **kw)
    pd.testing.assert_frame_equal(plain.transactions, long.transactions)
    pd.testing.assert_frame_equal(plain.truth, long.truth.drop(columns=[
        "expected_spend_long", "expected_spend_long_observable", "long_horizon_days"]))
    t = long.truth.set_index("cutoff")
    first, later = t.loc[pd.Timestamp(cuts[0])], t.loc[pd.Timestamp(cuts[1])]
    assert first["expected_spend_long"].notna().all() and later["expected_spend_long"].isna().all()
    # 270 days hold more expected spend than 90, for the same customers; the observer knows less
    assert (first["expected_spend_long"] >= first["expected_spend"] - 1e-9).all()
    assert first["expected_spend_long"].sum() > 2 * first["expected_spend"].sum()
    assert (first["expected_spend_long_observable"] >= 0).all()
