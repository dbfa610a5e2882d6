import datetime as dt
import math

import hypothesis.strategies as st
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings

from clvml.data.dataset import load_dataset
from clvml.features import build_features, catalog, feature_specs, to_pandas, write_features
from tests.conftest import tx

CUT = dt.date(2024, 2, 10)


def features(frames, cutoffs=(CUT,), windows=(30, 90), families=None):
    ds = load_dataset(frames=frames)
    kw = {} if families is None else {"families": families}
    return to_pandas(build_features(ds.tables, cutoffs, windows=windows, **kw)).set_index("customer_id")


def test_transaction_features_exact_values():
    t = tx([("a", "2024-01-01 10:00", 10.0), ("a", "2024-01-11", 20.0), ("a", "2024-01-31 23:59", 30.0),
            ("a", "2024-02-05", -5.0), ("a", "2024-02-10 00:00", 100.0),  # at the cut-off: excluded
            ("b", "2024-02-10 00:00", 7.0)])  # b arrives at the cut-off: not a row
    f = features({"transactions": t})
    assert list(f.index) == ["a"]
    a = f.loc["a"]
    assert a.tx_recency_days == 10 and a.tx_tenure_days == 40
    assert a.tx_orders_all == 3 and a.tx_orders_30d == 2
    assert a.tx_spend_all == 60 and a.tx_spend_30d == 50 and a.tx_spend_max_all == 30
    assert a.tx_spend_mean_all == 20 and a.tx_spend_std_all == pytest.approx(10.0)
    assert a.tx_first_amount == 10
    assert a.tx_ipt_mean == 15 and a.tx_ipt_last == 20
    assert a.tx_ipt_std == pytest.approx(math.sqrt(50))
    assert a.tx_recency_rel == pytest.approx(10 / 15)
    assert a.tx_refunds_all == 1 and a.tx_refund_amount_all == 5
    assert a.tx_orders_trend_90d == 3


def test_money_sums_are_exact_whatever_the_order():
    # in float64, 0.1 + 0.2 + 0.3 is 0.6000000000000001 and (0.3 + 0.2) + 0.1 is 0.6: the order of a
    # parallel sum would show in the last digits. Whole units of 1e-6 give exactly 0.6 either way.
    assert 0.1 + 0.2 + 0.3 != 0.3 + 0.2 + 0.1
    for amounts in ([0.1, 0.2, 0.3], [0.3, 0.2, 0.1]):
        t = tx([("a", f"2024-01-0{k + 1}", x) for k, x in enumerate(amounts)])
        a = features({"transactions": t}).loc["a"]
        assert a.tx_spend_all == 0.6 and a.tx_spend_90d == 0.6 and a.tx_spend_30d == 0
        assert a.tx_spend_mean_all == 0.6 / 3
        assert a.tx_first_amount == amounts[0]


