"""Put the families' parts of the feature table side by side by position instead of joining them.

Every family's part has at most one row per (customer, cut-off), and the builder left-joins them all onto
the transaction part's rows. As DuckDB hash joins on the string ``customer_id`` those joins were the
largest single cost of the whole build with the incremental plan (about a third of its CPU at 1M
transactions, see bench/RESULTS.md). :func:`side_by_side` executes each part once to Arrow and places its
rows at their (customer, cut-off) row of the base by integer keys in NumPy (the customer's code in the
base's dictionary of ids times the number of cut-offs plus the cut-off's rank), then gathers every
column with one Arrow ``take``: the same rows, values and nulls as the left joins, without hashing a
string per row and join.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import ibis
import ibis.expr.operations as ops
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clvml.features.evaluate import ArrowColumns, Evaluator, Unsupported
from clvml.features.incremental import THREADS, arrow_of, engine_arrow, in_memory

KEYS = ("customer_id", "cutoff_day")


def side_by_side(base: ibis.Table, parts: Sequence[ibis.Table],
                 fills: Mapping[str, int | float] | None = None,
                 narrow: Collection[str] = ()) -> ibis.Table | None:
    """``base`` left-joined to every table of ``parts`` on (``customer_id``, ``cutoff_day``), computed now
    and returned as an in-memory table on ``base``'s (DuckDB) engine.

    ``base`` and every part must hold at most one row per key, ``base`` no null key, and the parts no
    column of the same name (besides the keys); None when that does not hold (the caller then joins as
    usual). Rows of a part
    whose key is not in ``base`` are dropped, keys of ``base`` without a row in a part get nulls, exactly
    like a left join. The result keeps ``base``'s row order. A part whose keys are ``base``'s, row by row (the
    transaction family's mixes, computed in its rows' order), is placed as it is, without a lookup.

    ``fills``: a value for the nulls of some parts' numeric columns (``COALESCE(column, fill)`` of the join,
    the builder's fills; an integer column with a float fill becomes float64 as ``CAST(column AS DOUBLE)``
    would make it), applied while the rows are placed instead of in a pass over the joined column.
    ``narrow``: columns among those filled that are stored as float32 (the whole-number features,
    ``CAST(COALESCE(column, fill) AS FLOAT)`` of the builder), made float32 as they are placed, without a
    float64 copy first.
    """
    b = _arrow(base)
    n = b.num_rows
    if b.column("customer_id").null_count or b.column("cutoff_day").null_count:  # keys a join would not match
        return None
    columns = {name: b.column(name) for name in b.column_names}
    index = None  # the base's keys, sorted, built when a part is not in the base's row order
    for part in parts:
        p = _arrow(part)
        if any(name in columns for name in p.column_names if name not in KEYS):
            return None
        if _aligned(p, b):  # the same keys row by row (a part computed in the base's order): no lookup
            columns.update({name: p.column(name) for name in p.column_names if name not in KEYS})
            continue
        rows = _merged_rows(p, b)  # both in (cut-off, id) order: one merge, no hashing of the ids
        if rows is None:
            if index is None:
                index = _index(b)
                if index is None:
                    return None
            ids, cuts, sorted_key, order = index
            rows = _rows_in_base(p, ids, cuts, sorted_key, order)
        found = rows >= 0
        at = np.full(n, -1, dtype=np.int64)
        at[rows[found]] = np.flatnonzero(found)
        if np.count_nonzero(at >= 0) != np.count_nonzero(found):  # two rows of the part on one of the base
            return None
        take = pa.array(at, mask=at < 0)
        names = [name for name in p.column_names if name not in KEYS]
        placed = functools.partial(_place, n=n, dest=rows[found], src=np.flatnonzero(found), take=take)
        with ThreadPoolExecutor(THREADS) as pool:  # Arrow and NumPy release the GIL: a column per thread
            columns.update(zip(names, pool.map(placed, [p.column(name) for name in names],
                                               [(fills or {}).get(name) for name in names],
                                               [name in narrow for name in names]), strict=True))
        del p
    del b
    return in_memory(base._find_backend(), pa.table(columns))


def _place(col: pa.ChunkedArray, fill: float | None, narrow: bool = False, *, n: int, dest: np.ndarray,
           src: np.ndarray, take: pa.Array) -> pa.Array | pa.ChunkedArray:
    """A part's column at the base's rows: its rows ``src`` at ``dest`` (``take``: the same as Arrow indices,
    null where the base has no row of the part), nulls filled with ``fill`` when given."""
    filled = None if fill is None else _filled(col, fill, n, dest, src, narrow)
    return col.take(take) if filled is None else filled


def _filled(col: pa.ChunkedArray, fill: float, n: int, dest: np.ndarray, src: np.ndarray,
            narrow: bool = False) -> pa.Array | None:
    """``COALESCE(col, fill)`` of the left join that places ``col``'s rows ``src`` at the base's rows ``dest``
    (``n`` rows), built in one array; None for a column that is not float64 or int64 (then joined as it is),
    or float32 (a whole-number feature the family stores so already) among the ``narrow`` ones."""
    t = col.type
    if narrow and (pa.types.is_floating(t) or pa.types.is_int64(t)) and isinstance(fill, float):
        # float32: C's conversion, as DuckDB's CAST(… AS FLOAT) (an int64 below 2**53 is the same through
        # float64 first, and a count is far below it)
        dtype = np.float32
    elif pa.types.is_float64(t) or (pa.types.is_int64(t) and isinstance(fill, float)):
        dtype = np.float64
    elif pa.types.is_int64(t) and isinstance(fill, int) and not isinstance(fill, bool):
        dtype = np.int64
    else:
        return None
    arr = col.combine_chunks()
    values = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(dtype, copy=False)  # ints: rounded to nearest
    out = np.full(n, dtype(fill))
    if arr.null_count:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        out[dest[valid[src]]] = values[src[valid[src]]]
    else:
        out[dest] = values[src]
    return pa.array(out)


def take_columns(table: pa.Table, indices: pa.Array) -> pa.Table:
    """``table.take(indices)``, a column per thread (Arrow's take releases the GIL)."""
    with ThreadPoolExecutor(THREADS) as pool:
        columns = list(pool.map(pc.take, table.columns, [indices] * table.num_columns))
    return pa.Table.from_arrays(columns, schema=table.schema)


def _aligned(p: pa.Table, b: pa.Table) -> bool:
    """Whether ``p`` has exactly ``b``'s keys in ``b``'s row order."""
    if p.num_rows != b.num_rows or any(p.schema.field(k).type != b.schema.field(k).type for k in KEYS):
        return False
    return all(p.column(k).null_count == 0 and pc.all(pc.equal(p.column(k), b.column(k))).as_py() is not False
               for k in KEYS)


def _index(b: pa.Table) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray] | None:
    """(the base's distinct ids, its cut-off days, its row keys sorted, their rows) for looking up parts'
    rows; None when a key repeats (not a left join's one row per key)."""
    enc = b.column("customer_id").combine_chunks().dictionary_encode()
    cut = b.column("cutoff_day").to_numpy()
    cuts = np.unique(cut)
    key = enc.indices.to_numpy().astype(np.int64) * len(cuts) + np.searchsorted(cuts, cut)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    if len(sorted_key) > 1 and (sorted_key[1:] == sorted_key[:-1]).any():
        return None
    return enc.dictionary, cuts, sorted_key, order


