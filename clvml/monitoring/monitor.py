"""``clvml monitor``: every stored score partition against what its customers then did.

For each partition ``as_of=D`` under the scores root (see :mod:`clvml.monitoring.partitions`), the
realised outcomes over ``[D, D + H)`` are built from the current data with the label builder the
model was trained with (:func:`clvml.labels.build_labels`, with the horizon, churn definition and
value target the bundle recorded; the config's ``labels`` section when it recorded none). Rules:

* A partition has **matured** when the data covers its whole horizon (``D + H - 1`` ≤ the last
  observed day, :func:`clvml.data.cutoffs.data_end`); only matured partitions get churn and value
  figures. The others are listed as pending with the day the data must reach.
* CLV is judged over ``K·H`` days (``clv.periods``): a window the data covers entirely gets the
  backtest's CLV metrics (``horizon`` = ``complete``); one it covers in part gets only the value
  realised so far beside the predicted total (``partial``). The two are never mixed in one figure.
* A scored customer without any transaction before ``D`` in the current data (deleted since, or a
  history trimmed at the start) cannot be labelled: they are left out and counted
  (``unmatched_customers``). Customers who appear after ``D`` were not scored and are not judged;
  they show in the retention KPIs as new customers.
* Figures are computed per model version: a partition scored by several versions, or partitions of
  different versions, never pool their customers; each version is compared with its own backtest.
* With ``experiments.assignments`` set, each campaign's realised effect (repurchase, purchases,
  spend, with intervals) is reported overall and per segment of the scores in force when it was
  assigned (:mod:`clvml.monitoring.campaigns`).
* Partitions before ``monitoring.since`` are ignored; a partition whose as_of the data no longer
  covers (the history starts on or after it, or the data ends before it) is an error (exit 3).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvml.config import Config
from clvml.data.cutoffs import data_end
from clvml.data.dataset import Dataset
from clvml.data.loading import Progress, load_data, quiet
from clvml.errors import DataSourceError
from clvml.labels import build_labels
from clvml.monitoring.alerts import judge, recommendation
from clvml.monitoring.campaigns import campaign_effects
from clvml.monitoring.expected import Promise, promise
from clvml.monitoring.kpis import cohorts, monthly_kpis
from clvml.monitoring.metrics import EXPECTED, clv_window_metrics, horizon_metrics
from clvml.monitoring.partitions import MONITORING_DIR, SEGMENTS, Partition, read_partitions, scores_root
from clvml.monitoring.report import write_outputs
from clvml.monitoring.result import COLUMNS, MonitorResult


def _label_settings(cfg: Config, p: Promise) -> dict[str, Any]:
    base = cfg.labels.model_dump(mode="json")
    keys = ("horizon_days", "churn_definition", "cancellation_event", "value_target")
    got = p.labels if isinstance(p.labels, dict) else {}
    return {k: got.get(k, base[k]) for k in keys}


def _uncovered(parts: list[Partition], first: dt.date, end: dt.date) -> None:
    bad = [f"as_of={p.as_of} (the {f'history starts on {first}' if first >= p.as_of else f'data end on {end}'})"
           for p in parts if first >= p.as_of or end < p.as_of - dt.timedelta(days=1)]
    if bad:
        raise DataSourceError(
            f"the configured data (transactions {first} .. {end}) no longer cover {len(bad)} score "
            f"partition(s): {', '.join(bad)}. Their outcomes cannot be built from these data: point the "
            "config at data with the history before and after each as_of, or skip the older partitions "
            "with monitoring.since")


def _realised(ds: Dataset, as_ofs: list[dt.date], s: dict[str, Any], end: dt.date) -> pd.DataFrame:
    lab = build_labels(ds.tables, as_ofs, horizon_days=s["horizon_days"], churn_definition=s["churn_definition"],
                       cancellation_event=s["cancellation_event"], data_end=end).to_pandas()
    if s["value_target"] == "margin":
        if "margin" not in lab:
            raise DataSourceError("the model's value target is margin but the transactions have no margin column")
        value = np.maximum(lab["margin"].to_numpy(float), 0.0)
    else:
        value = lab["spend"].to_numpy(float)
    return pd.DataFrame({"customer_id": lab["customer_id"].astype(str), "as_of": pd.to_datetime(lab["cutoff"]).dt.date,
                         "churn": lab["churn"].astype(int), "value": value})


def _clv_realised(ds: Dataset, cfg: Config, customers: pd.Series, as_of: dt.date, days: int, value_target: str,
                  margin: float) -> np.ndarray:
    """Each customer's realised value over ``[as_of, as_of + days)`` times ``margin``: the backtest's
    :func:`~clvml.evaluation.backtest.realised_window` with the model's value target and margin."""
    from clvml.evaluation.backtest import realised_window

    model_cfg = cfg.model_copy(update={"labels": cfg.labels.model_copy(update={"value_target": value_target}),
                                       "clv": cfg.clv.model_copy(update={"margin": margin})})
    return realised_window(ds, customers, as_of, days, model_cfg)


