"""Line items -> orders: one transactions row per order, built from an export with one row per order line.

Lines (validated like any table, see :func:`clvml.data.validation.prepare_table`) are grouped into orders
by ``(customer_id, order_id)``; cancellations are then netted against the same customer's purchases of
the same day. The rules, precisely (``docs/line-items.md``):

* **An order** is every line with its customer and order id. Its time is its earliest line's; its amount
  is the sum of its lines' amounts (each rounded to 1e-6, so the sum is exact and the same bits on every
  run); its category is the category with the largest net amount among its lines (ties: the first
  name), its channel the one most of its lines name (ties: the first name); its ``quantity`` (the basket
  size) is the sum of its lines' quantities, its number of lines, or its number of distinct products
  (``basket``).
* **Net amount 0** (free items only; an invoice that cancels itself): not a purchase and not a refund —
  the order is removed and counted (``zero_orders``).
* **Net amount below 0** is a cancellation (in the UCI Online Retail data: invoices ``C…`` with negative
  quantities). It is netted against the purchases of the same customer on the same UTC day — with a
  ``product`` column, each cancelled line first against the same product bought that day, then what is
  left against the day's orders: of the purchase total P and cancellation total N, min(P, N) is taken
  off both sides, each side from its latest line or order backwards (time, then order id). Cut-offs are
  midnights, so nothing moves across a cut-off. A purchase order taken off entirely is removed
  (``orders_cancelled``), one taken off in part keeps the rest of its amount (its basket stays as
  ordered); a cancellation absorbed entirely is removed (``cancellations_netted``), and what a
  cancellation has beyond the day's purchases stays as a refund row (negative amount: it cancels a
  purchase of an earlier day, which the export does not identify).

Every step is counted in ``ValidationReport.line_items`` and reported as a finding (one log line each).
"""

from __future__ import annotations

from typing import Any

import ibis
import ibis.expr.datatypes as dtypes

from clvml.config import TableSource
from clvml.data.validation import Problem, ValidationReport
from clvml.engine import materialize, release

#: amounts are summed in integer units of 1e-6 (exact in float64 up to 9e9 per order or day)
UNITS = 10**6


@ibis.udf.scalar.builtin(name="round")
def _round(x: float, digits: int) -> float:  # ROUND(x, d) kept in float64 (Ibis casts it to BIGINT)
    ...


def check_lines(name: str, lines: ibis.Table, source: TableSource, report: ValidationReport) -> bool:
    """Refuse what lines cannot be grouped by: an order id shared by several customers, order-level
    discount/margin columns (not split across lines), a basket of quantities without a quantity column.
    Returns False when a problem was added."""
    ok = True
    if source.basket == "quantity" and "quantity" not in lines.columns:
        report.problems.append(Problem(
            name, "quantity", "missing_column", -1,
            "basket: quantity sums the lines' quantities, but the table has no quantity column",
            f"map it (data.tables.{name}.columns.quantity: <your column>), or set basket: lines"))
        ok = False
    unsupported = [c for c in ("discount", "margin") if c in lines.columns]
    if unsupported:
        report.problems.append(Problem(
            name, unsupported[0], "line_grain_column", -1,
            f"column(s) {', '.join(unsupported)} at grain: line — discount and margin are read per order "
            "and cannot be netted per line yet",
            f"leave {' and '.join(unsupported)} out of the line export (or rename them), or aggregate the "
            "lines to orders yourself and use grain: order"))
        ok = False
    shared = (lines.group_by("order_id").aggregate(n=lines.customer_id.nunique())
              .filter(ibis._.n > 1))
    n = int(shared.count().to_pyarrow().as_py())
    if n:
        ex = shared.order_by("order_id").limit(3).to_pyarrow().to_pylist()
        report.problems.append(Problem(
            name, "order_id", "order_customers", n,
            "order ids whose lines name more than one customer: the lines of an order must share one "
            "customer", "fix the customer of those lines at the source (or check that order_id is the "
            "order key, not a line or product key)",
            examples=[{"order_id": r["order_id"], "customers": r["n"]} for r in ex]))
        ok = False
    return ok


