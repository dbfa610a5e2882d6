"""Transaction features: recency, frequency, monetary value, purchase gaps, trend, basket, categories,
discounts, channels, refunds and margin. One transactions row is one order (negative amount: refund)."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import ibis
import pyarrow as pa

from clvml.features.assemble import side_by_side
from clvml.features.incremental import arrow_of, cut_days, in_memory, mix_arrays, mix_rows, mix_totals
from clvml.features.query import (
    DECIMALS,
    EXACT,
    aggregate_family,
    day_of,
    decimal_sum,
    exact_sum,
    from_units,
    resolve_plan,
    safe_div,
    std_from_moments,
    units,
    wide_sum,
    wide_wsum,
    wmax,
    wsum,
)
from clvml.features.registry import Feature, Inc, Say, family
from clvml.features.tx_daily import daily_and_mix_rows

FAM = family("transactions", "transactions", "tx")
R = FAM.register
#: the sum of squared order values (for the spread) keeps 4 decimals, in 128-bit integers: exact up to
#: 1e34 squared currency units (1e10 orders at the ±1e12 bound of the data contract)
SS_DECIMALS = 4
#: squared category spends at or above this are summed in float64, not DECIMAL(38, 9) (max 1e29)
HHI_EXACT_BELOW = 1e28


def _purchase(j):
    return j.orders > 0


def _purchase_day(r):
    return ibis.ifelse(r.orders > 0, r.day, ibis.null("int64"))


def _units(v, cutoff_day):
    return from_units(v)


def _since(day, cutoff_day):
    """Days from ``day`` to the cut-off."""
    return cutoff_day - day


R(Feature("orders_{w}", "Orders {span}.", "orders", Say("{value} {order|orders} {span}", zero="no orders {span}"),
          agg=lambda j, w: wsum(j.orders, w), windowed=True, inc=Inc("sum", lambda r: r.orders), whole=True))
R(Feature("spend_{w}", "Gross spend (positive amounts) {span}.", "currency", Say("spent {value} {span}",
                                                                                 zero="spent nothing {span}",
                                                                                 kind="money"),
          agg=lambda j, w: from_units(wsum(j.spend, w)), windowed=True,
          inc=Inc("sum", lambda r: r.spend, then=_units)))
R(Feature("purchase_days_{w}", "Distinct days with a purchase {span}.", "days",
          Say("bought on {value} {day|days} {span}", zero="no purchases {span}"),
          agg=lambda j, w: wsum(j.orders > 0, w), windowed=True, inc=Inc("sum", lambda r: r.orders > 0), whole=True))
R(Feature("spend_max_{w}", "Largest order {span}.", "currency", Say("largest order {value} {span}",
                                                                    missing="no orders {span}", kind="money"),
          agg=lambda j, w: wmax(j.max_amount, w), windowed=True, fill=None,
          inc=Inc("max", lambda r: r.max_amount)))
R(Feature("ss_{w}", "", "", "", agg=lambda j, w: from_units(wide_wsum(j.ss, w), SS_DECIMALS),
          windowed=True, hidden=True, inc=Inc("sum", lambda r: r.ss, then=lambda v, c: from_units(v, SS_DECIMALS))))
R(Feature("spend_mean_{w}", "Mean order value {span}.", "currency", Say("average order {value} {span}",
                                                                        missing="no orders {span}", kind="money"),
          derive=lambda c, w: safe_div(c[_n("spend", w)], c[_n("orders", w)]), windowed=True,
          fill=None))
R(Feature("spend_std_{w}", "Standard deviation of order values {span}.", "currency",
          Say("order values vary by {value} {span}", zero="every order had the same value {span}",
              missing="too few orders to compare {span}", kind="money"),
          derive=lambda c, w: std_from_moments(c[_n("orders", w)], c[_n("spend", w)], c[_n("ss", w)]),
          windowed=True, fill=None))
R(Feature("refunds_{w}", "Refund/return rows (negative amounts) {span}.", "refunds",
          Say("{value} {refund|refunds} {span}", zero="no refunds {span}"),
          agg=lambda j, w: wsum(j.refunds, w), windowed=True, inc=Inc("sum", lambda r: r.refunds), whole=True))
R(Feature("refund_amount_{w}", "Amount refunded {span}.", "currency", Say("{value} refunded {span}",
                                                                          zero="nothing refunded {span}",
                                                                          kind="money"),
          agg=lambda j, w: from_units(wsum(j.refund_amount, w)), windowed=True,
          inc=Inc("sum", lambda r: r.refund_amount, then=_units)))
R(Feature("recency_days", "Days from the last purchase to the cut-off.", "days",
          Say("last purchase {value} ago", zero="last purchase less than a day ago", missing="no purchase yet",
              kind="days"),
          agg=lambda j, w: (j.cutoff_day - j.day).min(where=_purchase(j)), fill=None,
          inc=Inc("max", lambda r: _purchase_day(r), then=_since), whole=True))
R(Feature("tenure_days", "Days from the first transaction to the cut-off.", "days",
          Say("customer for {value}", zero="customer for less than a day", missing="no purchase yet", kind="days"),
          agg=lambda j, w: (j.cutoff_day - j.day).max(), calendar=True,
          inc=Inc("min", lambda r: r.day, then=_since), whole=True))
R(Feature("first_amount", "Spend on the first purchase day.", "currency",
          Say("first purchase was {value}", zero="first purchase was free", missing="no purchase yet", kind="money"),
          agg=lambda j, w: from_units(j.spend.argmin(j.day, where=_purchase(j))), fill=None,
          inc=Inc("first", lambda r: ibis.ifelse(_purchase(r), r.spend, ibis.null("float64")), then=_units)))
R(Feature("gap_n", "", "", "", agg=lambda j, w: j.gap.count(), hidden=True, inc=Inc("sum", lambda r: r.gap.notnull())))
R(Feature("gap_sum", "", "", "", agg=lambda j, w: wsum(j.gap), hidden=True, inc=Inc("sum", lambda r: r.gap)))
R(Feature("gap_ss", "", "", "", agg=lambda j, w: wsum(j.gap * j.gap), hidden=True,
          inc=Inc("sum", lambda r: r.gap * r.gap)))
R(Feature("ipt_last", "Days between the last two purchase days.", "days",
          Say("the last gap between purchases was {value}", zero="the last two purchases were on the same day",
              missing="no purchase gap yet (one purchase day so far)", kind="days"),
          agg=lambda j, w: j.gap.argmax(j.day, where=j.gap.notnull()), fill=None,
          inc=Inc("last", lambda r: r.gap), whole=True))
R(Feature("ipt_mean", "Mean days between purchase days.", "days",
          Say("usually buys every {value}", zero="usually buys several times a day", one="usually buys every day",
              missing="no purchase gap yet (one order so far)", kind="days"),
          derive=lambda c, w: safe_div(c.gap_sum, c.gap_n), fill=None))
R(Feature("ipt_std", "Standard deviation of days between purchase days.", "days",
          Say("purchase gaps vary by {value}", zero="buys at perfectly regular intervals",
              missing="too few purchases to measure their regularity", kind="days"),
          derive=lambda c, w: std_from_moments(c.gap_n, c.gap_sum, c.gap_ss), fill=None))
R(Feature("recency_rel", "Days since the last purchase divided by the customer's mean gap.", "ratio",
          Say("has been silent for {value} their usual gap between purchases", zero="has just bought",
              missing="no usual purchase gap yet (one order so far)", kind="ratio"),
          derive=lambda c, w: safe_div(c.recency_days, c.ipt_mean), fill=None))
R(Feature("ipt_last_rel", "Last gap divided by the customer's mean gap.", "ratio",
          Say("the last gap between purchases was {value} the usual one",
              missing="no usual purchase gap yet (fewer than two gaps)", kind="ratio"),
          derive=lambda c, w: safe_div(c.ipt_last, c.ipt_mean), fill=None))
R(Feature("orders_prev90", "", "", "", hidden=True,
          agg=lambda j, w: wsum(j.orders, where=(j.day < j.cutoff_day - 90)
                                             & (j.day >= j.cutoff_day - 180)),
          inc=Inc("sum", lambda r: r.orders, band=(180, 90))))
R(Feature("orders_last90", "", "", "", hidden=True,
          agg=lambda j, w: wsum(j.orders, where=j.day >= j.cutoff_day - 90),
          inc=Inc("sum", lambda r: r.orders, band=(90, 0))))
R(Feature("spend_prev90", "", "", "", hidden=True,
          agg=lambda j, w: from_units(wsum(j.spend, where=(j.day < j.cutoff_day - 90)
                                                  & (j.day >= j.cutoff_day - 180))),
          inc=Inc("sum", lambda r: r.spend, band=(180, 90), then=_units)))
R(Feature("spend_last90", "", "", "", hidden=True,
          agg=lambda j, w: from_units(wsum(j.spend, where=j.day >= j.cutoff_day - 90)),
          inc=Inc("sum", lambda r: r.spend, band=(90, 0), then=_units)))
R(Feature("orders_trend_90d", "Orders in the last 90 days minus orders in the 90 days before.",
          "orders", Say("{value} more {order|orders} than in the previous 90 days",
                        zero="as many orders as in the previous 90 days",
                        negative="{value} fewer {order|orders} than in the previous 90 days",
                        missing="no order history to compare"),
          derive=lambda c, w: c.orders_last90.fill_null(0) - c.orders_prev90.fill_null(0), whole=True))
R(Feature("spend_trend_90d", "Spend in the last 90 days minus spend in the 90 days before.",
          "currency", Say("spent {value} more than in the previous 90 days",
                          zero="spent as much as in the previous 90 days",
                          negative="spent {value} less than in the previous 90 days",
                          missing="no spend history to compare", kind="money"),
          derive=lambda c, w: c.spend_last90.fill_null(0) - c.spend_prev90.fill_null(0)))
R(Feature("quantity_all", "", "", "", agg=lambda j, w: from_units(wsum(j.quantity)), hidden=True,
          requires=("quantity",), inc=Inc("sum", lambda r: r.quantity, then=_units)))
R(Feature("basket_size", "Mean items per order over all history.", "items",
          Say("buys {value} {item|items} per order", zero="orders hold no counted items",
              missing="no item counts recorded"),
          derive=lambda c, w: safe_div(c.quantity_all, c.orders_all), fill=None,
          requires=("quantity",)))
R(Feature("discount_{w}", "", "", "", agg=lambda j, w: from_units(wsum(j.discount, w)), windowed=True,
          hidden=True, requires=("discount",), inc=Inc("sum", lambda r: r.discount, then=_units)))
R(Feature("discount_share_{w}", "Discount as a share of list value (spend + discount) {span}.",
          "ratio", Say("{value} of order value was discounted {span}", zero="no discounts used {span}",
                       missing="no orders {span}", kind="share"),
          derive=lambda c, w: safe_div(c[_n("discount", w)],
                                       c[_n("discount", w)] + c[_n("spend", w)]),
          windowed=True, fill=None, requires=("discount",)))
R(Feature("margin_{w}", "Gross margin (refunds net) {span}.", "currency", Say("margin of {value} {span}",
                                                                              zero="no margin {span}",
                                                                              negative="lost {value} in margin {span}",
                                                                              kind="money"),
          agg=lambda j, w: from_units(wsum(j.margin, w)), windowed=True, requires=("margin",),
          inc=Inc("sum", lambda r: r.margin, then=_units)))
# computed by the mix queries below (one per categorical column)
R(Feature("categories_all", "Distinct product categories bought.", "categories",
          Say("bought from {value} {category|categories}", zero="no product category recorded"),
          requires=("category",), whole=True))
R(Feature("category_hhi", "Concentration of spend over categories (Herfindahl, 1 = one category).",
          "ratio", Say("category concentration {value} (1 = a single category)", missing="no category data",
                       kind="number"), fill=None, requires=("category",)))
R(Feature("channels_all", "Distinct sales channels used.", "channels", Say("used {value} sales {channel|channels}",
                                                                           zero="no sales channel recorded"),
          requires=("channel",), whole=True))
R(Feature("main_channel_share", "Share of orders placed in the customer's main channel.", "ratio",
          Say("{value} of orders in the main channel", missing="no channel data", kind="share"),
          fill=None, requires=("channel",)))


def _n(stem: str, w: int | None) -> str:
    return f"{stem}_{w}d" if w else f"{stem}_all"


def daily(tx: ibis.Table) -> ibis.Table:
    """One row per customer and day with the day's order metrics and the gap to the previous
    purchase day."""
    cols = tx.columns
    t = tx.mutate(day=day_of(tx.ts))
    pos = t.amount > 0
    aggs = dict(
        orders=t.amount.count(where=pos),
        spend=exact_sum(t.amount, pos).fill_null(0),
        ss=wide_sum(t.amount * t.amount, pos, SS_DECIMALS).fill_null(0),
        max_amount=t.amount.max(where=pos),
        refunds=t.amount.count(where=t.amount < 0),
        refund_amount=exact_sum(-t.amount, t.amount < 0).fill_null(0),
    )
    if "quantity" in cols:
        aggs["quantity"] = exact_sum(t.quantity, pos).fill_null(0)
    if "discount" in cols:
        aggs["discount"] = exact_sum(t.discount, pos).fill_null(0)
    if "margin" in cols:
        aggs["margin"] = exact_sum(t.margin).fill_null(0)
    d = t.group_by(["customer_id", "day"]).aggregate(**aggs)
    prev = ibis.ifelse(d.orders > 0, d.day, ibis.null("int64")).max().over(
        ibis.window(group_by="customer_id", order_by="day", rows=(None, -1))
    )
    return d.mutate(gap=ibis.ifelse(d.orders > 0, d.day - prev, ibis.null("int64")))


#: the mixes: column -> (count feature, share feature, kind)
MIXES = {"category": ("tx_categories_all", "tx_category_hhi", "hhi"),
         "channel": ("tx_channels_all", "tx_main_channel_share", "share")}


def _mix_rows(tx: ibis.Table, columns: Sequence[str]) -> ibis.Table:
    """Every transaction with its day, a purchase's units ``s`` and, per mix column, its key ``k_<column>``
    (null: not a purchase): the rows of the incremental plan's mixes."""
    pos = tx.amount > 0
    keys = {f"k_{c}": ibis.ifelse(pos, tx[c].fill_null("(none)"), ibis.null("string")) for c in columns}
    return tx.select("customer_id", day=day_of(tx.ts), s=ibis.ifelse(pos, units(tx.amount), ibis.null("float64")),
                     **keys)


