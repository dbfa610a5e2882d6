"""The transaction family's daily rows and mix rows computed in NumPy (clvml/features/tx_daily.py) are
exactly DuckDB's: the same rows in the same order, types, null masks and bits; anything it cannot
reproduce returns None (DuckDB's queries then run)."""

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from clvml.data.dataset import load_dataset
from clvml.engine import connect
from clvml.features import build_features, transactions
from clvml.features.incremental import arrow_of, mix_rows
from clvml.features.query import DECIMALS, day_of
from clvml.features.tx_daily import daily_and_mix_rows
from tests.incremental_helpers import assert_same_bits, spy_results


def _table(rows, **extra):
    frame = pd.DataFrame(rows, columns=["customer_id", "ts", "amount"]).assign(
        ts=lambda d: pd.to_datetime(d.ts, format="mixed"))
    for name, values in extra.items():
        frame[name] = values
    table = pa.Table.from_pandas(frame, preserve_index=False)
    # a NaN amount stays a NaN (pandas' NaN would become a null)
    table = table.set_column(2, "amount", pa.array([r[2] for r in rows], pa.float64(), from_pandas=False))
    return connect().create_table("tx", table, temp=True)


def _numpy_rows(t, keys=("category", "channel")):
    keys = [k for k in keys if k in t.columns]
    return daily_and_mix_rows(t, day_of(t.ts), keys, decimals=DECIMALS, ss_decimals=transactions.SS_DECIMALS,
                              schema=transactions.daily(t).schema())


def _duckdb_daily(t) -> pa.Table:
    return transactions.daily(t).order_by(["customer_id", "day"]).to_pyarrow()


def _same(got: pa.Table, want: pa.Table) -> None:
    assert got.schema == want.schema
    assert_same_bits(got.to_pandas(), want.to_pandas())
    for name in want.column_names:  # -0.0 and 0.0 told apart, decimals compared as decimals
        assert got.column(name).equals(want.column(name)), name


ROWS = [
    ("b", "2024-01-01 10:00", 10.0), ("b", "2024-01-01 18:00", 2.5e-7),  # rounds half away: 0.25 -> 0 units
    ("b", "2024-01-01 19:00", 2.5e-6), ("b", "2024-01-01 20:00", -2.5e-6),  # 2.5 units: 3 / a refund of 3
    ("b", "2024-01-03 00:00", -4.0),  # a refund alone on its day: no gap, no purchase
    ("b", "2024-01-07 23:59", 0.1), ("b", "2024-01-09 00:00", 0.2),  # gaps 6 and 2 purchase days
    ("a", "2024-01-05 00:00", None),  # a null amount: the day exists, nothing counted but the margin
    ("a", "2024-01-05 12:00", 0.0),  # zero: neither an order nor a refund
    ("B", "2023-12-31 23:59", 1e6), ("é", "2024-02-01", 3.3), ("aa", "2024-02-01", 7.7),  # byte order of ids
    ("b", "2023-06-01", 123456.789), ("a", "2024-01-06", 19.99), ("a", "2024-01-06", 0.01),
]


def test_daily_rows_are_duckdbs_bits_in_duckdbs_order():
    n = len(ROWS)
    t = _table(ROWS, quantity=pd.array([1, 2, None, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], dtype="Int64"),
               discount=[0.5, None, 0.25, 1.0, 0.0, 1e-7, -0.3, 2.0, 0.0, 1.5, 0.0, 0.0, 5.0, 0.1, 0.2],
               margin=[-0.3e-6, 1.0, None, -2.0, 0.4, -0.1, 0.05, 3.0, -1.0, 2.0, 0.7, 0.7, 10.0, 4.0, None],
               category=["x", None, "y", "x", "z", "x", "x", "y", "y", "x", "x", "y", "z", "x", "x"],
               channel=["web"] * n)
    found = _numpy_rows(t)
    assert found is not None
    daily, mix = found
    _same(arrow_of(daily), _duckdb_daily(t))
    got = arrow_of(daily).to_pandas()
    assert got.customer_id.drop_duplicates().tolist() == ["B", "a", "aa", "b", "é"]  # DuckDB's byte order
    b = got[got.customer_id == "b"]
    # on 2024-01-01: 10.0 + 0 units (0.25) + 3 units (2.5 rounded away from zero), and a refund of 3 units
    assert b.spend.tolist() == [123456789000.0, 10000003.0, 0.0, 100000.0, 200000.0]
    assert b.refund_amount.tolist() == [0.0, 3.0, 4e6, 0.0, 0.0] and b.orders.tolist() == [1, 3, 0, 1, 1]
    assert b.gap.fillna(-1).tolist() == [-1, 214, -1, 6, 2]  # days since the previous purchase day
    want_mix = mix_rows(transactions._mix_rows(t, ["category", "channel"]), ["k_category", "k_channel"])
    # the ids and keys come as codes (no string moved per row): the ids' codes ascend with the rows, every
    # dictionary holds distinct values, the null key is "(none)" and a refund's key null
    for name in ("customer_id", "k_category", "k_channel"):
        col = mix.column(name).combine_chunks()
        assert pa.types.is_dictionary(col.type), name
        assert len(pc.unique(col.dictionary)) == len(col.dictionary), name
    codes = mix.column("customer_id").combine_chunks().indices.to_numpy()
    assert (np.diff(codes) >= 0).all()
    decoded = pa.table({name: pc.cast(c, c.type.value_type) if pa.types.is_dictionary(c.type) else c
                        for name, c in zip(mix.column_names, mix.columns, strict=True)})
    # DuckDB sorts the mix rows by customer only: the same rows within each customer, in any order
    order = ["customer_id", "_day", "s", "k_category"]
    assert_same_bits(decoded.to_pandas().sort_values(order, ignore_index=True),
                     want_mix.select(mix.column_names).to_pandas().sort_values(order, ignore_index=True))
    assert decoded.schema == want_mix.select(mix.column_names).schema
    assert "(none)" in decoded.column("k_category").to_pylist()


