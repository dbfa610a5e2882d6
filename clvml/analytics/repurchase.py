"""Repurchase analytics over the histories: tidy DataFrames, each with a plot.

Purchases are positive-amount transactions collapsed to one row per customer and day (the aggregation
runs on the backend); refunds never count as purchases. Every function takes an optional ``before``
date: only events strictly before it are used, so a report as of a date shows what was known then.
Periods are calendar months (``YYYY-MM``).
"""

from __future__ import annotations

import datetime as dt

import ibis
import numpy as np
import pandas as pd

from clvml.features.query import day_of

EPOCH = dt.date(1970, 1, 1)


def _before(t: ibis.Table, before: dt.date | None) -> ibis.Table:
    if before is None:
        return t
    return t.filter(day_of(t.ts) < (before - EPOCH).days)  # midnight cut-off: day < cut-off day


def purchase_days(transactions: ibis.Table, before: dt.date | None = None) -> pd.DataFrame:
    """One row per customer and purchase day: ``customer_id, day`` (datetime64), ``spend``."""
    t = _before(transactions.filter(transactions.amount > 0), before)
    g = t.group_by(["customer_id", t.ts.date().name("day")]).aggregate(spend=t.amount.sum())
    df = g.order_by(["customer_id", "day"]).to_pandas()
    df["day"] = pd.to_datetime(df["day"])
    return df


def interpurchase_times(transactions: ibis.Table, before: dt.date | None = None) -> np.ndarray:
    """Days between consecutive purchase days of the same customer (refund rows ignored)."""
    t = transactions.filter(transactions.amount > 0)
    days = t.select("customer_id", day=day_of(t.ts)).distinct()
    if before is not None:  # cut-offs are midnights: day < cut-off day is ts < cut-off
        days = days.filter(days.day < (before - EPOCH).days)
    w = ibis.window(group_by="customer_id", order_by="day")
    gaps = days.mutate(gap=days.day - days.day.lag().over(w)).filter(ibis._.gap.notnull())
    return gaps.gap.to_pyarrow().to_numpy().astype(float)


def purchase_months(transactions: ibis.Table, before: dt.date | None = None) -> ibis.Table:
    """On the backend: one row per customer and calendar month with a purchase (``customer_id``,
    ``month`` as its first day, ``days``: distinct purchase days in it, ``cohort``: the month of the
    customer's first purchase). :func:`repurchase_rate` and :func:`cohort_retention` both count on it:
    a caller that needs both can compute it once (``months=``), e.g. materialised on the backend."""
    t = _before(transactions.filter(transactions.amount > 0), before)
    d = t.select("customer_id", day=t.ts.date()).distinct()
    pm = d.group_by(["customer_id", d.day.truncate("M").name("month")]).aggregate(days=d.count())
    first = pm.group_by("customer_id").aggregate(cohort=pm.month.min())
    return pm.join(first, "customer_id")


def repurchase_rate(transactions: ibis.Table, before: dt.date | None = None, *,
                    months: ibis.Table | None = None) -> pd.DataFrame:
    """Per month: buyers, buyers with two or more purchase days in the month (``repeat_rate``) and
    buyers who had bought in an earlier month (``returning_rate``). Aggregated on the backend: only
    one row per month is read. ``months``: :func:`purchase_months` of the same transactions and
    ``before``, when already computed."""
    pm = purchase_months(transactions, before) if months is None else months
    agg = pm.group_by("month").aggregate(
        buyers=pm.count(), repeat_buyers=(pm.days >= 2).ifelse(1, 0).sum(),
        returning_buyers=(pm.month > pm.cohort).ifelse(1, 0).sum()).order_by("month").to_pandas()
    out = pd.DataFrame({"month": pd.to_datetime(agg["month"]).dt.strftime("%Y-%m").astype(str),
                        **{c: agg[c].astype("int64") for c in ("buyers", "repeat_buyers", "returning_buyers")}})
    out["repeat_rate"] = out["repeat_buyers"] / out["buyers"]
    out["returning_rate"] = out["returning_buyers"] / out["buyers"]
    return out


