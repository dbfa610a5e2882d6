"""The shared query shape of every family: events -> one row per customer-day -> one row per (customer,
cut-off) with every window's aggregates -> derived columns.

Two plans give the aggregates, with the same bits. The cross join joins every customer-day to every later
cut-off (strictly earlier days only) and aggregates conditionally per window: one query, on any engine.
The incremental plan (DuckDB only, :mod:`clvml.features.incremental`) computes the aggregates that declare
an incremental form (:class:`~clvml.features.registry.Inc`) from running totals in NumPy, and the
same derived columns from them (in NumPy where it reproduces DuckDB's bits, else in DuckDB);
:func:`resolve_plan` picks one.

Cut-offs are midnights, so "day < cutoff day" is exactly "ts < cutoff": nothing at or after a cut-off
can reach its features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import ibis

from clvml.features import registry
from clvml.features.incremental import Item, aggregate_incremental, stored
from clvml.features.registry import Family

Plan = Literal["auto", "cross_join", "incremental"]
PLANS: tuple[str, ...] = ("auto", "cross_join", "incremental")

#: the plan used when none is given (``features.plan`` in the config)
PLAN: Plan = "auto"


#: ``auto`` takes the incremental plan on DuckDB from this many cut-offs on (see :func:`resolve_plan`)
AUTO_INCREMENTAL_FROM = 3


def resolve_plan(plan: str | None, backend: str, cutoffs: int | None = None) -> Literal["cross_join", "incremental"]:
    """The plan that runs for ``plan`` (None: :data:`PLAN`) on the engine named ``backend`` for ``cutoffs``
    cut-offs (None: unknown).

    ``auto`` is the incremental plan on DuckDB from :data:`AUTO_INCREMENTAL_FROM` cut-offs on, else the
    cross join. Measured on a quiet 2-core machine on 2026-12-06 (bench/RESULTS.md, "auto: the incremental
    plan from three cut-offs"), every family at 1M transactions + 3M events, wall / CPU, incremental vs
    cross join: 1 cut-off 5.3–5.6 s / 8.1–8.6 s vs 4.3–4.7 s / 7.6–7.9 s; 2 cut-offs 7.3–7.7 / 10.5–11.3
    vs 6.7 / 12.4–12.5; 3 cut-offs 8.5–8.7 / 11.9–12.5 vs 8.9–9.0 / 15.5–16.8; 6 cut-offs 12.9–13.0 /
    17.7–17.8 vs 13.9–14.4 / 24.4–25.3, peak memory within ±0.2 GiB. The demo's training job (4 cut-offs
    per query): 55.8–57.4 s, 74.7–76.3 CPU-s, peak 1.23–1.25 GB, against 58.2–59.8 s, 78.6–80.4 CPU-s,
    1.42 GB, the same model. The incremental plan executes part of the query eagerly through DuckDB and
    NumPy, so on every other engine (Spark) the cross join runs whatever is asked.
    """
    plan = PLAN if plan is None else plan
    if plan not in PLANS:
        raise ValueError(f"unknown feature plan {plan!r}; use one of {', '.join(PLANS)}")
    if backend != "duckdb" or plan == "cross_join":
        return "cross_join"
    if plan == "auto" and (cutoffs is None or cutoffs < AUTO_INCREMENTAL_FROM):
        return "cross_join"
    return "incremental"


def day_of(ts: ibis.Value) -> ibis.Value:
    """Days since 1970-01-01 of a timestamp (an integer, cheap to compare and subtract)."""
    return ts.date().epoch_days()


def aggregate_family(
    fam: Family, rows: ibis.Table, cutoffs: ibis.Table, windows: Sequence[int],
    columns: Sequence[str], day: str = "day", plan: str | None = None, one_row_per_day: bool = False,
) -> ibis.Table:
    """Aggregate ``rows`` (customer_id, day, metrics…) to one row per (customer, cut-off).

    ``plan``: see :func:`resolve_plan`; the incremental plan applies only to ``rows`` with at most one
    row per customer and day (``one_row_per_day``) and to the aggregates declaring an
    :class:`~clvml.features.registry.Inc`; it executes the daily rows at once (not lazily).

    Returns the declared features (hidden helpers dropped) with prefix ``fam.prefix``, the whole-number
    ones (:attr:`~clvml.features.registry.Feature.whole`) as float32, their storage; customers with no
    rows before a cut-off are simply absent (the builder fills them).
    """
    feats = fam.active(columns)
    # the whole-number features (counts, flags, days) as float32, their storage (registry.storage): C's
    # conversion, as CAST(x AS FLOAT); the incremental plan writes them so directly, without a float64 copy
    whole = {f"{fam.prefix}_{name}" for f in feats if not f.hidden and registry.storage(f) == "float32"
             for name, _ in f.instances(windows)}
    out = None
    joined = [f for f in feats if f.agg is not None]
    keep = [name for f in feats if not f.hidden and (f.agg or f.derive) for name, _ in f.instances(windows)]

    def outputs(table: ibis.Table) -> dict[str, ibis.Value]:
        cols = Columns(table)
        for f in feats:  # derived columns may use earlier derived ones: declared order matters
            if f.derive is None:
                continue
            for name, w in f.instances(windows):
                cols.derived[name] = f.derive(cols, w)
        return {f"{fam.prefix}_{c}": cols[c] for c in keep}

    if one_row_per_day and resolve_plan(plan, rows._find_backend().name) == "incremental":
        items = [Item(name, f.inc, w) for f in joined if f.inc is not None for name, w in f.instances(windows)]
        every = all(f.inc is not None for f in joined)
        # every aggregate incremental: the derived columns too are computed from the NumPy aggregates
        out = (aggregate_incremental(items, rows, cutoffs, day, outputs=outputs if every else None, narrow=whole)
               if items else None)
        if out is not None and every:
            return out
        if out is not None:
            joined = [f for f in joined if f.inc is None]
            if joined:  # both have a row for exactly the (customer, cut-off) pairs with a row before it
                out = out.join(_cross_join_aggregate(joined, rows, cutoffs, windows, day),
                               ["customer_id", "cutoff_day"]).drop("customer_id_right", "cutoff_day_right")
    if out is None:
        out = _cross_join_aggregate(joined, rows, cutoffs, windows, day)
    return out.select("customer_id", "cutoff_day",
                      **{name: stored(v, name in whole) for name, v in outputs(out).items()})


def _cross_join_aggregate(feats: Sequence, rows: ibis.Table, cutoffs: ibis.Table, windows: Sequence[int],
                          day: str) -> ibis.Table:
    """The aggregates of ``feats`` by joining every row to every later cut-off."""
    j = rows.cross_join(cutoffs).filter(rows[day] < cutoffs.cutoff_day)
    # one 0/1 column per window (float64, like the sums it multiplies), computed once and multiplied
    # in: much cheaper than one FILTER clause per aggregate
    j = j.mutate(**{f"_in{w}": (j[day] >= j.cutoff_day - w).cast("float64") for w in windows})
    aggs: dict[str, ibis.Value] = {}
    for f in feats:
        for name, w in f.instances(windows):
            win = None if w is None else j[f"_in{w}"]
            aggs[name] = f.agg(j, win)
    return j.group_by(["customer_id", "cutoff_day"]).aggregate(**aggs)


class Columns:
    """The aggregated table's columns plus the derived expressions so far, looked up alike
    (``c.name`` or ``c["name"]``).

    Derived values are inlined into the one final projection instead of one ``mutate`` per derived
    column: each ``mutate`` is another SELECT layer that Ibis must merge, and compiling those layers
    was most of the compile time (and half of the whole build at 100k transactions).
    """

    def __init__(self, table: ibis.Table) -> None:
        self.table = table
        self.derived: dict[str, ibis.Value] = {}

    def __getitem__(self, name: str) -> ibis.Value:
        return self.derived[name] if name in self.derived else self.table[name]

    def __getattr__(self, name: str) -> ibis.Value:
        if name.startswith("__"):
            raise AttributeError(name)
        return self[name]


#: exact type for sums of squared category spends (``transactions._mix``), beyond float64's 2**53
EXACT = ibis.expr.datatypes.Decimal(38, 9)

#: decimals kept by :func:`exact_sum`
DECIMALS = 6


#: 128-bit integer units for sums of squares (``wide_sum``): 38 digits, where 64 bits hold 18
WIDE = ibis.expr.datatypes.Decimal(38, 0)


@ibis.udf.scalar.builtin(name="round")
def _round(x: float, digits: int) -> float:  # ROUND(x, d) kept in float64 (Ibis casts it to BIGINT)
    ...


def wide_sum(x: ibis.Value, where: ibis.Value | None = None, decimals: int = DECIMALS) -> ibis.Value:
    """:func:`exact_sum` in 128-bit integer units (``DECIMAL(38, 0)``), for squares: a squared order
    of 1e12 is 1e28 units of 1e-4, far beyond 64 bits (9.2e18, i.e. one order of 3e7). Integer sums
    are exact in any order, so the result is the same bits on every run. Sum windows of it with
    :func:`wide_wsum`; :func:`from_units` converts back."""
    return _round(x.cast("float64") * 10**decimals, 0).cast(WIDE).sum(where=where)


def wide_wsum(x: ibis.Value, w: ibis.Value | None = None) -> ibis.Value:
    """Sum of the :func:`wide_sum` units ``x`` over the window indicator ``w`` (None: all rows),
    still in 128-bit integers (exact: the float64 sums of :func:`wsum` round above 2**53)."""
    return x.sum() if w is None else ibis.ifelse(w == 1, x, ibis.literal(0, WIDE)).sum()


def decimal_sum(x: ibis.Value, where: ibis.Value | None = None) -> ibis.Value:
    """Sum computed in DECIMAL(38, 9) (each value rounded to 1e-9): exact over 29 integer digits, but
    128-bit arithmetic is slow, so only where :func:`exact_sum`'s range is too small (squares)."""
    return x.cast(EXACT).sum(where=where)