def test_daily_rows_without_the_optional_columns_and_with_integer_ids():
    t = _table([(3, "2024-01-02", 5.0), (12, "2024-01-01", 1.0), (3, "2024-01-01", -1.0), (12, "2024-01-01", 2.0)])
    daily, mix = _numpy_rows(t)
    _same(arrow_of(daily), _duckdb_daily(t))
    assert arrow_of(daily).column("customer_id").to_pylist() == [3, 3, 12] and mix is None


@pytest.mark.parametrize("amount, why", [
    (5e9, "a day's units past 2**52"),
    (float("nan"), "an amount that is not a number"),
    (3.1e7 * 2**1.5, "a squared order past int64's units"),
])
def test_what_cannot_be_reproduced_is_left_to_duckdb(amount, why):
    t = _table([("a", "2024-01-01", amount), ("a", "2024-01-01", amount), ("b", "2024-01-02", 1.0)])
    assert _numpy_rows(t) is None, why


def test_a_null_customer_or_time_is_left_to_duckdb():
    assert _numpy_rows(_table([(None, "2024-01-01", 1.0), ("a", "2024-01-01", 2.0)])) is None
    assert _numpy_rows(_table([("a", None, 1.0), ("a", "2024-01-01", 2.0)])) is None


def test_features_built_from_the_numpy_daily_rows_equal_the_cross_join(small_world, monkeypatch):
    """The whole transaction family on the synthetic world (category/channel mixes, quantity, discount,
    margin) with the NumPy daily rows, which ran (spied), against the cross join over DuckDB's."""
    ran = spy_results(monkeypatch, transactions, "daily_and_mix_rows")
    tables = load_dataset(frames=small_world.tables()).tables
    cuts = [dt.date(2024, 1, 1), dt.date(2024, 4, 1), dt.date(2024, 7, 1)]
    out = {}
    for plan in ("cross_join", "incremental"):
        e = build_features(tables, cuts, windows=[30, 90, 365], families=["transactions"], plan=plan)
        out[plan] = e.to_pyarrow().to_pandas().sort_values(["cutoff", "customer_id"], ignore_index=True)
    assert ran == [True]
    assert len(out["incremental"]) > 1000 and out["incremental"]["tx_category_hhi"].notna().any()
    assert_same_bits(out["incremental"], out["cross_join"])


@pytest.mark.parametrize("t", [pa.decimal128(38, 2), pa.decimal128(38, 0), pa.decimal128(20, 4),
                               pa.decimal128(38, 18), pa.decimal128(38, 19)])
def test_whole_decimals_are_arrows_two_casts(t):
    from clvml.features.tx_daily import whole_decimals

    limit = (2**63 - 1) // 10**min(t.scale, 18)
    v = np.array([0, 1, -1, 12345, -987654321, 10**12, limit, -limit], dtype=np.int64)
    if t.precision < 38:
        v = v[np.abs(v) < 10**(t.precision - t.scale)]
    got = whole_decimals(v, t)
    want = pa.array(v, pa.int64()).cast(pa.decimal128(38, 0)).cast(t)
    assert got.type == t and got.equals(want)
    assert got.to_pylist()[:4] == [Decimal(n) for n in (0, 1, -1, 12345)]  # whole numbers, not scaled
    # past int64 once scaled: Arrow's casts, the same values
    big = np.array([2**62, -(2**62)], dtype=np.int64)
    if t.precision == 38 and t.scale <= 18:
        assert whole_decimals(big, t).equals(pa.array(big).cast(pa.decimal128(38, 0)).cast(t))
    assert whole_decimals(np.zeros(0, np.int64), t).equals(pa.array([], t))
