"""Social features: shares, likes, referrals (and converted referrals), reviews and ratings."""

from __future__ import annotations

from collections.abc import Sequence

import ibis

from clvml.features.daily_rows import Count, CountOf, UnitSum, daily_query, daily_rows
from clvml.features.query import aggregate_family, from_units, safe_div, wsum
from clvml.features.registry import Feature, Inc, Say, family

FAM = family("social", "social", "soc")
R = FAM.register

R(Feature("shares_{w}", "Shares {span}.", "shares", Say("{value} {share|shares} {span}", zero="no shares {span}"),
          agg=lambda j, w: wsum(j.shares, w), windowed=True, inc=Inc("sum", lambda r: r.shares), whole=True))
R(Feature("likes_{w}", "Likes {span}.", "likes", Say("{value} {like|likes} {span}", zero="no likes {span}"),
          agg=lambda j, w: wsum(j.likes, w), windowed=True, inc=Inc("sum", lambda r: r.likes), whole=True))
R(Feature("referrals_{w}", "Referrals sent {span}.", "referrals", Say("referred {value} {person|people} {span}",
                                                                      zero="referred nobody {span}"),
          agg=lambda j, w: wsum(j.referrals, w), windowed=True,
          inc=Inc("sum", lambda r: r.referrals), whole=True))
R(Feature("referrals_converted_all", "Referrals that converted, over all history.", "referrals",
          Say("{value} referred {friend|friends} became {a customer|customers}",
              zero="no referred friend has become a customer"), agg=lambda j, w: wsum(j.converted),
          inc=Inc("sum", lambda r: r.converted), whole=True))
R(Feature("reviews_{w}", "Reviews written {span}.", "reviews", Say("wrote {value} {review|reviews} {span}",
                                                                   zero="wrote no reviews {span}"),
          agg=lambda j, w: wsum(j.reviews, w), windowed=True, inc=Inc("sum", lambda r: r.reviews), whole=True))
R(Feature("rating_sum", "", "", "", agg=lambda j, w: from_units(wsum(j.rating_sum)), hidden=True,
          requires=("rating",), inc=Inc("sum", lambda r: r.rating_sum, then=lambda v, c: from_units(v))))
R(Feature("rating_n", "", "", "", agg=lambda j, w: wsum(j.rating_n), hidden=True,
          requires=("rating",), inc=Inc("sum", lambda r: r.rating_n)))
R(Feature("rating_mean", "Mean rating given in reviews.", "stars", Say("rates {value} {star|stars} on average",
                                                                       missing="no ratings given", kind="score"),
          derive=lambda c, w: safe_div(c.rating_sum, c.rating_n), fill=None, requires=("rating",)))
R(Feature("days_since_social", "Days from the last social event to the cut-off.", "days",
          Say("last social interaction {value} ago", zero="last social interaction less than a day ago",
              missing="no social interactions recorded", kind="days"),
          agg=lambda j, w: (j.cutoff_day - j.day).min(), fill=None,
          inc=Inc("max", lambda r: r.day, then=lambda day, c: c - day), whole=True))


#: the daily rows: counts of each event type, and the reviews' ratings (whole units) and their number
DAILY = {"shares": Count("share"), "likes": Count("like"), "referrals": Count("referral"),
         "converted": Count("referral_converted"), "reviews": Count("review")}


def _daily_aggs(soc: ibis.Table) -> dict:
    rating = {"rating_sum": UnitSum("rating", "review", fill=False), "rating_n": CountOf("rating", "review")}
    return DAILY | (rating if "rating" in soc.columns else {})


def daily(soc: ibis.Table) -> ibis.Table:
    """One row per customer and day with the day's counts of each event type and the reviews' ratings."""
    return daily_query(soc, _daily_aggs(soc))


def build(soc: ibis.Table, cutoffs: ibis.Table, windows: Sequence[int],
          plan: str | None = None) -> ibis.Table:
    return aggregate_family(FAM, daily_rows(soc, _daily_aggs(soc), plan), cutoffs, windows, soc.columns, plan=plan,
                            one_row_per_day=True)
