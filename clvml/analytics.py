"""Repurchase analytics over the transaction history (tidy DataFrames, computed on the backend)."""

from __future__ import annotations

import datetime as dt

import ibis
import numpy as np

from clvml.features.engine import day_of


def interpurchase_times(transactions: ibis.Table, before: dt.date | None = None) -> np.ndarray:
    """Days between consecutive purchase days of the same customer (refund rows ignored).

    Parameters
    ----------
    transactions
        Canonical transactions table.
    before
        Only purchases strictly before this date count (point in time), default all.
    """
    t = transactions.filter(transactions.amount > 0)
    days = t.select("customer_id", day=day_of(t.ts)).distinct()
    if before is not None:  # cut-offs are midnights: day < cut-off day is ts < cut-off
        days = days.filter(days.day < (before - dt.date(1970, 1, 1)).days)
    w = ibis.window(group_by="customer_id", order_by="day")
    gaps = days.mutate(gap=days.day - days.day.lag().over(w)).filter(ibis._.gap.notnull())
    return gaps.gap.to_pyarrow().to_numpy().astype(float)
