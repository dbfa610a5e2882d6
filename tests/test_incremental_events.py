"""The incremental plan for the activity, social and after-sales families (running totals in NumPy,
clvml/features/incremental.py) gives exactly the cross join's features: the same rows, types, null masks
and float64 bits, at the window boundaries, with nulls, and on a synthetic world through build_features."""

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest

from clvml.data.dataset import load_dataset
from clvml.features import activity, after_sales, build_features, social, to_arrow
from clvml.features.builder import as_cutoffs, cutoff_table
from clvml.features.incremental import arrow_of
from tests.incremental_helpers import assert_same_bits as _assert_same_bits
from tests.incremental_helpers import spy_incremental

C1, C2, C3 = dt.date(2024, 3, 1), dt.date(2024, 4, 1), dt.date(2024, 6, 1)  # days 19783, 19814, 19875
WINDOWS = [30, 90]


@pytest.fixture(autouse=True)
def ran(monkeypatch) -> list[bool]:
    return spy_incremental(monkeypatch)


def _events(rows: list[tuple], **extra: list) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["customer_id", "ts", "event_type"])
    df["ts"] = pd.to_datetime(df.ts, format="mixed")
    for k, v in extra.items():
        df[k] = pd.to_datetime(v, format="mixed") if k.endswith("_ts") else v
    return df


def _family(module, frame: pd.DataFrame, table: str, cutoffs=(C1, C2, C3)) -> dict[str, pd.DataFrame]:
    """The family's part (before the builder fills missing rows) by each plan, rows in a fixed order."""
    t = load_dataset(frames={"transactions": pd.DataFrame({
        "customer_id": ["a"], "ts": pd.to_datetime(["2023-01-01"]), "amount": [1.0]}), table: frame},
    ).tables[table]
    out = {}
    for plan in ("cross_join", "incremental"):
        e = module.build(t, cutoff_table(as_cutoffs(list(cutoffs))), WINDOWS, plan)
        out[plan] = e.to_pyarrow().to_pandas().sort_values(["cutoff_day", "customer_id"]).reset_index(drop=True)
        out[f"{plan}_in_memory"] = arrow_of(e) is not None
    return out


def _row(frame: pd.DataFrame, customer: str, day: int) -> pd.Series:
    return frame.set_index(["customer_id", "cutoff_day"]).loc[(customer, day)]


def test_activity_at_the_window_boundaries(ran):
    frame = _events([
        ("a", "2023-12-01 23:59", "session"),  # C1 - 91: outside C1's 90 days and its trend's 60 before
        ("a", "2023-12-02 00:00", "session"),  # exactly C1 - 90: inside both
        ("a", "2024-01-30 23:00", "page_view"),  # C1 - 31: in the 60 days before the last 30
        ("a", "2024-01-31 00:00", "session"),  # exactly C1 - 30: in the last 30 days
        ("a", "2024-01-31 08:00", "login"),  # the same day
        ("a", "2024-03-01 00:00", "add_to_cart"),  # at C1: not for C1
        ("a", "2024-05-20 00:00", "account_closed"),
        ("b", "2024-04-01 00:00", "session"),  # at C2: b's first row is for C3
        ("c", "2024-06-01 00:00", "login"),  # at C3: never before any cut-off
    ], duration_s=[60.5, 30.0, None, 12.25, None, None, None, 1e6 + 0.125, 5.0])
    out = _family(activity, frame, "activity")
    _assert_same_bits(out["incremental"], out["cross_join"])
    assert ran == [True]
    f = out["cross_join"]
    assert list(zip(f.customer_id, f.cutoff_day, strict=True)) == [("a", 19783), ("a", 19814), ("a", 19875),
                                                                   ("b", 19875)]
    a1, a3, b3 = _row(f, "a", 19783), _row(f, "a", 19875), _row(f, "b", 19875)
    assert (a1.act_sessions_30d, a1.act_sessions_90d, a1.act_sessions_all) == (1, 2, 3)
    assert (a1.act_active_days_30d, a1.act_active_days_90d, a1.act_views_90d, a1.act_logins_30d) == (1, 3, 1, 1)
    assert a1.act_duration_90d == 42.25 and a1.act_duration_all == 102.75 and a1.act_days_since_activity == 30
    assert a1.act_sessions_trend == pytest.approx(1 / 30 - 1 / 60)  # 1 in the last 30 days, 1 in the 60 before
    assert a3.act_closed == 1 and a3.act_days_since_activity == 12 and a3.act_carts_all == 1
    assert b3.act_duration_mean == 1e6 + 0.125 and b3.act_days_since_activity == 61


