"""Counts, flags and day counts are stored as float32 (exact below 2**24); everything else as before."""

import datetime as dt
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clvml.data.dataset import load_dataset
from clvml.features import build_features, feature_specs, registry, to_arrow, write_features
from clvml.features.builder import RoundedWholeWarning, count_rounded, warn_rounded
from clvml.features.registry import WHOLE_EXACT, Feature, Say
from clvml.features.writer import _rounded_in_file

CUTS = [dt.date(2024, 3, 1), dt.date(2024, 6, 1), dt.date(2024, 7, 1)]


@pytest.fixture(scope="module")
def tables(small_world):
    return load_dataset(frames=small_world.tables()).tables


@pytest.mark.parametrize("plan", ["incremental", "cross_join"])
def test_every_column_has_its_declared_storage_and_whole_columns_are_whole(tables, plan):
    t = to_arrow(build_features(tables, CUTS, plan=plan))
    specs = feature_specs(tables)
    types = {f.name: str(f.type) for f in t.schema}
    want = {s.name: {"float32": "float", "float64": "double", "string": "string"}[s.storage] for s in specs}
    assert {n: types[n] for n in want} == want
    whole = [s.name for s in specs if s.storage == "float32"]
    # the counts, flags and day counts of every family, and nothing else
    assert len(whole) == 90 and {"tx_orders_30d", "tx_recency_days", "tx_tenure_days", "act_closed",
                                 "as_days_since_complaint", "prof_signup_tenure_days"} <= set(whole)
    assert not {"tx_spend_30d", "act_duration_30d", "as_satisfaction_last", "tx_ipt_mean"} & set(whole)
    for name in whole:  # whole numbers by construction: float32 holds them exactly (no value near 2**24)
        v = t.column(name).to_numpy(zero_copy_only=False)
        v = v[~np.isnan(v)]
        assert (v == np.round(v)).all() and (np.abs(v) < WHOLE_EXACT).all(), name
    assert t.column("tx_orders_all").null_count == 0 and t.column("tx_ipt_last").null_count > 0


def test_float32_storage_changes_no_value(tables, monkeypatch):
    """The float32 columns hold exactly the values of a build that stores every number as it comes (float64,
    or int64 for the days since an event)."""
    t = to_arrow(build_features(tables, CUTS))
    monkeypatch.setattr(registry, "storage", lambda f: "string" if f.dtype == "categorical" else "float64")
    wide = to_arrow(build_features(tables, CUTS))
    monkeypatch.undo()
    whole = [s.name for s in feature_specs(tables) if s.storage == "float32"]
    assert len(whole) == 90 and all(pa.types.is_float32(t.schema.field(n).type) for n in whole)
    assert {str(wide.schema.field(n).type) for n in whole} == {"double", "int64"}
    for name in whole:
        got, ref = t.column(name), wide.column(name)
        assert got.is_null().equals(ref.is_null()), name
        assert got.cast(pa.float64()).equals(ref.cast(pa.float64())), name
    assert t.drop_columns(whole).equals(wide.drop_columns(whole))  # every other column unchanged, types too


def test_count_rounded_counts_magnitudes_at_or_past_2_24():
    t = pa.table({
        "n": pa.array(np.array([16_777_215, 16_777_216, 16_777_217, 3e7, 0, -16_777_216], np.float32),
                      mask=np.array([0, 0, 0, 0, 1, 0], bool)),
        "small": pa.array([0, 1, 2, None, 5, -7], pa.float32()),
        "money": pa.array([1e12] * 6, pa.float64()),  # float64: not a whole-number column
        "empty": pa.array([None] * 6, pa.float32()),
    })
    assert count_rounded(t) == {"n": 4}
    # a large value under a null, or outside a slice, is not counted
    hidden = pa.array(np.array([1, 3e7], np.float32), mask=np.array([False, True]))
    sliced = pa.array(np.array([3e7, 1, 2, -3e7], np.float32))[1:3]
    assert count_rounded(pa.table({"a": hidden, "b": sliced, "c": pa.chunked_array([sliced[:1], hidden[1:]])})) == {}
    assert count_rounded(pa.table({"c": pa.chunked_array([sliced, hidden[:1], t.column("n").chunk(0)])})) == {"c": 4}
    assert t.column("n")[2].as_py() == 16_777_216  # what the count is for: 16,777,217 does not survive
    with pytest.warns(RoundedWholeWarning, match=r"n: 4 row\(s\)"):
        assert warn_rounded(t) == {"n": 4}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_rounded(t.select(["small", "money", "empty"])) == {}
        assert warn_rounded(None, {"n": 0}) == {}


def test_a_written_part_is_checked_from_its_statistics(tmp_path):
    ok = pa.table({"n": pa.array(np.arange(1000), pa.float32()), "x": pa.array(np.full(1000, 1e9))})
    pq.write_table(ok, tmp_path / "ok.parquet", row_group_size=100)
    assert _rounded_in_file(pq.ParquetFile(tmp_path / "ok.parquet")) == {}
    big = ok.set_column(0, "n", pa.array(np.r_[np.arange(999), 2.0**25], pa.float32()))
    pq.write_table(big, tmp_path / "big.parquet", row_group_size=100)
    assert _rounded_in_file(pq.ParquetFile(tmp_path / "big.parquet")) == {"n": 1}