def test_activity_social_after_sales_profile_exact_values():
    t = tx([("a", "2024-01-01", 10.0), ("a", "2024-02-01", 20.0), ("c", "2024-01-01", 5.0)])
    act = pd.DataFrame({"customer_id": ["a"] * 5, "ts": pd.to_datetime(format="mixed", arg=
        ["2024-01-01 09:00", "2024-01-01 09:01", "2024-02-01", "2024-02-01", "2024-02-09"]),
        "event_type": ["session", "add_to_cart", "session", "add_to_cart", "session"],
        "duration_s": [100.0, None, 300.0, None, 200.0]})
    soc = pd.DataFrame({"customer_id": ["a", "a", "a"], "ts": pd.to_datetime(
        ["2024-01-05", "2024-01-06", "2024-02-12"]), "event_type": ["review", "referral", "share"],
        "rating": [4.0, None, None]})
    af = pd.DataFrame({"customer_id": ["a", "a", "a", "a"], "ts": pd.to_datetime(
        ["2024-01-02", "2024-01-20", "2024-01-25", "2024-02-01"]),
        "event_type": ["complaint", "ticket", "survey", "survey"],
        "resolved_ts": pd.to_datetime(["2024-02-15", "2024-01-22", None, None]),
        "satisfaction": [None, None, 2.0, 5.0], "nps": [None, None, 3.0, 9.0],
        "amount": [None, None, None, None]})
    cust = pd.DataFrame({"customer_id": ["a", "c"], "signup_ts": pd.to_datetime(["2023-12-01", "2024-01-01"]),
                         "acquisition_channel": ["email", "organic"], "membership_tier": ["gold", "basic"],
                         "region": ["n", "s"], "birth_year": [1990, 2010]})
    f = features({"transactions": t, "activity": act, "social": soc, "after_sales": af, "customers": cust})
    a, c = f.loc["a"], f.loc["c"]
    assert a.act_sessions_all == 3 and a.act_sessions_30d == 2 and a.act_active_days_all == 3
    assert a.act_duration_all == 600 and a.act_duration_mean == 200 and a.act_carts_all == 2
    assert a.act_days_since_activity == 1
    assert a.act_cart_conversion_90d == 1.0  # 2 orders / 2 carts
    assert c.act_sessions_all == 0 and pd.isna(c.act_days_since_activity)  # no activity: 0 vs undefined
    assert a.soc_reviews_all == 1 and a.soc_referrals_all == 1 and a.soc_shares_all == 0  # share after cut
    assert a.soc_rating_mean == 4 and a.soc_days_since_social == 35
    assert a.as_complaints_all == 1 and a.as_tickets_all == 2
    assert a.as_unresolved_now == 1 and a.as_unresolved_complaints_now == 1  # resolved after cut-off
    assert a.as_resolution_days_mean == pytest.approx(2.0)
    assert a.as_satisfaction_last == 5 and a.as_satisfaction_mean == 3.5
    assert a.as_nps_last == 9 and a.as_nps_category == "promoter"
    assert a.as_days_since_complaint == 39
    assert a.prof_signup_tenure_days == 71 and a.prof_membership_tier == "gold"
    assert a.prof_age_band == "25-34" and c.prof_age_band == "<25"


def test_catalog_matches_built_columns(small_world):
    ds = load_dataset(frames=small_world.tables())
    f = build_features(ds.tables, [dt.date(2024, 3, 1)])
    specs = feature_specs(ds.tables)
    assert f.columns == ("customer_id", "cutoff", *[s.name for s in specs])
    assert {s.name for s in specs} <= {s.name for s in catalog()}
    assert all(s.description and s.unit and s.sentence for s in specs)


def test_cutoffs_must_be_dates():
    t = tx([("a", "2024-01-01", 1.0)])
    ds = load_dataset(frames={"transactions": t})
    with pytest.raises(ValueError, match="not a date"):
        build_features(ds.tables, ["2024-01-05 12:00"])


events = st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(-200, 200),
                            st.floats(-50, 500, allow_nan=False).map(lambda x: round(x, 2))),
                  min_size=1, max_size=12)


def _register_leak_probes() -> list[str]:
    """Custom features for the leakage test: a windowed reduction that uses the cut-off itself, and a
    per-customer table over activity (see :mod:`clvml.features.custom`)."""
    from clvml.features.custom import register_feature

    def refund_gap(h, at):
        return at.cutoff_day - h.day.max(where=h.amount < 0) + h.amount.sum(where=h.amount > 100)

    def activity_types(h, at):
        return h.group_by(at.keys).aggregate(n=h.event_type.nunique() + h.ts.max().epoch_seconds() % 7)

    register_feature(refund_gap, name="leak_probe_{w}", windows=True, description="probe", say="{value}", fill=None)
    register_feature(activity_types, name="leak_probe_act", table="activity", description="probe", say="{value}")
    return ["leak_probe_{w}", "leak_probe_act"]


leak_settings = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
leak_args = given(before=events, after=events, act=st.lists(st.tuples(st.sampled_from(["a", "b"]),
                  st.integers(-100, 100), st.sampled_from(["session", "page_view", "add_to_cart"])), max_size=8))