def test_social_with_ratings_missing_on_some_days(ran):
    frame = _events([
        ("a", "2023-12-02 00:00", "review"),  # exactly C1 - 90
        ("a", "2024-01-31 00:00", "review"),  # exactly C1 - 30, no rating
        ("a", "2024-02-10 00:00", "share"),
        ("a", "2024-02-10 09:00", "like"),
        ("a", "2024-03-01 00:00", "referral"),  # at C1; C2 - 31
        ("a", "2024-03-05 00:00", "referral_converted"),
        ("b", "2024-02-01 00:00", "review"),  # no rating ever: null mean
        ("c", "2024-05-31 23:59", "review"),  # the day before C3
    ], rating=[4.0, None, None, None, None, None, None, 2.5])
    out = _family(social, frame, "social")
    _assert_same_bits(out["incremental"], out["cross_join"])
    assert ran == [True]
    f = out["cross_join"]
    a1, a2, b1, c3 = _row(f, "a", 19783), _row(f, "a", 19814), _row(f, "b", 19783), _row(f, "c", 19875)
    assert (a1.soc_reviews_30d, a1.soc_reviews_90d, a1.soc_shares_30d, a1.soc_likes_all) == (1, 2, 1, 1)
    assert a1.soc_rating_mean == 4.0 and a1.soc_days_since_social == 20 and a1.soc_referrals_all == 0
    assert (a2.soc_referrals_30d, a2.soc_referrals_90d, a2.soc_referrals_converted_all) == (0, 1, 1)
    assert a2.soc_days_since_social == 27
    assert pd.isna(b1.soc_rating_mean) and c3.soc_rating_mean == 2.5 and c3.soc_days_since_social == 1


