"""The incremental plan: a family's window aggregates for every (customer, cut-off) from running totals in
NumPy, instead of joining every customer-day to every later cut-off.

DuckDB computes the family's one-row-per-customer-day rows as usual and hands them over as Arrow, sorted
by (customer, day), unless they are an in-memory table already sorted so (:func:`in_memory` with
``sorted_by``: the transaction, activity and social families' daily rows computed in NumPy by
:mod:`clvml.features.tx_daily` and :mod:`clvml.features.daily_rows`), which is read as it is. Every
aggregate that declares its incremental form (:class:`~clvml.features.registry.Inc`) is then computed from
the sorted rows:

* the rows of a window ``[cutoff - w, cutoff)`` of one customer are contiguous, so their positions
  ``[lo, hi)`` come from one merge of the sorted ``customer index * span + day`` keys of the rows and of
  the cut-offs (what ``np.searchsorted`` gives, in one pass, compiled by Numba);
* a sum is ``cum[hi] - cum[lo]`` of one global cumulative sum, taken in int64: every value summed is a
  whole number (counts, flags, days, whole units of :func:`~clvml.features.query.exact_sum`), and int64
  differences are exact even where the running total wraps, so the result is the exact sum — the same
  bits DuckDB's float64 ``SUM`` of those whole numbers gives while it is exact (below 2**53, checked per
  customer here; past that the family falls back to the cross join);
* a maximum/minimum is ``np.fmax.reduceat``/``np.fmin.reduceat`` over the ranges, a first/last value the
  row found by carrying the positions of non-null rows forward/backward.

The result has one row per (customer, cut-off) with a row before the cut-off (exactly the cross join's
rows). The ``then`` conversions and the family's derived columns are the same Ibis expressions as in
the cross-join plan, evaluated on the NumPy aggregates with DuckDB's semantics
(:mod:`clvml.features.evaluate`) in cache-sized blocks of cells on :data:`THREADS` threads; a column the
evaluator refuses is computed by DuckDB over the same aggregates. The transaction family's category and
channel mixes (:func:`mix_totals`) are computed in NumPy too, in one pass over the purchases in the order
they start to count. The features are bit-identical (``tests/test_incremental.py``) and go back to the
engine as an in-memory Arrow table. DuckDB only: other engines keep the cross join.
"""

from __future__ import annotations

import contextlib
import decimal
import functools
import os
import uuid
import weakref
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from ibis.expr import datatypes as dt
from ibis.expr import operations as ops

from clvml.features.evaluate import (
    ArrowColumns,
    Col,
    Evaluator,
    Unsupported,
    case_labels,
    decimal_to_float,
    labelled,
    round_half_away,
    square,
)
from clvml.features.registry import Inc

#: given the aggregates table, the output columns as expressions over it (see :func:`aggregate_incremental`)
Outputs = Callable[[ibis.Table], dict[str, ibis.Value]]

#: largest magnitude summed exactly: float64 sums of whole numbers are exact while every partial sum stays
#: below 2**53 (the cross join's guarantee); a customer whose values add up to more falls back
EXACT_LIMIT = 2.0**53
#: threads for the NumPy passes (NumPy releases the GIL in them): the machine's cores, at most 4
THREADS = max(1, min(4, os.cpu_count() or 1))
#: (customer, cut-off) cells computed at a time by the NumPy evaluation
CHUNK = 1 << 15


@dataclass(frozen=True)
class Item:
    """One aggregate column to compute: its name, incremental form and window (None: all history)."""

    name: str
    inc: Inc
    window: int | None


class NotExact(Exception):
    """The values cannot be summed exactly in int64 (too large, or not whole numbers): use the cross join."""