def test_written_features_keep_the_float32_columns(tables, tmp_path):
    res = write_features(tables, CUTS[:1], tmp_path / "feats", batches=2)
    schema = pq.read_schema(next((tmp_path / "feats").glob("part-*.parquet")))
    whole = {s.name for s in feature_specs(tables) if s.storage == "float32"}
    assert res.rows > 0 and {f.name for f in schema if pa.types.is_float32(f.type)} == whole


def test_only_a_numeric_feature_can_be_whole():
    with pytest.raises(ValueError, match="only a numeric feature can be whole"):
        Feature("x", "X.", "category", Say("{value}", kind="category"), dtype="categorical", whole=True)


@pytest.mark.parametrize("plan", ["incremental", "cross_join"])
def test_every_path_to_a_feature_table_counts_the_rounded_values(tables, tmp_path, monkeypatch, plan):
    """Whole numbers past the bound are counted whichever way the table is made (the bound lowered to 10
    here: no count in the small world reaches 2**24)."""
    from clvml.features import builder, writer

    monkeypatch.setattr(builder, "WHOLE_EXACT", 10)
    monkeypatch.setattr(writer, "WHOLE_EXACT", 10)
    t = to_arrow(build_features(tables, CUTS, plan=plan))
    ref = builder.count_rounded(t)
    want = {n: int(np.count_nonzero(np.abs(t.column(n).to_numpy(zero_copy_only=False)) >= 10)) for n in ref}
    assert ref == want and ref["tx_orders_all"] > 0 and "tx_spend_all" not in ref  # float64: never counted
    with pytest.warns(RoundedWholeWarning, match=r"tx_orders_all: [\d,]+ row\(s\)"):
        to_arrow(build_features(tables, CUTS, plan=plan))
    with pytest.warns(RoundedWholeWarning) as got:
        write_features(tables, CUTS, tmp_path / "feats", batches=2, plan=plan)
    ours = [w for w in got if issubclass(w.category, RoundedWholeWarning)]
    assert len(ours) == 1  # one warning for the whole output, not one per part
    msg = str(ours[0].message)
    assert f"tx_orders_all: {ref['tx_orders_all']:,} row(s)" in msg  # summed over the written parts


def test_the_incremental_plan_finishes_in_memory_with_float32_columns(tables, monkeypatch):
    """The filled whole-number columns of the other families are placed as float32 (no float64 copy) and
    the table, including the cart conversion computed from two of them, is still finished without an
    engine pass, with the engine's values and types (the cross join's)."""
    from clvml.features import builder
    from clvml.features.incremental import arrow_of

    placed = {}
    real = builder.finish_in_memory

    def spy(src, result):
        placed["src"] = arrow_of(src)
        out = real(src, result)
        placed["finished"] = out is not None
        return out

    monkeypatch.setattr(builder, "finish_in_memory", spy)
    got = build_features(tables, CUTS, plan="incremental")
    assert placed["finished"] and arrow_of(got) is not None
    narrow = [s.name for s in feature_specs(tables)
              if s.storage == "float32" and s.fill is not None and not s.name.startswith("tx_")]
    assert len(narrow) == 65 and "act_carts_90d" in narrow
    assert all(pa.types.is_float32(placed["src"].schema.field(n).type) for n in narrow)
    ref = to_arrow(build_features(tables, CUTS, plan="cross_join"))
    assert to_arrow(got).equals(ref)


def test_a_whole_feature_fills_with_a_whole_number_below_2_24():
    """Filled before or after the cast to float32, such a fill gives the same values."""
    for fill in (0.5, float(2**24), -1e30):
        with pytest.raises(ValueError, match="fill must be a whole number below 2"):
            Feature("n", "a count", "count", Say("{value}"), whole=True, fill=fill)
    assert Feature("n", "a count", "count", Say("{value}"), whole=True, fill=-1.0).fill == -1.0
    assert Feature("n", "a count", "count", Say("{value}"), whole=True, fill=None).fill is None


@pytest.mark.parametrize("plan", ["incremental", "cross_join"])
def test_a_family_gives_its_whole_features_as_float32(tables, plan):
    """The family's own table already stores its counts, flags and days as float32 (the incremental plan
    writes them so from its NumPy evaluation, the cross join casts), the other numbers as float64."""
    from clvml.features import query, transactions
    from clvml.features.builder import as_cutoffs, cutoff_table
    from clvml.features.incremental import arrow_of

    t = tables["transactions"]
    e = query.aggregate_family(transactions.FAM, transactions.daily(t), cutoff_table(as_cutoffs(CUTS)), [30, 90],
                               t.columns, plan=plan, one_row_per_day=True)
    assert (arrow_of(e) is not None) == (plan == "incremental")  # in memory: from the NumPy evaluation
    got = e.to_pyarrow()
    whole = {s.name for s in feature_specs(tables, [30, 90], ["transactions"]) if s.storage == "float32"}
    types = {f.name: str(f.type) for f in got.schema if f.name not in ("customer_id", "cutoff_day")}
    assert whole & set(types) and {n for n, ty in types.items() if ty == "float"} == whole & set(types)
    assert set(types.values()) == {"float", "double"}