def test_after_sales_unresolved_tickets_and_latest_answers(ran):
    """What is unresolved at a cut-off (resolved at or after it, or never), resolution times, the latest
    survey answer when several fall on one day, refunds with and without an amount."""
    frame = _events([
        ("a", "2024-01-10 09:00", "ticket"),  # resolved the day before C1
        ("a", "2024-01-20 09:00", "complaint"),  # resolved exactly at C1: unresolved at C1, resolved at C2
        ("a", "2024-02-01 09:00", "ticket"),  # never resolved
        ("a", "2024-02-05 10:00", "survey"),
        ("a", "2024-02-05 18:00", "survey"),  # the same day, later: the latest answers
        ("a", "2024-02-06 00:00", "refund"),
        ("a", "2024-02-07 00:00", "return"),  # no amount
        ("a", "2024-03-20 00:00", "complaint"),  # resolved "before" it was opened (counts from its opening)
        ("b", "2024-01-15 00:00", "survey"),  # a survey without answers
        ("b", "2024-03-31 23:00", "ticket"),  # resolved the same day, the day before C2
        ("c", "2024-06-01 00:00", "complaint"),  # at C3: never before any cut-off
    ], resolved_ts=[
        "2024-02-29 12:00", "2024-03-01 00:00", None, None, None, None, None, "2024-03-10 00:00", None,
        "2024-03-31 23:30", None,
    ], satisfaction=[None, None, None, 2.0, 5.0, None, None, None, None, None, None],
        nps=[None, None, None, 6.0, 9.0, None, None, None, None, None, None],
        amount=[None, None, None, None, None, 12.5, None, None, None, None, None])
    out = _family(after_sales, frame, "after_sales")
    _assert_same_bits(out["incremental"], out["cross_join"])
    assert ran == [True, True]  # the daily events and the resolution days
    # joined to the resolutions and finished in memory (the NPS category's CASE too), not by the engine
    assert out["incremental_in_memory"] and not out["cross_join_in_memory"]
    f = out["cross_join"]
    assert list(zip(f.customer_id, f.cutoff_day, strict=True)) == [("a", 19783), ("b", 19783), ("a", 19814),
                                                                   ("b", 19814), ("a", 19875), ("b", 19875)]
    a1, a2, b1, b2 = _row(f, "a", 19783), _row(f, "a", 19814), _row(f, "b", 19783), _row(f, "b", 19814)
    assert (a1.as_tickets_all, a1.as_complaints_all, a1.as_unresolved_now, a1.as_unresolved_complaints_now) == (
        3, 1, 2, 1)
    assert a1.as_resolution_days_mean == (50 * 86400 + 3 * 3600) / 86400  # the one resolved before C1
    assert (a2.as_tickets_all, a2.as_unresolved_now, a2.as_unresolved_complaints_now) == (4, 1, 0)
    assert a2.as_resolution_days_mean == ((50 * 86400 + 3 * 3600) + (40 * 86400 + 15 * 3600) - 10 * 86400) / 3 / 86400
    assert (a1.as_satisfaction_last, a1.as_satisfaction_mean, a1.as_nps_last, a1.as_nps_category) == (
        5.0, 3.5, 9.0, "promoter")
    assert (a1.as_returns_30d, a1.as_returns_all, a1.as_refund_amount_all, a1.as_surveys_all) == (2, 2, 12.5, 2)
    assert a1.as_days_since_complaint == 41 and a2.as_days_since_complaint == 12
    assert b1.as_tickets_all == 0 and pd.isna(b1.as_resolution_days_mean) and pd.isna(b1.as_satisfaction_last)
    assert pd.isna(b1.as_nps_category) and pd.isna(b1.as_refund_amount_all) and pd.isna(b1.as_days_since_complaint)
    assert (b2.as_unresolved_now, b2.as_resolution_days_mean) == (0, 1800 / 86400)


def test_the_latest_survey_answer_is_defined_for_answers_at_the_same_time(ran):
    """The latest answer by the full timestamp (two answers within one second: the later one), and for two at
    the very same time the larger: the same data give the same features whatever order DuckDB reads them in."""
    frame = _events([("a", "2024-01-10 09:00:00.700", "survey"), ("a", "2024-01-10 09:00:00.200", "survey"),
                     ("b", "2024-01-11 10:00:00", "survey"), ("b", "2024-01-11 10:00:00", "survey"),
                     ("b", "2024-01-11 10:00:00", "survey")],
                    satisfaction=[2.0, 5.0, 1.0, 4.0, 3.0], nps=[3.0, 9.0, 10.0, 0.0, None])
    for rows in (frame, frame.iloc[::-1].reset_index(drop=True)):
        out = _family(after_sales, rows, "after_sales", cutoffs=[C1])
        _assert_same_bits(out["incremental"], out["cross_join"])
        f = out["cross_join"]
        assert f.as_satisfaction_last.tolist() == [2.0, 4.0] and f.as_nps_last.tolist() == [3.0, 10.0]
        assert f.as_nps_category.tolist() == ["detractor", "promoter"]


def test_without_resolution_times_every_ticket_is_open_and_huge_sums_fall_back(ran):
    frame = _events([("a", "2024-01-10", "ticket"), ("a", "2024-01-11", "complaint"), ("b", "2024-01-12", "survey")])
    out = _family(after_sales, frame, "after_sales", cutoffs=[C1])
    _assert_same_bits(out["incremental"], out["cross_join"])
    assert ran == [True] and out["cross_join"].as_unresolved_now.tolist() == [2, 0]
    assert "as_resolution_days_mean" not in out["cross_join"]
    # sessions of 5e9 s: their whole units (1e-6 s) pass 2**53, so the family takes the cross join
    ran.clear()
    frame = _events([("a", "2024-01-10", "session"), ("a", "2024-01-11", "session")], duration_s=[5e9, 5e9])
    out = _family(activity, frame, "activity", cutoffs=[C1])
    _assert_same_bits(out["incremental"], out["cross_join"])
    assert ran == [False] and out["incremental"].act_duration_all.tolist() == [1e10]


