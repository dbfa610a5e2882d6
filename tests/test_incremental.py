"""The incremental plan (clvml/features/incremental.py: running totals in NumPy) gives exactly the cross
join's features: the same rows, types, null masks and float64 bits, at every cut-off and window, including
the window boundaries, refunds, nulls and customers without earlier rows."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from clvml.data.dataset import load_dataset
from clvml.features import build_features, query, transactions
from clvml.features.builder import as_cutoffs, cutoff_table
from tests.conftest import tx
from tests.incremental_helpers import assert_same_bits as _assert_same_bits
from tests.incremental_helpers import spy_incremental

C1, C2, C3 = dt.date(2024, 3, 1), dt.date(2024, 4, 1), dt.date(2024, 6, 1)  # days 19783, 19814, 19875
WINDOWS = [30, 90]


@pytest.fixture(autouse=True)
def ran(monkeypatch) -> list[bool]:
    return spy_incremental(monkeypatch)


def _both(tables, cutoffs, windows=WINDOWS, families=("transactions",)) -> dict[str, pd.DataFrame]:
    """build_features by each plan, rows in a fixed order."""
    out = {}
    for plan in ("cross_join", "incremental"):
        e = build_features(tables, cutoffs, windows=windows, families=list(families), plan=plan)
        t = e.to_pyarrow().to_pandas()
        out[plan] = t.sort_values(["cutoff", "customer_id"]).reset_index(drop=True)
    return out


def _aggregates(frame: pd.DataFrame, cutoffs, plan: str) -> pd.DataFrame:
    """The transaction family's aggregate query alone (before the builder fills missing rows)."""
    t = load_dataset(frames={"transactions": frame}).tables["transactions"]
    e = query.aggregate_family(transactions.FAM, transactions.daily(t), cutoff_table(as_cutoffs(cutoffs)),
                               WINDOWS, t.columns, plan=plan, one_row_per_day=True)
    return e.to_pyarrow().to_pandas().sort_values(["cutoff_day", "customer_id"]).reset_index(drop=True)


def test_incremental_plan_equals_the_cross_join_at_the_window_boundaries(ran):
    frame = tx([
        ("a", "2023-12-01 23:59", 1.0),  # C1 - 91 days: outside C1's 90-day window
        ("a", "2023-12-02 00:00", 10.0),  # exactly C1 - 90: inside it
        ("a", "2024-01-31 12:00", 20.0),  # exactly C1 - 30: inside C1's 30-day window
        ("a", "2024-01-31 13:00", -20.0),  # a refund the same day
        ("a", "2024-03-01 00:00", 100.0),  # at C1: not for C1; C2 - 31 for C2
        ("a", "2024-03-02 00:00", -5.0),  # a refund alone on its day, exactly C2 - 30; C3 - 91
        ("a", "2024-05-02 08:00", 7.25),  # exactly C3 - 30
        ("b", "2024-04-01 00:00", 50.0),  # at C2: b's first row is for C3
        ("c", "2024-02-10 00:00", -3.0),  # only a refund: no purchase, null recency / first amount
        ("d", "2024-06-01 00:00", 9.0),  # at C3: never before any cut-off (absent, filled by the builder)
        ("e", "2024-02-29 23:59", 55.14), ("e", "2024-02-28 10:00", 55.16),  # near-equal orders (spread)
    ])
    agg = {plan: _aggregates(frame, [C1, C2, C3], plan) for plan in ("cross_join", "incremental")}
    _assert_same_bits(agg["incremental"], agg["cross_join"])
    assert ran == [True]
    f = agg["cross_join"].set_index(["customer_id", "cutoff_day"])
    assert list(f.index) == [("a", 19783), ("c", 19783), ("e", 19783), ("a", 19814), ("c", 19814), ("e", 19814),
                             ("a", 19875), ("b", 19875), ("c", 19875), ("e", 19875)]
    a1, a2, a3, b3, c1 = (f.loc[k] for k in [("a", 19783), ("a", 19814), ("a", 19875), ("b", 19875),
                                             ("c", 19783)])
    expected = {  # column: (a at C1, a at C2, a at C3, b at C3)
        "tx_orders_all": (3, 4, 5, 1), "tx_spend_all": (31.0, 131.0, 138.25, 50.0),
        "tx_orders_30d": (1, 0, 1, 0), "tx_spend_30d": (20.0, 0.0, 7.25, 0.0),
        "tx_orders_90d": (2, 2, 1, 1), "tx_spend_90d": (30.0, 120.0, 7.25, 50.0),
        "tx_refunds_30d": (1, 1, 0, 0), "tx_refund_amount_30d": (20.0, 5.0, 0.0, 0.0),
        "tx_refunds_all": (1, 2, 2, 0), "tx_purchase_days_90d": (2, 2, 1, 1),
        "tx_recency_days": (30, 31, 30, 61), "tx_tenure_days": (91, 122, 183, 61),
        "tx_first_amount": (1.0, 1.0, 1.0, 50.0), "tx_ipt_last": (60, 30, 62, None),
        "tx_orders_trend_90d": (1, 0, -1, 1),  # C1: 2 orders in [C1 - 90, C1), 1 in [C1 - 180, C1 - 90)
        "tx_spend_max_30d": (20.0, None, 7.25, None), "tx_spend_max_90d": (20.0, 100.0, 7.25, 50.0),
        "tx_spend_max_all": (20.0, 100.0, 100.0, 50.0),
    }
    for col, values in expected.items():
        got = [a1[col], a2[col], a3[col], b3[col]]
        assert [None if pd.isna(x) else x for x in got] == list(values), col
    assert pd.isna(c1["tx_recency_days"]) and pd.isna(c1["tx_first_amount"]) and c1["tx_refunds_all"] == 1