def aggregate_incremental(items: Sequence[Item], rows: ibis.Table, cutoffs: ibis.Table,
                          day: str = "day", outputs: Outputs | None = None,
                          narrow: Collection[str] = ()) -> ibis.Table | None:
    """The aggregates ``items`` per (customer, cut-off), as an in-memory table on ``rows``' engine.

    ``rows`` must hold at most one row per customer and day (a family's daily rows). Returns None when a
    sum cannot be taken exactly (values past 2**53 in a customer's history, or not whole numbers): the
    caller then uses the cross join, which is the definition of these values.

    ``outputs``: given the aggregates (a table of ``customer_id``, ``cutoff_day`` and every item after its
    ``then``), the output columns as Ibis expressions over it; the result is then ``customer_id``,
    ``cutoff_day`` and those columns, each evaluated in NumPy (:mod:`clvml.features.evaluate`: the same
    bits as DuckDB) where the evaluator can, by DuckDB otherwise. None: the aggregates themselves.
    ``narrow``: output columns stored as float32 (whole-number features): a float64 or int64 one is
    written as float32 directly (C's conversion, as DuckDB's ``CAST(x AS FLOAT)``), without a float64 copy.
    """
    for it in items:
        if it.inc.kind not in ("sum", "max", "min", "first", "last"):
            raise ValueError(f"{it.name}: unknown incremental kind {it.inc.kind!r}")
        if it.inc.band is not None and (it.inc.kind != "sum" or it.window is not None):
            raise ValueError(f"{it.name}: a band applies to sums of a feature without window only")
        if it.inc.kind in ("first", "last") and it.window is not None:
            raise ValueError(f"{it.name}: first/last are for all history only")
    values: dict[object, tuple[str, ibis.Value]] = {}
    for it in items:
        v = it.inc.value(rows)
        if v.op() not in values:
            values[v.op()] = (f"_v{len(values)}", v)
    col_of = {it.name: values[it.inc.value(rows).op()][0] for it in items}
    types = {name: v.type() for name, v in values.values()}
    data = _sorted_rows(rows, day, {name: v for name, v in values.values()})
    cuts = cut_days(cutoffs)
    try:
        cells = _Cells(items, col_of, types, data, cuts)
    except NotExact:
        return None
    del data
    backend = rows._find_backend()
    ids, cut_day = cells.ids, cells.out_cutoff_day
    # a decimal sum is int64 units here: DuckDB turns them back into the decimal; NumPy evaluates the
    # outputs over a stand-in table declaring the decimal type, given the units
    dec = {it.name: types[col_of[it.name]] for it in items
           if it.inc.kind == "sum" and types[col_of[it.name]].is_decimal()}

    def finish(t: ibis.Table, extra: Sequence[str] = (), units: bool = True) -> ibis.Table:
        conv = {}
        for it in items:
            v = t[it.name]
            if it.name in dec and units:  # summed in int64 units: back to the decimal, exactly
                v = _decimal_units(v, dec[it.name].scale)
            conv[it.name] = v if it.inc.then is None else it.inc.then(v, t.cutoff_day)
        return t.select("customer_id", "cutoff_day", *extra, **conv)

    def raw() -> dict[str, pa.Array]:
        cols = cells.items(slice(None))
        return {"customer_id": ids, "cutoff_day": pa.array(cut_day, pa.int64()),
                **{it.name: _arrow(cells.ordered(v), None if null is None else cells.ordered(null))
                   for it in items for v, null in [cols[it.name]]}}

    if outputs is None:
        return finish(in_memory(backend, pa.table(raw())))
    empty = cells.items(slice(0, 0))
    schema = ibis.schema({"customer_id": ibis.dtype(ids.type), "cutoff_day": "int64",
                          **{it.name: dec.get(it.name) or ibis.dtype(_arrow(*empty[it.name]).type) for it in items}})
    holder = ibis.table(schema, name=f"_clvml_aggregates_{uuid.uuid4().hex}")
    exprs = outputs(finish(holder, units=False))
    done = _evaluate_in_chunks(cells, holder, exprs, narrow)
    if len(done) == len(exprs):
        return in_memory(backend, pa.table({"customer_id": ids, "cutoff_day": pa.array(cut_day, pa.int64()),
                                            **done}))
    # some columns need DuckDB: the aggregates and the columns done in NumPy (renamed) in one table
    tmp = {name: f"_clvml_done{i}" for i, name in enumerate(done)}
    t = in_memory(backend, pa.table({**raw(), **{tmp[name]: a for name, a in done.items()}}))
    f = finish(t, list(tmp.values()))
    exprs = outputs(f)
    return f.select("customer_id", "cutoff_day",
                    **{name: f[tmp[name]] if name in done else stored(e, name in narrow) for name, e in exprs.items()})


def stored(value: ibis.Value, narrow: bool) -> ibis.Value:
    """``value`` as its feature is stored: cast to float32 (``CAST(x AS FLOAT)``, exact below 2**24) when
    ``narrow`` (a whole-number feature: a count, flag or number of days) and it is a float64 or int64, as
    :func:`_evaluate_in_chunks` writes such columns; anything else as it is."""
    return value.cast("float32") if _as_float32(value.type(), narrow) else value


def _as_float32(t: dt.DataType, narrow: bool) -> bool:
    """Whether an output column of type ``t`` is stored as float32: a narrow (whole-number) float64 or int64."""
    return narrow and (t.is_float64() or t.is_int64())


def cut_days(cutoffs: ibis.Table) -> np.ndarray:
    """The distinct cut-off days of the table ``cutoffs`` (``cutoff_day``), ascending, as int64."""
    return np.unique(cutoffs.cutoff_day.to_pyarrow().to_numpy(zero_copy_only=False).astype(np.int64))


def _sorted_rows(rows: ibis.Table, day: str, values: dict[str, ibis.Value]) -> pa.Table:
    """``customer_id``, ``_day`` and ``values`` of every row of ``rows``, sorted by customer and day: taken from
    the Arrow table itself (the values by the NumPy evaluator) when ``rows`` is an in-memory table sorted so,
    else executed by the engine."""
    table = arrow_of(rows)
    if table is not None and _SORTED_BY.get(rows.op()) == ("customer_id", day):
        ev = Evaluator({rows.op(): ArrowColumns(table)}, table.num_rows)
        out = {"customer_id": table.column("customer_id"), "_day": table.column(day)}
        try:
            for name, v in values.items():
                op = v.op()
                out[name] = (table.column(op.name) if isinstance(op, ops.Field) and op.rel == rows.op()
                             else ev.arrow(v).cast(v.type().to_pyarrow()))
            return pa.table(out)
        except Unsupported:
            pass
    sel = rows.select("customer_id", _day=rows[day], **values)
    return sel.order_by(["customer_id", "_day"]).to_pyarrow()