def test_every_family_on_a_synthetic_world(small_world, ran):
    """All 153 features through build_features (profile, the cart conversion and the builder's fills
    included), both plans, every incremental attempt run in NumPy."""
    tables = load_dataset(frames=small_world.tables()).tables
    cuts = [dt.date(2023, 6, 1), dt.date(2024, 1, 1), dt.date(2024, 6, 1)]
    out, arrow = {}, {}
    for plan in ("cross_join", "incremental"):
        e = build_features(tables, cuts, windows=[30, 90, 180, 365], plan=plan)
        # the incremental plan ends with the finished table in memory: to_arrow takes it without DuckDB
        assert (arrow_of(e) is not None) == (plan == "incremental")
        arrow[plan] = to_arrow(e)
        assert arrow[plan].schema == e.schema().to_pyarrow()  # the types the engine's to_pyarrow gives
        t = e.to_pyarrow().to_pandas()
        out[plan] = t.sort_values(["cutoff", "customer_id"]).reset_index(drop=True)
        if plan == "incremental":  # unordered: the same rows; ordered: the engine's ORDER BY, row for row
            loose = to_arrow(e, ordered=False).to_pandas().sort_values(["cutoff", "customer_id"])
            _assert_same_bits(loose.reset_index(drop=True), out[plan])
        _assert_same_bits(arrow[plan].to_pandas(), out[plan])
    want = out["cross_join"]
    assert want.shape[1] == 155 and len(want) > 1000
    for col in ("as_unresolved_now", "as_resolution_days_mean", "as_satisfaction_last", "act_duration_mean",
                "act_sessions_trend", "soc_rating_mean", "act_days_since_activity"):
        assert want[col].fillna(0).ne(0).any(), col  # the world exercises it
    _assert_same_bits(out["incremental"], want)
    assert len(ran) == 5 and all(ran)  # transactions, activity, social, after-sales and its resolutions


