"""Activity features: sessions, active days, time spent, page views, add-to-cart, recency, trend."""

from __future__ import annotations

from collections.abc import Sequence

import ibis

from clvml.features.daily_rows import Count, UnitSum, daily_query, daily_rows
from clvml.features.query import aggregate_family, from_units, safe_div, wsum
from clvml.features.registry import Feature, Inc, Say, family

FAM = family("activity", "activity", "act")
R = FAM.register


def _units(v: ibis.Value, cutoff_day: ibis.Value) -> ibis.Value:
    return from_units(v)


def _since(day: ibis.Value, cutoff_day: ibis.Value) -> ibis.Value:
    """Days from ``day`` to the cut-off."""
    return cutoff_day - day


R(Feature("sessions_{w}", "Sessions {span}.", "sessions", Say("{value} {session|sessions} {span}",
                                                              zero="no sessions {span}"),
          agg=lambda j, w: wsum(j.sessions, w), windowed=True, inc=Inc("sum", lambda r: r.sessions), whole=True))
R(Feature("active_days_{w}", "Days with any activity {span}.", "days", Say("active on {value} {day|days} {span}",
                                                                           zero="not active {span}"),
          agg=lambda j, w: wsum(j.day.notnull(), w), windowed=True,
          inc=Inc("sum", lambda r: r.day.notnull()), whole=True))
R(Feature("duration_{w}", "Total session time {span}.", "seconds", Say("spent {value} on site {span}",
                                                                       zero="no time on site {span}", kind="seconds"),
          agg=lambda j, w: from_units(wsum(j.duration, w)), windowed=True,
          requires=("duration_s",), inc=Inc("sum", lambda r: r.duration, then=_units)))
R(Feature("views_{w}", "Page views {span}.", "views", Say("{value} page {view|views} {span}",
                                                          zero="no page views {span}"),
          agg=lambda j, w: wsum(j.views, w), windowed=True, inc=Inc("sum", lambda r: r.views), whole=True))
R(Feature("carts_{w}", "Add-to-cart events {span}.", "events", Say("{value} add-to-cart {event|events} {span}",
                                                                   zero="nothing added to a cart {span}"),
          agg=lambda j, w: wsum(j.carts, w), windowed=True, inc=Inc("sum", lambda r: r.carts), whole=True))
R(Feature("logins_{w}", "Logins {span}.", "logins", Say("{value} {login|logins} {span}", zero="no logins {span}"),
          agg=lambda j, w: wsum(j.logins, w), windowed=True, inc=Inc("sum", lambda r: r.logins), whole=True))
R(Feature("duration_mean", "Mean session duration over all history.", "seconds",
          Say("sessions last {value} on average", zero="sessions record no time", missing="no sessions recorded",
              kind="seconds"),
          derive=lambda c, w: safe_div(c.duration_all, c.sessions_all), fill=None,
          requires=("duration_s",)))
R(Feature("days_since_activity", "Days from the last activity event to the cut-off.", "days",
          Say("last seen {value} ago", zero="last seen less than a day ago", missing="no activity recorded",
              kind="days"), agg=lambda j, w: (j.cutoff_day - j.day).min(), fill=None,
          inc=Inc("max", lambda r: r.day, then=_since), whole=True))
R(Feature("sessions_last30", "", "", "", hidden=True,
          agg=lambda j, w: wsum(j.sessions, where=j.day >= j.cutoff_day - 30),
          inc=Inc("sum", lambda r: r.sessions, band=(30, 0))))
R(Feature("sessions_prev60", "", "", "", hidden=True,
          agg=lambda j, w: wsum(j.sessions, where=(j.day < j.cutoff_day - 30)
                                          & (j.day >= j.cutoff_day - 90)),
          inc=Inc("sum", lambda r: r.sessions, band=(90, 30))))
R(Feature("sessions_trend", "Sessions per day in the last 30 days minus in the 60 days before.",
          "sessions/day",
          Say("visits rose by {value} {session|sessions} a day (last 30 days vs the 60 before)",
              zero="visits held steady (last 30 days vs the 60 before)",
              negative="visits fell by {value} {session|sessions} a day (last 30 days vs the 60 before)",
              missing="no visit history to compare", kind="number"),
          derive=lambda c, w: c.sessions_last30.fill_null(0).cast("float64") / 30
          - c.sessions_prev60.fill_null(0).cast("float64") / 60))
R(Feature("closed", "Account-closure events before the cut-off.", "events",
          Say("has closed the account", zero="has not closed the account", missing="no account closure recorded",
              kind="flag"), agg=lambda j, w: wsum(j.closed),
          inc=Inc("sum", lambda r: r.closed), whole=True))


#: the daily rows: counts of each event type and the sessions' seconds in whole units
DAILY = {"sessions": Count("session"), "views": Count("page_view"), "carts": Count("add_to_cart"),
         "logins": Count("login"), "closed": Count("account_closed")}


def _daily_aggs(act: ibis.Table) -> dict:
    return DAILY | ({"duration": UnitSum("duration_s", "session", fill=True)} if "duration_s" in act.columns else {})


def daily(act: ibis.Table) -> ibis.Table:
    """One row per customer and day with the day's counts of each event type and session seconds."""
    return daily_query(act, _daily_aggs(act))


def build(act: ibis.Table, cutoffs: ibis.Table, windows: Sequence[int],
          plan: str | None = None) -> ibis.Table:
    return aggregate_family(FAM, daily_rows(act, _daily_aggs(act), plan), cutoffs, windows, act.columns, plan=plan,
                            one_row_per_day=True)
