"""A family's one-row-per-customer-day table computed in NumPy from one export of its events, for the
incremental plan: the same rows, in the same order, types and bits as DuckDB's ``GROUP BY customer_id, day``
query sorted by customer and day, without DuckDB's hash aggregation over nearly as many groups as events
and its sort.

DuckDB only exports the columns. :func:`sort_by_customer_day` numbers the customers in DuckDB's order of
``customer_id`` (byte order of strings, numeric order of numbers: Arrow's sort of the distinct ids) and
sorts the rows by (customer, day) with one stable NumPy sort. :func:`daily_counts` then computes the
aggregates the activity and social families declare (:class:`Count`, :class:`CountOf`, :class:`UnitSum`)
with ``np.bincount`` over the rows' group numbers; the transaction family's richer daily rows use the same
sort (:mod:`clvml.features.tx_daily`).

A sum of ``ROUND(x * 10**d, 0)`` (C's ``round``, halves away from zero) is a sum of whole numbers, exact in
float64 in any order while its partial sums stay below 2**53: a day past 2**52 in magnitude, a value that is
not finite, a null customer or day, or a column type the query would treat otherwise makes
:func:`daily_counts` return None, and the caller runs DuckDB's query.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clvml.features.evaluate import round_half_away
from clvml.features.incremental import engine_arrow, in_memory
from clvml.features.query import DECIMALS, day_of, exact_sum, resolve_plan

#: a day's sum of magnitudes of float64 units must stay below this to be exact in any order
FLOAT_LIMIT = 2.0**52


@dataclass(frozen=True)
class Count:
    """``COUNT(*) FILTER (WHERE event_type = type)``."""

    type: str


@dataclass(frozen=True)
class CountOf:
    """``COUNT(column) FILTER (WHERE event_type = type)``: the non-null values."""

    column: str
    type: str


@dataclass(frozen=True)
class UnitSum:
    """``SUM(ROUND(CAST(column AS DOUBLE) * 10**decimals, 0)) FILTER (WHERE event_type = type)``, with
    ``COALESCE(…, 0)`` when ``fill`` (else null on a day without a value)."""

    column: str
    type: str
    fill: bool


@dataclass(frozen=True)
class Sorted:
    """Rows sorted by (customer, day): ``order`` (the rows' positions), ``key`` (customer rank x ``span`` +
    day - ``lo``, ascending), and the customers' ``dictionary`` of ids with ``by_rank`` (the dictionary
    position of every rank)."""

    order: np.ndarray
    key: np.ndarray
    span: int
    lo: int
    dictionary: pa.Array
    by_rank: np.ndarray

    def ids(self, rows: np.ndarray | slice) -> pa.Array:
        """The customer id of the sorted rows ``rows``."""
        return self.dictionary.take(pa.array(self.by_rank[self.key[rows] // self.span]))

    def coded_ids(self) -> pa.DictionaryArray:
        """The customer id of every sorted row, dictionary-encoded: the indices are the customers' ranks (so
        they ascend with the rows), the dictionary the distinct ids in that order."""
        codes = (self.key // self.span).astype(np.int32 if len(self.by_rank) < 2**31 else np.int64)
        return pa.DictionaryArray.from_arrays(pa.array(codes), self.dictionary.take(pa.array(self.by_rank)))

    def days(self, rows: np.ndarray | slice) -> np.ndarray:
        """The day of the sorted rows ``rows``."""
        return self.key[rows] % self.span + self.lo


def sort_by_customer_day(ids: pa.Array, days: pa.Array) -> Sorted | None:
    """The rows of ``ids`` / ``days`` (days since 1970-01-01) sorted by customer, in DuckDB's ``ORDER BY
    customer_id``, then day; None when an id or a day is null, or the keys would not fit int64."""
    if ids.null_count or days.null_count:
        return None
    enc = ids.dictionary_encode()
    dictionary = enc.dictionary
    by_rank = pc.sort_indices(dictionary).to_numpy()
    rank = np.empty(len(dictionary), dtype=np.int64)
    rank[by_rank] = np.arange(len(dictionary))
    d = days.to_numpy(zero_copy_only=False).astype(np.int64)
    lo = int(d.min()) if len(d) else 0
    span = (int(d.max()) - lo + 1) if len(d) else 1
    if len(dictionary) * span >= 2**62:
        return None
    key = rank[enc.indices.to_numpy(zero_copy_only=False)] * span + (d - lo)
    del d
    order = np.argsort(key, kind="stable")
    return Sorted(order, key[order], span, lo, dictionary, by_rank)


def floats(col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values with 0 for nulls, non-null mask) of a numeric column (integers converted as DuckDB's
    ``CAST(x AS DOUBLE)``: rounded to nearest)."""
    valid = (np.ones(len(col), dtype=bool) if col.null_count == 0
             else col.is_valid().to_numpy(zero_copy_only=False))
    v = col.fill_null(0) if col.null_count else col
    return v.to_numpy(zero_copy_only=False).astype(np.float64), valid


