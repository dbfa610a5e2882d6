"""Transaction features: recency, frequency, monetary value, purchase gaps, trend, basket, categories,
discounts, channels, refunds and margin. One transactions row is one order (negative amount: refund)."""

from __future__ import annotations

from collections.abc import Sequence

import ibis

from clvml.features.query import (
    aggregate_family,
    day_of,
    decimal_sum,
    exact_sum,
    from_units,
    safe_div,
    std_from_moments,
    wide_sum,
    wide_wsum,
    wmax,
    wsum,
)
from clvml.features.registry import Feature, family

FAM = family("transactions", "transactions", "tx")
R = FAM.register
#: the sum of squared order values (for the spread) keeps 4 decimals, in 128-bit integers: exact up to
#: 1e34 squared currency units (1e10 orders at the ±1e12 bound of the data contract)
SS_DECIMALS = 4
#: squared category spends at or above this are summed in float64, not DECIMAL(38, 9) (max 1e29)
HHI_EXACT_BELOW = 1e28


def _purchase(j):
    return j.orders > 0


R(Feature("orders_{w}", "Orders {span}.", "orders", "{value} orders {span}",
          agg=lambda j, w: wsum(j.orders, w), windowed=True))
R(Feature("spend_{w}", "Gross spend (positive amounts) {span}.", "currency", "spent {value} {span}",
          agg=lambda j, w: from_units(wsum(j.spend, w)), windowed=True))
R(Feature("purchase_days_{w}", "Distinct days with a purchase {span}.", "days",
          "bought on {value} different days {span}",
          agg=lambda j, w: wsum(j.orders > 0, w), windowed=True))
R(Feature("spend_max_{w}", "Largest order {span}.", "currency", "largest order {value} {span}",
          agg=lambda j, w: wmax(j.max_amount, w), windowed=True, fill=None))
R(Feature("ss_{w}", "", "", "", agg=lambda j, w: from_units(wide_wsum(j.ss, w), SS_DECIMALS),
          windowed=True, hidden=True))
R(Feature("spend_mean_{w}", "Mean order value {span}.", "currency", "average order {value} {span}",
          derive=lambda c, w: safe_div(c[_n("spend", w)], c[_n("orders", w)]), windowed=True,
          fill=None))
R(Feature("spend_std_{w}", "Standard deviation of order values {span}.", "currency",
          "order values vary by {value} {span}",
          derive=lambda c, w: std_from_moments(c[_n("orders", w)], c[_n("spend", w)], c[_n("ss", w)]),
          windowed=True, fill=None))
R(Feature("refunds_{w}", "Refund/return rows (negative amounts) {span}.", "refunds",
          "{value} refunds {span}", agg=lambda j, w: wsum(j.refunds, w), windowed=True))
R(Feature("refund_amount_{w}", "Amount refunded {span}.", "currency", "{value} refunded {span}",
          agg=lambda j, w: from_units(wsum(j.refund_amount, w)), windowed=True))
R(Feature("recency_days", "Days from the last purchase to the cut-off.", "days",
          "last purchase {value} days ago",
          agg=lambda j, w: (j.cutoff_day - j.day).min(where=_purchase(j)), fill=None))
R(Feature("tenure_days", "Days from the first transaction to the cut-off.", "days",
          "customer for {value} days", agg=lambda j, w: (j.cutoff_day - j.day).max()))
R(Feature("first_amount", "Spend on the first purchase day.", "currency",
          "first purchase was {value}",
          agg=lambda j, w: from_units(j.spend.argmin(j.day, where=_purchase(j))), fill=None))
R(Feature("gap_n", "", "", "", agg=lambda j, w: j.gap.count(), hidden=True))
R(Feature("gap_sum", "", "", "", agg=lambda j, w: wsum(j.gap), hidden=True))
R(Feature("gap_ss", "", "", "", agg=lambda j, w: wsum(j.gap * j.gap), hidden=True))
R(Feature("ipt_last", "Days between the last two purchase days.", "days",
          "the last gap between purchases was {value} days",
          agg=lambda j, w: j.gap.argmax(j.day, where=j.gap.notnull()), fill=None))
R(Feature("ipt_mean", "Mean days between purchase days.", "days",
          "usually buys every {value} days",
          derive=lambda c, w: safe_div(c.gap_sum, c.gap_n), fill=None))
R(Feature("ipt_std", "Standard deviation of days between purchase days.", "days",
          "purchase gaps vary by {value} days",
          derive=lambda c, w: std_from_moments(c.gap_n, c.gap_sum, c.gap_ss), fill=None))