def test_incremental_plan_equals_the_cross_join_on_a_synthetic_world(small_world, ran, monkeypatch):
    """Every transaction feature (category/channel mixes, quantity, discount, margin included) through
    build_features, with the builder's fill, on the synthetic world; the NumPy evaluation in blocks of
    1,000 cells on two threads (many blocks, as at full size)."""
    from clvml.features import incremental

    monkeypatch.setattr(incremental, "CHUNK", 1000)
    monkeypatch.setattr(incremental, "THREADS", 2)
    tables = load_dataset(frames=small_world.tables()).tables
    cuts = [dt.date(2023, 1, 1), dt.date(2023, 6, 1), dt.date(2024, 1, 1), dt.date(2024, 3, 15),
            dt.date(2024, 6, 1)]
    out = _both(tables, cuts, windows=[30, 90, 180, 365])
    assert len(out["cross_join"]) > 1000 and out["cross_join"]["tx_spend_std_all"].notna().any()
    _assert_same_bits(out["incremental"], out["cross_join"])
    assert ran == [True]


def test_an_empty_history_and_the_plan_switch():
    frame = tx([("a", "2024-05-01", 5.0)])
    t = load_dataset(frames={"transactions": frame}).tables["transactions"]
    out = _both({"transactions": t}, [C1])  # no row before the only cut-off
    assert len(out["incremental"]) == 0
    _assert_same_bits(out["incremental"], out["cross_join"])
    # auto: the plan measured cheaper, by the number of cut-offs (unknown: the cross join)
    assert query.resolve_plan("auto", "duckdb") == "cross_join"
    assert [query.resolve_plan("auto", "duckdb", k) for k in (1, 2, 3, 24)] == ["cross_join"] * 2 + ["incremental"] * 2
    assert query.resolve_plan("auto", "pyspark", 24) == "cross_join"
    assert query.resolve_plan("cross_join", "duckdb", 24) == "cross_join"
    assert query.resolve_plan("incremental", "duckdb") == "incremental"
    assert query.resolve_plan("incremental", "pyspark") == "cross_join"  # DuckDB only
    with pytest.raises(ValueError, match="unknown feature plan 'fast'"):
        query.resolve_plan("fast", "duckdb")