def test_side_by_side_is_a_left_join_by_position():
    """The parts are placed at their (customer, cut-off) row of the base: missing keys give nulls, keys
    not in the base are dropped, the base's order is kept; a part with two rows for one key, or a column
    name taken twice, is left to the join (None)."""
    import ibis

    from clvml.features.assemble import side_by_side

    con = ibis.duckdb.connect()
    base = con.create_table("base", pd.DataFrame({"customer_id": ["b", "a", "a", "c"],
                                                  "cutoff_day": [1, 1, 2, 2], "x": [1.0, 2.0, 3.0, 4.0]}))
    part = con.create_table("part", pd.DataFrame({"customer_id": ["a", "zz", "c", "b"], "cutoff_day": [2, 1, 1, 1],
                                                  "y": [10, 20, 30, 40], "s": ["p", "q", None, "r"]}))
    got = side_by_side(base, [part]).to_pyarrow().to_pandas()
    assert got.customer_id.tolist() == ["b", "a", "a", "c"] and got.x.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert got.y.tolist()[0] == 40 and pd.isna(got.y[1]) and got.y[2] == 10 and pd.isna(got.y[3])
    assert got.s[0] == "r" and got.s[2] == "p" and got.s[[1, 3]].isna().all()
    want = base.left_join(part, ["customer_id", "cutoff_day"]).drop("customer_id_right", "cutoff_day_right")
    want = want.to_pyarrow().to_pandas().set_index(["customer_id", "cutoff_day"]).loc[
        list(zip(got.customer_id, got.cutoff_day, strict=True))].reset_index()
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    twice = con.create_table("twice", pd.DataFrame({"customer_id": ["a", "a"], "cutoff_day": [1, 1], "z": [1, 2]}))
    assert side_by_side(base, [twice]) is None
    assert side_by_side(base, [part, part]) is None  # "y" twice
    empty = con.create_table("empty", pd.DataFrame({"customer_id": pd.Series([], dtype=str),
                                                    "cutoff_day": pd.Series([], dtype="int64")}))
    assert side_by_side(empty, [part]).count().execute() == 0
    # a part in the base's row order is placed as it is; one key off and it is looked up like the others
    same = con.create_table("same", pd.DataFrame({"customer_id": ["b", "a", "a", "c"], "cutoff_day": [1, 1, 2, 2],
                                                  "w": [5.0, None, 7.0, 8.0]}))
    off = con.create_table("off", pd.DataFrame({"customer_id": ["b", "a", "a", "c"], "cutoff_day": [1, 1, 2, 3],
                                                "v": [1, 2, 3, 4]}))
    got = side_by_side(base, [same, off]).to_pyarrow().to_pandas()
    assert got.w.fillna(-1).tolist() == [5.0, -1, 7.0, 8.0] and got.v.fillna(-1).tolist() == [1, 2, 3, -1]
    # fills: COALESCE of the join for numeric columns (an integer one filled with a float becomes float64)
    nulls = con.create_table("nulls", pd.DataFrame({"customer_id": ["a", "c", "b"], "cutoff_day": [1, 2, 1],
                                                    "f": [1.5, None, 2.5], "i": [7, 8, 9], "j": [1, 2, 3],
                                                    "t": ["x", None, "z"]}))
    got = side_by_side(base, [nulls], fills={"f": 0.0, "i": 0.5, "j": 0, "t": "none"}).to_pyarrow()
    assert got.column("f").to_pylist() == [2.5, 1.5, 0.0, 0.0] and got.column("f").null_count == 0
    assert got.column("i").type == pa.float64() and got.column("i").to_pylist() == [9.0, 7.0, 0.5, 8.0]
    assert got.column("j").type == pa.int64() and got.column("j").to_pylist() == [3, 1, 0, 2]
    assert got.column("t").to_pylist() == ["z", "x", None, None]  # not numeric: joined as it is


def test_finish_in_memory_gives_the_engines_columns_and_refuses_what_it_cannot_reproduce():
    """The builder's last projection (columns, null fills, an integer-to-float cast, the cut-off date and a
    derived ratio) computed in Arrow/NumPy equals DuckDB's result value for value and type for type; an
    expression outside those (a string function) is left to the engine (None)."""
    import ibis
    import pyarrow as pa

    from clvml.features.assemble import finish_in_memory
    from clvml.features.incremental import in_memory
    from clvml.features.query import safe_div

    con = ibis.duckdb.connect()
    src = in_memory(con, pa.table({"customer_id": ["a", "b", "c"], "cutoff_day": [19723, 19724, 0],
                                   "n": pa.array([2, None, 0], pa.int64()), "x": [0.5, None, 3.0],
                                   "s": ["p", None, "q"]}))
    res = src.select("customer_id", cutoff=(ibis.date(1970, 1, 1) + src.cutoff_day.as_interval("D")).cast("date"),
                     n=src.n.cast("float64").fill_null(0.0), k=src.n.fill_null(0), x=src.x.fill_null(0.0),
                     r=safe_div(src.x, src.n), s=src.s)
    got = arrow_of(finish_in_memory(src, res))
    want = res.to_pyarrow()
    assert got.equals(want) and got.schema == want.schema
    assert got.column("cutoff").to_pylist() == [dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(1970, 1, 1)]
    assert got.column("n").to_pylist() == [2.0, 0.0, 0.0] and got.column("r").to_pylist() == [0.25, None, None]
    assert finish_in_memory(src, src.select("customer_id", u=src.s.upper())) is None
    assert finish_in_memory(res, res.select("customer_id")) is None  # not an in-memory table