def _segments(frame: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    out = [("all", "all", frame)]
    for col in SEGMENTS:
        if col in frame:
            for level, g in frame.groupby(frame[col].astype(str), sort=True):
                out.append((col, str(level), g))
    return out


def partition_rows(p: Partition, version: str, scored: pd.DataFrame, realised: pd.DataFrame | None,
                   clv_actual: np.ndarray | None, clv_days: int, clv_complete: bool, prom: Promise,
                   min_customers: int) -> list[tuple]:
    """The tidy rows of one partition and model version (see :data:`COLUMNS`)."""
    rows: list[tuple] = []

    def add(seg_by, seg, metric, horizon, n, value):
        exp = float("nan")
        if seg_by == "all" and horizon == "complete" and metric in EXPECTED:
            exp = prom.figure(*EXPECTED[metric])
        rows.append((p.as_of, version, seg_by, seg, metric, horizon, int(n), float(value), exp))

    add("all", "all", "scored_customers", "n/a", len(scored), len(scored))
    drift = p.manifest.get("drift") if isinstance(p.manifest.get("drift"), dict) else {}
    top = drift.get("top") if isinstance(drift.get("top"), dict) else {}
    if top:
        add("all", "all", "drift_psi_max", "n/a", len(scored), max(float(v) for v in top.values()))
    if realised is None:
        return rows
    # the scored customers with an outcome, in the scores' order (an inner one-to-one merge on
    # customer_id; both sides hold each customer once: the scores are checked on reading, the outcomes
    # are one row per customer and as_of), by position so that the ids are hashed once
    at = pd.Index(realised["customer_id"]).get_indexer(scored["customer_id"])
    keep = at >= 0
    merged = scored[keep].reset_index(drop=True)
    for col in realised.columns.drop("customer_id"):
        merged[col] = realised[col].to_numpy()[at[keep]]
    if clv_actual is not None:
        merged["clv_realised"] = np.asarray(clv_actual)[keep]
    add("all", "all", "unmatched_customers", "n/a", len(scored), len(scored) - len(merged))
    for seg_by, seg, g in _segments(merged):
        add(seg_by, seg, "customers", "n/a", len(g), len(g))
        if len(g) < min_customers:
            continue
        for metric, value in horizon_metrics(g).items():
            add(seg_by, seg, metric, "complete", len(g), value)
        if clv_actual is not None:
            clv = clv_window_metrics(g["clv_realised"].to_numpy(float), g["clv"].to_numpy(float), clv_complete,
                                     clv_days)
            for metric, value in clv.items():
                add(seg_by, seg, metric, "complete" if clv_complete else "partial", len(g), value)
    return rows


def monitor(cfg: Config, *, scores: Path | None = None, ds: Dataset | None = None,
            progress: Progress = quiet) -> MonitorResult:
    """Judge every stored score partition against the outcomes since, write the monitoring dataset,
    the report and the retraining recommendation (see the module docstring).

    Parameters
    ----------
    cfg
        Config: the data (current), the ``labels``/``clv`` settings (used when a bundle recorded none),
        the ``monitoring`` thresholds, and ``scoring.out`` (the scores root).
    scores
        The scores root (default ``scoring.out``, else ``<output.dir>/scores``).
    ds
        Already loaded data (default: read and validate the config's sources).

    Returns
    -------
    MonitorResult
        The tidy metrics, KPIs, cohorts, alerts and recommendation; ``out`` is
        ``<scores root>/_monitoring`` holding ``metrics.parquet``, ``kpis.parquet``,
        ``cohorts.parquet``, ``recommendation.json``, ``report.html`` and its plots.

    Raises
    ------
    DataSourceError
        (exit 3) no partitions, partitions of another schema, or partitions the data no longer cover.
    """
    mcfg = cfg.monitoring
    root = scores_root(cfg, scores)
    parts, notes = read_partitions(root, mcfg.since)
    progress(f"{len(parts)} score partition(s) under {root}: {parts[0].as_of} .. {parts[-1].as_of}")
    ds = ds or load_data(cfg, progress)
    end = data_end(ds)
    first = ds.date_range()[0].date()
    _uncovered(parts, first, end)

    promises: dict[str, Promise] = {}
    for p in parts:
        for v in sorted(p.scores["model_version"].astype(str).unique()):
            if v not in promises:
                promises[v] = promise(cfg, v, p.manifest)
                if promises[v].note:
                    notes.append(f"model {v}: no expected figures ({promises[v].note})")
    settings = {v: _label_settings(cfg, pr) for v, pr in promises.items()}
    for v, s in settings.items():
        mine = {k: cfg.labels.model_dump(mode="json")[k] for k in s}
        if s != mine:
            notes.append(f"model {v} was trained with labels {s}; its outcomes use them, not the config's {mine}")

    # which (partition, version) have matured, and their outcomes, one label query per label setting
    pending: list[dict[str, str]] = []
    todo: dict[tuple, list[dt.date]] = {}
    for p in parts:
        for v in sorted(p.scores["model_version"].astype(str).unique()):
            h = settings[v]["horizon_days"]
            if p.as_of + dt.timedelta(days=h - 1) <= end:
                todo.setdefault(tuple(sorted(settings[v].items())), []).append(p.as_of)
            else:
                pending.append({"as_of": str(p.as_of), "model_version": v,
                                "matures_when_data_reach": str(p.as_of + dt.timedelta(days=h - 1))})
    outcomes: dict[tuple[tuple, dt.date], pd.DataFrame] = {}
    for key, days in todo.items():
        lab = _realised(ds, sorted(set(days)), dict(key), end)
        for day, g in lab.groupby("as_of"):
            outcomes[(key, day)] = g.drop(columns="as_of")
    matured = sorted({d for days in todo.values() for d in days})
    progress(f"{len(matured)} partition(s) matured (data end {end}), {len(pending)} pending")
    if not matured:
        earliest = min(pending, key=lambda r: r["matures_when_data_reach"])
        notes.append(f"no partition has matured yet: the earliest, as_of={earliest['as_of']}, needs data up to "
                     f"{earliest['matures_when_data_reach']}; the data end on {end}")

    rows: list[tuple] = []
    for p in parts:
        for v in sorted(p.scores["model_version"].astype(str).unique()):
            scored = p.scores[p.scores["model_version"].astype(str) == v].reset_index(drop=True)
            s = settings[v]
            key = tuple(sorted(s.items()))
            realised = outcomes.get((key, p.as_of))
            if realised is None and p.as_of in todo.get(key, []):
                realised = pd.DataFrame(columns=["customer_id", "churn", "value"])
            clv_actual, clv_days, complete = None, 0, False
            if realised is not None:
                clv_cfg = {**cfg.clv.model_dump(mode="json"), **(promises[v].clv or {})}
                window = int(clv_cfg["periods"]) * s["horizon_days"]
                clv_days = min(window, (end - p.as_of).days + 1)
                complete = clv_days >= window
                clv_actual = _clv_realised(ds, cfg, scored["customer_id"], p.as_of, clv_days, s["value_target"],
                                           float(clv_cfg["margin"]))
            rows += partition_rows(p, v, scored, realised, clv_actual, clv_days, complete, promises[v],
                                   mcfg.min_customers)
    metrics = pd.DataFrame(rows, columns=COLUMNS).sort_values(
        ["as_of", "model_version", "segment_by", "segment", "metric"], kind="mergesort").reset_index(drop=True)
    kpis = monthly_kpis(ds, cfg, end)
    cohort = cohorts(ds, end)
    alerts, judged = judge(metrics, mcfg)
    rec = recommendation(alerts, judged, metrics, pending, str(end))
    effects, campaign_notes = campaign_effects(cfg, ds, parts, end)
    notes += campaign_notes
    comparison = _champion_challenger(cfg, ds, root, scores, notes, progress)
    out = root / MONITORING_DIR
    result = MonitorResult(metrics, kpis, cohort, alerts, rec, pending, notes, out, effects, challenger=comparison)
    result.files = write_outputs(result, root, cfg)
    progress(f"monitoring written to {out}")
    return result


def _champion_challenger(cfg: Config, ds: Dataset, root: Path, scores: Path | None, notes: list[str],
                         progress: Progress):
    """The champion/challenger comparison when shadow partitions exist (``clvml score --shadow``)."""
    from clvml.errors import NoShadowRunsError
    from clvml.monitoring.challenger import compare_champion_challenger
    from clvml.scoring.shadow import shadow_root

    shadow = shadow_root(cfg)
    if not shadow.is_dir() or not any(shadow.glob("as_of=*")):
        return None
    try:
        comparison = compare_champion_challenger(cfg, ds, production=root, shadow=shadow)
    except NoShadowRunsError as exc:
        notes.append(f"champion/challenger: {exc}")
        return None
    d = comparison.decision
    progress(f"champion/challenger on {cfg.promote.metric}: {d.get('outcome')} ({d.get('reason', '')})")
    return comparison


def summary_table(result: MonitorResult) -> str:
    """A short plain-text table: one line per matured partition and model version (overall figures,
    the backtest's beside them in parentheses)."""
    m = result.metrics[(result.metrics.segment_by == "all")]
    want = [("churn_roc_auc", "AUC", "{:.3f}"), ("churn_ece", "ECE", "{:.3f}"),
            ("predicted_churn_rate", "churn pred", "{:.3f}"), ("observed_churn_rate", "churn obs", "{:.3f}"),
            ("value_normalized_gini", "Gini", "{:.3f}"), ("value_total_error_pct", "value err %", "{:+.1f}")]
    head = ["as_of", "model", "customers"] + [w[1] for w in want]
    lines = [head]
    for (as_of, version), g in m.groupby(["as_of", "model_version"], sort=True):
        vals = dict(zip(g.metric, zip(g.value, g.expected, strict=True), strict=True))
        if "observed_churn_rate" not in vals:
            continue
        cells = [str(as_of), str(version), f"{int(vals['customers'][0]):,}"]
        for metric, _, fmt in want:
            v, e = vals.get(metric, (float("nan"), float("nan")))
            cell = "-" if pd.isna(v) else fmt.format(v)
            if not pd.isna(e):
                cell += f" ({fmt.format(e)})"
            cells.append(cell)
        lines.append(cells)
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    text = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in lines]
    for r in result.pending:
        text.append(f"{r['as_of']}  {r['model_version']}  pending: matures when the data reach "
                    f"{r['matures_when_data_reach']}")
    if result.challenger is not None:
        d = result.challenger.decision
        text.append(f"champion/challenger: {d.get('outcome')} — {d.get('reason', '')}")
    return "\n".join(text)