def _mix(tx: ibis.Table, cutoffs: ibis.Table, column: str, count_name: str,
         share_name: str, kind: str, plan: str | None = None, data: pa.Table | None = None) -> ibis.Table:
    """The mix of ``column`` per (customer, cut-off): the number of its values bought and (``kind``) the
    spend concentration over them ("hhi") or the main value's share of the orders ("share").

    The incremental plan computes it in NumPy (:func:`~clvml.features.incremental.mix_totals`, the same
    bits), for every (customer, cut-off) of the family's incremental rows, in their order."""
    if resolve_plan(plan, tx._find_backend().name) == "incremental":
        # every transaction: the purchases with their key and units, the others (null key) for the family's rows
        # (``data``: those rows of both mixes, executed once by the caller)
        out = mix_totals(_mix_rows(tx, [column]), cutoffs, count_name, share_name, kind, decimals=DECIMALS,
                         exact_scale=EXACT.scale, exact_below=HHI_EXACT_BELOW, data=data, key=f"k_{column}")
        if out is not None:
            return out
    t = tx.filter(tx.amount > 0).mutate(day=day_of(tx.ts), key=tx[column].fill_null("(none)"))
    d = t.group_by(["customer_id", "key", "day"]).aggregate(n=t.count(), s=exact_sum(t.amount))
    j = d.cross_join(cutoffs).filter(d.day < cutoffs.cutoff_day)
    per = j.group_by(["customer_id", "cutoff_day", "key"]).aggregate(n=wsum(j.n), s=wsum(j.s))
    if kind == "hhi":  # spend concentration; squares of exact sums can pass 2**53: DECIMAL
        sq = from_units(per.s) ** 2
        # DECIMAL(38, 9) holds squares below 1e29 (a category total of 3e14); the rare larger ones
        # are added as float64 (no longer guaranteed bit-identical, as any float64 sum past 2**53)
        small = sq < HHI_EXACT_BELOW
        agg = per.group_by(["customer_id", "cutoff_day"]).aggregate(
            **{count_name: per.count(), "_ss": decimal_sum(ibis.ifelse(small, sq, 0.0)),
               "_big": ibis.ifelse(small, 0.0, sq).sum(), "_s": wsum(per.s)})
        return agg.select("customer_id", "cutoff_day", count_name,
                          **{share_name: safe_div(agg._ss.cast("float64") + agg._big,
                                                  from_units(agg._s) ** 2)})
    agg = per.group_by(["customer_id", "cutoff_day"]).aggregate(
        **{count_name: per.count(), "_max": per.n.max(), "_tot": wsum(per.n)})
    return agg.select("customer_id", "cutoff_day", count_name,
                      **{share_name: safe_div(agg._max, agg._tot)})


