"""The transaction family's daily rows (:func:`clvml.features.transactions.daily`) and its mixes' rows
(:func:`clvml.features.incremental.mix_rows`) computed from one export of the transactions, sorted by
customer and day in NumPy and aggregated by one compiled pass: the same rows, types and bits as DuckDB's
two queries, for the incremental plan.

DuckDB's daily query groups by (customer, day) in a hash table of nearly as many groups as transactions,
sorts them for the purchase gaps' window and again for the incremental plan; the mixes' query sorts the
transactions by customer once more. Here DuckDB only exports the columns; the customers are numbered in
DuckDB's order of ``customer_id`` (byte order of strings, numeric order of numbers: Arrow's sort of the
distinct ids), one stable sort by (customer, day) orders every row, and the pass reproduces each
aggregate of the daily query with DuckDB's arithmetic:

* ``ROUND(x * 10**d, 0)`` is C's ``round`` of the same float64 product (halves away from zero), and the
  sums of those whole numbers are exact in float64 while every partial sum stays below 2**53, so any order
  of addition gives DuckDB's bits; a day past 2**52 in magnitude makes the function return None (the
  caller keeps DuckDB's query);
* the squared order values are ``ROUND(a * a * 10**4, 0)`` summed as integers (DuckDB: DECIMAL(38, 0));
  here in int64, None past 2**62;
* counts, the largest order and the gap to the previous purchase day are exact by construction.

None also when a column has another type than the daily query assumes, a customer id or a day is null, or
an amount is not finite: DuckDB's query then runs as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clvml.features.daily_rows import FLOAT_LIMIT, floats, sort_by_customer_day
from clvml.features.evaluate import round_half_away
from clvml.features.incremental import engine_arrow, in_memory

#: the optional columns the daily rows sum (as units), in the daily query's order
OPTIONAL = ("quantity", "discount", "margin")
#: the squared values' units and their day sums must stay below this to fit int64
INT_LIMIT = 2.0**62


def daily_and_mix_rows(tx: ibis.Table, day: ibis.Value, mix_keys: Sequence[str], *,
                       decimals: int, ss_decimals: int, schema: ibis.Schema,
                       mixes_ready: Callable[[pa.Table], None] | None = None
                       ) -> tuple[ibis.Table, pa.Table | None] | None:
    """(the daily rows as an in-memory table sorted by customer and day, the mixes' rows or None).

    ``tx``: the transactions; ``day``: its days since 1970-01-01 (an expression over ``tx``); ``mix_keys``: the
    categorical columns of the mixes (empty: no mix rows); ``decimals`` / ``ss_decimals``: the units of the
    sums and of the squares; ``schema``: the daily query's schema (the result's types). None when the rows
    cannot be given DuckDB's bits here (see the module): the caller runs DuckDB's queries.
    ``mixes_ready``: called with the mixes' rows as soon as they are made, before the daily rows are
    aggregated (the caller can start the mixes on other threads meanwhile); not called when this returns
    None before that point, and the rows it was given are then still exact (they do not depend on the
    daily aggregates' checks), though the caller need not use them.
    """
    cols = tx.columns
    opt = [c for c in OPTIONAL if c in cols and c in schema]
    if not tx.amount.type().is_float64() or any(
            not (tx[c].type().is_float64() or (c == "quantity" and tx[c].type().is_integer())) for c in opt):
        return None
    raw = engine_arrow(tx.select("customer_id", _day=day, amount=tx.amount, **{c: tx[c] for c in opt},
                                 **{f"_k_{c}": tx[c] for c in mix_keys}))
    found = sort_by_customer_day(raw.column("customer_id").combine_chunks(), raw.column("_day").combine_chunks())
    if found is None:
        return None
    amount, a_ok = floats(raw.column("amount").combine_chunks())
    if not np.isfinite(amount[a_ok]).all():
        return None
    order, key, span = found.order, found.key, found.span
    extra = []
    for c in opt:
        v, ok = floats(raw.column(c).combine_chunks())
        if not np.isfinite(v[ok]).all():
            return None
        extra.append((v[order], ok[order]))
    while len(extra) < 3:
        extra.append((np.zeros(0), np.zeros(0, dtype=bool)))
    a_sorted, ok_sorted = amount[order], a_ok[order]
    mixes = None
    if mix_keys:
        # every string dictionary-encoded once, then only integer codes move (mix_arrays reads the codes)
        pos = a_sorted > 0  # null amounts are 0 here: not purchases
        mix = {"customer_id": found.coded_ids()}
        for c in mix_keys:
            mix[f"k_{c}"] = _coded_keys(raw.column(f"_k_{c}").combine_chunks(), order, ~pos)
        mix["_day"] = pa.array(found.days(slice(None)))
        mix["s"] = pa.array(round_half_away(a_sorted * float(10**decimals)), mask=~pos)
        mixes = pa.table(mix)
        del mix, pos
        if mixes_ready is not None:
            mixes_ready(mixes)
    del raw
    out = _kernel()(key, span, a_sorted, ok_sorted, *extra[0], *extra[1], *extra[2], float(10**decimals),
                 float(10**ss_decimals), FLOAT_LIMIT, INT_LIMIT)
    status, n_groups = int(out[0]), int(out[1])
    if status:
        return None
    (starts, orders, spend, ss, mx, mx_ok, refunds, refund, sums, gap, gap_ok) = (a[..., :n_groups] for a in out[2:])
    target = schema.to_pyarrow()
    table = {"customer_id": found.ids(starts), "day": found.days(starts), "orders": orders, "spend": spend,
             "ss": whole_decimals(ss, target.field("ss").type), "max_amount": pa.array(mx, mask=~mx_ok),
             "refunds": refunds, "refund_amount": refund}
    for i, c in enumerate(opt):
        table[c] = sums[i]
    table["gap"] = pa.array(gap, mask=~gap_ok)
    daily = pa.table({name: table[name] for name in target.names}).cast(target)
    return in_memory(tx._find_backend(), daily, sorted_by=("customer_id", "day")), mixes


def whole_decimals(v: np.ndarray, t: pa.DataType) -> pa.Array:
    """The whole numbers ``v`` (int64) as Arrow values of type ``t``, exactly as
    ``pa.array(v).cast(pa.decimal128(38, 0)).cast(t)`` gives them: for a ``decimal128`` of scale <= 18
    whose unscaled values fit int64, the 16-byte words are written directly (low word, then its sign),
    without Arrow's two decimal casts (~0.8 s per 10M daily rows); otherwise by those casts."""
    if pa.types.is_decimal128(t) and 0 <= t.scale <= 18:
        unit = 10**t.scale
        limit = (2**63 - 1) // unit
        if len(v) == 0 or (int(v.max()) <= limit and int(v.min()) >= -limit):
            words = np.empty((len(v), 2), dtype=np.int64)
            np.multiply(v, unit, out=words[:, 0])
            np.right_shift(words[:, 0], 63, out=words[:, 1])  # 0 or -1: the high word of the two's complement
            return pa.Array.from_buffers(t, len(v), [None, pa.py_buffer(words)])
    return pa.array(v, pa.int64()).cast(pa.decimal128(38, 0)).cast(t)


def _coded_keys(keys: pa.Array, order: np.ndarray, not_bought: np.ndarray) -> pa.DictionaryArray:
    """A mix's keys of the sorted rows ``order``, a null key as "(none)", null where ``not_bought``: as
    ``if_else(bought, fill_null(keys.take(order), "(none)"), null)``, dictionary-encoded (distinct values)."""
    enc = keys.dictionary_encode()
    dictionary = enc.dictionary
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    if enc.indices.null_count:
        at = pc.index(dictionary, pa.scalar("(none)", dictionary.type)).as_py()
        if at < 0:
            at = len(dictionary)
            dictionary = pa.concat_arrays([dictionary, pa.array(["(none)"], dictionary.type)])
        codes[~enc.indices.is_valid().to_numpy(zero_copy_only=False)] = at
    return pa.DictionaryArray.from_arrays(pa.array(codes[order], mask=not_bought), dictionary)


@functools.cache
def _kernel():  # noqa: ANN202 - a compiled function
    """:func:`_daily` compiled (Numba is imported on first use only: it costs ~0.4 s to import)."""
    from clvml.jit import compiled

    global _round
    _round = compiled(_round)
    return compiled(_daily)


def _round(x):  # pragma: no cover (compiled)
    """C's ``round``: halves away from zero (DuckDB's ROUND(x, 0) of a DOUBLE)."""
    r = np.trunc(x)
    if abs(x - r) >= 0.5:
        r += 1.0 if x > 0 else -1.0
    return r


def _daily(key, span, amount, a_ok, q, q_ok, d, d_ok, m, m_ok, unit, ss_unit, float_limit,
           int_limit):  # pragma: no cover (compiled)
    """One pass over the rows sorted by ``key`` (customer * span + day): the daily query's aggregates of
    every group. Returns (status: 0 ok / 1 not exact, number of groups, group start rows, orders, spend,
    ss, max amount, its mask, refunds, refund amount, the optional sums (3 x groups), gap, its mask)."""
    n = len(key)
    has = np.array([len(q) > 0, len(d) > 0, len(m) > 0])
    starts = np.empty(n, dtype=np.int64)
    orders = np.zeros(n, dtype=np.int64)
    spend = np.zeros(n)
    ss = np.zeros(n, dtype=np.int64)
    mx = np.zeros(n)
    mx_ok = np.zeros(n, dtype=np.bool_)
    refunds = np.zeros(n, dtype=np.int64)
    refund = np.zeros(n)
    sums = np.zeros((3, n))
    gap = np.zeros(n, dtype=np.int64)
    gap_ok = np.zeros(n, dtype=np.bool_)
    g = -1
    cust = -1
    last_buy = -1  # the customer's last purchase day so far (-1: none)
    mag = np.zeros(5)  # the group's magnitudes: spend, refund, the three optional sums
    ss_mag = 0.0
    for i in range(n):
        if g < 0 or key[i] != key[i - 1]:
            if g >= 0:  # close the previous group
                if orders[g] > 0:
                    day = key[starts[g]] % span
                    if cust == key[starts[g]] // span and last_buy >= 0:
                        gap[g] = day - last_buy
                        gap_ok[g] = True
                    last_buy = day
                for j in range(5):
                    if mag[j] >= float_limit:
                        return 1, 0, starts, orders, spend, ss, mx, mx_ok, refunds, refund, sums, gap, gap_ok
                if ss_mag >= int_limit:
                    return 1, 0, starts, orders, spend, ss, mx, mx_ok, refunds, refund, sums, gap, gap_ok
            g += 1
            starts[g] = i
            c = key[i] // span
            if c != cust:
                cust = c
                last_buy = -1
            mag[:] = 0.0
            ss_mag = 0.0
        a = amount[i]
        if a_ok[i]:
            if a > 0:
                orders[g] += 1
                u = _round(a * unit)
                spend[g] += u
                mag[0] += abs(u)
                u2 = _round(a * a * ss_unit)
                ss_mag += u2
                if ss_mag < int_limit:
                    ss[g] += np.int64(u2)
                if not mx_ok[g] or a > mx[g]:
                    mx[g] = a
                    mx_ok[g] = True
                if has[0] and q_ok[i]:
                    u = _round(q[i] * unit)
                    sums[0, g] += u
                    mag[2] += abs(u)
                if has[1] and d_ok[i]:
                    u = _round(d[i] * unit)
                    sums[1, g] += u
                    mag[3] += abs(u)
            elif a < 0:
                refunds[g] += 1
                u = _round(-a * unit)
                refund[g] += u
                mag[1] += abs(u)
        if has[2] and m_ok[i]:
            u = _round(m[i] * unit)
            sums[2, g] += u
            mag[4] += abs(u)
    if g >= 0:
        if orders[g] > 0:
            day = key[starts[g]] % span
            if cust == key[starts[g]] // span and last_buy >= 0:
                gap[g] = day - last_buy
                gap_ok[g] = True
        for j in range(5):
            if mag[j] >= float_limit:
                return 1, 0, starts, orders, spend, ss, mx, mx_ok, refunds, refund, sums, gap, gap_ok
        if ss_mag >= int_limit:
            return 1, 0, starts, orders, spend, ss, mx, mx_ok, refunds, refund, sums, gap, gap_ok
    return 0, g + 1, starts, orders, spend, ss, mx, mx_ok, refunds, refund, sums, gap, gap_ok
