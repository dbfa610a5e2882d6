"""Retention KPIs month by month: who bought, who came back, who churned, what margin was realised."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from clvml.analytics.repurchase import cohort_retention, repurchase_rate
from clvml.config import Config
from clvml.data.dataset import Dataset
from clvml.labels import build_labels


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
    starts = [m.start_time.date() for m in months]
    lab = cfg.labels
    labelled = build_labels(ds.tables, starts, horizon_days=lab.horizon_days,
                            churn_definition=lab.churn_definition, cancellation_event=lab.cancellation_event,
                            data_end=end)
    done = labelled.filter(labelled.horizon_complete).group_by("cutoff").aggregate(
        churn_rate=labelled.churn.cast("float64").mean()).to_pandas()
    rate = dict(zip(pd.to_datetime(done["cutoff"]).dt.strftime("%Y-%m"), done["churn_rate"], strict=True))
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


def cohorts(ds: Dataset, end: dt.date) -> pd.DataFrame:
    """Cohort retention up to ``end`` (:func:`clvml.analytics.repurchase.cohort_retention`): 0 for an
    observed month in which nobody of the cohort bought, NaN for a month not observed yet."""
    return cohort_retention(ds.tables["transactions"], end + dt.timedelta(days=1))