def exact_sum(x: ibis.Value, where: ibis.Value | None = None,
              decimals: int = DECIMALS) -> ibis.Value:
    """Sum of a floating-point column in integer units of ``10**-decimals``, as float64.

    A floating-point sum depends on the order of its terms, and a parallel hash aggregation adds them
    in whatever order its threads deliver: two runs on the same data could differ in the last bits
    (and LightGBM would then pick other splits). Each value is rounded to a whole number of units, so
    every partial sum is an integer, exact in float64 in any order while the total stays below 2**53
    (9e9 currency units at 6 decimals); beyond that it is an ordinary float64 sum. The result is in
    units: window sums of it are exact too, and :func:`from_units` converts back. (DECIMAL sums are
    also exact, but DuckDB's 128-bit arithmetic was the largest cost of the feature build.)
    """
    return units(x, decimals).sum(where=where)


def units(x: ibis.Value, decimals: int = DECIMALS) -> ibis.Value:
    """``x`` as a whole number of units of ``10**-decimals`` (float64): the terms :func:`exact_sum` adds."""
    # ROUND kept in float64: Ibis casts round() to BIGINT, which overflows on a customer's total
    # above 9.2e12 (and wraps silently on Spark); a rounded float64 is a whole number all the same
    return _round(x.cast("float64") * 10**decimals, 0)