def daily_query(events: ibis.Table, aggs: Mapping[str, Count | CountOf | UnitSum]) -> ibis.Table:
    """The same rows as :func:`daily_counts`, by the engine: ``GROUP BY customer_id, day`` (any engine)."""
    t = events.mutate(day=day_of(events.ts))
    et = t.event_type
    out = {}
    for name, agg in aggs.items():
        if isinstance(agg, Count):
            out[name] = t.count(where=et == agg.type)
        elif isinstance(agg, CountOf):
            out[name] = t[agg.column].count(where=et == agg.type)
        else:
            total = exact_sum(t[agg.column], et == agg.type)
            out[name] = total.fill_null(0) if agg.fill else total
    return t.group_by(["customer_id", "day"]).aggregate(**out)


def daily_rows(events: ibis.Table, aggs: Mapping[str, Count | CountOf | UnitSum], plan: str | None) -> ibis.Table:
    """A family's daily rows: :func:`daily_counts` with the incremental plan (``plan``:
    :func:`~clvml.features.query.resolve_plan`) where it gives DuckDB's bits, else :func:`daily_query`."""
    query = daily_query(events, aggs)
    if resolve_plan(plan, events._find_backend().name) == "incremental":
        found = daily_counts(events, aggs, schema=query.schema())
        if found is not None:
            return found
    return query


def daily_counts(events: ibis.Table, aggs: Mapping[str, Count | CountOf | UnitSum], *,
                 schema: ibis.Schema, decimals: int = DECIMALS) -> ibis.Table | None:
    """``events`` (with ``customer_id``, ``ts`` and ``event_type``) aggregated to one row per customer and day
    as an in-memory table sorted by customer and day: ``customer_id``, ``day`` and every aggregate of
    ``aggs``, with the types of ``schema`` (the query's: :func:`daily_query`). None when the bits of DuckDB's
    query cannot be given here (see the module)."""
    columns = sorted({a.column for a in aggs.values() if not isinstance(a, Count)})
    for c in columns:
        t = events[c].type()
        if not (t.is_integer() or t.is_floating()):
            return None
    if not events.event_type.type().is_string():
        return None
    raw = engine_arrow(events.select("customer_id", _day=day_of(events.ts), _et=events.event_type,
                                     **{f"_v_{c}": events[c] for c in columns}))
    found = sort_by_customer_day(raw.column("customer_id").combine_chunks(), raw.column("_day").combine_chunks())
    if found is None:
        return None
    order = found.order
    n = len(order)
    new = np.ones(n, dtype=bool)
    if n > 1:
        new[1:] = found.key[1:] != found.key[:-1]
    starts = np.flatnonzero(new)
    group = np.cumsum(new) - 1  # the day row of every sorted event
    del new
    n_groups = len(starts)
    enc = raw.column("_et").combine_chunks().dictionary_encode()
    codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)[order]
    types = enc.dictionary.to_pylist()

    def of_type(name: str) -> np.ndarray:
        return codes == (types.index(name) if name in types else -2)

    values = {}
    for c in columns:
        v, valid = floats(raw.column(f"_v_{c}").combine_chunks())
        values[c] = (v[order], valid[order])
    out: dict[str, pa.Array | np.ndarray] = {"customer_id": found.ids(starts), "day": found.days(starts)}
    for name, agg in aggs.items():
        if isinstance(agg, Count):
            out[name] = np.bincount(group[of_type(agg.type)], minlength=n_groups)
            continue
        v, valid = values[agg.column]
        take = of_type(agg.type) & valid
        if isinstance(agg, CountOf):
            out[name] = np.bincount(group[take], minlength=n_groups)
            continue
        scaled = v[take] * float(10**decimals)
        if not np.isfinite(scaled).all():
            return None
        units = round_half_away(scaled)
        g = group[take]
        if len(g) and np.bincount(g, weights=np.abs(units), minlength=n_groups).max() >= FLOAT_LIMIT:
            return None
        total = np.bincount(g, weights=units, minlength=n_groups)
        none = None if agg.fill else np.bincount(g, minlength=n_groups) == 0
        out[name] = pa.array(total, mask=none if none is not None and none.any() else None)
    target = schema.to_pyarrow()
    if set(target.names) != set(out):
        return None
    table = pa.table({name: out[name] for name in target.names}).cast(target)
    return in_memory(events._find_backend(), table, sorted_by=("customer_id", "day"))