@settings(leak_settings, max_examples=25)
@leak_args
def test_events_at_or_after_the_cutoff_change_nothing(before, after, act):
    """Appending arbitrary events at or after the cut-off leaves that cut-off's features unchanged."""
    _check_no_leak(before, after, act)


@settings(leak_settings, max_examples=6)
@leak_args
def test_custom_features_ignore_events_at_or_after_the_cutoff(before, after, act):
    """The same property for custom features registered by users (built with the transactions family
    only: the built-in families are covered above)."""
    from clvml.features.custom import unregister_feature

    names = _register_leak_probes()
    try:
        _check_no_leak(before, after, act, families=["transactions"], custom=True)
    finally:
        for n in names:
            unregister_feature(n)


def _check_no_leak(before, after, act, families=None, custom=False):
    base = pd.Timestamp(CUT)
    def mk(rows, lo_ok):
        return tx([(c, base + pd.Timedelta(minutes=m) if lo_ok else base - pd.Timedelta(minutes=abs(m) + 1), a)
                   for c, m, a in rows])
    past = mk(before, False)
    future = tx([(c, base + pd.Timedelta(minutes=abs(m)), a) for c, m, a in after])
    act_past = pd.DataFrame([(c, base - pd.Timedelta(minutes=abs(m) + 1), e) for c, m, e in act],
                            columns=["customer_id", "ts", "event_type"])
    act_future = pd.DataFrame([(c, base + pd.Timedelta(minutes=abs(m)), e) for c, m, e in act],
                              columns=["customer_id", "ts", "event_type"])
    p1 = {"transactions": past.drop_duplicates()}
    p2 = {"transactions": pd.concat([past, future]).drop_duplicates()}
    if len(act_past):
        p1["activity"] = act_past.drop_duplicates()
        p2["activity"] = pd.concat([act_past, act_future]).drop_duplicates()
    f1 = features(p1, windows=(1, 30), families=families)
    f2 = features(p2, windows=(1, 30), families=families)
    if custom:
        assert {"leak_probe_1d", "leak_probe_30d", "leak_probe_all"} <= set(f1.columns)
        assert ("leak_probe_act" in f1.columns) == ("activity" in p1)
    pd.testing.assert_frame_equal(f1, f2)


def test_write_features_in_batches_equals_one_query(small_world, tmp_path):
    ds = load_dataset(frames=small_world.tables())
    cuts = [dt.date(2024, 3, 1), dt.date(2024, 6, 1)]
    whole = to_pandas(build_features(ds.tables, cuts))
    res = write_features(ds.tables, cuts, tmp_path / "feats", batches=3)
    assert res.batches == 3 and res.rows == len(whole) and res.columns == whole.shape[1]
    parts = sorted((tmp_path / "feats").glob("part-*.parquet"))
    assert len(parts) == 3 and all(len(pd.read_parquet(p)) > 0 for p in parts)
    got = pd.read_parquet(tmp_path / "feats").sort_values(["cutoff", "customer_id"]).reset_index(drop=True)
    got["cutoff"] = pd.to_datetime(got["cutoff"])
    for c in whole.select_dtypes("category").columns:
        got[c] = got[c].astype(whole[c].dtype)
    pd.testing.assert_frame_equal(got, whole, check_dtype=False)
    # batches partition the customers: nobody is in two parts
    ids = [set(pd.read_parquet(p, columns=["customer_id"]).customer_id) for p in parts]
    assert sum(map(len, ids)) == len(set().union(*ids))