def from_units(x: ibis.Value, decimals: int = DECIMALS) -> ibis.Value:
    """A sum of :func:`exact_sum` units back in the column's own unit."""
    return x.cast("float64") / 10**decimals


def safe_div(a: ibis.Value, b: ibis.Value) -> ibis.Value:
    """a / b, null when b is 0 or null."""
    return ibis.ifelse(b.fill_null(0) == 0, ibis.null("float64"), a.cast("float64") / b)


def std_from_moments(n: ibis.Value, s: ibis.Value, ss: ibis.Value) -> ibis.Value:
    """Sample standard deviation from count, sum and sum of squares (null for n < 2)."""
    n, s, ss = n.cast("float64"), s.cast("float64"), ss.cast("float64")
    var = (ss - s * s / n) / (n - 1)
    return ibis.ifelse(n > 1, ibis.greatest(var, 0).sqrt(), ibis.null("float64"))


def wsum(x: ibis.Value, w: ibis.Value | None = None, where: ibis.Value | None = None) -> ibis.Value:
    """Sum of ``x`` over the window indicator ``w`` (None: all rows) and the rows where ``where``
    holds. Booleans count as 0/1.

    Integers are summed as float64 and cast back: exact below 2**53, and much cheaper than DuckDB's
    128-bit (HUGEINT) integer sums.
    """
    integer = x.type().is_boolean() or x.type().is_integer()
    x = x.cast("float64")
    total = (x if w is None else x * w).sum(where=where)
    return total.cast("int64") if integer else total


def wmax(x: ibis.Value, w: ibis.Value | None) -> ibis.Value:
    """Maximum of ``x`` over the window indicator ``w`` (None: all rows)."""
    return x.max() if w is None else ibis.ifelse(w == 1, x, ibis.null(x.type())).max()
