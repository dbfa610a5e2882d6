"""The loop on actions: realised effects of retention campaigns, per campaign and segment.

Given the assignment table of ``experiments.assignments`` (customer, campaign, treatment or control
group, assignment time), each campaign's outcomes over ``experiments.window_days`` from assignment are
compared between the arms with the intervals of :func:`clvml.analytics.experiments.evaluate_experiment`
(repurchase rate, purchases, spend), overall and per segment of the scores in force when the campaign
was assigned (the latest partition with ``as_of`` on or before its first assignment). Campaigns whose
windows the data do not cover yet are counted, not judged.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from clvml.analytics.experiment_report import read_assignments
from clvml.analytics.experiments import Outcomes, evaluate_experiment, experiment_outcomes
from clvml.config import Config
from clvml.data.dataset import Dataset
from clvml.monitoring.partitions import SEGMENTS, Partition


def campaign_effects(cfg: Config, ds: Dataset, parts: list[Partition], end: dt.date) -> tuple[pd.DataFrame, list[str]]:
    """Effects per campaign and segment (empty without ``experiments.assignments``) and notes.

    Returns
    -------
    tuple
        The effects table (:func:`~clvml.analytics.experiments.evaluate_experiment`'s columns, plus
        ``assigned_from`` and ``scores_as_of``, the partition whose segments were used) and notes on
        what was left out.
    """
    ex = cfg.experiments
    if ex.assignments is None:
        return pd.DataFrame(), []
    last = dt.datetime.combine(end + dt.timedelta(days=1), dt.time()) - dt.timedelta(microseconds=1)
    oc = experiment_outcomes(read_assignments(ex.assignments), ds.tables["transactions"],
                             window_days=ex.window_days, control=ex.control, data_end=last)
    notes = [f"campaigns: {n:,} assignment(s) left out ({why})" for why, n in sorted(oc.excluded.items()) if n]
    t = oc.table
    if t.empty:
        return pd.DataFrame(), notes + ["campaigns: no assignment window is covered by the data yet"]
    frames = []
    used: dict[str, str | None] = {}
    for camp, g in t.groupby("campaign_id", sort=True):
        start = pd.Timestamp(g["assigned_ts"].min()).date()
        before = [p for p in parts if p.as_of <= start]
        seg = [c for c in SEGMENTS if before and c in before[-1].columns]
        g = g.copy()
        if before and seg:
            s = before[-1].read(["customer_id", *seg]).to_pandas().drop_duplicates("customer_id")
            g = g.merge(s, on="customer_id", how="left")
            g[seg] = g[seg].astype(object).where(g[seg].notna(), "unscored")
        used[str(camp)] = str(before[-1].as_of) if before else None
        frames.append(g)
    t = pd.concat(frames, ignore_index=True)
    by = [c for c in SEGMENTS if c in t.columns]
    for c in by:
        t[c] = t[c].astype(object).where(t[c].notna(), "unscored")
    effects = evaluate_experiment(Outcomes(t, oc.excluded), by=by, control=ex.control, alpha=ex.alpha,
                                  min_group=cfg.monitoring.min_customers)
    starts = t.groupby("campaign_id")["assigned_ts"].min().dt.date.astype(str)
    effects.insert(1, "assigned_from", effects["campaign_id"].map(starts))
    effects.insert(2, "scores_as_of", effects["campaign_id"].map(used))
    return effects.reset_index(drop=True), notes
