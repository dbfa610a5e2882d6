"""A plain pandas reference implementation of a representative subset of the features.

It is written the obvious way (one loop over cut-offs, filter ``ts < cutoff``, ``groupby``), shares no
code with the Ibis builders, and exists for two reasons: tests compare the builders against it on random
tables, and ``bench/features.py`` times it against them. It is not meant for production use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

_EPOCH = pd.Timestamp("1970-01-01")

#: Columns :func:`reference_features` computes (``{w}`` = each window and ``all``).
REFERENCE_COLUMNS = (
    "tx_orders_{w}", "tx_spend_{w}", "tx_spend_max_{w}", "tx_spend_mean_{w}", "tx_purchase_days_{w}",
    "tx_refunds_{w}", "tx_refund_amount_{w}", "tx_recency_days", "tx_tenure_days", "tx_first_amount",
    "tx_ipt_mean", "tx_ipt_std", "tx_ipt_last",
    "act_sessions_{w}", "act_active_days_{w}", "act_days_since_activity",
    "soc_shares_{w}", "soc_reviews_{w}", "soc_days_since_social",
    "as_complaints_{w}", "as_tickets_{w}", "as_unresolved_now",
)


def _days(ts: pd.Series) -> pd.Series:
    return (ts.dt.tz_localize(None) if ts.dt.tz is not None else ts).dt.normalize().sub(_EPOCH).dt.days


def _windowed(g: pd.DataFrame, cut: int, windows: Sequence[int], aggs: dict) -> pd.DataFrame:
    """``aggs`` = {stem: (column, how)} computed over all history and each window."""
    parts = {}
    for w in [None, *windows]:
        sub = g if w is None else g[g.day >= cut - w]
        grouped = sub.groupby("customer_id")
        for stem, (col, how) in aggs.items():
            parts[f"{stem}_{'all' if w is None else f'{w}d'}"] = grouped[col].agg(how)
    return pd.DataFrame(parts)


def reference_features(tables: dict[str, pd.DataFrame], cutoffs: Iterable[dt.date],
                       windows: Sequence[int] = (30, 90, 180, 365)) -> pd.DataFrame:
    """Reference values of :data:`REFERENCE_COLUMNS` for canonical pandas tables.

    Returns one row per (customer, cut-off) for customers with a transaction before the cut-off,
    indexed by ``customer_id`` and ``cutoff`` (a Timestamp).
    """
    tx = tables["transactions"].assign(day=lambda d: _days(d.ts))
    other = {k: tables[k].assign(day=lambda d: _days(d.ts)) for k in ("activity", "social", "after_sales")
             if k in tables}
    frames = []
    for cutoff in sorted(set(cutoffs)):
        cut = (pd.Timestamp(cutoff) - _EPOCH).days
        h = tx[tx.day < cut]
        if h.empty:
            continue
        pos, neg = h[h.amount > 0], h[h.amount < 0]
        daily = h.groupby(["customer_id", "day"]).agg(
            orders=("amount", lambda a: int((a > 0).sum())),
            spend=("amount", lambda a: float(a[a > 0].sum())),
        ).reset_index()
        f = pd.DataFrame(index=pd.Index(sorted(h.customer_id.unique()), name="customer_id"))
        f = f.join(_windowed(pos.assign(one=1), cut, windows, {
            "tx_orders": ("one", "sum"), "tx_spend": ("amount", "sum"), "tx_spend_max": ("amount", "max"),
            "tx_spend_mean": ("amount", "mean")}))
        f = f.join(_windowed(daily[daily.orders > 0].assign(one=1), cut, windows,
                             {"tx_purchase_days": ("one", "sum")}))
        f = f.join(_windowed(neg.assign(one=1, back=-neg.amount), cut, windows, {
            "tx_refunds": ("one", "sum"), "tx_refund_amount": ("back", "sum")}))
        buy_days = daily[daily.orders > 0].sort_values(["customer_id", "day"])
        f["tx_recency_days"] = cut - buy_days.groupby("customer_id").day.max()
        f["tx_tenure_days"] = cut - h.groupby("customer_id").day.min()
        f["tx_first_amount"] = buy_days.groupby("customer_id").spend.first()
        gaps = buy_days.assign(gap=buy_days.groupby("customer_id").day.diff()).dropna(subset=["gap"])
        f["tx_ipt_mean"] = gaps.groupby("customer_id").gap.mean()
        f["tx_ipt_std"] = gaps.groupby("customer_id").gap.std()
        f["tx_ipt_last"] = gaps.groupby("customer_id").gap.last()
        if "activity" in other:
            a = other["activity"]
            a = a[a.day < cut]
            sess = a[a.event_type == "session"].assign(one=1)
            f = f.join(_windowed(sess, cut, windows, {"act_sessions": ("one", "sum")}))
            f = f.join(_windowed(a.drop_duplicates(["customer_id", "day"]).assign(one=1), cut, windows,
                                 {"act_active_days": ("one", "sum")}))
            f["act_days_since_activity"] = cut - a.groupby("customer_id").day.max()
        if "social" in other:
            s = other["social"]
            s = s[s.day < cut]
            for stem, et in (("soc_shares", "share"), ("soc_reviews", "review")):
                f = f.join(_windowed(s[s.event_type == et].assign(one=1), cut, windows,
                                     {stem: ("one", "sum")}))
            f["soc_days_since_social"] = cut - s.groupby("customer_id").day.max()
        if "after_sales" in other:
            e = other["after_sales"]
            e = e[e.day < cut]
            ticket = e[e.event_type.isin(["ticket", "complaint"])].assign(one=1)
            f = f.join(_windowed(ticket, cut, windows, {"as_tickets": ("one", "sum")}))
            f = f.join(_windowed(e[e.event_type == "complaint"].assign(one=1), cut, windows,
                                 {"as_complaints": ("one", "sum")}))
            resolved_day = _days(ticket.resolved_ts) if "resolved_ts" in ticket else np.nan
            still_open = ticket[pd.isna(resolved_day) | (resolved_day >= cut)]
            f["as_unresolved_now"] = still_open.groupby("customer_id").one.sum()
        # counts and sums are 0 for customers without such rows; max, mean, "days since" stay null
        undefined = ("tx_spend_max", "tx_spend_mean", "tx_recency", "tx_tenure", "tx_first", "tx_ipt",
                     "act_days_since", "soc_days_since")
        counts = [c for c in f.columns if not c.startswith(undefined)]
        f[counts] = f[counts].fillna(0)
        frames.append(f.assign(cutoff=pd.Timestamp(cutoff)).set_index("cutoff", append=True))
    return pd.concat(frames).sort_index()