def _mode(lines: ibis.Table, column: str, weight: ibis.Value, keys: list[str]) -> ibis.Table:
    """Per order, the value of ``column`` with the largest ``weight`` summed over its lines (ties: the
    smallest value; a null value competes as the lowest)."""
    per = lines.group_by([*keys, column]).aggregate(_w=weight.sum())
    rank = ibis.row_number().over(ibis.window(group_by=keys, order_by=[
        ibis.desc(per._w), per[column].isnull(), per[column]]))
    best = per.mutate(_r=rank)
    return best.filter(best._r == 0).select(*keys, column)


def _net(t: ibis.Table, u: str, group: list[str], out: str) -> ibis.Table:
    """Net the positive against the negative values of column ``u`` within each ``group``: of the
    group's positive total P and negative total N, min(P, N) is taken off both sides, each side from
    its latest row backwards (time, then order id, then size). Adds ``out``: what is left of each
    value, with its sign."""
    m = t[u].abs()
    side = ibis.ifelse(t[u] > 0, 1, -1)
    t = t.mutate(_m=m, _side=side)
    whole = ibis.window(group_by=group)
    p = t._m.sum(where=t[u] > 0).over(whole).fill_null(0)
    n = t._m.sum(where=t[u] < 0).over(whole).fill_null(0)
    later = t._m.sum().over(ibis.window(group_by=[*group, "_side"], rows=(None, -1), order_by=[
        ibis.desc(t.ts), ibis.desc(t.order_id), ibis.desc(t._m)]))
    t = t.mutate(_b=ibis.least(p, n), _later=later.fill_null(0))
    taken = ibis.greatest(ibis.least(t._b - t._later, t._m), 0)  # what the other side takes off it
    return t.mutate(**{out: t._side * (t._m - taken)}).drop("_m", "_side", "_b", "_later")


def to_orders(name: str, lines: ibis.Table, source: TableSource, report: ValidationReport,
              store: str, what: str | None = None) -> ibis.Table:
    """Group validated ``lines`` into orders and net cancellations against their day (see the module
    docstring); record the counts in ``report.line_items[name]`` and one finding per kind of change.

    Parameters
    ----------
    store
        Name of the temporary table the orders are computed into (once; sorted by customer and time).
    what
        Names the table and its source in engine errors.

    Returns
    -------
    ibis.Table
        Canonical transactions: ``customer_id, ts, amount, order_id`` and, when the lines give them,
        ``quantity`` (the basket size), ``category``, ``channel``.
    """
    con = lines.get_backend()
    keys = ["customer_id", "order_id"]
    cols = lines.columns
    t = lines.mutate(_u=_round(lines.amount.cast(dtypes.float64) * UNITS, 0), _day=lines.ts.date())
    # the order's net amount as exported: 0 means a free or self-cancelling order, left out of netting
    t = t.mutate(_u0=t._u.sum().over(ibis.window(group_by=keys)))
    t = t.mutate(_live=ibis.ifelse(t._u0 == 0, 0.0, t._u))
    if "product" in cols:  # 1. a cancelled product first meets the same product bought that day
        t = t.mutate(_byp=ibis.ifelse(t["product"].isnull(), 0.0, t._live))
        t = _net(t, "_byp", ["customer_id", "_day", "product"], "_p1")
        t = t.mutate(_u1=ibis.ifelse(t["product"].isnull(), t._live, t._p1),
                     _matched=(t._p1 != t._byp) & (t._byp < 0))
    else:
        t = t.mutate(_u1=t._live, _matched=ibis.literal(False))
    basket = source.basket or ("quantity" if "quantity" in cols else "lines")
    aggs: dict[str, Any] = {"ts": t.ts.min(), "_day": t._day.min(), "_u0": t._u.sum(), "_u1": t._u1.sum(),
                            "_lines": t.count(), "_matched": t._matched.cast(dtypes.int64).sum()}
    if basket == "quantity":
        aggs["_q"] = _round(t.quantity * UNITS, 0).sum()
    elif basket == "products":
        aggs["_q"] = t["product"].nunique()
    if "category" in cols:
        aggs["_ncat"] = t.category.nunique()
    orders = t.group_by(keys).aggregate(**aggs)
    for col, weight in (("category", t._u), ("channel", ibis.literal(1))):
        if col in cols:
            orders = orders.left_join(_mode(t.mutate(_wt=weight), col, ibis._._wt, keys), keys) \
                .drop("customer_id_right", "order_id_right")
    # 2. what is left is netted against the day's orders, the latest first
    o = _net(orders.mutate(_day=orders.ts.date()), "_u1", ["customer_id", "_day"], "_final")
    # computed once: the counts, examples and the orders are then cheap scans of it
    o = materialize(con, f"{store}_net", o, what)

    _count(name, o, report)
    kept = o.filter(o._final != 0)
    out: dict[str, ibis.Value] = {
        "customer_id": kept.customer_id, "ts": kept.ts,
        "amount": (kept._final / UNITS).cast(dtypes.float64), "order_id": kept.order_id,
    }
    if basket == "quantity":
        out["quantity"] = kept._q / UNITS
    elif basket == "lines":
        out["quantity"] = kept._lines.cast(dtypes.float64)
    else:
        out["quantity"] = kept._q.cast(dtypes.float64)
    for col in ("category", "channel"):
        if col in cols:
            out[col] = kept[col]
    orders = materialize(con, store, kept.select(**out).order_by(["customer_id", "ts", "order_id"]), what)
    release(con, f"{store}_net")
    return orders