def _arrow(expr: ibis.Table) -> pa.Table:
    """``expr`` as Arrow in one piece, with DuckDB's own types (it goes back to DuckDB)."""
    return engine_arrow(expr).combine_chunks()


def _merged_rows(p: pa.Table, b: pa.Table) -> np.ndarray | None:
    """The base row of every row of ``p`` (-1: not in the base) when both tables' rows are in strictly
    ascending (``cutoff_day``, ``customer_id``) order, ids compared byte by byte (the incremental plan's
    order): one compiled merge. None when either is not in that order, or the ids are not strings or
    integers (then the keys are looked up by hashing)."""
    if p.num_rows == 0 or b.num_rows == 0:
        return None
    pid, bid = p.column("customer_id").combine_chunks(), b.column("customer_id").combine_chunks()
    if pid.type != bid.type or pid.null_count or bid.null_count or p.column("cutoff_day").null_count:
        return None
    pday, bday = (t.column("cutoff_day").to_numpy().astype(np.int64, copy=False) for t in (p, b))
    if not (strictly_ascending(pday, pid) and strictly_ascending(bday, bid)):
        return None
    t = pid.type
    large = pa.types.is_large_string(t) or pa.types.is_large_binary(t)  # 64-bit offsets
    if pa.types.is_integer(t):
        keys = [np.asarray(a.to_numpy(), dtype=np.int64) for a in (pid, bid)]
        empty = np.zeros(0, dtype=np.uint8)
        args = [*keys, np.zeros(1, np.int64), empty, np.zeros(1, np.int64), empty, False]
    elif large or pa.types.is_string(t) or pa.types.is_binary(t):
        width = np.int64 if large else np.int32
        bufs = []
        for a in (pid, bid):
            _, offsets, data = a.buffers()
            off = np.frombuffer(offsets, dtype=width, count=len(a) + 1, offset=a.offset * np.dtype(width).itemsize)
            bufs += [off.astype(np.int64), np.frombuffer(data, dtype=np.uint8) if data is not None
                     else np.zeros(0, np.uint8)]
        none = np.zeros(0, dtype=np.int64)
        args = [none, none, *bufs, True]
    else:
        return None
    rows = np.empty(p.num_rows, dtype=np.int64)
    _merge_keys()(pday, bday, *args, rows)
    return rows