def cohort_retention(transactions: ibis.Table, before: dt.date | None = None, *,
                     months: ibis.Table | None = None) -> pd.DataFrame:
    """Monthly acquisition cohorts (month of the first purchase): for each month since acquisition,
    the share of the cohort that bought in that month. Tidy: ``cohort, months_since, customers,
    active, retention``.

    The grid is complete: every cohort has a row for every month since acquisition up to the longest
    cohort's. A month that has been observed (it starts before ``before``, or is at most the month of
    the last purchase when ``before`` is not given) and in which nobody of the cohort bought has
    ``active`` 0 and ``retention`` 0.0; a month not yet observed has both NaN (unknown, not zero).
    Counted on the backend: only one row per cohort and month is read. ``months``:
    :func:`purchase_months` of the same transactions and ``before``, when already computed.
    """
    pm = purchase_months(transactions, before) if months is None else months
    since = (pm.month.year() * 12 + pm.month.month()) - (pm.cohort.year() * 12 + pm.cohort.month())
    act = pm.group_by([pm.cohort, since.name("months_since")]).aggregate(active=pm.count()).to_pandas()
    cols = ["cohort", "months_since", "customers", "active", "retention"]
    if act.empty:
        return pd.DataFrame(columns=cols)
    act = act.sort_values(["cohort", "months_since"], kind="mergesort")
    cohort = pd.PeriodIndex(pd.to_datetime(act["cohort"]), freq="M")
    since = act["months_since"].to_numpy("int64")
    active = pd.Series(act["active"].to_numpy("int64"), name="active", index=pd.MultiIndex.from_arrays(
        [cohort, since], names=["cohort", "months_since"]))
    # everyone buys in the month of their first purchase: a cohort's size is its month-0 count
    size = active[since == 0].droplevel("months_since").rename("customers")
    last = (pd.Timestamp(before) - pd.Timedelta(days=1)).to_period("M") if before is not None \
        else max(c + int(k) for c, k in zip(cohort, since, strict=True))
    first_cohort = size.index.min()
    span = (last - first_cohort).n
    grid = pd.MultiIndex.from_product([sorted(size.index), range(span + 1)], names=["cohort", "months_since"])
    out = active.reindex(grid).reset_index()
    observed = (out["cohort"] + out["months_since"]).map(lambda m: m <= last) if len(out) else []
    out.loc[observed & out["active"].isna(), "active"] = 0
    out = out.join(size, on="cohort")
    out["active"] = out["active"].astype(float)
    out["retention"] = out["active"] / out["customers"]
    out["cohort"] = out["cohort"].astype(str)
    return out[cols]


def repurchase_cycle(transactions: ibis.Table, segments: pd.DataFrame | None = None,
                     before: dt.date | None = None) -> pd.DataFrame:
    """Inter-purchase time summary (days): gaps, mean, quartiles, 90th percentile; per segment when
    ``segments`` (``customer_id`` + one segment column) is given, over all customers otherwise."""
    d = purchase_days(transactions, before)
    d["gap"] = d.groupby("customer_id")["day"].diff().dt.days
    gaps = d.dropna(subset=["gap"])
    key = "all"
    if segments is not None:
        key = [c for c in segments.columns if c != "customer_id"][0]
        gaps = gaps.merge(segments[["customer_id", key]], on="customer_id", how="inner")
    else:
        gaps = gaps.assign(all="all customers")
    g = gaps.groupby(key)["gap"]
    out = pd.DataFrame({"gaps": g.size(), "mean_days": g.mean(), "p25_days": g.quantile(0.25),
                        "median_days": g.median(), "p75_days": g.quantile(0.75), "p90_days": g.quantile(0.9)})
    return out.reset_index()