def _count(name: str, o: ibis.Table, report: ValidationReport) -> None:
    """Count lines and orders by what became of them; one finding per kind of change."""
    purchase, cancel, zero = o._u0 > 0, o._u0 < 0, o._u0 == 0
    gone = ~zero & (o._final == 0)
    part = (o._final != 0) & (o._final.abs() < o._u0.abs())
    i64 = dtypes.int64

    def n(cond: ibis.Value) -> ibis.Value:
        return cond.cast(i64).sum()

    def lines(cond: ibis.Value) -> ibis.Value:
        return ibis.ifelse(cond, o._lines, 0).sum()

    aggs = {
        "lines": o._lines.sum(), "orders_in": o.count(),
        "zero_orders": n(zero), "zero_order_lines": lines(zero),
        "cancellation_orders": n(cancel), "cancellation_lines": lines(cancel),
        "cancellation_lines_matched": o._matched.sum(),
        "cancellations_netted": n(cancel & gone), "cancellation_lines_netted": lines(cancel & gone),
        "cancellations_reduced": n(cancel & part),
        "orders_cancelled": n(purchase & gone), "orders_cancelled_lines": lines(purchase & gone),
        "orders_reduced": n(purchase & part),
        "purchase_orders": n(o._final > 0), "refund_orders": n(o._final < 0),
        "orders": n(o._final != 0),
    }
    if "_ncat" in o.columns:
        aggs["multi_category_orders"] = n((o._final != 0) & (o._ncat > 1))
    got = {k: int(v or 0) for k, v in o.aggregate(**aggs).to_pyarrow().to_pylist()[0].items()}
    report.line_items[name] = got

    def example(cond: ibis.Value) -> list[dict[str, Any]]:
        rows = (o.filter(cond).order_by(["customer_id", "ts", "order_id"]).limit(1)
                .select("customer_id", "order_id", "ts", amount=o._u0 / UNITS, lines=o._lines)
                .to_pyarrow().to_pylist())
        return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in rows]

    def finding(check: str, n_rows: int, message: str, cond: ibis.Value, column: str | None = None) -> None:
        if n_rows:
            report.problems.append(Problem(name, column, check, n_rows, message, "see docs/line-items.md",
                                           "warning", "aggregated", example(cond)))

    finding("zero_orders", got["zero_order_lines"],
            f"lines of {got['zero_orders']:,} order(s) whose net amount is 0 (free items, or cancelled "
            "within the order): neither a purchase nor a refund, the orders are left out", zero, "amount")
    finding("cancellations_netted", got["cancellation_lines"],
            f"cancellation lines of {got['cancellation_orders']:,} order(s) with a negative net amount, netted "
            "against the same customer's purchases of their day: "
            f"{got['cancellations_netted']:,} absorbed entirely ({got['cancellation_lines_netted']:,} lines; "
            f"{got['cancellation_lines_matched']:,} line(s) met the same product first), "
            f"{got['orders_cancelled']:,} purchase order(s) cancelled entirely "
            f"({got['orders_cancelled_lines']:,} lines), {got['orders_reduced']:,} reduced; "
            f"{got['refund_orders']:,} kept as refund rows (cancelling earlier days' purchases)", cancel,
            "amount")
    if got.get("multi_category_orders"):
        finding("multi_category_orders", got["multi_category_orders"],
                "orders whose lines span several categories: each counts under its category with the "
                "largest net amount", (o._final != 0) & (o._ncat > 1), "category")