def _evaluate_in_chunks(cells: _Cells, holder: ibis.Table, exprs: dict[str, ibis.Value],
                        narrow: Collection[str] = ()) -> dict[str, pa.Array]:
    """The output columns ``exprs`` (over ``holder``: the items after their ``then``) that the NumPy evaluator
    computes for every cell, as Arrow arrays; a column it refuses for any cell is left out.

    The cells go in chunks of :data:`CHUNK` (the items and the evaluation's temporaries of a chunk stay in
    the CPU cache instead of making one pass over memory per operation), the chunks on :data:`THREADS`
    threads, each writing its own cells' rows of the outputs (in the output order, ``cells.at``)."""
    n = cells.n
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    refused: set[str] = set()
    labels: dict[str, tuple[str, ...]] = {}  # string columns: a case of literals, kept as codes (-1: null)
    for name, e in exprs.items():
        t = e.type()
        if t.is_string():
            try:
                labels[name] = case_labels(e.op())
            except Unsupported:
                refused.add(name)
                continue
            out[name] = (np.empty(n, dtype=np.int8), np.zeros(0, dtype=bool))
            continue
        if not (t.is_float64() or t.is_int64() or t.is_boolean()):
            refused.add(name)
            continue
        # a whole-number feature's float64 or int64 values are written as float32 (C's conversion)
        dtype = (np.float32 if _as_float32(t, name in narrow) else
                 np.float64 if t.is_float64() else np.int64 if t.is_int64() else bool)
        out[name] = (np.empty(n, dtype=dtype), np.zeros(n, dtype=bool))

    def run(lo: int) -> None:
        sl = slice(lo, min(lo + CHUNK, n))
        k = sl.stop - sl.start
        ev = Evaluator({holder.op(): {"cutoff_day": (cells.cutoff_day[sl], None), **cells.items(sl)}}, k)
        dest = sl if cells.at is None else cells.at[sl]
        for name, e in exprs.items():
            if name in refused:
                continue
            try:
                if name in labels:
                    out[name][0][dest] = ev.codes(e)
                    continue
                v, null = ev.values(e)
            except Unsupported:  # left to DuckDB
                refused.add(name)
                continue
            out[name][0][dest] = v
            if null is not None:
                out[name][1][dest] = null

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(run, range(0, n, CHUNK)))
    return {name: labelled(v, labels[name]) if name in labels else _arrow(v, null)
            for name, (v, null) in out.items() if name not in refused}


#: the Arrow table behind every table registered by :func:`in_memory`, by its Ibis operation (released with it)
_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: the columns an in-memory table's rows are sorted by, when :func:`in_memory` was told
_SORTED_BY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def in_memory(backend: ibis.BaseBackend, table: pa.Table, sorted_by: tuple[str, ...] | None = None) -> ibis.Table:
    """``table`` registered (zero-copy) in the DuckDB ``backend`` for as long as an expression uses it.

    ``ibis.memtable`` keeps its tables registered until the process exits, so every batch of features
    built would stay in memory; here the registration is dropped once no expression refers to the table.
    :func:`arrow_of` gives ``table`` back from the returned expression without running it. ``sorted_by``:
    the columns ``table``'s rows are sorted by, in DuckDB's order (:func:`aggregate_incremental` then
    reads them as they are).
    """
    name = f"_clvml_incremental_{uuid.uuid4().hex}"
    backend.con.register(name, table)
    t = backend.table(name)
    weakref.finalize(t.op(), _unregister, backend.con, name)
    _TABLES[t.op()] = table
    if sorted_by is not None:
        _SORTED_BY[t.op()] = tuple(sorted_by)
    return t


def arrow_of(expr: ibis.Table) -> pa.Table | None:
    """The Arrow table behind ``expr`` when ``expr`` is exactly a table registered by :func:`in_memory`
    (not an expression over it), else None: its rows without a scan and export by the engine."""
    return _TABLES.get(expr.op())


def _unregister(con: object, name: str) -> None:
    with contextlib.suppress(Exception):  # the connection may be closed already
        con.unregister(name)


def _decimal_units(units: ibis.Value, scale: int) -> ibis.Value:
    """``units`` (an int64 count of 10**-scale) as the DECIMAL(38, scale) of that value, exactly: a decimal
    product adds the scales and multiplies the integers (a division would go through float64)."""
    dec = units.cast(dt.Decimal(38, 0))
    if scale:
        step = ibis.literal(decimal.Decimal(1).scaleb(-scale), type=dt.Decimal(scale + 1, scale))
        dec = _multiply(scale)(dec, step)
    return dec.cast(dt.Decimal(38, scale))