def test_write_features_failure_keeps_previous_output(small_world, tmp_path, monkeypatch):
    ds = load_dataset(frames=small_world.tables())
    out = tmp_path / "feats"
    write_features(ds.tables, [dt.date(2024, 3, 1)], out, batches=2)
    before = sorted(p.read_bytes() for p in out.glob("*.parquet"))
    from clvml.features import writer

    real = writer.FeatureBatches.expression

    def failing(self, b):
        if b == 1:
            raise RuntimeError("boom in the second batch")
        return real(self, b)

    monkeypatch.setattr(writer.FeatureBatches, "expression", failing)
    with pytest.raises(RuntimeError, match="second batch"):
        write_features(ds.tables, [dt.date(2024, 6, 1)], out, batches=2)
    assert sorted(p.read_bytes() for p in out.glob("*.parquet")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["feats"]  # no temporary folder left behind


def test_features_are_bit_identical_run_after_run(small_world):
    # parallel float sums depend on thread timing; the builders sum whole units (engine.exact_sum), so
    # two runs give the same bits (before exact sums, tx_category_hhi differed in the last digits)
    ds = load_dataset(frames=small_world.tables())
    cuts = [dt.date(2024, 3, 1), dt.date(2024, 6, 1)]
    runs = [to_pandas(build_features(ds.tables, cuts)) for _ in range(3)]
    for other in runs[1:]:
        pd.testing.assert_frame_equal(runs[0], other, check_exact=True)


def test_feature_batches_partition_the_customers_exactly(small_world):
    from clvml.features.writer import FeatureBatches

    ds = load_dataset(frames=small_world.tables())
    cuts = [dt.date(2024, 3, 1), dt.date(2024, 6, 1)]
    whole = to_pandas(build_features(ds.tables, cuts))
    for plan in ("cross_join", "incremental"):
        with FeatureBatches(ds.tables, cuts, batches=3, plan=plan) as fb:
            parts = [fb.pandas(b) for b in range(3)]  # one SQL compiled once, run on each batch's views
            # the engine's part and the conversion apart (the scoring job converts in another thread)
            again = [fb.frame(fb.fetch(b)) for b in range(3)]
        assert all(len(p) for p in parts)
        for a, b in zip(parts, again, strict=True):
            pd.testing.assert_frame_equal(a, b, check_exact=True)
        joined = pd.concat(parts).sort_values(["cutoff", "customer_id"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(joined, whole.reset_index(drop=True), check_exact=True)


def test_feature_batches_by_id_range_with_more_batches_than_customers():
    from clvml.features.writer import FeatureBatches, _range_bounds

    ds = load_dataset(frames={"transactions": pd.DataFrame({
        "customer_id": ["b'q", "a", "c", "a"], "ts": pd.to_datetime(["2024-01-02", "2024-01-03",
                                                                     "2024-01-04", "2024-01-05"]),
        "amount": [5.0, 7.0, 9.0, 11.0]})})
    assert _range_bounds(ds["transactions"], 3) == [None, "b'q", "c", None]  # a quote in an id: a literal
    whole = to_pandas(build_features(ds.tables, ["2024-02-01"]))
    with FeatureBatches(ds.tables, ["2024-02-01"], batches=5) as fb:
        parts = [fb.pandas(b) for b in range(5)]
    assert [len(p) for p in parts] == [1, 1, 1, 0, 0]
    joined = pd.concat(parts[:3]).sort_values(["cutoff", "customer_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(joined, whole.reset_index(drop=True))


def test_to_pandas_equals_ibis_conversion_to_the_bit(small_world):
    # to_pandas converts DuckDB's Arrow result itself (Ibis turns every column holding a null into
    # Python objects first: slow, and the largest allocation of the training feature build); the
    # frame must be what Ibis gives, dtype for dtype and bit for bit (NaN payloads and -0.0 included)
    import warnings

    import numpy as np

    ds = load_dataset(frames=small_world.tables())
    expr = build_features(ds.tables, [dt.date(2024, 6, 1)])
    got = to_pandas(expr)
    want = expr.order_by(["cutoff", "customer_id"]).to_pandas()
    want["cutoff"] = pd.to_datetime(want["cutoff"])
    assert got.isna().any().sum() > 10  # the case that matters: many columns with nulls
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    for c in got.columns[got.dtypes == "float64"]:
        assert np.array_equal(got[c].to_numpy().view(np.int64), want[c].to_numpy().view(np.int64)), c
    # a few consolidated blocks, not one per column: a user's next assign must not warn "fragmented"
    assert got._mgr.nblocks < 30, got._mgr.nblocks
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        got.assign(score=1.0)
