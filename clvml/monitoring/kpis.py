"""Retention KPIs month by month: who bought, who came back, who churned, what margin was realised."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import ibis
import numpy as np
import pandas as pd

from clvml.analytics.repurchase import cohort_retention, purchase_months, repurchase_rate
from clvml.config import Config
from clvml.data.dataset import Dataset
from clvml.engine import materialize, release
from clvml.features.query import day_of
from clvml.labels import EPOCH, build_labels


def monthly_kpis(ds: Dataset, cfg: Config, end: dt.date, months: ibis.Table | None = None) -> pd.DataFrame:
    """One row per calendar month of the data up to ``end`` (the last observed day).

    Columns: ``month`` (``YYYY-MM``), ``complete`` (the whole month is observed), ``active_customers``
    (bought in the month), ``new_customers`` (first purchase ever), ``returning_customers``,
    ``repeat_rate`` (share of buyers with two or more purchase days in the month),
    ``returning_rate``, ``churn_rate`` (customers with a purchase before the month's first day who
    churned, by ``labels.churn_definition``, over ``labels.horizon_days`` from it; NaN while that
    horizon is not observed) and ``realised_margin`` (the transactions' ``margin`` column; without
    one, ``clv.margin`` × spend, said by ``margin_source``). ``months``: the transactions'
    :func:`~clvml.analytics.repurchase.purchase_months` before the day after ``end``, when already
    computed (:func:`purchase_months_of`).
    """
    tx = ds.tables["transactions"]
    before = end + dt.timedelta(days=1)
    rr = repurchase_rate(tx, before, months=months)
    out = pd.DataFrame({"month": rr["month"], "active_customers": rr["buyers"].astype("int64"),
                        "returning_customers": rr["returning_buyers"].astype("int64")})
    out["new_customers"] = out["active_customers"] - out["returning_customers"]
    out["repeat_rate"] = rr["repeat_rate"].astype(float)
    out["returning_rate"] = rr["returning_rate"].astype(float)
    periods = pd.PeriodIndex(out["month"], freq="M")
    out["complete"] = [(m + 1).start_time.date() <= before for m in periods]
    rate = _churn_rates(ds, [m.start_time.date() for m in periods], cfg, end)
    out["churn_rate"] = [float(rate.get(m, float("nan"))) for m in out["month"]]
    # the month totals summed in table order (np.bincount adds each month's values one after the other):
    # a sum on the backend adds its threads' partial sums in whichever order they finish, so its last
    # bits changed from run to run on ten million rows
    t = tx.filter(tx.ts < pd.Timestamp(before).to_pydatetime())
    if "margin" in t.columns:
        col, source = "margin", "margin column"
    else:
        col, source = "amount", f"clv.margin {cfg.clv.margin:g} x spend"
        t = t.filter(t.amount > 0)
    got = t.select(m=t.ts.truncate("M").cast("date"), v=t[col].cast("float64")).to_pyarrow()
    m = got["m"].to_numpy().astype("datetime64[M]").astype(np.int64)
    v = got["v"].fill_null(0.0).to_numpy()
    del got
    ords = periods.asi8  # months since 1970-01, as datetime64[M]
    lo = int(min(m.min(), ords.min())) if len(m) and len(ords) else 0
    total = np.bincount(m - lo, weights=v) if len(m) else np.zeros(0)
    if col == "amount":
        total = total * cfg.clv.margin
    out["realised_margin"] = [float(total[o - lo]) if 0 <= o - lo < len(total) else 0.0 for o in ords]
    out["margin_source"] = source
    cols = ["month", "complete", "active_customers", "new_customers", "returning_customers", "repeat_rate",
            "returning_rate", "churn_rate", "realised_margin", "margin_source"]
    return out[cols].reset_index(drop=True)


def _churn_rates(ds: Dataset, starts: list[dt.date], cfg: Config, end: dt.date) -> dict[str, float]:
    """``YYYY-MM`` -> the share of customers with a transaction before the month's first day who churned
    over ``labels.horizon_days`` from it (:func:`clvml.labels.build_labels`), for the months whose
    horizon ends by ``end``.

    With ``no_purchase`` churn the two counts are taken directly — customers whose first transaction is
    before the day, and those of them with a purchase (amount > 0) in the horizon — the labels' figure
    without a label row per customer and month: from one read of each transaction's customer, day and
    whether it is a purchase (three narrow columns), each month start is attributed to each customer's
    first purchase day on or after it and the counts are a running sum over the month starts. (The
    backend's alternative, a range join of 10M purchase days with the month starts and a distinct count,
    took 24 CPU-s and 3 GiB on the monitoring benchmark; this takes a few seconds.)
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
    t = ds.tables["transactions"]
    got = t.select("customer_id", day=day_of(t.ts).cast("int32"), buy=t.amount > 0).to_pyarrow()
    codes = got["customer_id"].combine_chunks().dictionary_encode().indices.to_numpy(zero_copy_only=False)
    day = got["day"].to_numpy().astype(np.int64)
    buy = got["buy"].to_numpy(zero_copy_only=False).astype(bool)
    del got
    # each customer's first transaction day (any amount)
    first = np.full(int(codes.max()) + 1 if len(codes) else 0, np.iinfo(np.int64).max)
    np.minimum.at(first, codes, day)
    first_days, n_first = np.unique(first, return_counts=True)
    cum = np.concatenate([[0], np.cumsum(n_first)])
    # distinct purchase days per customer, in order; a month start s counts a customer as staying when
    # its first purchase day on or after s is before s + h: each s is attributed to the one purchase
    # day d with (previous purchase day) < s <= d, and counts when also s > d - h and s > first day.
    # The intervals (lo, d] of one customer are disjoint, so the month starts in them are counted once.
    base = int(day.min()) if len(day) else 0
    key = np.sort((codes[buy].astype(np.int64) << 32) | (day[buy] - base))  # (np.unique: 200x slower here)
    key = key[np.concatenate([[True], key[1:] != key[:-1]])]
    del codes, day, buy
    cust, d = key >> 32, (key & 0xFFFFFFFF) + base
    prev = np.concatenate([[np.iinfo(np.int64).min], d[:-1]])
    prev[np.concatenate([[True], cust[1:] != cust[:-1]])] = np.iinfo(np.int64).min
    lo = np.maximum(np.maximum(prev, d - h), first[cust])
    starts = np.asarray([(s - EPOCH).days for s in done], dtype=np.int64)
    a_, b_ = np.searchsorted(starts, lo, side="right"), np.searchsorted(starts, d, side="right")
    a_, b_ = a_[a_ < b_], b_[a_ < b_]
    diff = np.bincount(a_, minlength=len(starts) + 1) - np.bincount(b_, minlength=len(starts) + 1)
    stayers = np.cumsum(diff)[:len(starts)]
    out = {}
    for k, s in enumerate(done):
        eligible = int(cum[np.searchsorted(first_days, starts[k], side="left")])  # first transaction before it
        if eligible:
            out[s.strftime("%Y-%m")] = (eligible - int(stayers[k])) / eligible
    return out


def cohorts(ds: Dataset, end: dt.date, months: ibis.Table | None = None) -> pd.DataFrame:
    """Cohort retention up to ``end`` (:func:`clvml.analytics.repurchase.cohort_retention`): 0 for an
    observed month in which nobody of the cohort bought, NaN for a month not observed yet."""
    return cohort_retention(ds.tables["transactions"], end + dt.timedelta(days=1), months=months)


@contextmanager
def purchase_months_of(ds: Dataset, end: dt.date) -> Iterator[ibis.Table]:
    """The purchase months of the transactions up to ``end``
    (:func:`~clvml.analytics.repurchase.purchase_months`) computed once and kept on the backend while
    the KPIs and cohorts count on them (both need them: computing them twice was the largest cost of
    the KPIs), then freed."""
    name = f"clvml_purchase_months_{id(ds)}"
    pm = materialize(ds.con, name, purchase_months(ds.tables["transactions"], end + dt.timedelta(days=1)),
                     "the purchase months of the transactions")
    try:
        yield pm
    finally:
        release(ds.con, name)
