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

from collections.abc import Sequence

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clvml.features.incremental import in_memory

KEYS = ("customer_id", "cutoff_day")


def side_by_side(base: ibis.Table, parts: Sequence[ibis.Table]) -> ibis.Table | None:
    """``base`` left-joined to every table of ``parts`` on (``customer_id``, ``cutoff_day``), computed now
    and returned as an in-memory table on ``base``'s (DuckDB) engine.

    ``base`` and every part must hold at most one row per key, ``base`` no null key, and the parts no
    column of the same name (besides the keys); None when that does not hold (the caller then joins as
    usual). Rows of a part
    whose key is not in ``base`` are dropped, keys of ``base`` without a row in a part get nulls, exactly
    like a left join. The result keeps ``base``'s row order.
    """
    b = _arrow(base)
    n = b.num_rows
    enc = b.column("customer_id").combine_chunks().dictionary_encode()
    if enc.null_count or b.column("cutoff_day").null_count:  # keys a join would not match: join
        return None
    ids = enc.dictionary
    cut = b.column("cutoff_day").to_numpy()
    cuts = np.unique(cut)
    key = enc.indices.to_numpy().astype(np.int64) * len(cuts) + np.searchsorted(cuts, cut)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    if n > 1 and (sorted_key[1:] == sorted_key[:-1]).any():
        return None
    columns = {name: b.column(name) for name in b.column_names}
    del b
    for part in parts:
        p = _arrow(part)
        if any(name in columns for name in p.column_names if name not in KEYS):
            return None
        rows = _rows_in_base(p, ids, cuts, sorted_key, order)
        found = rows >= 0
        at = np.full(n, -1, dtype=np.int64)
        at[rows[found]] = np.flatnonzero(found)
        if np.count_nonzero(at >= 0) != np.count_nonzero(found):  # two rows of the part on one of the base
            return None
        take = pa.array(at, mask=at < 0)
        for name in p.column_names:
            if name not in KEYS:
                columns[name] = p.column(name).take(take)
        del p
    return in_memory(base._find_backend(), pa.table(columns))


def _arrow(expr: ibis.Table) -> pa.Table:
    """``expr`` executed to Arrow in one piece, with DuckDB's own Arrow types (``to_pyarrow`` would cast
    every column to Ibis' types, e.g. strings to large strings: a copy the result here does not need, as it
    goes back to DuckDB)."""
    backend = expr._find_backend()
    relation = getattr(backend, "_to_duckdb_relation", None)
    table = expr.to_pyarrow() if relation is None else relation(expr).to_arrow_table()
    return table.combine_chunks()


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