R(Feature("recency_rel", "Days since the last purchase divided by the customer's mean gap.", "ratio",
          "has been silent {value}× longer than usual",
          derive=lambda c, w: safe_div(c.recency_days, c.ipt_mean), fill=None))
R(Feature("ipt_last_rel", "Last gap divided by the customer's mean gap.", "ratio",
          "the last gap was {value}× the usual one",
          derive=lambda c, w: safe_div(c.ipt_last, c.ipt_mean), fill=None))
R(Feature("orders_prev90", "", "", "", hidden=True,
          agg=lambda j, w: wsum(j.orders, where=(j.day < j.cutoff_day - 90)
                                             & (j.day >= j.cutoff_day - 180))))
R(Feature("orders_last90", "", "", "", hidden=True,
          agg=lambda j, w: wsum(j.orders, where=j.day >= j.cutoff_day - 90)))
R(Feature("spend_prev90", "", "", "", hidden=True,
          agg=lambda j, w: from_units(wsum(j.spend, where=(j.day < j.cutoff_day - 90)
                                                  & (j.day >= j.cutoff_day - 180)))))
R(Feature("spend_last90", "", "", "", hidden=True,
          agg=lambda j, w: from_units(wsum(j.spend, where=j.day >= j.cutoff_day - 90))))
R(Feature("orders_trend_90d", "Orders in the last 90 days minus orders in the 90 days before.",
          "orders", "orders changed by {value} versus the previous 90 days",
          derive=lambda c, w: c.orders_last90.fill_null(0) - c.orders_prev90.fill_null(0)))
R(Feature("spend_trend_90d", "Spend in the last 90 days minus spend in the 90 days before.",
          "currency", "spend changed by {value} versus the previous 90 days",
          derive=lambda c, w: c.spend_last90.fill_null(0) - c.spend_prev90.fill_null(0)))
R(Feature("quantity_all", "", "", "", agg=lambda j, w: from_units(wsum(j.quantity)), hidden=True,
          requires=("quantity",)))
R(Feature("basket_size", "Mean items per order over all history.", "items",
          "buys {value} items per order",
          derive=lambda c, w: safe_div(c.quantity_all, c.orders_all), fill=None,
          requires=("quantity",)))
R(Feature("discount_{w}", "", "", "", agg=lambda j, w: from_units(wsum(j.discount, w)), windowed=True,
          hidden=True, requires=("discount",)))
R(Feature("discount_share_{w}", "Discount as a share of list value (spend + discount) {span}.",
          "ratio", "{value} of order value was discounted {span}",
          derive=lambda c, w: safe_div(c[_n("discount", w)],
                                       c[_n("discount", w)] + c[_n("spend", w)]),
          windowed=True, fill=None, requires=("discount",)))
R(Feature("margin_{w}", "Gross margin (refunds net) {span}.", "currency", "margin {value} {span}",
          agg=lambda j, w: from_units(wsum(j.margin, w)), windowed=True, requires=("margin",)))
# computed by the mix queries below (one per categorical column)
R(Feature("categories_all", "Distinct product categories bought.", "categories",
          "bought from {value} categories", requires=("category",)))
R(Feature("category_hhi", "Concentration of spend over categories (Herfindahl, 1 = one category).",
          "ratio", "category concentration {value}", fill=None, requires=("category",)))
R(Feature("channels_all", "Distinct sales channels used.", "channels", "used {value} channels",
          requires=("channel",)))
R(Feature("main_channel_share", "Share of orders placed in the customer's main channel.", "ratio",
          "{value} of orders in the main channel", fill=None, requires=("channel",)))


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


def _mix(tx: ibis.Table, cutoffs: ibis.Table, column: str, count_name: str,
         share_name: str, kind: str) -> ibis.Table:
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


def build(tx: ibis.Table, cutoffs: ibis.Table, windows: Sequence[int]) -> ibis.Table:
    """Transaction features for every (customer, cut-off) with a transaction before the cut-off."""
    out = aggregate_family(FAM, daily(tx), cutoffs, windows, tx.columns)
    keys = ["customer_id", "cutoff_day"]
    if "category" in tx.columns:
        out = out.left_join(_mix(tx, cutoffs, "category", "tx_categories_all", "tx_category_hhi",
                                 "hhi"), keys).drop("customer_id_right", "cutoff_day_right")
    if "channel" in tx.columns:
        out = out.left_join(_mix(tx, cutoffs, "channel", "tx_channels_all",
                                 "tx_main_channel_share", "share"), keys).drop(
            "customer_id_right", "cutoff_day_right")
    return out