def strictly_ascending(days: np.ndarray, ids: pa.Array) -> bool:
    """Whether the rows' (``days``, ``ids``) keys strictly ascend, ids compared as DuckDB orders them (strings
    byte by byte); ``ids`` without nulls."""
    if len(days) < 2:
        return True
    if (days[1:] < days[:-1]).any():
        return False
    later = days[1:] > days[:-1]
    return bool((later | pc.greater(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False)).all())


def _merge_key_rows(pday, bday, pint, bint, poff, pdata, boff, bdata, strings, rows) -> None:  # noqa: ANN001
    """Compiled by :func:`_merge_keys`: ``rows[j]`` = the row of the base with part row ``j``'s key, or -1;
    both sides' keys strictly ascending (checked by the caller)."""

    def cmp(j, i):  # the part's key j against the base's key i: -1, 0, 1
        if pday[j] != bday[i]:
            return -1 if pday[j] < bday[i] else 1
        if not strings:
            return 0 if pint[j] == bint[i] else (-1 if pint[j] < bint[i] else 1)
        a0, a1, b0, b1 = poff[j], poff[j + 1], boff[i], boff[i + 1]
        for m in range(min(a1 - a0, b1 - b0)):
            x, y = pdata[a0 + m], bdata[b0 + m]
            if x != y:
                return -1 if x < y else 1
        return 0 if a1 - a0 == b1 - b0 else (-1 if a1 - a0 < b1 - b0 else 1)

    nb, npart = len(bday), len(pday)
    i = 0
    for j in range(npart):
        while i < nb and cmp(j, i) > 0:
            i += 1
        rows[j] = i if i < nb and cmp(j, i) == 0 else -1


@functools.cache
def _merge_keys():  # noqa: ANN202 - a compiled function
    """:func:`_merge_key_rows` compiled (Numba imported on first use)."""
    from clvml.jit import compiled

    return compiled(_merge_key_rows)


def _rows_in_base(p: pa.Table, ids: pa.Array, cuts: np.ndarray, sorted_key: np.ndarray,
                  order: np.ndarray) -> np.ndarray:
    """The base row of every row of ``p`` (-1: not in the base)."""
    if p.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    code = pc.index_in(p.column("customer_id"), value_set=ids)
    known = code.is_valid().to_numpy(zero_copy_only=False)
    code = code.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    cut = p.column("cutoff_day").to_numpy()
    if len(sorted_key) == 0:
        return np.full(p.num_rows, -1, dtype=np.int64)
    rank = np.minimum(np.searchsorted(cuts, cut), len(cuts) - 1)
    pkey = code * len(cuts) + rank
    pos = np.minimum(np.searchsorted(sorted_key, pkey), len(sorted_key) - 1)
    found = known & (cuts[rank] == cut) & (sorted_key[pos] == pkey)
    return np.where(found, order[pos], -1)


