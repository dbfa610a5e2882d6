"""Retention KPIs month by month: who bought, who came back, who churned, what margin was realised."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from clvml.analytics.repurchase import cohort_retention, repurchase_rate
from clvml.config import Config
from clvml.data.dataset import Dataset
from clvml.features.builder import cutoff_table
from clvml.features.query import day_of
from clvml.labels import EPOCH, build_labels


def monthly_kpis(ds: Dataset, cfg: Config, end: dt.date) -> pd.DataFrame:
    """One row per calendar month of the data up to ``end`` (the last observed day).

    Columns: ``month`` (``YYYY-MM``), ``complete`` (the whole month is observed), ``active_customers``
    (bought in the month), ``new_customers`` (first purchase ever), ``returning_customers``,
    ``repeat_rate`` (share of buyers with two or more purchase days in the month),
    ``returning_rate``, ``churn_rate`` (customers with a purchase before the month's first day who
    churned, by ``labels.churn_definition``, over ``labels.horizon_days`` from it; NaN while that
    horizon is not observed) and ``realised_margin`` (the transactions' ``margin`` column; without
    one, ``clv.margin`` × spend, said by ``margin_source``).
    """
    tx = ds.tables["transactions"]
    before = end + dt.timedelta(days=1)
    rr = repurchase_rate(tx, before)
    out = pd.DataFrame({"month": rr["month"], "active_customers": rr["buyers"].astype("int64"),
                        "returning_customers": rr["returning_buyers"].astype("int64")})
    out["new_customers"] = out["active_customers"] - out["returning_customers"]
    out["repeat_rate"] = rr["repeat_rate"].astype(float)
    out["returning_rate"] = rr["returning_rate"].astype(float)
    months = pd.PeriodIndex(out["month"], freq="M")
    out["complete"] = [(m + 1).start_time.date() <= before for m in months]
    rate = _churn_rates(ds, [m.start_time.date() for m in months], cfg, end)
    out["churn_rate"] = [float(rate.get(m, float("nan"))) for m in out["month"]]
    t = tx.filter(tx.ts < pd.Timestamp(before).to_pydatetime())
    month = t.ts.truncate("M").name("m")
    if "margin" in t.columns:
        agg = t.group_by(month).aggregate(margin=t.margin.sum())
        source = "margin column"
    else:
        agg = t.group_by(month).aggregate(margin=t.amount.sum(where=t.amount > 0) * cfg.clv.margin)
        source = f"clv.margin {cfg.clv.margin:g} x spend"
    got = agg.to_pandas()
    margin = dict(zip(pd.to_datetime(got["m"]).dt.strftime("%Y-%m"), got["margin"], strict=True))
    out["realised_margin"] = [float(margin.get(m, 0.0) or 0.0) for m in out["month"]]
    out["margin_source"] = source
    cols = ["month", "complete", "active_customers", "new_customers", "returning_customers", "repeat_rate",
            "returning_rate", "churn_rate", "realised_margin", "margin_source"]
    return out[cols].reset_index(drop=True)


def _churn_rates(ds: Dataset, starts: list[dt.date], cfg: Config, end: dt.date) -> dict[str, float]:
    """``YYYY-MM`` -> the share of customers with a transaction before the month's first day who churned
    over ``labels.horizon_days`` from it (:func:`clvml.labels.build_labels`), for the months whose
    horizon ends by ``end``.

    With ``no_purchase`` churn the two counts are taken directly, on the backend: customers whose first
    transaction is before the day, and those of them with a purchase (amount > 0) in the horizon (a
    range join of their purchase days with the month starts) — the labels' figure without a label row
    per customer and month.
    """
    lab = cfg.labels
    h = lab.horizon_days
    done = [s for s in starts if s + dt.timedelta(days=h - 1) <= end]
    if not done:
        return {}
    if lab.churn_definition != "no_purchase":
        labelled = build_labels(ds.tables, done, horizon_days=h, churn_definition=lab.churn_definition,
                                cancellation_event=lab.cancellation_event, data_end=end)
        got = labelled.group_by("cutoff").aggregate(churn_rate=labelled.churn.cast("float64").mean()).to_pandas()
        return dict(zip(pd.to_datetime(got["cutoff"]).dt.strftime("%Y-%m"), got["churn_rate"], strict=True))
    tx = ds.tables["transactions"]
    t = tx.mutate(day=day_of(tx.ts))
    firsts = t.group_by("customer_id").aggregate(first_day=t.day.min())
    per_day = firsts.group_by("first_day").aggregate(n=firsts.count()).to_pandas().sort_values("first_day")
    buys = t.filter(t.amount > 0).select("customer_id", "day").distinct()
    cuts = cutoff_table(done)
    j = buys.join(cuts, [buys.day >= cuts.cutoff_day, buys.day < cuts.cutoff_day + h]).join(firsts, "customer_id")
    j = j.filter(j.first_day < j.cutoff_day)
    stay = j.group_by("cutoff_day").aggregate(stayers=j.customer_id.nunique()).to_pandas()
    stayers = dict(zip(stay["cutoff_day"].astype(int), stay["stayers"].astype(int), strict=True))
    first_days = per_day["first_day"].to_numpy("int64")
    cum = np.concatenate([[0], np.cumsum(per_day["n"].to_numpy("int64"))])
    out = {}
    for s in done:
        day = (s - EPOCH).days
        eligible = int(cum[np.searchsorted(first_days, day, side="left")])  # first transaction before it
        if eligible:
            out[s.strftime("%Y-%m")] = (eligible - stayers.get(day, 0)) / eligible
    return out


def cohorts(ds: Dataset, end: dt.date) -> pd.DataFrame:
    """Cohort retention up to ``end`` (:func:`clvml.analytics.repurchase.cohort_retention`): 0 for an
    observed month in which nobody of the cohort bought, NaN for a month not observed yet."""
    return cohort_retention(ds.tables["transactions"], end + dt.timedelta(days=1))