def second_purchase_curve(transactions: ibis.Table, max_days: int = 365,
                          before: dt.date | None = None) -> pd.DataFrame:
    """Share of first-time buyers who bought again within d days, d = 1..max_days.

    Right-censoring is respected: for each d only customers whose first purchase is at least d days
    before the end of the data count (``eligible``), so recent buyers do not drag the curve down.
    """
    d = purchase_days(transactions, before)
    end = (pd.Timestamp(before) if before is not None else d["day"].max() + pd.Timedelta(days=1))
    firsts = d.groupby("customer_id")["day"].agg(first="min")
    second = d.groupby("customer_id")["day"].nth(1).rename("second")
    second.index = d.loc[second.index, "customer_id"].to_numpy()
    f = firsts.join(second)
    to_second = (f["second"] - f["first"]).dt.days.to_numpy(float)
    observed = (end - f["first"]).dt.days.to_numpy(float)
    has = ~np.isnan(to_second)
    days = np.arange(1, max_days + 1)
    eligible = len(observed) - np.searchsorted(np.sort(observed), days, side="left")
    # a second purchase always falls before the end: bought within d and observed for d days is
    # "bought within d" minus "observed for less than d" among the repeat buyers
    converted = (np.searchsorted(np.sort(to_second[has]), days, side="right")
                 - np.searchsorted(np.sort(observed[has]), days, side="left"))
    rate = np.where(eligible > 0, converted / np.maximum(eligible, 1), np.nan)
    return pd.DataFrame({"days": days, "eligible": eligible, "converted": converted, "rate": rate})


def churn_rate_over_time(transactions: ibis.Table, horizon_days: int = 90, before: dt.date | None = None
                         ) -> pd.DataFrame:
    """At each month start with a complete horizon: among customers who bought in the previous
    ``horizon_days``, the share with no purchase in the next ``horizon_days``."""
    d = purchase_days(transactions, before)
    end = pd.Timestamp(before) if before is not None else d["day"].max() + pd.Timedelta(days=1)
    h = pd.Timedelta(days=horizon_days)
    starts = pd.date_range(d["day"].min() + h, end - h, freq="MS")
    rows = []
    for c in starts:
        active = set(d.loc[(d["day"] >= c - h) & (d["day"] < c), "customer_id"])
        if not active:
            continue
        again = set(d.loc[(d["day"] >= c) & (d["day"] < c + h), "customer_id"])
        churned = len(active - again)
        rows.append((c.date(), len(active), churned, churned / len(active)))
    return pd.DataFrame(rows, columns=["cutoff", "active_customers", "churned", "churn_rate"])


def survey_summary(after_sales: ibis.Table, before: dt.date | None = None) -> pd.DataFrame:
    """Per month: surveys, mean satisfaction (1-5), NPS responses, promoters (9-10), detractors (0-6)
    and NPS = % promoters - % detractors."""
    t = _before(after_sales, before)
    cols = [c for c in ("satisfaction", "nps") if c in t.columns]
    if not cols:
        raise ValueError("after_sales has no satisfaction or nps column: nothing to summarise")
    df = t.select("ts", *cols).to_pandas()
    df["month"] = pd.to_datetime(df["ts"]).dt.tz_localize(None).dt.to_period("M").astype(str)
    g = df.groupby("month")
    out = pd.DataFrame(index=sorted(df["month"].unique()))
    if "satisfaction" in cols:
        out["surveys"] = g["satisfaction"].count()
        out["mean_satisfaction"] = g["satisfaction"].mean()
    if "nps" in cols:
        out["nps_responses"] = g["nps"].count()
        out["promoters"] = g["nps"].apply(lambda s: int((s >= 9).sum()))
        out["detractors"] = g["nps"].apply(lambda s: int((s <= 6).sum()))
        out["nps"] = 100 * (out["promoters"] - out["detractors"]) / out["nps_responses"].where(
            out["nps_responses"] > 0)
    out.index.name = "month"
    return out.reset_index()