def test_parts_in_cutoff_and_id_order_are_found_by_one_merge():
    """Base and part both in strictly ascending (cut-off, id) order (the incremental plan's): every part row's
    base row by one merge, ids compared byte by byte ("B" < "a" < "aa" < "z" < "é"), the same rows as the
    lookup by hashing, for string, large string, sliced and integer ids; out of order: None (hashing)."""
    import numpy as np

    from clvml.features.assemble import _index, _merged_rows, _rows_in_base

    b = pa.table({"customer_id": ["B", "a", "aa", "b", "a", "b", "é"], "cutoff_day": [1, 1, 1, 1, 2, 2, 2]})
    p = pa.table({"customer_id": ["a", "ab", "b", "a", "z", "é"], "cutoff_day": [1, 1, 1, 2, 2, 3]})
    assert _merged_rows(p, b).tolist() == [1, -1, 3, 4, -1, -1] == _rows_in_base(p, *_index(b)).tolist()
    large = pa.schema([("customer_id", pa.large_string()), ("cutoff_day", pa.int64())])
    sliced = pa.table({"customer_id": pa.array(["zz", *p.column("customer_id").to_pylist()], pa.large_string())[1:],
                       "cutoff_day": p.column("cutoff_day")})
    assert _merged_rows(sliced, b.cast(large)).tolist() == [1, -1, 3, 4, -1, -1]
    ints = pa.table({"customer_id": pa.array([3, 5, 7, 5], pa.int64()), "cutoff_day": [1, 1, 1, 2]})
    assert _merged_rows(pa.table({"customer_id": pa.array([-1, 5, 6, 5], pa.int64()), "cutoff_day": [1, 1, 1, 2]}),
                        ints).tolist() == [-1, 1, -1, 3]
    rng = np.random.default_rng(7)
    ids = sorted({"".join(rng.choice(list("aAbé0"), rng.integers(0, 5))) for _ in range(300)},
                 key=lambda x: x.encode())
    base = pa.table({"customer_id": ids * 3, "cutoff_day": np.repeat([10, 20, 30], len(ids))})
    part = base.filter(pa.array(rng.random(base.num_rows) < 0.6))
    assert (_merged_rows(part, base) == _rows_in_base(part, *_index(base))).all()
    # not in that order (either side), other key types, types that differ: left to the hashing lookup
    assert _merged_rows(p.take([1, 0, 2, 3, 4, 5]), b) is None and _merged_rows(p, b.take([1, 0, 2, 3, 4, 5, 6])) is None
    assert _merged_rows(p, b.cast(large)) is None
    dates = pa.table({"customer_id": pa.array([dt.date(2024, 1, 1)]), "cutoff_day": [1]})
    assert _merged_rows(dates, dates) is None


def test_the_cutoff_customer_order_by_a_stable_sort_or_by_both_keys():
    """Rows cut-off by cut-off (ids ascending) are in order already (None: no pass over the columns); rows
    customer by customer need only a stable sort by cut-off; any other order is sorted by both keys; either
    way the order of ORDER BY cutoff, customer_id."""
    import pyarrow as pa

    from clvml.features.builder import _cutoff_customer_order

    d = [dt.date(2024, 1, 1), dt.date(2024, 2, 1)]
    ids, cuts = ["B", "B", "a", "a", "é"], [d[0], d[1], d[0], d[1], d[1]]
    want = [("B", d[0]), ("a", d[0]), ("B", d[1]), ("a", d[1]), ("é", d[1])]

    def table(rows: list) -> pa.Table:
        return pa.table({"customer_id": [r[0] for r in rows], "cutoff": pa.array([r[1] for r in rows], pa.date32())})

    assert _cutoff_customer_order(table(want)) is None
    # cut-offs in order but ids not ascending within one: sorted
    swapped = [want[1], want[0], *want[2:]]
    for rows in (list(zip(ids, cuts, strict=True)), [(ids[i], cuts[i]) for i in (4, 2, 0, 3, 1)], swapped):
        t = table(rows)
        order = _cutoff_customer_order(t)
        assert order is not None
        got = t.take(order)
        assert list(zip(got.column("customer_id").to_pylist(), got.column("cutoff").to_pylist(), strict=True)) == want
