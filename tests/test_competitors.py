"""The fair benchmark's competitors (bench/competitors.py) compute exactly clvml's transaction family:
same columns in the same order, same rows, same nulls, values equal to rtol 1e-9."""

import datetime as dt
import importlib.util

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from bench.competitors import is_whole, pandas_transaction_features, polars_transaction_features
from clvml.data.dataset import load_dataset
from clvml.features import build_features

needs_polars = pytest.mark.skipif(importlib.util.find_spec("polars") is None,
                                  reason="polars is not installed (it is in the dev extra)")
WINDOWS = (30, 90, 180, 365)
CUTS = [dt.date(2024, 3, 1), dt.date(2024, 6, 1)]


def clvml_features(tx: pd.DataFrame, cutoffs, windows=WINDOWS) -> pa.Table:
    ds = load_dataset(frames={"transactions": tx})
    return build_features(ds.tables, cutoffs, windows=windows, families=["transactions"]).to_pyarrow()


def assert_same(got: pa.Table | pd.DataFrame, want: pa.Table) -> None:
    """Same columns in the same order, float32 where clvml has float32 (else float64), same rows, nulls
    where clvml has nulls and values equal to rtol 1e-9."""
    if isinstance(got, pd.DataFrame):
        got = pa.Table.from_pandas(got, preserve_index=False)
    assert got.column_names == want.column_names
    for c in want.column_names[2:]:
        assert got.schema.field(c).type == want.schema.field(c).type, c
        assert want.schema.field(c).type == (pa.float32() if is_whole(c) else pa.float64()), c
    got, want = got.to_pandas(), want.to_pandas()

    def keyed(d):
        d = d.assign(cutoff=pd.to_datetime(d["cutoff"]), customer_id=d["customer_id"].astype(str))
        return d.sort_values(["cutoff", "customer_id"]).reset_index(drop=True)

    got, want = keyed(got), keyed(want)
    assert len(got) == len(want) and len(want) > 0
    pd.testing.assert_frame_equal(got[["customer_id", "cutoff"]], want[["customer_id", "cutoff"]],
                                  check_dtype=False)
    for c in want.columns[2:]:
        w = want[c].to_numpy("float64", na_value=np.nan)
        g = got[c].to_numpy("float64", na_value=np.nan)
        assert (np.isnan(g) == np.isnan(w)).all(), f"{c}: nulls differ"
        np.testing.assert_allclose(g[~np.isnan(g)], w[~np.isnan(w)], rtol=1e-9, atol=0, err_msg=c)


def edge_cases() -> pd.DataFrame:
    """Hand-built transactions around the cut-offs 2024-03-01 (day 19783) and 2024-06-01."""
    rows = [
        ("one", "2024-01-15 12:00", 42.5),  # a single order
        ("refunds", "2023-06-01", 100.0), ("refunds", "2023-06-01 10:00", -40.0),  # same-day refund
        ("refunds", "2024-02-20", -15.25), ("refunds", "2024-02-25", 0.0),  # zero: neither
        ("only_refund", "2024-01-10", -9.99),  # no purchase at all: recency, first amount null
        ("same_day", "2023-12-01 08:00", 10.0), ("same_day", "2023-12-01 20:00", 30.0),
        ("same_day", "2024-01-05", 20.0), ("same_day", "2024-01-05 23:59:59", 5.0),
        # exactly w days before 2024-03-01 at midnight (in the window) and the second before (out)
        ("edges", "2024-01-31 00:00", 1.0), ("edges", "2024-01-30 23:59:59", 2.0),
        ("edges", "2023-12-02 00:00", 3.0), ("edges", "2023-12-01 23:59:59", 4.0),  # 90 days
        ("edges", "2023-09-03 00:00", 5.0), ("edges", "2023-03-02 00:00", 6.0),  # 180, 365 days
        ("edges", "2023-03-01 23:59:59", 7.0),
        ("edges", "2024-03-01 00:00", 1000.0), ("edges", "2024-06-01 00:00", 2000.0),  # at cut-offs
        ("near_equal", "2024-05-07", 55.14), ("near_equal", "2024-05-16", 55.16),  # std cancels
        ("equal", "2024-04-01", 19.99), ("equal", "2024-04-02", 19.99), ("equal", "2024-04-03", 19.99),
        ("cents", "2024-02-01", 0.1), ("cents", "2024-02-02", 0.2), ("cents", "2024-02-03", 0.3),
        ("late", "2024-04-15", 80.0), ("late", "2024-05-31 23:59:59", -80.0),  # only for 2024-06-01
        ("at_cutoff_only", "2024-03-01 00:00", 12.0),  # not a row for 2024-03-01
    ]
    t = pd.DataFrame(rows, columns=["customer_id", "ts", "amount"]).assign(
        ts=lambda d: pd.to_datetime(d.ts, format="mixed"))
    n = len(t)
    rng = np.random.default_rng(7)
    return t.assign(
        order_id=[f"o{i}" for i in range(n)],
        quantity=rng.integers(1, 5, n),
        category=np.array(["books", "toys", "home"])[rng.integers(0, 3, n)],
        channel=np.array(["web", "app"])[rng.integers(0, 2, n)],
        discount=np.where(t.amount > 0, np.round(rng.random(n) * 3, 2), 0.0),
        margin=np.round(t.amount * 0.3, 2),
    )


@pytest.fixture(scope="module")
def edge():
    """(transactions, clvml's features) of the hand-built edge cases, computed once."""
    t = edge_cases()
    return t, clvml_features(t, CUTS)


@pytest.fixture(scope="module")
def edge_required():
    t = edge_cases()[["customer_id", "ts", "amount"]]
    return t, clvml_features(t, CUTS, (7, 90))


@pytest.fixture(scope="module")
def world(small_world):
    """(transactions, cut-offs, clvml's features) of the small synthetic world: 10 cut-offs, the first
    before most customers' first order."""
    t = small_world.tables()["transactions"]
    cuts = [dt.date(2023, 1, 15), *(dt.date(2024, m, 1) for m in range(1, 10))]
    return t, cuts, clvml_features(t, cuts)


def test_pandas_equals_clvml_on_edge_cases(edge):
    t, want = edge
    assert_same(pandas_transaction_features(t, CUTS, WINDOWS), want)


def test_pandas_equals_clvml_on_required_columns_only(edge_required):
    t, want = edge_required
    assert_same(pandas_transaction_features(t, CUTS, (7, 90)), want)


def test_pandas_equals_clvml_on_a_small_world(world):
    t, cuts, want = world
    assert_same(pandas_transaction_features(t, cuts, WINDOWS), want)


@needs_polars
@pytest.mark.parametrize("engine", ["streaming", "in-memory"])
def test_polars_equals_clvml_on_edge_cases(edge, engine):
    import polars as pl

    t, want = edge
    assert_same(polars_transaction_features(pl.from_pandas(t).lazy(), CUTS, WINDOWS, engine=engine).to_arrow(),
                want)


@needs_polars
def test_polars_equals_clvml_on_required_columns_only(edge_required):
    import polars as pl

    t, want = edge_required
    assert_same(polars_transaction_features(pl.from_pandas(t), CUTS, (7, 90)).to_arrow(), want)


@needs_polars
def test_polars_equals_clvml_on_a_small_world(world):
    import polars as pl

    t, cuts, want = world
    assert_same(polars_transaction_features(pl.from_pandas(t).lazy(), cuts, WINDOWS).to_arrow(), want)
