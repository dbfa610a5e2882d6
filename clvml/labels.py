"""Labels over the horizon that follows each cut-off.

The horizon of cut-off ``c`` is the half-open interval ``[c, c + H)``: it starts exactly where the
features stop (features use ``ts < c``), so every event belongs to exactly one side. (A closed-open split
matters for date-only data such as CDNOW, where a purchase on the cut-off date is stamped at midnight.)

A customer is a row at cut-off ``c`` when they have a transaction strictly before ``c``; customers who
had not arrived yet are not rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

import ibis

from clvml.errors import ClvmlError
from clvml.features.builder import as_cutoffs, cutoff_table
from clvml.features.query import day_of

EPOCH = dt.date(1970, 1, 1)


def build_labels(
    tables: Mapping[str, ibis.Table],
    cutoffs: Iterable[dt.date | str],
    *,
    horizon_days: int,
    churn_definition: str = "no_purchase",
    cancellation_event: str = "account_closed",
    data_end: dt.date | None = None,
) -> ibis.Table:
    """Churn, purchases, spend (and margin) over ``[cutoff, cutoff + horizon_days)``.

    Parameters
    ----------
    churn_definition
        ``no_purchase``: no order in the horizon; ``no_activity``: no order and no activity event;
        ``cancellation``: an activity event of type ``cancellation_event`` in the horizon.
    data_end
        Last observed day (inclusive). ``horizon_complete`` is false for cut-offs whose horizon ends
        after it; such rows must not be used as training targets. Default: the last transaction day.

    Returns
    -------
    ibis.Table
        ``customer_id, cutoff, purchases, spend, [margin], churn, horizon_complete``.
    """
    if horizon_days <= 0:
        raise ClvmlError("horizon_days must be positive")
    tx = tables["transactions"]
    cuts = cutoff_table(as_cutoffs(cutoffs))
    if data_end is None:
        last = tx.aggregate(m=tx.ts.max()).to_pyarrow()["m"][0].as_py()
        data_end = last.date()
    end_day = (data_end - EPOCH).days + 1  # exclusive

    t = tx.mutate(day=day_of(tx.ts))
    j = t.cross_join(cuts)
    before = j.day < j.cutoff_day
    in_h = (j.day >= j.cutoff_day) & (j.day < j.cutoff_day + horizon_days)
    pos = j.amount > 0
    aggs = dict(
        _seen=before.cast("int64").sum(),
        purchases=j.amount.count(where=in_h & pos),
        spend=j.amount.sum(where=in_h & pos).fill_null(0.0),
    )
    if "margin" in tx.columns:
        aggs["margin"] = j.margin.sum(where=in_h).fill_null(0.0)
    lab = j.filter(j.day < j.cutoff_day + horizon_days).group_by(["customer_id", "cutoff_day"]) \
        .aggregate(**aggs)
    lab = lab.filter(lab._seen > 0).drop("_seen")

    if churn_definition == "no_purchase":
        churn = lab.purchases == 0
    elif churn_definition in ("no_activity", "cancellation"):
        if "activity" not in tables:
            raise ClvmlError(f"churn_definition {churn_definition!r} needs an activity table; "
                             "add data.tables.activity or use no_purchase")
        act = tables["activity"]
        a = act.mutate(day=day_of(act.ts)).cross_join(cuts)
        a_in = (a.day >= a.cutoff_day) & (a.day < a.cutoff_day + horizon_days)
        a = a.filter(a_in)
        if churn_definition == "cancellation":
            a = a.filter(a.event_type == cancellation_event)
        ev = a.group_by(["customer_id", "cutoff_day"]).aggregate(_events=a.count())
        lab = lab.left_join(ev, ["customer_id", "cutoff_day"]).drop(
            "customer_id_right", "cutoff_day_right")
        n_ev = lab._events.fill_null(0)
        churn = (lab.purchases == 0) & (n_ev == 0) if churn_definition == "no_activity" else n_ev > 0
        lab = lab.mutate(churn=churn).drop("_events")
        churn = lab.churn
    else:
        raise ClvmlError(f"unknown churn_definition {churn_definition!r}")
    cutoff = (ibis.date(1970, 1, 1) + lab.cutoff_day.as_interval("D")).cast("date")
    return lab.mutate(churn=churn, horizon_complete=lab.cutoff_day + horizon_days <= end_day,
                      cutoff=cutoff).drop("cutoff_day").relocate("customer_id", "cutoff")
