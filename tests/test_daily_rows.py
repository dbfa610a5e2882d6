"""The activity and social families' daily rows computed in NumPy (clvml/features/daily_rows.py) are exactly
DuckDB's query's: the same rows in the same order, types, null masks and bits; what cannot be reproduced is
left to DuckDB (None)."""

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest

from clvml.data.dataset import load_dataset
from clvml.engine import connect
from clvml.features import activity, build_features, daily_rows, social
from clvml.features.daily_rows import Count, CountOf, UnitSum, daily_counts, daily_query
from clvml.features.incremental import arrow_of
from tests.incremental_helpers import assert_same_bits, spy_results


def _events(rows, **extra):
    frame = pd.DataFrame(rows, columns=["customer_id", "ts", "event_type"]).assign(
        ts=lambda d: pd.to_datetime(d.ts, format="mixed"))
    for name, values in extra.items():
        frame[name] = values
    return connect().create_table("ev", frame, temp=True)


def _both(t, aggs):
    query = daily_query(t, aggs)
    got = daily_counts(t, aggs, schema=query.schema())
    return (None if got is None else arrow_of(got)), query.order_by(["customer_id", "day"]).to_pyarrow()


ROWS = [("b", "2024-01-01 10:00", "session"), ("b", "2024-01-01 11:00", "session"),
        ("b", "2024-01-01 12:00", "page_view"), ("b", "2024-01-02", None),  # a null type: a day with no counts
        ("b", "2024-01-03", "unknown"), ("B", "2024-01-02", "login"), ("é", "2024-01-05", "session"),
        ("a", "2023-12-31 23:59", "session"), ("a", "2024-01-01 00:00", "session")]
AGGS = {"sessions": Count("session"), "views": Count("page_view"), "logins": Count("login"),
        "closed": Count("account_closed"), "duration": UnitSum("duration_s", "session", fill=True),
        "d_sum": UnitSum("duration_s", "session", fill=False), "d_n": CountOf("duration_s", "session")}


def test_daily_counts_are_duckdbs_bits_in_duckdbs_order():
    # 2.5e-6 s is 2.5 units (rounded away from zero: 3), -1e-7 s rounds to -0.0, a null duration is not summed
    t = _events(ROWS, duration_s=[2.5e-6, 60.0, 5.0, 1.0, 2.0, 3.0, -1e-7, None, 1e-7])
    got, want = _both(t, AGGS)
    assert got.schema == want.schema
    assert_same_bits(got.to_pandas(), want.to_pandas())
    for name in want.column_names:  # -0.0 and 0.0 told apart
        assert got.column(name).equals(want.column(name)), name
    frame = got.to_pandas()
    assert frame.customer_id.tolist() == ["B", "a", "a", "b", "b", "b", "é"]  # DuckDB's byte order, then days
    b = frame[frame.customer_id == "b"]
    assert b.sessions.tolist() == [2, 0, 0] and b.views.tolist() == [1, 0, 0]
    assert b.duration.tolist() == [60000003.0, 0.0, 0.0] and b.d_sum.isna().tolist() == [False, True, True]
    a = frame[frame.customer_id == "a"]
    assert a.d_n.tolist() == [0, 1] and a.d_sum.isna().tolist() == [True, False] and a.duration.tolist()[0] == 0.0


def test_integer_values_and_no_value_columns():
    t = _events(ROWS[:5], rating=pd.array([5, None, 3, 4, 1], dtype="Int64"))
    aggs = {"reviews": Count("session"), "r_sum": UnitSum("rating", "session", fill=False),
            "r_n": CountOf("rating", "session")}
    got, want = _both(t, aggs)
    assert_same_bits(got.to_pandas(), want.to_pandas())
    got, want = _both(t, {"views": Count("page_view")})
    assert_same_bits(got.to_pandas(), want.to_pandas())


@pytest.mark.parametrize("rows, values, why", [
    ([("a", "2024-01-01", "session")] * 2, [5e9, 5e9], "a day's units past 2**52"),
    ([("a", "2024-01-01", "session"), (None, "2024-01-01", "session")], [1.0, 1.0], "a null customer"),
    ([("a", "2024-01-01", "session"), ("a", None, "session")], [1.0, 1.0], "a null time"),
])
def test_what_cannot_be_reproduced_is_left_to_duckdb(rows, values, why):
    got, _ = _both(_events(rows, duration_s=values), AGGS)
    assert got is None, why


def test_an_infinite_value_is_left_to_duckdb():
    frame = pd.DataFrame({"customer_id": ["a", "a"], "ts": pd.to_datetime(["2024-01-01", "2024-01-02"]),
                          "event_type": ["session", "session"]})
    table = pa.Table.from_pandas(frame, preserve_index=False).append_column(
        "duration_s", pa.array([1.0, float("inf")], pa.float64()))
    t = connect().create_table("ev", table, temp=True)
    assert _both(t, AGGS)[0] is None


def test_activity_and_social_built_from_numpy_daily_rows_equal_the_cross_join(small_world, monkeypatch):
    """Both families on the synthetic world, the NumPy daily rows having run (spied) for each."""
    ran = spy_results(monkeypatch, daily_rows, "daily_counts")
    tables = load_dataset(frames=small_world.tables()).tables
    cuts = [dt.date(2024, 1, 1), dt.date(2024, 4, 1), dt.date(2024, 7, 1)]
    for fam in ("activity", "social"):
        out = {}
        for plan in ("cross_join", "incremental"):
            e = build_features(tables, cuts, windows=[30, 90, 365], families=[fam], plan=plan)
            out[plan] = e.to_pyarrow().to_pandas().sort_values(["cutoff", "customer_id"], ignore_index=True)
        assert len(out["incremental"]) > 1000
        assert_same_bits(out["incremental"], out["cross_join"])
    assert ran == [True, True]
    assert activity.daily(tables["activity"]).schema() == daily_query(
        tables["activity"], activity._daily_aggs(tables["activity"])).schema()
    assert "rating_sum" in social.daily(tables["social"]).columns
