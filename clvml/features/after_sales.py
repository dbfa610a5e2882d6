"""After-sales features: tickets, complaints, what is still unresolved at the cut-off, resolution time,
returns and refunds, satisfaction and NPS surveys.

Events are aggregated per customer and day. A ticket resolved at or after the cut-off counts as unresolved
at that cut-off: the tickets resolved before a cut-off are counted on the day they were both opened and
resolved, another running total over days, and subtracted from those opened.
"""

from __future__ import annotations

from collections.abc import Sequence

import ibis

from clvml.features.assemble import finish_in_memory, side_by_side
from clvml.features.incremental import arrow_of
from clvml.features.query import aggregate_family, day_of, exact_sum, from_units, safe_div, wsum
from clvml.features.registry import Family, Feature, Inc, Say, family

FAM = family("after_sales", "after_sales", "as")
R = FAM.register


def _units(v: ibis.Value, cutoff_day: ibis.Value) -> ibis.Value:
    return from_units(v)


def _since(day: ibis.Value, cutoff_day: ibis.Value) -> ibis.Value:
    """Days from ``day`` to the cut-off."""
    return cutoff_day - day


R(Feature("tickets_{w}", "Support tickets and complaints opened {span}.", "tickets",
          Say("opened {value} support {ticket|tickets} {span}", zero="no support tickets {span}"),
          agg=lambda j, w: wsum(j.tickets, w), windowed=True, inc=Inc("sum", lambda r: r.tickets), whole=True))
R(Feature("complaints_{w}", "Complaints {span}.", "complaints", Say("{value} {complaint|complaints} {span}",
                                                                    zero="no complaints {span}"),
          agg=lambda j, w: wsum(j.complaints, w), windowed=True, inc=Inc("sum", lambda r: r.complaints), whole=True))
# computed by build() from tickets/complaints opened and those resolved before the cut-off (_RESOLVED)
R(Feature("unresolved_now", "Tickets and complaints still unresolved at the cut-off.", "tickets",
          Say("{value} support {ticket|tickets} still unresolved", zero="no unresolved support tickets"), whole=True))
R(Feature("unresolved_complaints_now", "Complaints still unresolved at the cut-off.", "complaints",
          Say("{value} {complaint|complaints} still unresolved", zero="no unresolved complaints"), whole=True))
R(Feature("resolution_days_mean", "Mean days to resolve tickets resolved before the cut-off.", "days",
          Say("tickets took {value} to resolve on average", zero="tickets were resolved immediately",
              missing="no resolved tickets", kind="days"), fill=None, requires=("resolved_ts",)))
R(Feature("returns_{w}", "Returns and refund events {span}.", "returns", Say("{value} {return|returns} {span}",
                                                                             zero="no returns {span}"),
          agg=lambda j, w: wsum(j.returns, w), windowed=True, inc=Inc("sum", lambda r: r.returns), whole=True))
R(Feature("refund_amount_all", "Amount refunded through after-sales over all history.", "currency",
          Say("{value} refunded through support", zero="nothing refunded through support", kind="money"),
          agg=lambda j, w: from_units(wsum(j.refund_units)), requires=("amount",),
          inc=Inc("sum", lambda r: r.refund_units, then=_units)))
R(Feature("surveys_all", "Surveys answered.", "surveys", Say("answered {value} {survey|surveys}",
                                                             zero="answered no surveys"),
          agg=lambda j, w: wsum(j.surveys), inc=Inc("sum", lambda r: r.surveys), whole=True))
R(Feature("satisfaction_last", "Latest satisfaction score (1-5).", "score",
          Say("latest satisfaction score {value}/5", missing="no satisfaction score given", kind="score"),
          fill=None, requires=("satisfaction",),
          agg=lambda j, w: j.sat_last.argmax(j.day, where=j.sat_last.notnull()),
          inc=Inc("last", lambda r: r.sat_last)))
R(Feature("sat_sum", "", "", "", agg=lambda j, w: from_units(wsum(j.sat_units)), hidden=True,
          requires=("satisfaction",), inc=Inc("sum", lambda r: r.sat_units, then=_units)))
R(Feature("sat_n", "", "", "", agg=lambda j, w: wsum(j.sat_n), hidden=True, requires=("satisfaction",),
          inc=Inc("sum", lambda r: r.sat_n)))
R(Feature("satisfaction_mean", "Mean satisfaction score (1-5).", "score",
          Say("average satisfaction {value}/5", missing="no satisfaction scores given", kind="score"),
          fill=None, requires=("satisfaction",), derive=lambda c, w: safe_div(c.sat_sum, c.sat_n)))
R(Feature("nps_last", "Latest NPS answer (0-10).", "score", Say("latest NPS answer {value}/10",
                                                                missing="no NPS answer given", kind="score"), fill=None,
          requires=("nps",), agg=lambda j, w: j.nps_last.argmax(j.day, where=j.nps_last.notnull()),
          inc=Inc("last", lambda r: r.nps_last)))
R(Feature("nps_category", "Latest NPS category: promoter (9-10), passive (7-8), detractor (0-6).",
          "category", Say("is a {value} (latest NPS answer)", missing="no NPS answer given", kind="category"),
          fill=None, dtype="categorical",
          requires=("nps",),
          derive=lambda c, w: ibis.cases((c.nps_last >= 9, "promoter"), (c.nps_last >= 7, "passive"),
                                         (c.nps_last >= 0, "detractor"), else_=ibis.null("string"))))