def test_values_past_exact_float_sums_fall_back_to_the_cross_join(ran):
    """A customer whose whole units add up past 2**53 (an order of 1e10 at 6 decimals) is not summed in
    NumPy: the family takes the cross join, so both plans still agree."""
    frame = tx([("a", "2024-01-01", 5e9), ("a", "2024-01-02", 5e9), ("b", "2024-01-03", 1.5)])
    agg = {plan: _aggregates(frame, [C1], plan) for plan in ("cross_join", "incremental")}
    _assert_same_bits(agg["incremental"], agg["cross_join"])
    assert ran == [False] and agg["incremental"]["tx_spend_all"].tolist() == [1e10, 1.5]


def test_feature_batches_rebuild_the_incremental_aggregates_for_every_batch(small_world, ran):
    """FeatureBatches compiles the cross join's query once over views redefined per batch; the incremental
    plan's aggregates are data, so they are computed again for each batch: every batch gives exactly its
    customers' rows of the cross join's single query, in the batch order 0, 1, 2 and back to 0."""
    from clvml.features.builder import to_pandas
    from clvml.features.writer import FeatureBatches

    tables = load_dataset(frames={"transactions": small_world.tables()["transactions"]}).tables
    cuts = [dt.date(2024, 3, 1), dt.date(2024, 6, 1)]
    whole = to_pandas(build_features(tables, cuts, plan="cross_join"))
    with FeatureBatches(tables, cuts, batches=3, plan="incremental") as fb:
        parts = [fb.pandas(b) for b in (0, 1, 2)]
        again = fb.pandas(0)
    assert all(len(p) for p in parts) and ran == [True] * 4
    pd.testing.assert_frame_equal(again, parts[0])
    joined = pd.concat(parts).sort_values(["cutoff", "customer_id"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(joined, whole.reset_index(drop=True), check_exact=True)


def test_the_in_memory_aggregates_are_released_with_the_expression():
    """ibis.memtable keeps its table registered until the process exits (every training batch would stay
    in memory); the incremental plan's tables are unregistered once no expression refers to them."""
    import gc

    ds = load_dataset(frames={"transactions": tx([("a", "2024-01-01", 5.0), ("b", "2024-02-01", 2.0)])})
    con = ds.tables["transactions"].get_backend().con

    def registered() -> int:
        names = [r[0] for r in con.execute("SELECT name FROM (SHOW ALL TABLES)").fetchall()]
        return sum(n.startswith("_clvml_incremental_") for n in names)

    e = build_features(ds.tables, [C1], plan="incremental")
    assert len(e.to_pyarrow()) == 2 and registered() == 1
    del e
    gc.collect()
    assert registered() == 0


def test_the_numpy_evaluator_gives_duckdbs_bits_and_nulls():
    """The derived columns' operations evaluated in NumPy (clvml/features/evaluate.py) against DuckDB on the
    same values: nulls, zeros, negative zero, infinities, division by zero, integers past 2**53 as float64,
    a decimal's units; operations it does not reproduce (a comparison with NaN) are refused, not guessed."""
    import ibis
    import pyarrow as pa

    from clvml.engine import connect
    from clvml.features.evaluate import Evaluator, Unsupported
    from clvml.features.incremental import _decimal_units, in_memory
    from clvml.features.query import from_units, safe_div, std_from_moments

    n = np.array([0, 1, 2, 3, 7, 2, 0, 5, 2**53 + 1, 4], dtype=np.int64)
    s = np.array([0.0, -0.0, 3.0, np.inf, 1e300, 2.5, 7.0, -1e-300, 3.0, 0.1])
    ss = np.array([0.0, 0.0, 4.5, 1.0, 1e300, 3.125, 49.0, 0.0, 9.0, 0.3])
    units = np.array([0, -5, 123456789, 2**52, 7, -(2**40), 0, 99, 1, 10**15], dtype=np.int64)
    s_null = np.array([False, False, False, False, False, True, False, False, False, False])
    n_null = np.array([False, False, True, False, False, False, False, False, False, False])
    data = pa.table({"n": pa.array(n, mask=n_null), "s": pa.array(s, mask=s_null), "ss": pa.array(ss),
                     "u": pa.array(units)})
    t = in_memory(connect(), data)

    def exprs(tb: ibis.Table, dec: ibis.Value) -> dict[str, ibis.Value]:
        return {"mean": safe_div(tb.s, tb.n), "std": std_from_moments(tb.n, tb.s, tb.ss),
                "units": from_units(tb.s), "filled": tb.s.fill_null(0) - tb.ss, "int": tb.n.fill_null(0) - tb.n * 2,
                "ratio": tb.n.cast("float64") / tb.s, "dec": from_units(dec, 4), "big": tb.n.cast("float64") + 0.5,
                "pick": ibis.ifelse(tb.s > 1, tb.s, ibis.null("float64")), "isnull": tb.s.isnull(),
                # string cases of literals (a null condition is not true), kept as codes: DuckDB's CASE
                "label": ibis.cases((tb.s >= 3, "high"), (tb.s >= 0, "low"), (tb.n > 4, "high"),
                                    else_=ibis.null("string")),
                "tier": ibis.cases((tb.n > 2, "many"), else_="few")}

    want = t.select(**exprs(t, _decimal_units(t.u, 2))).to_pyarrow()
    holder = ibis.table({"n": "int64", "s": "float64", "ss": "float64", "u": "decimal(38, 2)"}, name="h")
    ev = Evaluator({holder.op(): {"n": (n, n_null), "s": (s, s_null), "ss": (ss, None), "u": (units, None)}}, len(n))
    for name, e in exprs(holder, holder.u).items():
        got, exp = ev.arrow(e), want.column(name).combine_chunks()
        assert got.type == exp.type, name
        assert got.is_null().to_pylist() == exp.is_null().to_pylist(), name
        if pa.types.is_floating(exp.type):  # the same bits where not null (NaN is one bit pattern in both)
            g, x = (a.fill_null(0.0).to_numpy() for a in (got, exp))
            assert (np.isnan(g) == np.isnan(x)).all(), name
            assert (g[~np.isnan(g)].view(np.int64) == x[~np.isnan(x)].view(np.int64)).all(), name
        else:
            assert got.to_pylist() == exp.to_pylist(), name
    assert ev.arrow(exprs(holder, holder.u)["label"]).to_pylist() == [
        "low", "low", "high", "high", "high", None, "high", "high", "high", "low"]
    nan = ibis.table({"x": "float64"}, name="x")
    with pytest.raises(Unsupported, match="NaN"):
        Evaluator({nan.op(): {"x": (np.array([np.nan]), None)}}, 1).arrow(nan.x > 0)
    # a NaN standing for a null (the incremental "last" of a float column) is a null, not a NaN
    stand_in = Evaluator({nan.op(): {"x": (np.array([np.nan, 2.0]), np.array([True, False]))}}, 2)
    assert stand_in.arrow(nan.x > 0).to_pylist() == [None, True]
    with pytest.raises(Unsupported, match="string"):  # any other string expression: left to DuckDB
        stand_in.arrow(ibis.cases((nan.x > 0, nan.x.cast("string")), else_="none"))


def test_columns_the_evaluator_refuses_are_computed_by_duckdb(monkeypatch, ran):
    """Where the NumPy evaluator refuses a derived column, DuckDB computes just that one over the same
    aggregates: the family's output is still the cross join's, bit for bit."""
    import ibis.expr.operations as ops

    from clvml.features import evaluate, incremental

    real = evaluate.Evaluator.values
    refused = []

    def picky(self, e):
        if isinstance(e.op(), ops.IfElse):  # the means, spreads and ratios
            refused.append(e)
            raise evaluate.Unsupported("test")
        return real(self, e)

    monkeypatch.setattr(evaluate.Evaluator, "values", picky)
    monkeypatch.setattr(incremental, "CHUNK", 3)  # refused in some blocks of cells, done in none
    frame = tx([("a", "2024-01-01", 5.0), ("a", "2024-01-03", 7.5), ("a", "2024-02-20", -2.0),
                ("b", "2023-11-05", 1.25), ("b", "2024-02-01", 3.0), ("b", "2024-02-01", 4.0)])
    agg = {plan: _aggregates(frame, [C1, C2], plan) for plan in ("cross_join", "incremental")}
    _assert_same_bits(agg["incremental"], agg["cross_join"])
    assert ran == [True] and len(refused) > 5


def _mixes(frame: pd.DataFrame, cutoffs, plan: str) -> dict[str, pd.DataFrame]:
    """Both mixes of ``frame`` by ``plan`` (the cross join's rows sorted like the incremental plan's)."""
    t = load_dataset(frames={"transactions": frame}).tables["transactions"]
    cuts = cutoff_table(as_cutoffs(cutoffs))
    out = {}
    for col, kind in (("category", "hhi"), ("channel", "share")):
        e = transactions._mix(t, cuts, col, "n", "share", kind, plan)
        out[col] = e.to_pyarrow().to_pandas()
        if plan == "cross_join":
            out[col] = out[col].sort_values(["customer_id", "cutoff_day"]).reset_index(drop=True)
    return out


def test_the_mixes_in_numpy_equal_the_cross_join_by_hand(monkeypatch):
    """The category and channel mixes of the incremental plan (incremental.mix_totals): exact values by hand,
    in the transaction family's row order (a row for every customer with a transaction before the cut-off,
    nulls without a purchase, as the left join gives), and the cross join's bits: a tie for the main channel,
    a null category/channel counted as "(none)", refunds excluded, a customer with only refunds, a key first
    bought on a cut-off day, spends whose squares pass 2**53 and 2**63 DECIMAL(38, 9) units."""
    from clvml.features import incremental

    calls = []
    real = incremental.mix_totals
    monkeypatch.setattr(transactions, "mix_totals", lambda *a, **k: calls.append(1) or real(*a, **k))
    rows = [  # customer, ts, amount, category, channel
        ("a", "2024-01-05", 10.0, "X", "web"), ("a", "2024-01-06", 30.0, "Y", "app"),
        ("a", "2024-02-10", 10.0, "X", "web"), ("a", "2024-02-11", 5.0, "Y", "app"),  # C1: web 2 = app 2
        ("a", "2024-02-12", -50.0, "Z", "store"),  # a refund: neither Z nor store counts
        ("a", "2024-03-10", 20.0, None, "web"),  # null category: "(none)"
        ("a", "2024-04-01", 7.0, "W", "store"),  # on C2: for C3 only
        ("b", "2024-02-01", -3.0, "X", "web"),  # only a refund: the family's row, no mix
        ("c", "2024-03-15", 2.5, "X", None),  # first row after C1; null channel
        ("d", "2024-01-02", 123456.78, "X", "web"), ("d", "2024-01-03", 0.1, "Y", "web"),
        ("d", "2024-01-04", 19.99, "Y", "app"), ("d", "2024-05-01", 5e6, "Z", "app"),  # squares past 2**63 units
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "ts", "amount", "category", "channel"]).assign(
        ts=lambda d: pd.to_datetime(d.ts))
    inc, cj = _mixes(frame, [C1, C2, C3], "incremental"), _mixes(frame, [C1, C2, C3], "cross_join")
    assert len(calls) == 2  # both mixes in NumPy, no fallback
    cat, ch = inc["category"], inc["channel"]
    keys = list(zip(cat.customer_id, cat.cutoff_day, strict=True))
    # cut-off-major, ids ascending: the order of the family's aggregates and of the finished table
    assert keys == [("a", 19783), ("b", 19783), ("d", 19783), ("a", 19814), ("b", 19814), ("c", 19814),
                    ("d", 19814), ("a", 19875), ("b", 19875), ("c", 19875), ("d", 19875)]
    assert keys == list(zip(ch.customer_id, ch.cutoff_day, strict=True))
    # below, customer by customer
    cat, ch = (t.sort_values(["customer_id", "cutoff_day"]).reset_index(drop=True) for t in (cat, ch))
    keys = sorted(keys)
    family = _aggregates(frame, [C1, C2, C3], "incremental")  # sorted by cut-off: compare as a set
    assert sorted(keys) == sorted(zip(family.customer_id, family.cutoff_day, strict=True))
    assert [None if pd.isna(v) else v for v in cat["n"]] == [2, 3, 4, None, None, None, 1, 1, 2, 2, 3]
    assert [None if pd.isna(v) else v for v in ch["n"]] == [2, 2, 3, None, None, None, 1, 1, 2, 2, 2]
    assert cat["share"].tolist()[:3] == [1625 / 3025, 2025 / 5625, 2074 / 6724]  # (20² + 35²) / 55², …
    assert ch["share"].tolist()[:3] == [2 / 4, 3 / 5, 3 / 6]  # the tie: 2 of 4 orders
    assert cat["share"][3:6].isna().all() and ch["share"][3:6].isna().all()
    assert cat["share"][6:8].tolist() == [1.0, 1.0] and ch["share"][6:8].tolist() == [1.0, 1.0]
    for col in ("category", "channel"):  # where the cross join has a row: the same bits; elsewhere nulls
        mine = {"category": cat, "channel": ch}[col]
        have = mine[mine["n"].notna()].reset_index(drop=True)
        have["n"] = have["n"].astype("int64")
        _assert_same_bits(have, cj[col])


def test_duckdb_square_and_decimal_cast_in_numpy():
    """evaluate.square is DuckDB's POWER(x, 2) (the C library's pow, not always x * x) and
    evaluate.decimal_to_float DuckDB's DECIMAL(38, 9) -> DOUBLE, bit for bit, on random values."""
    import decimal

    import pyarrow as pa

    from clvml.engine import connect
    from clvml.features.evaluate import decimal_to_float, round_half_away, square

    rng = np.random.default_rng(7)
    x = np.floor(rng.random(200_000) * 10.0 ** rng.integers(0, 16, 200_000)) / 1e6
    units = [int(v) for v in rng.integers(0, 2**62, 3000)] + [2**53 - 1, 2**53, 2**53 + 1, 0]
    units += [int(rng.integers(1, 2**62)) * int(rng.integers(1, 2**40)) for _ in range(3000)]
    con = connect().con
    con.register("x", pa.table({"x": x}))
    got = con.execute("SELECT POWER(x, 2) AS p, CAST(POWER(x, 2) AS DECIMAL(38, 9)) AS d FROM x").to_arrow_table()
    p = got.column("p").to_numpy()
    assert (square(x).view(np.int64) == p.view(np.int64)).all() and (x * x != p).any()  # pow is not x * x
    dec = [int(v.scaleb(9)) for v in got.column("d").to_pylist()]  # the cast rounds halves away from zero
    assert [int(v) for v in round_half_away(p * 1e9)] == dec
    con.register("u", pa.table({"d": pa.array([decimal.Decimal(v).scaleb(-9) for v in units], pa.decimal128(38, 9))}))
    want = con.execute("SELECT CAST(d AS DOUBLE) AS f FROM u").to_arrow_table().column("f").to_numpy()
    assert (decimal_to_float(units, 9).view(np.int64) == want.view(np.int64)).all()
    small = np.array(units[:3004], dtype=np.int64)
    assert (decimal_to_float(small, 9).view(np.int64) == want[:3004].view(np.int64)).all()


def test_mixes_past_exact_sums_fall_back_to_the_cross_join(monkeypatch):
    """A key's units past 2**52 (two orders of 5e9), or a square at HHI_EXACT_BELOW (summed in float64 by the
    cross join, in its threads' order): mix_totals declines (None) and _mix is the cross join's."""
    from clvml.features import incremental

    results = []
    real = incremental.mix_totals
    monkeypatch.setattr(transactions, "mix_totals", lambda *a, **k: results.append(real(*a, **k)) or results[-1])
    frame = pd.DataFrame([("a", "2024-01-01", 5e9, "X", "web"), ("a", "2024-01-02", 5e9, "X", "web"),
                          ("b", "2024-01-03", 1.5, "Y", "app")],
                         columns=["customer_id", "ts", "amount", "category", "channel"]).assign(
        ts=lambda d: pd.to_datetime(d.ts))
    inc, cj = _mixes(frame, [C1], "incremental"), _mixes(frame, [C1], "cross_join")
    assert results == [None, None]
    for col in ("category", "channel"):
        _assert_same_bits(inc[col].sort_values(["customer_id", "cutoff_day"]).reset_index(drop=True), cj[col])
    assert inc["category"]["n"].tolist() == [1, 1] and inc["category"]["share"].tolist() == [1.0, 1.0]
    t = load_dataset(frames={"transactions": frame.iloc[2:]}).tables["transactions"]
    d = t.select("customer_id", day=query.day_of(t.ts), key=t.category, s=query.units(t.amount))
    cuts = cutoff_table(as_cutoffs([C1]))
    kw = {"decimals": query.DECIMALS, "exact_scale": 9}
    assert real(d, cuts, "n", "h", "hhi", exact_below=2.0, **kw) is None  # 1.5² = 2.25 >= 2: declined
    assert real(d, cuts, "n", "h", "hhi", exact_below=1e28, **kw).to_pyarrow().column("h").to_pylist() == [1.0]


def test_written_feature_files_are_the_same_whatever_the_plan(tmp_path, ran):
    """write_features gives the same Parquet table (schema included: the cut-off a timestamp, as DuckDB's
    DATE + INTERVAL makes it in the cross join) from both plans, row for row in the same order."""
    import pyarrow.parquet as pq

    from clvml.datasets import load_cdnow_sample
    from clvml.features import write_features

    tables = load_dataset(frames={"transactions": load_cdnow_sample()}).tables
    got = {}
    for plan in ("cross_join", "incremental"):
        files = write_features(tables, ["1997-07-01", "1997-10-01"], tmp_path / plan, batches=2, plan=plan)
        got[plan] = pq.read_table(files.path)
    assert got["incremental"].schema.equals(got["cross_join"].schema)
    assert str(got["incremental"].schema.field("cutoff").type) == "timestamp[us]"
    assert got["incremental"].equals(got["cross_join"]) and got["incremental"].num_rows == 4714
    assert ran and all(ran)


def test_auto_builds_a_training_set_incrementally_and_scoring_by_the_cross_join(ran):
    """build_features and FeatureBatches resolve auto with their number of cut-offs: three or more run in
    NumPy (the result in memory), one by the cross join (a lazy query)."""
    from clvml.features.incremental import arrow_of
    from clvml.features.writer import FeatureBatches

    frame = tx([("a", "2024-01-01", 5.0), ("b", "2024-02-01", 2.0), ("a", "2024-03-01", 1.0)])
    t = load_dataset(frames={"transactions": frame}).tables
    many = build_features(t, [dt.date(2024, 2, 1), dt.date(2024, 3, 1), dt.date(2024, 4, 1)])
    assert ran == [True] and arrow_of(many) is not None and many.count().execute() == 5
    one = build_features(t, [dt.date(2024, 4, 1)])
    assert ran == [True] and arrow_of(one) is None and one.count().execute() == 2
    with FeatureBatches(t, [dt.date(2024, 2, 1), dt.date(2024, 3, 1), dt.date(2024, 4, 1)], batches=2) as fb:
        assert fb._eager and sum(len(fb.arrow(b)) for b in range(2)) == 5
    with FeatureBatches(t, [dt.date(2024, 4, 1)], batches=2) as fb:
        assert not fb._eager and sum(len(fb.arrow(b)) for b in range(2)) == 2


def test_cells_give_exact_window_sums_in_the_output_order():
    """Hand-built rows: every (customer, cut-off) with a row before
    the cut-off, in the output order (cut-off, then customer), with exact sums over all history and over
    the last 3 days."""
    import pyarrow as pa
    from ibis.expr import datatypes as idt

    from clvml.features import incremental
    from clvml.features.registry import Inc

    # customer: its (day, value) rows, sorted by customer and day
    rows = {"a": [(1, 1), (5, 2)], "b": [(2, 10)], "c": [(0, 100), (6, 200), (9, 400)], "d": [(7, 1000)]}
    ids = [c for c, rs in rows.items() for _ in rs]
    data = pa.table({"customer_id": ids, "_day": [d for rs in rows.values() for d, _ in rs],
                     "_v0": [v for rs in rows.values() for _, v in rs]})
    cuts = np.array([3, 6, 8, 10])
    items = [incremental.Item("s", Inc("sum", lambda r: r.x), None),
             incremental.Item("s3", Inc("sum", lambda r: r.x), 3)]
    cells = incremental._Cells(items, {"s": "_v0", "s3": "_v0"}, {"_v0": idt.int64}, data, cuts)
    # the cells: (customer, cut-off) with a row before the cut-off
    want = [(c, k) for c, rs in rows.items() for k in cuts if rs[0][0] < k]
    assert cells.n == len(want) == 14
    # the output order: by cut-off, then customer
    out = list(zip(cells.out_cutoff_day.tolist(), cells.ids.to_pylist(), strict=True))
    assert out == sorted((int(k), c) for c, k in want)
    got = cells.items(slice(None))
    total = {(int(k), c): sum(v for d, v in rows[c] if d < k) for c, k in want}
    last3 = {(int(k), c): sum(v for d, v in rows[c] if k - 3 <= d < k) for c, k in want}
    assert cells.ordered(got["s"][0]).tolist() == [total[key] for key in out]
    assert cells.ordered(got["s3"][0]).tolist() == [last3[key] for key in out]


def test_mixes_started_early_are_dropped_when_the_daily_rows_fall_back(monkeypatch, ran):
    """The mixes start on their threads as soon as their rows are made (``mixes_ready``), before the daily
    rows' pass; when that pass then finds a sum it cannot take exactly (a margin past 2**53 units), the
    family falls back to DuckDB's daily rows and the mixes started early are not used: both plans agree."""
    from clvml.features import tx_daily

    calls = []
    orig = tx_daily.daily_and_mix_rows

    def spy(*args, **kwargs):
        ready = kwargs["mixes_ready"]
        kwargs["mixes_ready"] = lambda data: (calls.append(("ready", data.num_rows)), ready(data))
        out = orig(*args, **kwargs)
        calls.append("rows" if out is not None else "fell back")
        return out

    monkeypatch.setattr(transactions, "daily_and_mix_rows", spy)
    frame = tx([("a", "2024-01-01", 5.0), ("a", "2024-02-01", 7.0), ("b", "2024-01-03", 1.5),
                ("b", "2024-01-04", -1.5)]).assign(category=["x", "y", "x", None], channel="web",
                                                  margin=[1e10, 1.0, 2.0, None])  # 1e16 units
    t = load_dataset(frames={"transactions": frame}).tables["transactions"]
    out = _both({"transactions": t}, [C1, C2, C3])
    _assert_same_bits(out["incremental"], out["cross_join"])
    assert calls == [("ready", 4), "fell back"]  # started, then dropped with the daily rows' fall-back
    a = out["incremental"].query("customer_id == 'a'").iloc[-1]  # at C3: both purchases
    assert (a.tx_categories_all, a.tx_category_hhi, a.tx_channels_all, a.tx_main_channel_share) == (
        2, (5.0**2 + 7.0**2) / 12.0**2, 1, 1.0)