def finish_in_memory(src: ibis.Table, result: ibis.Table) -> ibis.Table | None:
    """``result`` (a projection of the in-memory table ``src``: its columns, null fills, casts, the cut-off
    date and a few derived ratios) computed in Arrow/NumPy and registered as an in-memory table, so that
    :func:`~clvml.features.incremental.arrow_of` gives the finished feature table without an engine pass.

    The values and types are exactly what the engine gives for ``result`` (``to_pyarrow``): a column is
    taken as it is, a fill is Arrow's ``fill_null``, an integer-to-float64 cast and a cast to float32 the
    same IEEE rounding, and anything else goes through :class:`~clvml.features.evaluate.Evaluator`
    (DuckDB's semantics). None when ``src`` is not in memory or an expression is not one of these (the caller
    runs ``result``).
    """
    table = arrow_of(src)
    if table is None or not isinstance(result.op(), ops.Project):
        return None
    cols = ArrowColumns(table)
    ev = Evaluator({src.op(): cols}, table.num_rows)
    values = result.op().values
    try:  # a column per thread: Arrow's kernels and NumPy release the GIL (the evaluator's memo is shared)
        with ThreadPoolExecutor(THREADS) as pool:
            out = dict(zip(values, pool.map(lambda v: _column(v, src.op(), table, ev), values.values()),
                           strict=True))
    except Unsupported:
        return None
    schema = result.schema().to_pyarrow()
    finished = pa.table(out).cast(schema)
    return in_memory(result._find_backend(), finished)


def _column(op: ops.Value, src: ops.Relation, table: pa.Table, ev: Evaluator) -> pa.Array | pa.ChunkedArray:
    """One output column of :func:`finish_in_memory`."""
    if isinstance(op, ops.Field) and op.rel == src:
        return table.column(op.name)
    if isinstance(op, ops.Field) and isinstance(op.rel, ops.Project):  # a column of a mutate of ``src``
        return _column(op.rel.values[op.name], src, table, ev)
    if isinstance(op, ops.Coalesce) and len(op.arg) == 2 and isinstance(op.arg[1], ops.Literal):
        inner, fill = op.arg
        if isinstance(inner, ops.Cast) and inner.to.is_float64() and inner.arg.dtype.is_integer():
            col = pc.cast(_column(inner.arg, src, table, ev), pa.float64(), safe=False)  # round to nearest
        else:
            col = _column(inner, src, table, ev)
        if fill.value is None or op.dtype != inner.dtype:
            raise Unsupported("a fill changing the type")
        if col.null_count == 0:  # most columns: nothing to fill (Arrow's fill_null would still copy)
            return col
        return pc.fill_null(col, pa.scalar(fill.value, type=col.type))
    if isinstance(op, ops.Cast) and op.to.is_float32() and (op.arg.dtype.is_float64() or op.arg.dtype.is_int64()):
        # a whole-number feature stored as float32: DuckDB's CAST(x AS FLOAT) is C's conversion (round to
        # nearest even), as Arrow's unchecked cast; nulls stay nulls
        return pc.cast(_column(op.arg, src, table, ev), pa.float32(), safe=False)
    if isinstance(op, ops.Cast) and op.to.is_date() and op.arg.dtype.is_date():
        op = op.arg
    if isinstance(op, ops.DateAdd) and _is_epoch(op.left) and isinstance(op.right, ops.IntervalFromInteger) \
            and op.right.unit.short == "D":  # the cut-off: days since 1970-01-01 as a date
        days = _column(op.right.arg, src, table, ev)
        return pc.cast(pc.cast(days, pa.int32()), pa.date32())
    return ev.arrow(op.to_expr())


def _is_epoch(op: ops.Value) -> bool:
    """Whether ``op`` is the date 1970-01-01 (``ibis.date(1970, 1, 1)``)."""
    if isinstance(op, ops.Literal):
        return op.value == dt.date(1970, 1, 1)
    return isinstance(op, ops.DateFromYMD) and all(
        isinstance(a, ops.Literal) for a in op.args) and tuple(a.value for a in op.args) == (1970, 1, 1)