def _multiply(scale: int):  # noqa: ANN202 - an Ibis builtin UDF
    """DuckDB's decimal product DECIMAL(38, 0) x DECIMAL(scale + 1, scale) -> DECIMAL(38, scale) (Ibis
    cannot type a product of two decimals itself)."""
    sig = ((dt.Decimal(38, 0), dt.Decimal(scale + 1, scale)), dt.Decimal(38, scale))

    @ibis.udf.scalar.builtin(name="multiply", signature=sig)
    def multiply(a, b):  # noqa: ANN001, ANN202
        ...

    return multiply


def _numpy(col: pa.ChunkedArray | pa.Array, kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(values, non-null mask or None) of an Arrow column: int64 for integers and booleans, the integer units
    (value x 10**scale) for decimals (sums only; :class:`NotExact` past int64), float64 otherwise; nulls
    are 0 in sums."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    valid = None if arr.null_count == 0 else arr.is_valid().to_numpy(zero_copy_only=False)
    t = arr.type
    if pa.types.is_boolean(t):
        v = arr.fill_null(False).to_numpy(zero_copy_only=False).astype(np.int64)
    elif pa.types.is_integer(t):
        v = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    elif pa.types.is_decimal(t):  # the decimal's integer units (value * 10**scale), exact in int64 if they fit
        if kind != "sum" or not pa.types.is_decimal128(t):
            raise NotExact
        if len(arr) == 0:
            return np.zeros(0, dtype=np.int64), valid
        raw = np.frombuffer(arr.buffers()[1], dtype=np.int64)[2 * arr.offset: 2 * (arr.offset + len(arr))]
        low, high = raw[0::2], raw[1::2]  # little-endian two's complement 128-bit integers
        if not (high == (low >> 63)).all():
            raise NotExact
        v = low.copy()
        if valid is not None:
            v[~valid] = 0
    else:
        v = arr.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        if valid is not None and kind == "sum":
            v = np.where(valid, v, 0.0)
    return v, valid


class _Cells:
    """Every (customer, cut-off) with a row before the cut-off ("cell", customer-major here; the outputs
    are written cut-off-major, see ``at``) and the row-level
    running totals, from which :meth:`items` computes the items of any range of cells.

    The row-level work (loading, running totals, carried positions) is done once here, a task per source
    column on :data:`THREADS` threads (NumPy releases the GIL); :class:`NotExact` when a sum cannot be
    taken exactly."""

    def __init__(self, items: Sequence[Item], col_of: dict[str, str], types: dict, data: pa.Table,
                 cuts: np.ndarray) -> None:
        self.items_, self.col_of, self.types = list(items), col_of, types
        n = self.n_rows = data.num_rows
        ids = data.column("customer_id").combine_chunks() if n else pa.array(
            [], data.schema.field("customer_id").type)
        days = data.column("_day").to_numpy().astype(np.int64) if n else np.zeros(0, np.int64)
        new = np.ones(n, dtype=bool)
        if n > 1:
            new[1:] = pc.not_equal(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False)
        starts = np.flatnonzero(new)
        cust = np.cumsum(new) - 1  # customer index of every row
        del new
        n_cust, n_cut = len(starts), len(cuts)
        offsets = {0} | {it.window for it in items if it.window} | {b for it in items if it.inc.band
                                                                  for b in it.inc.band}
        lo_day = min(int(days.min()) if n else 0, int(cuts.min()) - max(offsets)) if n_cut else 0
        hi_day = max(int(days.max()) if n else 0, int(cuts.max())) if n_cut else 0
        span = hi_day - lo_day + 1
        key = cust * span + (days - lo_day)
        del cust, days
        cell_c = np.repeat(np.arange(n_cust, dtype=np.int64), n_cut)  # every (customer, cut-off)
        cell_k = np.tile(cuts, n_cust)

        def pos(offset: int) -> np.ndarray:
            """Position of the customer's first row on or after day ``cut-off - offset``: ``np.searchsorted``
            of needles that are themselves sorted (customer-major, cut-offs ascending), by one merge."""
            return _merge()(key, cell_c * span + (cell_k - offset - lo_day))

        hi = pos(0)
        keep = hi > starts[cell_c]  # rows exist before the cut-off: exactly the cross join's groups
        cell_c, cell_k, hi = cell_c[keep], cell_k[keep], hi[keep]
        del keep
        self.start, self.hi, self.cutoff_day = starts[cell_c], hi, cell_k
        self.n = len(hi)
        # the output rows are cut-off-major (by cut-off, then customer in the rows' order of ids): the order
        # of a finished feature table (ORDER BY cutoff, customer_id), so that no pass reorders ~150 columns
        # afterwards. ``at``: every cell's output row (None: the same, one cut-off); ``order``: its inverse
        self.at = self.order = None
        if n_cut > 1 and self.n:
            rank = np.searchsorted(cuts, cell_k).astype(np.int16 if n_cut < 2**15 else np.int64)  # a radix sort
            self.order = np.argsort(rank, kind="stable")
            self.at = np.empty(self.n, dtype=np.int64)
            self.at[self.order] = np.arange(self.n)
            del rank
        self.ids = ids.take(pa.array(self.ordered(self.start))) if n else ids
        self.out_cutoff_day = self.ordered(cell_k)
        with ThreadPoolExecutor(THREADS) as pool:
            wins = sorted({it.window for it in items if it.window is not None})
            bands = sorted({it.inc.band for it in items if it.inc.band is not None})
            found = dict(zip(wins + bands, pool.map(
                lambda o: pos(o) if isinstance(o, int) else (pos(o[0]), pos(o[1])), wins + bands), strict=True))
            self.los = {None: self.start, **{w: found[w] for w in wins}}
            self.bounds = {b: found[b] for b in bands}
            srcs = sorted({col_of[it.name] for it in items})
            self.rows = dict(zip(srcs, pool.map(lambda src: self._prepare(src, data, starts), srcs), strict=True))

    def ordered(self, values: np.ndarray) -> np.ndarray:
        """``values`` (one per cell) in the output rows' order."""
        return values if self.order is None else values[self.order]

    def _prepare(self, src: str, data: pa.Table, starts: np.ndarray) -> dict[str, np.ndarray | None]:
        """The row-level arrays the items of source column ``src`` read."""
        kinds = {it.inc.kind for it in self.items_ if self.col_of[it.name] == src}
        out: dict[str, np.ndarray | None] = {}
        n = self.n_rows
        if "sum" in kinds:
            v, valid = _numpy(data.column(src), "sum")
            out["cum"], out["cnt"] = _cumulate(v, valid, starts, self.types[src])
        if kinds - {"sum"}:
            v, valid = _numpy(data.column(src), "other")
            out["v"], out["valid"] = v, valid
            if kinds & {"max", "min"}:
                x = v if v.dtype == np.float64 else _as_float(v)
                out["x"] = np.append(x if valid is None else np.where(valid, x, np.nan), np.nan)
            ok = np.ones(n, dtype=bool) if valid is None else valid
            if "last" in kinds:
                out["prev"] = np.maximum.accumulate(np.where(ok, np.arange(n), -1)) if n else np.zeros(0, np.int64)
            if "first" in kinds:
                out["next"] = (np.minimum.accumulate(np.where(ok, np.arange(n), n)[::-1])[::-1] if n
                               else np.zeros(0, np.int64))
        return out

    def items(self, sl: slice) -> dict[str, Col]:
        """Every item's values and null mask for the cells ``sl``."""
        start, hi = self.start[sl], self.hi[sl]
        los = {w: lo[sl] for w, lo in self.los.items()}
        cols: dict[str, Col] = {}
        for it in self.items_:
            src, kind = self.col_of[it.name], it.inc.kind
            r = self.rows[src]
            if kind == "sum":
                total, cnt = r["cum"], r["cnt"]
                if it.inc.band is not None:
                    lo, up = (b[sl] for b in self.bounds[it.inc.band])
                    scope_lo, scope_hi = lo, up  # like sum(where=band): null when no value in the band
                else:
                    lo, up = los[it.window], hi
                    scope_lo, scope_hi = start, hi  # like sum(x * indicator): null when no value at all
                res = total[up] - total[lo]
                if self.types[src].is_floating():
                    res = res.astype(np.float64)
                null = None
                if cnt is not None:
                    null = (cnt[scope_hi] - cnt[scope_lo]) == 0
                elif it.inc.band is not None:
                    null = up == lo
                cols[it.name] = (res, null)
            elif kind in ("max", "min"):
                lo = los[it.window]
                idx = np.empty(2 * len(lo), dtype=np.int64)
                idx[0::2], idx[1::2] = lo, hi
                ufunc = np.fmax if kind == "max" else np.fmin
                res = ufunc.reduceat(r["x"], idx)[0::2] if len(idx) else np.zeros(0)
                res[lo >= hi] = np.nan
                cols[it.name] = _typed(res, self.types[src])
            else:  # first / last non-null value before the cut-off
                v = r["v"]
                if kind == "last":
                    at = r["prev"][hi - 1] if len(hi) else np.zeros(0, np.int64)
                    found = at >= start
                else:
                    at = r["next"][start] if len(start) else np.zeros(0, np.int64)
                    found = at < hi
                at = np.where(found, at, 0)
                res = v[at] if len(v) else v[:0]
                cols[it.name] = (res, ~found) if res.dtype == np.int64 else (np.where(found, res, np.nan), ~found)
        return cols


def _merge_positions(keys, needles):  # noqa: ANN001, ANN202 - compiled by :func:`_merge`
    """``np.searchsorted(keys, needles)`` (left) for ascending ``needles``: one pass over both."""
    out = np.empty(len(needles), dtype=np.int64)
    p, n = 0, len(keys)
    for i in range(len(needles)):
        t = needles[i]
        while p < n and keys[p] < t:
            p += 1
        out[i] = p
    return out


@functools.cache
def _merge():  # noqa: ANN202 - a compiled function
    """:func:`_merge_positions` compiled (Numba imported on first use: ~0.4 s)."""
    from clvml.jit import compiled

    return compiled(_merge_positions)


def _arrow(values: np.ndarray, null: np.ndarray | None) -> pa.Array:
    return pa.array(values, mask=null if null is not None and null.any() else None)


def _as_float(v: np.ndarray) -> np.ndarray:
    """Integers as float64 for the NaN-aware max/min (exact below 2**53, else the cross join)."""
    if len(v) and np.abs(v).max() >= EXACT_LIMIT:
        raise NotExact
    return v.astype(np.float64)


def _typed(res: np.ndarray, t: object) -> Col:
    """A max/min result (float64, NaN = none) as the value's type."""
    null = np.isnan(res)
    if t.is_integer() or t.is_boolean():
        return np.where(null, 0, res).astype(np.int64), null
    return res, null


def _cumulate(v: np.ndarray, valid: np.ndarray | None, starts: np.ndarray,
              t: object) -> tuple[np.ndarray, np.ndarray | None]:
    """(cumulative int64 sum with a leading 0, cumulative count of non-null values or None) of ``v``.

    Float values must be whole numbers (units), and every customer's sum of magnitudes below 2**53, so
    that the float64 sums of the cross join are exact too; otherwise :class:`NotExact`.
    """
    if v.dtype == np.float64:
        if len(v) and not (np.isfinite(v).all() and (v == np.trunc(v)).all()):
            raise NotExact
        mag = np.abs(v)
    else:
        mag = np.abs(v.astype(np.float64))
    # a decimal sum is exact at any size in the cross join: here its window sums need only fit int64
    limit = 2.0**62 if t.is_decimal() else EXACT_LIMIT / 2  # halved: a margin for the float64 total here
    if len(v) and np.add.reduceat(mag, starts).max() >= limit:
        raise NotExact
    iv = v.astype(np.int64)
    cum = np.zeros(len(v) + 1, dtype=np.int64)
    np.cumsum(iv, out=cum[1:])
    cnt = None
    if valid is not None:
        cnt = np.zeros(len(v) + 1, dtype=np.int64)
        np.cumsum(valid, out=cnt[1:])
    return cum, cnt


def mix_rows(rows: ibis.Table, keys: Sequence[str], day: str = "day") -> pa.Table:
    """The rows :func:`mix_totals` reads, for several mixes in one query: ``customer_id``, ``_day``, ``s`` and
    every column of ``keys``, sorted by customer (one DuckDB pass for the category and channel mixes)."""
    return engine_arrow(rows.select("customer_id", *keys, _day=rows[day], s=rows.s).order_by("customer_id"))


def mix_totals(rows: ibis.Table, cutoffs: ibis.Table, count_name: str, share_name: str, kind: str, *,
               decimals: int, exact_scale: int, exact_below: float, day: str = "day",
               data: pa.Table | None = None, key: str = "key") -> ibis.Table | None:
    """A mix of keys (categories, channels) per (customer, cut-off), computed in NumPy from running totals, as
    an in-memory table: the values ``transactions._mix`` computes by the cross join, bit for bit.

    ``rows``: one row per transaction with ``customer_id``, ``day``, ``key`` (null: not a purchase) and
    ``s`` (a purchase's :func:`~clvml.features.query.units` of 10**-``decimals``). The result has one row per
    (customer, cut-off) with a transaction of any kind before the cut-off, in the order of the transaction
    family's incremental rows (cut-off-major, customers in DuckDB's order of ids;
    :func:`aggregate_incremental`), so it can be placed by position; a cell without a purchase before its
    cut-off has nulls, as the left join of the cross join's mix onto the family gives. Columns:
    ``customer_id``, ``cutoff_day``, ``count_name`` (keys with a purchase before the cut-off) and
    ``share_name``:

    * ``kind="share"``: the largest key's purchases over all purchases;
    * ``kind="hhi"``: the sum of the squared key totals over the squared total (Herfindahl), the squares
      as DuckDB's ``POWER(x, 2)`` (:func:`~clvml.features.evaluate.square`), those below ``exact_below``
      summed exactly as DECIMAL(38, ``exact_scale``) (DuckDB's cast: rounded half away from zero, summed as
      integers, converted back with :func:`~clvml.features.evaluate.decimal_to_float`), the others in
      float64 (in key order; the cross join's order is its threads', so two or more such squares are not
      bit-identical).

    DuckDB only sorts the rows by customer; NumPy sorts each customer's purchases by (key, day). None when a
    sum cannot be taken exactly (a key's or a customer's units past 2**53): the caller then uses the cross
    join. ``data``: those rows already executed (:func:`mix_rows`), the key in its column ``key``.
    """
    if kind not in ("share", "hhi"):
        raise ValueError(f"{count_name}: unknown mix kind {kind!r}")
    if data is None:
        data = mix_rows(rows, [key], day)
    cuts = cut_days(cutoffs)
    out = mix_arrays(data, cuts, count_name, share_name, kind, decimals=decimals, exact_scale=exact_scale,
                     exact_below=exact_below, key=key)
    return None if out is None else in_memory(rows._find_backend(), out)


def mix_arrays(data: pa.Table, cuts: np.ndarray, count_name: str, share_name: str, kind: str, *,
               decimals: int, exact_scale: int, exact_below: float, key: str = "key") -> pa.Table | None:
    """:func:`mix_totals`' table from the rows ``data`` (:func:`mix_rows`) and the sorted unique cut-off days
    ``cuts``, without the engine: NumPy and Arrow only, so it can run on a thread beside other work (both
    release the GIL in their loops). None: not exact (see :func:`mix_totals`).

    ``customer_id`` and ``key`` may come dictionary-encoded (:mod:`~clvml.features.tx_daily`): the ids'
    indices ascending with the rows, each dictionary of distinct values; then no string is compared, hashed
    or moved per row."""
    if kind not in ("share", "hhi"):
        raise ValueError(f"{count_name}: unknown mix kind {kind!r}")
    n, n_cut = data.num_rows, len(cuts)
    ids = data.column("customer_id").combine_chunks()
    coded = pa.types.is_dictionary(ids.type)  # the ids as codes in order (tx_daily): compared as integers
    codes = ids.indices.to_numpy(zero_copy_only=False) if coded else None
    days = data.column("_day").to_numpy().astype(np.int64) if n else np.zeros(0, np.int64)
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = (codes[1:] != codes[:-1]) if coded else pc.not_equal(ids[1:], ids[:-1]).to_numpy(
            zero_copy_only=False)
    starts = np.flatnonzero(new)  # every customer's first row
    n_cust = len(starts)
    first = np.minimum.reduceat(days, starts) if n else np.zeros(0, np.int64)  # first transaction day
    keys = data.column(key).combine_chunks()
    buy = np.flatnonzero(keys.is_valid().to_numpy(zero_copy_only=False)) if n else np.zeros(0, np.int64)
    enc = keys.take(pa.array(buy))  # a dictionary of distinct keys given (tx_daily) is used as it is
    enc = enc if pa.types.is_dictionary(enc.type) else enc.dictionary_encode()
    rank = np.empty(len(enc.dictionary), dtype=np.int64)  # the keys' codes in sorted order: reproducible
    rank[pc.sort_indices(enc.dictionary).to_numpy()] = np.arange(len(enc.dictionary))
    lo_day = min(int(days.min()) if n else 0, int(cuts.min()) if n_cut else 0)
    span = max(int(days.max()) if n else 0, int(cuts.max()) if n_cut else 0) - lo_day + 1
    if n_cust * max(len(rank), 1) * span >= 2**62:  # the sort keys would not fit int64
        return None
    block_of = (np.cumsum(new) - 1)[buy] * len(rank) + rank[enc.indices.to_numpy(zero_copy_only=False)]
    sort_key = block_of * span + (days[buy] - lo_day)
    order = np.argsort(sort_key)
    sort_key = sort_key[order]  # purchases by customer, key, day
    del new, keys, enc, block_of
    row_block = np.ones(len(buy), dtype=bool)  # a (customer, key) block starts here
    if len(buy) > 1:
        row_block[1:] = sort_key[1:] // span != sort_key[:-1] // span
    block_cust = sort_key[row_block] // span // max(len(rank), 1)
    row_block = np.cumsum(row_block) - 1  # the block of every purchase
    try:
        s, valid = _numpy(data.column("s").take(pa.array(buy[order])), "sum")
        _cumulate(s, valid, np.flatnonzero(np.r_[True, row_block[1:] != row_block[:-1]]), dt.float64)
        # whole units, every block's below 2**52: the float64 total over a customer's keys must be exact too
        if len(s) and np.add.reduceat(np.abs(s), np.flatnonzero(np.r_[True, np.diff(block_cust[row_block]) != 0])
                                      ).max() >= EXACT_LIMIT / 2:
            raise NotExact
        units = s.astype(np.int64)
    except NotExact:
        return None
    # the cut-off from which each purchase counts: the purchases new at each cut-off, by block and day
    since = np.searchsorted(cuts, sort_key % span + lo_day, side="right")
    since = since.astype(np.int16) if n_cut < 2**15 else since  # a radix sort
    by_cut = np.argsort(since, kind="stable")
    bounds = np.searchsorted(since[by_cut], np.arange(n_cut + 1))
    del data, s, order, buy, sort_key, since
    state = _MixState(len(block_cust), n_cust, kind == "hhi")
    count = np.zeros((n_cut, n_cust), dtype=np.int64)
    share = np.full((n_cut, n_cust), np.nan)
    nulls = np.zeros((n_cut, n_cust), dtype=bool)
    for t in range(n_cut):
        rows_t = by_cut[bounds[t]:bounds[t + 1]]  # the purchases before cut-off t and not before t - 1
        if len(rows_t):
            b = row_block[rows_t]
            seg = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
            bs = b[seg]  # the blocks changed, ascending (so their customers too)
            dn = np.diff(np.r_[seg, len(rows_t)])
            if not state.update(bs, block_cust[bs], dn, np.add.reduceat(units[rows_t], seg), decimals,
                                exact_scale, exact_below):
                return None
        count[t], share[t], nulls[t] = state.keys, state.share, state.null
    # the family's rows: (customer, cut-off) with a transaction before the cut-off, cut-off-major (the order
    # of aggregate_incremental's rows, so the two parts stand side by side without a lookup)
    cell_t, cell_c = np.nonzero(first[None, :] < cuts[:, None])
    at = cell_t * n_cust + cell_c  # in the (cut-off, customer) arrays
    cnt = count.ravel()[at]
    none = cnt == 0  # no purchase before the cut-off: null, as the left join
    if coded:  # decoded for the output rows only
        ids = ids.dictionary.take(pa.array(codes[starts[cell_c]], pa.int64()))
    elif n:
        ids = ids.take(pa.array(starts[cell_c]))
    out = {"customer_id": ids,
           "cutoff_day": pa.array(cuts[cell_t], pa.int64()),
           count_name: _arrow(cnt, none),
           share_name: _arrow(share.ravel()[at], none | nulls.ravel()[at])}
    return pa.table(out)


def engine_arrow(expr: ibis.Table) -> pa.Table:
    """``expr`` as Arrow with DuckDB's own types (``to_pyarrow`` would cast strings to large strings: a copy
    not needed here): the table itself when ``expr`` is one registered by :func:`in_memory`, else executed."""
    table = arrow_of(expr)
    if table is not None:  # already in memory: no scan and export by DuckDB
        return table
    relation = getattr(expr._find_backend(), "_to_duckdb_relation", None)
    return expr.to_pyarrow() if relation is None else relation(expr).to_arrow_table()


#: the exact decimal sums of squares are kept in two int64 limbs: value = high * LIMB + low
LIMB = 2**40


class _MixState:
    """The running state of a mix over the cut-offs: per (customer, key) block its purchases, units and the
    DECIMAL units of its rounded square (two limbs); per customer its number of keys, largest block, total
    purchases and units, and exact sum of the squares (two limbs, each an int64: the square of a customer's
    total below 2**52 units is below 2**95 units of 1e-9, its high limbs sum below 2**55), and its current
    share; a cut-off updates only the blocks with new purchases and their customers."""

    def __init__(self, n_blocks: int, n_cust: int, hhi: bool) -> None:
        self.hhi = hhi
        self.n = np.zeros(n_blocks, dtype=np.int64)
        self.keys = np.zeros(n_cust, dtype=np.int64)
        self.share = np.full(n_cust, np.nan)
        self.null = np.zeros(n_cust, dtype=bool)
        if hhi:
            self.u, self.hi, self.lo = (np.zeros(n_blocks, dtype=np.int64) for _ in range(3))
            self.cu, self.chi, self.clo = (np.zeros(n_cust, dtype=np.int64) for _ in range(3))
        else:
            self.tot, self.max = np.zeros(n_cust, dtype=np.int64), np.zeros(n_cust, dtype=np.int64)

    def update(self, bs: np.ndarray, cs: np.ndarray, dn: np.ndarray, du: np.ndarray, decimals: int,
               exact_scale: int, exact_below: float) -> bool:
        """Add ``dn`` purchases of ``du`` units to the blocks ``bs`` (of the customers ``cs``); False when a
        square reaches ``exact_below`` (the cross join then sums it in float64: not reproduced here)."""
        np.add.at(self.keys, cs[self.n[bs] == 0], 1)
        self.n[bs] += dn
        who = cs[np.r_[True, cs[1:] != cs[:-1]]]
        if not self.hhi:
            np.add.at(self.tot, cs, dn)
            np.maximum.at(self.max, cs, self.n[bs])
            self.share[who] = self.max[who].astype(np.float64) / self.tot[who]
            return True
        self.u[bs] += du
        np.add.at(self.cu, cs, du)
        sq = square(self.u[bs].astype(np.float64) / 10**decimals)
        if (sq >= exact_below).any():
            return False
        e = round_half_away(sq * 10.0**exact_scale)  # DuckDB's DOUBLE -> DECIMAL(38, scale): whole units
        hi = np.floor(e / LIMB)
        lo = (e - hi * LIMB).astype(np.int64)  # exact: below 2**40
        hi = hi.astype(np.int64)
        np.subtract.at(self.chi, cs, self.hi[bs])
        np.subtract.at(self.clo, cs, self.lo[bs])
        self.hi[bs], self.lo[bs] = hi, lo
        np.add.at(self.chi, cs, hi)
        np.add.at(self.clo, cs, lo)
        chi, clo = self.chi[who], self.clo[who]
        if (chi < 2**22).all():
            total = decimal_to_float(chi * LIMB + clo, exact_scale)
        else:  # past int64: Python integers
            total = decimal_to_float([h * LIMB + c for h, c in zip(chi.tolist(), clo.tolist(), strict=True)],
                                     exact_scale)
        den = square(self.cu[who].astype(np.float64) / 10**decimals)
        with np.errstate(all="ignore"):
            self.share[who] = (total + 0.0) / den  # + the float64 sum of the (no) squares past exact_below
        self.null[who] = den == 0
        return True