def build(tx: ibis.Table, cutoffs: ibis.Table, windows: Sequence[int], plan: str | None = None) -> ibis.Table:
    """Transaction features for every (customer, cut-off) with a transaction before the cut-off
    (``plan``: :func:`~clvml.features.query.resolve_plan`).

    With the incremental plan the daily rows and the mixes' rows come from one export
    (:func:`~clvml.features.tx_daily.daily_and_mix_rows`), and the mixes are computed on threads from the
    moment their rows are made, while the daily rows and the family's aggregates are."""
    keys = ["customer_id", "cutoff_day"]
    cols = [c for c in MIXES if c in tx.columns]
    rows = daily(tx)
    early: dict[str, Future] = {}  # the mixes computed in NumPy, started as soon as their rows are made
    with ThreadPoolExecutor(max(1, len(cols))) as pool:
        if resolve_plan(plan, tx._find_backend().name) == "incremental":
            def start(data: pa.Table) -> None:  # the mixes on the pool while the daily rows are aggregated
                cuts = cut_days(cutoffs)
                early.update({c: pool.submit(mix_arrays, data, cuts, *MIXES[c], decimals=DECIMALS,
                                             exact_scale=EXACT.scale, exact_below=HHI_EXACT_BELOW, key=f"k_{c}")
                              for c in cols})

            # None: DuckDB's queries give the rows (and the mixes' rows below, if needed)
            found = daily_and_mix_rows(tx, day_of(tx.ts), cols, decimals=DECIMALS, ss_decimals=SS_DECIMALS,
                                       schema=rows.schema(), mixes_ready=start)
            if found is None:
                early.clear()  # computed by the cross join's path below, as before (mixes started are dropped)
            else:
                rows = found[0]
        out = aggregate_family(FAM, rows, cutoffs, windows, tx.columns, plan=plan, one_row_per_day=True)
        by_position = arrow_of(out) is not None  # the incremental plan ran: its rows are in memory
        mixes, data = [], None
        for c in cols:
            table = early[c].result() if c in early else None
            if table is not None:
                mixes.append(in_memory(tx._find_backend(), table))
                continue
            if by_position and data is None:  # the rows of both mixes from one query
                data = mix_rows(_mix_rows(tx, cols), [f"k_{c}" for c in cols])
            mixes.append(_mix(tx, cutoffs, c, *MIXES[c], plan, data))
    del data
    early.clear()
    # the family's rows are in memory already: the mixes placed by position, not joined
    placed = side_by_side(out, mixes) if mixes and by_position else None
    if placed is not None:
        return placed
    for mix in mixes:
        out = out.left_join(mix, keys).drop("customer_id_right", "cutoff_day_right")
    return out
