"""After-sales features: tickets, complaints, what is still unresolved at the cut-off, resolution time,
returns and refunds, satisfaction and NPS surveys.

Rows are kept per event (not per day) because a ticket's resolution time matters: a ticket resolved at or
after the cut-off counts as unresolved at that cut-off.
"""

from __future__ import annotations

from collections.abc import Sequence

import ibis

from clvml.features.query import aggregate_family, day_of, exact_sum, from_units, safe_div, wsum
from clvml.features.registry import Feature, Say, family

FAM = family("after_sales", "after_sales", "as")
R = FAM.register


def _open(j):
    return j.is_ticket & (j.resolved_day.isnull() | (j.resolved_day >= j.cutoff_day))


def _resolved(j):
    return j.is_ticket & (j.resolved_day < j.cutoff_day)


R(Feature("tickets_{w}", "Support tickets and complaints opened {span}.", "tickets",
          Say("opened {value} support {ticket|tickets} {span}", zero="no support tickets {span}"),
          agg=lambda j, w: wsum(j.is_ticket, w), windowed=True))
R(Feature("complaints_{w}", "Complaints {span}.", "complaints", Say("{value} {complaint|complaints} {span}",
                                                                    zero="no complaints {span}"),
          agg=lambda j, w: wsum(j.is_complaint, w), windowed=True))
R(Feature("unresolved_now", "Tickets and complaints still unresolved at the cut-off.", "tickets",
          Say("{value} support {ticket|tickets} still unresolved", zero="no unresolved support tickets"),
          agg=lambda j, w: wsum(_open(j))))
R(Feature("unresolved_complaints_now", "Complaints still unresolved at the cut-off.", "complaints",
          Say("{value} {complaint|complaints} still unresolved", zero="no unresolved complaints"),
          agg=lambda j, w: wsum(_open(j) & j.is_complaint)))
R(Feature("resolution_days_mean", "Mean days to resolve tickets resolved before the cut-off.", "days",
          Say("tickets took {value} to resolve on average", zero="tickets were resolved immediately",
              missing="no resolved tickets", kind="days"), fill=None,
          agg=lambda j, w: safe_div(wsum(j.res_s, where=_resolved(j)).cast("float64") / 86400,
                                    j.res_s.count(where=_resolved(j))),
          requires=("resolved_ts",)))
R(Feature("returns_{w}", "Returns and refund events {span}.", "returns", Say("{value} {return|returns} {span}",
                                                                             zero="no returns {span}"),
          agg=lambda j, w: wsum(j.is_return, w), windowed=True))
R(Feature("refund_amount_all", "Amount refunded through after-sales over all history.", "currency",
          Say("{value} refunded through support", zero="nothing refunded through support", kind="money"),
          agg=lambda j, w: from_units(exact_sum(j.amount, j.is_return)), requires=("amount",)))
R(Feature("surveys_all", "Surveys answered.", "surveys", Say("answered {value} {survey|surveys}",
                                                             zero="answered no surveys"),
          agg=lambda j, w: wsum(j.is_survey)))
R(Feature("satisfaction_last", "Latest satisfaction score (1-5).", "score",
          Say("latest satisfaction score {value}/5", missing="no satisfaction score given", kind="score"),
          fill=None, requires=("satisfaction",),
          agg=lambda j, w: j.satisfaction.argmax(j.ts_s, where=j.satisfaction.notnull())))
R(Feature("satisfaction_mean", "Mean satisfaction score (1-5).", "score",
          Say("average satisfaction {value}/5", missing="no satisfaction scores given", kind="score"),
          fill=None, requires=("satisfaction",),
          agg=lambda j, w: safe_div(from_units(exact_sum(j.satisfaction)), j.satisfaction.count())))
R(Feature("nps_last", "Latest NPS answer (0-10).", "score", Say("latest NPS answer {value}/10",
                                                                missing="no NPS answer given", kind="score"), fill=None,
          requires=("nps",), agg=lambda j, w: j.nps.argmax(j.ts_s, where=j.nps.notnull())))
R(Feature("nps_category", "Latest NPS category: promoter (9-10), passive (7-8), detractor (0-6).",
          "category", Say("is a {value} (latest NPS answer)", missing="no NPS answer given", kind="category"),
          fill=None, dtype="categorical",
          requires=("nps",),
          derive=lambda c, w: ibis.cases((c.nps_last >= 9, "promoter"), (c.nps_last >= 7, "passive"),
                                         (c.nps_last >= 0, "detractor"), else_=ibis.null("string"))))
R(Feature("days_since_complaint", "Days from the last complaint to the cut-off.", "days",
          Say("last complaint {value} ago", zero="last complaint less than a day ago",
              missing="no complaints recorded", kind="days"), fill=None,
          agg=lambda j, w: (j.cutoff_day - j.day).min(where=j.is_complaint)))


def rows(af: ibis.Table) -> ibis.Table:
    cols = af.columns
    et = af.event_type
    extra = {}
    if "resolved_ts" in cols:
        extra["resolved_day"] = day_of(af.resolved_ts)
        # whole seconds: their sum is exact, so the mean is the same bits on every run
        extra["res_s"] = af.resolved_ts.epoch_seconds() - af.ts.epoch_seconds()
    else:
        extra["resolved_day"] = ibis.null("int64")
    return af.mutate(
        day=day_of(af.ts), ts_s=af.ts.epoch_seconds(),
        is_ticket=et.isin(["ticket", "complaint"]), is_complaint=et == "complaint",
        is_return=et.isin(["return", "refund"]), is_survey=et == "survey", **extra,
    )


def build(af: ibis.Table, cutoffs: ibis.Table, windows: Sequence[int],
          plan: str | None = None) -> ibis.Table:
    return aggregate_family(FAM, rows(af), cutoffs, windows, af.columns)
