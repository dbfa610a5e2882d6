"""Build the feature table: one row per (customer, cut-off) for every customer with a transaction
strictly before the cut-off, with every family's features joined on.

Everything is one lazy Ibis expression over the backend that holds the tables (DuckDB by default): no
pandas round-trips until the caller asks for the result.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from clvml.allocator import in_build_allocators
from clvml.errors import FeatureDefinitionError
from clvml.features import activity, after_sales, profile, social, transactions
from clvml.features.assemble import finish_in_memory, side_by_side, strictly_ascending, take_columns
from clvml.features.custom import build_custom, registered
from clvml.features.incremental import arrow_of
from clvml.features.query import day_of, resolve_plan, safe_div
from clvml.features.registry import FAMILIES, REGISTRY, WHOLE_EXACT, Feature, FeatureSpec, Say

DEFAULT_WINDOWS = (30, 90, 180, 365)
_BUILDERS = {"activity": activity.build, "social": social.build, "after_sales": after_sales.build}

activity.FAM.register(Feature(
    "cart_conversion_90d", "Orders per add-to-cart event in the last 90 days.", "ratio",
    Say("{value} {order|orders} per add-to-cart in the last 90 days",
        zero="no orders from add-to-carts in the last 90 days", missing="no add-to-carts in the last 90 days",
        kind="number"), fill=None))  # computed below: needs transactions too


def as_cutoffs(cutoffs: Iterable[dt.date | str | pd.Timestamp]) -> list[dt.date]:
    """Normalise cut-offs to sorted unique dates; a cut-off is midnight of its date."""
    out = set()
    for c in cutoffs:
        ts = pd.Timestamp(c)
        if ts != ts.normalize():
            raise ValueError(f"cut-off {c!r} is not a date: cut-offs are midnights (no time part)")
        out.add(ts.date())
    if not out:
        raise ValueError("no cut-offs given")
    return sorted(out)


def cutoff_table(cutoffs: Sequence[dt.date]) -> ibis.Table:
    days = [(c - dt.date(1970, 1, 1)).days for c in cutoffs]
    return ibis.memtable(pd.DataFrame({"cutoff_day": pd.array(days, dtype="int64")}))


def feature_specs(tables: Mapping[str, ibis.Table], windows: Sequence[int] = DEFAULT_WINDOWS,
                  families: Sequence[str] = FAMILIES, custom: Sequence[str] | None = None) -> list[FeatureSpec]:
    """Catalog entries of exactly the columns :func:`build_features` returns for these tables (the
    custom features last: every registered one whose table is given, or those named in ``custom``)."""
    specs: list[FeatureSpec] = []
    for name in families:
        fam = REGISTRY[name]
        if fam.source not in tables:
            continue
        spec = fam.specs(windows, tables[fam.source].columns)
        if name == "activity" and 90 not in windows:
            spec = [s for s in spec if s.name != "act_cart_conversion_90d"]
        specs += spec
    return specs + _custom_specs(registered(custom), windows, tables)


def _custom_specs(feats: Sequence, windows: Sequence[int],
                  tables: Mapping[str, ibis.Table] | None = None) -> list[FeatureSpec]:
    """The specs of the custom features ``feats`` (those whose table is given, when ``tables`` is)."""
    out = [s for f in feats if tables is None or f.table in tables for s in f.specs(sorted(set(windows)))]
    seen: set[str] = set()
    for s in out:
        if s.name in seen:
            raise FeatureDefinitionError(f"two custom features produce the column {s.name!r}; rename one")
        seen.add(s.name)
    return out


@in_build_allocators
def build_features(
    tables: Mapping[str, ibis.Table],
    cutoffs: Iterable[dt.date | str],
    *,
    windows: Sequence[int] = DEFAULT_WINDOWS,
    families: Sequence[str] = FAMILIES,
    custom: Sequence[str] | None = None,
    plan: str | None = None,
) -> ibis.Table:
    """Point-in-time features for every (customer, cut-off).

    Parameters
    ----------
    tables
        Canonical, validated tables by name (``Dataset.tables``); only ``transactions`` is required.
    cutoffs
        Cut-off dates. Only events with ``ts`` strictly before a cut-off contribute to its row.
    windows
        Look-back windows in days; every windowed feature also gets an all-history version.
    families
        Which feature families to build (those whose source table is missing are skipped).
    custom
        Names of the registered custom features to build (:mod:`clvml.features.custom`); None: every
        registered one whose table is given.
    plan
        How the transaction aggregates are computed (``auto``, ``cross_join``, ``incremental``; None:
        :data:`clvml.features.query.PLAN`; see :func:`~clvml.features.query.resolve_plan`): the same
        values either way. The incremental plan (DuckDB only; ``auto`` from three cut-offs on) runs the
        transactions' daily rows and NumPy at once, so the returned expression is then partly computed
        already: build it again if the input tables change.

    Returns
    -------
    ibis.Table
        ``customer_id``, ``cutoff`` (date) and one column per :func:`feature_specs` entry.
    """
    windows = sorted(set(int(w) for w in windows))
    cutoffs = as_cutoffs(cutoffs)
    cuts = cutoff_table(cutoffs)
    tx = tables["transactions"]
    plan = resolve_plan(plan, tx._find_backend().name, len(cutoffs))
    keys = ["customer_id", "cutoff_day"]
    # the population: customers with a transaction strictly before the cut-off; every family joins
    # onto this spine, so no family's query is evaluated twice
    first = tx.group_by("customer_id").aggregate(_first=day_of(tx.ts).min())
    spine = first.cross_join(cuts).filter(first._first < cuts.cutoff_day).select(*keys)
    parts = [transactions.build(tx, cuts, windows, plan)]
    specs = feature_specs(tables, windows, families, custom)
    for name in ("activity", "social", "after_sales"):
        if name in families and REGISTRY[name].source in tables:
            parts.append(_BUILDERS[name](tables[REGISTRY[name].source], cuts, windows, plan))
    parts += [p for f in registered(custom) if f.table in tables
              for p in build_custom(f, tables[f.table], cuts, windows)]
    # the profile is a one-to-one extension of the spine: joined first, it keeps every later join's
    # build side a single family's part (joined last, DuckDB built its hash table from the wide
    # accumulated table: 6 of 35 s at 1M transactions)
    base = spine
    if "profile" in families and "customers" in tables:
        # the incremental plan has the transaction part's rows in memory already: they are the spine's
        # rows, taken as they are instead of grouping the transactions again
        rows = parts[0] if plan == "incremental" and arrow_of(parts[0]) is not None else spine
        base = profile.build(tables["customers"], rows)
    if plan == "incremental":
        # the transaction part has exactly the spine's rows (in either plan): with the incremental plan it
        # is the base itself, so its ~60 in-memory columns are not copied into a join's hash table (the
        # profile is joined onto it instead). The cross join keeps the spine, unchanged on every engine.
        base, parts[0] = parts[0], base if base is not spine else None
        parts = [p for p in parts if p is not None]
    # the incremental plan computes the parts now anyway: placed side by side by position, not hash-joined
    # (the specs' numeric fills applied as the rows are placed: COALESCE(column, fill) below then has no null
    # left to fill; the cart conversion's division is null for no carts whether they are null or 0)
    fills = {s.name: s.fill for s in specs if isinstance(s.fill, (int, float)) and not isinstance(s.fill, bool)}
    narrow = {s.name for s in specs if s.storage == "float32"}
    joined = side_by_side(base, parts, fills, narrow) if plan == "incremental" and parts else None
    for part in parts if joined is None else ():
        base = base.left_join(part, keys).drop("customer_id_right", "cutoff_day_right")
    base = base if joined is None else joined
    src = base  # the in-memory table the incremental plan ends with (when it does)
    names = {s.name for s in specs}
    if "act_cart_conversion_90d" in names:
        base = base.mutate(act_cart_conversion_90d=safe_div(base.tx_orders_90d,
                                                            base.act_carts_90d))
    out = {}
    for s in specs:
        col = base[s.name]
        if s.fill is not None and isinstance(s.fill, float) and col.type().is_integer():
            # the float fill makes the column float64 anyway; DuckDB's COALESCE(BIGINT, 0.0) is a DECIMAL
            # (slow, and cast back to float64 by Ibis): the same values, converted first
            col = col.cast("float64")
        if col.type().is_float32():  # placed as float32 already (side_by_side's narrow), filled too
            out[s.name] = col.fill_null(ibis.literal(s.fill, "float32")) if s.fill is not None else col
            continue
        col = col.fill_null(s.fill) if s.fill is not None else col
        # a count, flag or number of days is stored as float32: exact up to 2**24 (count_rounded)
        out[s.name] = col.cast("float32") if s.storage == "float32" else col
    cutoff = (ibis.date(1970, 1, 1) + base.cutoff_day.as_interval("D")).cast("date")
    result = base.select("customer_id", cutoff=cutoff, **out)
    if plan == "incremental":  # the parts are in memory: finished there too, not by one more engine pass
        finished = finish_in_memory(src, result)
        if finished is not None:
            warn_rounded(arrow_of(finished))
            return finished
    return result


class RoundedWholeWarning(UserWarning):
    """Whole-number features at or past 2**24 in magnitude, stored as float32 to within 1 part in 2**24."""


def count_rounded(table: pa.Table) -> dict[str, int]:
    """Rows of every float32 column of ``table`` (the whole-number features) whose magnitude is at or past
    2**24 (:data:`~clvml.features.registry.WHOLE_EXACT`): float32 holds every whole number below it exactly,
    one at or past it only to within 1 part in 2**24 (16,777,217 is stored as 16,777,216).

    A chunk is first bounded by NumPy's min and max of its values buffer as it is (nulls' slots included:
    ~0.1 ms per million values, a tenth of Arrow's ``min_max``); only a chunk reaching the bound is counted
    exactly, nulls excluded."""
    out = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        if not pa.types.is_float32(col.type):
            continue
        n = 0
        for chunk in col.chunks:
            if len(chunk) == 0 or chunk.null_count == len(chunk):
                continue
            v = np.frombuffer(chunk.buffers()[1], dtype=np.float32, count=len(chunk), offset=4 * chunk.offset)
            if v.max() < WHOLE_EXACT and v.min() > -WHOLE_EXACT:  # (a NaN fails both: counted exactly)
                continue
            n += pc.sum(pc.greater_equal(pc.abs(chunk), WHOLE_EXACT)).as_py() or 0
        if n:
            out[name] = n
    return out


def warn_rounded(table: pa.Table | None, counted: Mapping[str, int] | None = None) -> dict[str, int]:
    """:func:`count_rounded` of ``table`` (or the counts given), with a :class:`RoundedWholeWarning` naming
    the columns and rows when there is any (a count that large is almost always an input error: bot
    traffic, a repeated export)."""
    got = dict(counted or {}) if table is None else count_rounded(table)
    got = {name: n for name, n in got.items() if n}
    if got:
        detail = ", ".join(f"{name}: {n:,} row(s)" for name, n in got.items())
        warnings.warn(f"whole-number features at or past 16,777,216 (2**24) are stored as float32 to within 1 part "
                      f"in 2**24, not exactly ({detail}); check the source rows behind counts that large",
                      RoundedWholeWarning, stacklevel=3)
    return got


@in_build_allocators
def to_arrow(features: ibis.Table, *, ordered: bool = True) -> pa.Table:
    """The feature table of :func:`build_features` as an Arrow table, sorted by cut-off then customer
    (``ordered=False``: in any order), exactly as ``features.order_by(["cutoff", "customer_id"]).to_pyarrow()``
    gives it.

    When the incremental plan finished the table in memory (:func:`~clvml.features.assemble.finish_in_memory`)
    this is that table itself, sorted by Arrow, without a scan and export by the engine (about 2–4 CPU-s
    per 2M rows × 65 columns on DuckDB); otherwise the engine runs the expression.
    """
    table = arrow_of(features)
    if table is None:  # computed by the engine (the in-memory plan's table was counted as it was finished)
        table = (features.order_by(["cutoff", "customer_id"]) if ordered else features).to_pyarrow()
        warn_rounded(table)
        return table
    if ordered:  # the same order as DuckDB's ORDER BY: dates, then ids byte by byte (keys unique, never null)
        order = _cutoff_customer_order(table)
        if order is not None:
            table = take_columns(table, order)
    return table


def _cutoff_customer_order(table: pa.Table) -> pa.Array | None:
    """The rows of ``table`` sorted by cut-off, then customer id; None when they are in that order already.

    The incremental plan's rows come cut-off by cut-off, customers in the order of their ids: in order as
    they are (a pass over ~150 columns saved: ~20 CPU-s at 8M rows). Other orders of rows whose ids ascend
    within every cut-off are sorted by cut-off alone, stably. Checked (the ids must ascend within every
    cut-off), else Arrow sorts by both keys."""
    cut = table.column("cutoff").combine_chunks()
    if cut.null_count == 0 and table.num_rows > 1:
        days = cut.cast(pa.int32()).to_numpy(zero_copy_only=False)
        ids = table.column("customer_id")
        if ids.null_count == 0 and strictly_ascending(days, ids):
            return None
        order = np.argsort(days, kind="stable")
        ids = table.column("customer_id").take(pa.array(order))
        same = days[order][1:] == days[order][:-1]
        ascending = pc.greater(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False)
        if ids.null_count == 0 and (ascending | ~same).all():
            return pa.array(order)
    return pc.sort_indices(table, sort_keys=[("cutoff", "ascending"), ("customer_id", "ascending")])


def to_pandas(features: ibis.Table) -> pd.DataFrame:
    """Execute and return a deterministic (sorted) DataFrame with categoricals as ``category``."""
    if features._find_backend().name != "duckdb":
        df = features.order_by(["cutoff", "customer_id"]).to_pandas()
        warn_rounded(None, {c: int((df[c].abs() >= WHOLE_EXACT).sum()) for c in df.columns
                            if df[c].dtype == np.float32})
        df["cutoff"] = pd.to_datetime(df["cutoff"])
        return df
    return arrow_to_pandas(to_arrow(features), features.schema())


#: columns consolidated at a time by :func:`arrow_to_pandas` (its transient extra memory is one group)
GROUP = 32


def arrow_to_pandas(table: pa.Table, schema: ibis.Schema) -> pd.DataFrame:
    """A DuckDB result (``cutoff`` a date) as Ibis' DuckDB ``to_pandas`` converts it, value for value and
    dtype for dtype, without its detour through Python objects for every column holding a null.

    Numeric columns with nulls go straight from Arrow to float64 with NaN (what the detour ends in
    too); only dictionary columns and non-numeric columns with nulls take the Python-object route.
    The Arrow buffers of each column are released as it is converted (when the caller holds no other
    reference to ``table``). Every :data:`GROUP` converted columns are consolidated into one block per
    dtype (a copy of that group only), so the frame has a few blocks, not one per column: a frame of
    hundreds of blocks makes pandas warn ("highly fragmented") on every later ``assign`` or ``insert``.
    """
    from ibis.backends.duckdb.converter import DuckDBPandasData

    def column(col: pa.ChunkedArray) -> Any:
        numeric = pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
        if pa.types.is_dictionary(col.type) or (col.null_count and not numeric):
            return col.to_pylist()
        return col.to_pandas()

    if schema.names != tuple(table.column_names):
        raise ValueError("schema names don't match input data columns")
    groups: list[pd.DataFrame] = []
    cols: dict[str, pd.Series] = {}
    for name, dtype in schema.items():  # column by column, dropping each Arrow column once converted
        values = pd.DataFrame({name: column(table.column(name))}, copy=False)[name]
        table = table.drop_columns([name])
        cols[name] = DuckDBPandasData.convert_column(values, dtype)  # Ibis' convert_table, minus its copy
        if len(cols) == GROUP:
            groups.append(pd.DataFrame(cols))  # consolidated: one block per dtype of the group
            cols = {}
    if cols or not groups:
        groups.append(pd.DataFrame(cols))
    df = pd.concat(groups, axis=1) if len(groups) > 1 else groups[0]  # the groups' blocks, not copied
    df["cutoff"] = pd.to_datetime(df["cutoff"])
    return df


def catalog(windows: Sequence[int] = (30, 90, 180, 365),
            families: Sequence[str] = FAMILIES, custom: bool = True) -> list[FeatureSpec]:
    """Every feature the registry can produce for these windows (all optional columns present), then
    the custom features registered in this process (unless ``custom`` is False)."""
    return [s for f in families for s in REGISTRY[f].specs(windows)] + (
        _custom_specs(registered(), windows) if custom else [])