R(Feature("days_since_complaint", "Days from the last complaint to the cut-off.", "days",
          Say("last complaint {value} ago", zero="last complaint less than a day ago",
              missing="no complaints recorded", kind="days"), fill=None,
          agg=lambda j, w: (j.cutoff_day - j.day).min(where=j.complaints > 0),
          inc=Inc("max", lambda r: ibis.ifelse(r.complaints > 0, r.day, ibis.null("int64")), then=_since), whole=True))

#: tickets resolved before a cut-off, counted on the day they are both opened and resolved (the later of
#: the two): a ticket opened before the cut-off is resolved at it exactly when that day is before it, so
#: these are running totals over that day like any other (not part of the catalog: build() uses them)
_RESOLVED = Family("after_sales", "after_sales", "as")
for _name, _col in (("resolved", "resolved"), ("resolved_complaints", "resolved_complaints"),
                    ("resolution_s", "res_s"), ("resolution_n", "res_n")):
    _RESOLVED.register(Feature(_name, "", "", "", agg=lambda j, w, _c=_col: wsum(j[_c]),
                               inc=Inc("sum", lambda r, _c=_col: r[_c])))


def daily(af: ibis.Table) -> ibis.Table:
    """One row per customer and day (the day an event happened) with the day's counts, sums in whole units
    and the day's latest survey answers (latest by the full timestamp; two answers at the very same time:
    the larger, so the same data always give the same answer, whatever order the engine reads them in)."""
    cols = af.columns
    t = af.mutate(day=day_of(af.ts))
    et = t.event_type
    aggs = dict(
        tickets=t.count(where=et.isin(["ticket", "complaint"])),
        complaints=t.count(where=et == "complaint"),
        returns=t.count(where=et.isin(["return", "refund"])),
        surveys=t.count(where=et == "survey"),
    )
    if "amount" in cols:
        aggs["refund_units"] = exact_sum(t.amount, et.isin(["return", "refund"]))
    if "satisfaction" in cols:
        aggs["sat_units"] = exact_sum(t.satisfaction)
        aggs["sat_n"] = t.satisfaction.count()
        aggs["sat_last"] = t.satisfaction.argmax(ibis.struct({"ts": t.ts, "v": t.satisfaction}),
                                                 where=t.satisfaction.notnull())
    if "nps" in cols:
        aggs["nps_last"] = t.nps.argmax(ibis.struct({"ts": t.ts, "v": t.nps}), where=t.nps.notnull())
    return t.group_by(["customer_id", "day"]).aggregate(**aggs)


def resolved_daily(af: ibis.Table) -> ibis.Table:
    """One row per customer and day on which tickets (complaints included) that have a resolution time
    count as resolved: the later of the day opened and the day resolved. ``res_s``: their resolution
    times in whole seconds (summed in float64, exact below 2**53, like the cross join's sums)."""
    t = af.filter(af.event_type.isin(["ticket", "complaint"]) & af.resolved_ts.notnull())
    opened, done = day_of(t.ts), day_of(t.resolved_ts)
    t = t.mutate(day=ibis.ifelse(done > opened, done, opened),
                 res_s=t.resolved_ts.epoch_seconds() - t.ts.epoch_seconds())
    return t.group_by(["customer_id", "day"]).aggregate(
        resolved=t.count(), resolved_complaints=t.count(where=t.event_type == "complaint"),
        res_s=t.res_s.cast("float64").sum().cast("int64"), res_n=t.res_s.count())


def build(af: ibis.Table, cutoffs: ibis.Table, windows: Sequence[int],
          plan: str | None = None) -> ibis.Table:
    """After-sales features for every (customer, cut-off) with an after-sales event before the cut-off.

    What is still unresolved at a cut-off is what was opened before it minus what was resolved before it
    (see :data:`_RESOLVED`), so every aggregate is a running total over days (``plan``:
    :func:`~clvml.features.query.resolve_plan`)."""
    keys = ["customer_id", "cutoff_day"]
    out = aggregate_family(FAM, daily(af), cutoffs, windows, af.columns, plan=plan, one_row_per_day=True)
    names = [c for c in out.columns if c not in keys]
    tickets, complaints = out.as_tickets_all, out.as_complaints_all
    if "resolved_ts" not in af.columns:  # no resolution times: every ticket is open
        return out.select(*keys, *names, as_unresolved_now=tickets, as_unresolved_complaints_now=complaints)
    res = aggregate_family(_RESOLVED, resolved_daily(af), cutoffs, windows, af.columns, plan=plan,
                           one_row_per_day=True)

    def finish(j: ibis.Table) -> ibis.Table:
        def f64(v: ibis.Value) -> ibis.Value:  # the counts come as float32 (their storage): subtracted in float64
            return v.cast("float64")

        return j.select(
            *keys, *names,
            as_unresolved_now=f64(j.as_tickets_all) - f64(j.as_resolved.fill_null(0)),
            as_unresolved_complaints_now=f64(j.as_complaints_all) - f64(j.as_resolved_complaints.fill_null(0)),
            as_resolution_days_mean=safe_div(j.as_resolution_s.cast("float64") / 86400, j.as_resolution_n),
        )

    if arrow_of(out) is not None and arrow_of(res) is not None:
        # both computed in memory by the incremental plan: joined by position and finished there, the same
        # values as the engine's join below without a scan and export of every row
        joined = side_by_side(out, [res])
        finished = None if joined is None else finish_in_memory(joined, finish(joined))
        if finished is not None:
            return finished
    # every customer with a ticket resolved before a cut-off has one opened before it: in ``out``
    return finish(out.left_join(res, keys))
