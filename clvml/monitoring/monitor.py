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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from clvml.config import Config
from clvml.data.cutoffs import data_end
from clvml.data.dataset import Dataset
from clvml.data.loading import Progress, load_data, quiet
from clvml.engine import materialize, release
from clvml.errors import DataSourceError
from clvml.features.query import day_of
from clvml.labels import EPOCH, build_labels
from clvml.monitoring.alerts import judge, recommendation
from clvml.monitoring.campaigns import campaign_effects
from clvml.monitoring.expected import Promise, promise
from clvml.monitoring.kpis import cohorts, monthly_kpis, purchase_months_of
from clvml.monitoring.metrics import EXPECTED, GroupFigures
from clvml.monitoring.partitions import MONITORING_DIR, SEGMENTS, Partition, _as_text, read_partitions, scores_root
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


def _label_rows(ds: Dataset, first: dt.date, last: dt.date) -> ibis.Table:
    """The transactions :func:`~clvml.labels.build_labels` needs for cut-offs from ``first`` with
    horizons ending before ``last``: the rows of ``[first, last)`` as they are, and for each customer
    with earlier transactions a single row before ``first`` (amount 0) that says they had arrived.
    The labels of those cut-offs are the same as on all the transactions (a row before ``first`` only
    tells that the customer is a row; every horizon row is there, in the same order), from a fraction
    of the rows: twelve monthly cut-offs over ten years of history read a year and a half of it."""
    tx = ds.tables["transactions"]
    cols = [c for c in ("customer_id", "ts", "amount", "margin") if c in tx.columns]
    t = tx.select(*cols)
    day = day_of(t.ts)
    lo, hi = (first - EPOCH).days, (last - EPOCH).days
    early = t.filter(day < lo)
    arrived = early.group_by("customer_id").aggregate(ts=early.ts.min()).mutate(
        **{c: ibis.literal(0).cast(t[c].type()) for c in cols if c in ("amount", "margin")})
    return arrived.select(*cols).union(t.filter((day >= lo) & (day < hi)), distinct=False)


def _realised(ds: Dataset, tables: dict[str, ibis.Table], as_of: dt.date, s: dict[str, Any], end: dt.date
              ) -> pa.Table:
    """The realised outcomes over ``[as_of, as_of + H)`` of every customer with a transaction before
    ``as_of``: ``customer_id`` (text), ``churn`` (0/1) and ``value`` (the model's value target), in
    Arrow: one partition's worth, never every partition's outcomes in pandas. ``tables``: the data's
    tables with the transactions of :func:`_label_rows`."""
    lab = build_labels(tables, [as_of], horizon_days=s["horizon_days"], churn_definition=s["churn_definition"],
                       cancellation_event=s["cancellation_event"], data_end=end)
    if s["value_target"] == "margin" and "margin" not in lab.columns:
        raise DataSourceError("the model's value target is margin but the transactions have no margin column")
    col = "margin" if s["value_target"] == "margin" else "spend"
    got = lab.select("customer_id", "churn", col).to_pyarrow()
    value = got[col].to_numpy()
    if col == "margin":
        value = np.maximum(value.astype(float), 0.0)
    return pa.table({"customer_id": _as_text(got["customer_id"]),
                     "churn": pa.array(got["churn"].to_numpy().astype(int)), "value": pa.array(value, pa.float64())})


class _Windows:
    """Each scored customer's realised value over ``[as_of, as_of + days)`` times the margin (the
    backtest's :func:`~clvml.evaluation.backtest.realised_window`), for every partition, from one
    read of the transactions in the union of the windows (customer, value): per window, the rows in
    it are summed per customer in table order (pandas' groupby sum, as ``realised_window`` does), so
    the sums are the same to the bit."""

    def __init__(self, ds: Dataset, spans: list[tuple[dt.date, int]], value_target: str) -> None:
        t = ds.tables["transactions"]
        start = pd.Timestamp(min(d for d, _ in spans))
        stop = max(pd.Timestamp(d) + pd.Timedelta(days=n) for d, n in spans)
        col = "margin" if value_target == "margin" else "amount"
        t = t.filter((t.ts >= start.to_pydatetime()) & (t.ts < stop.to_pydatetime()))
        if col == "amount":
            t = t.filter(t.amount > 0)
        got = t.select("customer_id", "ts", value=t[col]).to_pyarrow()
        ids = _as_text(got["customer_id"]).combine_chunks().dictionary_encode()
        self.codes = ids.indices.to_numpy(zero_copy_only=False)
        self.customers = ids.dictionary
        self.ts = got["ts"].to_numpy()
        self.value = got["value"].to_numpy().astype(float)
        self.col = col

    def realised(self, customers: pa.Array, as_of: dt.date, days: int, margin: float) -> np.ndarray:
        o = np.datetime64(as_of, "D")
        inside = (self.ts >= o) & (self.ts < o + np.timedelta64(days, "D"))
        got = pd.Series(self.value[inside]).groupby(self.codes[inside]).sum()
        if self.col == "margin":
            got = got.clip(lower=0.0)
        at = pc.index_in(customers, value_set=self.customers).to_numpy(zero_copy_only=False)
        sums = got.reindex(np.arange(len(self.customers))).to_numpy(float)
        found = ~np.isnan(at)
        out = np.full(len(customers), np.nan)
        out[found] = sums[at[found].astype(np.int64)]
        return margin * pd.Series(out).fillna(0.0).to_numpy(float)


def _segments(table: pa.Table, keep: np.ndarray) -> list[tuple[str, str, np.ndarray | None]]:
    """The groups of the matched customers (rows ``keep`` of ``table``): ``all``, then each level of
    each segment column (its values as text, levels in sorted order, like
    ``groupby(col.astype(str), sort=True)``) as a boolean mask over the matched customers."""
    out: list[tuple[str, str, np.ndarray | None]] = [("all", "all", None)]
    for col in SEGMENTS:
        if col not in table.column_names:
            continue
        c = table[col].combine_chunks()
        if pa.types.is_string(c.type) or pa.types.is_large_string(c.type) or pa.types.is_dictionary(c.type):
            enc = c.dictionary_encode() if not pa.types.is_dictionary(c.type) else c
            names = ["None" if v is None else str(v) for v in enc.dictionary.to_pylist()]
            codes = enc.indices.fill_null(len(names)).to_numpy(zero_copy_only=False)[keep]
            names.append("None")
        else:  # other types: pandas' own text of each value
            codes, uniq = pd.factorize(c.to_pandas().astype(str).to_numpy()[keep])
            names = [str(u) for u in uniq]
        by_name: dict[str, list[int]] = {}
        for k, name in enumerate(names):
            by_name.setdefault(name, []).append(k)
        present = np.bincount(codes, minlength=len(names)) > 0
        for name in sorted(by_name):
            ks = [k for k in by_name[name] if present[k]]
            if ks:
                out.append((col, name, np.isin(codes, ks) if len(ks) > 1 else codes == ks[0]))
    return out


def partition_rows(p: Partition, version: str, scored: pa.Table, realised: pa.Table | None,
                   clv_actual: np.ndarray | None, clv_days: int, clv_complete: bool, prom: Promise,
                   min_customers: int) -> list[tuple]:
    """The tidy rows of one partition and model version (see :data:`COLUMNS`)."""
    rows: list[tuple] = []

    def add(seg_by, seg, metric, horizon, n, value):
        exp = float("nan")
        if seg_by == "all" and horizon == "complete" and metric in EXPECTED:
            exp = prom.figure(*EXPECTED[metric])
        rows.append((p.as_of, version, seg_by, seg, metric, horizon, int(n), float(value), exp))

    n_scored = scored.num_rows
    add("all", "all", "scored_customers", "n/a", n_scored, n_scored)
    drift = p.manifest.get("drift") if isinstance(p.manifest.get("drift"), dict) else {}
    top = drift.get("top") if isinstance(drift.get("top"), dict) else {}
    if top:
        add("all", "all", "drift_psi_max", "n/a", n_scored, max(float(v) for v in top.values()))
    if realised is None:
        return rows
    # the scored customers with an outcome, in the scores' order (an inner one-to-one join on
    # customer_id: the scores are checked on reading, the outcomes are one row per customer), by
    # position in Arrow: the ids are hashed once and never become Python strings
    at = pc.index_in(scored["customer_id"], value_set=realised["customer_id"]).to_numpy(zero_copy_only=False)
    keep = ~np.isnan(at)
    pos = at[keep].astype(np.int64)

    def col(name: str) -> np.ndarray:
        return scored[name].to_numpy().astype(float)[keep]

    figures = GroupFigures(realised["churn"].to_numpy()[pos], col("churn_probability"),
                           realised["value"].to_numpy()[pos], col("expected_value"),
                           None if clv_actual is None else np.asarray(clv_actual, float)[keep],
                           None if clv_actual is None else col("clv"))
    matched = int(keep.sum())
    add("all", "all", "unmatched_customers", "n/a", n_scored, n_scored - matched)
    for seg_by, seg, mask in _segments(scored, keep):
        n = matched if mask is None else int(mask.sum())
        add(seg_by, seg, "customers", "n/a", n, n)
        if n < min_customers:
            continue
        for metric, value in figures.horizon(mask).items():
            add(seg_by, seg, metric, "complete", n, value)
        if clv_actual is not None:
            for metric, value in figures.clv(mask, clv_complete, clv_days).items():
                add(seg_by, seg, metric, "complete" if clv_complete else "partial", n, value)
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
        for v in p.versions:
            if v not in promises:
                promises[v] = promise(cfg, v, p.manifest)
                if promises[v].note:
                    notes.append(f"model {v}: no expected figures ({promises[v].note})")
    settings = {v: _label_settings(cfg, pr) for v, pr in promises.items()}
    for v, s in settings.items():
        mine = {k: cfg.labels.model_dump(mode="json")[k] for k in s}
        if s != mine:
            notes.append(f"model {v} was trained with labels {s}; its outcomes use them, not the config's {mine}")

    # which (partition, version) have matured
    pending: list[dict[str, str]] = []
    todo: dict[tuple, list[dt.date]] = {}
    for p in parts:
        for v in p.versions:
            h = settings[v]["horizon_days"]
            if p.as_of + dt.timedelta(days=h - 1) <= end:
                todo.setdefault(tuple(sorted(settings[v].items())), []).append(p.as_of)
            else:
                pending.append({"as_of": str(p.as_of), "model_version": v,
                                "matures_when_data_reach": str(p.as_of + dt.timedelta(days=h - 1))})
    matured = sorted({d for days in todo.values() for d in days})
    progress(f"{len(matured)} partition(s) matured (data end {end}), {len(pending)} pending")
    if not matured:
        earliest = min(pending, key=lambda r: r["matures_when_data_reach"])
        notes.append(f"no partition has matured yet: the earliest, as_of={earliest['as_of']}, needs data up to "
                     f"{earliest['matures_when_data_reach']}; the data end on {end}")

    # the CLV window of each matured (partition, version): its days, and one read of the transactions
    # in all the windows of a value target
    def clv_window(p: Partition, v: str) -> tuple[dict[str, Any], int, bool]:
        clv_cfg = {**cfg.clv.model_dump(mode="json"), **(promises[v].clv or {})}
        window = int(clv_cfg["periods"]) * settings[v]["horizon_days"]
        days = min(window, (end - p.as_of).days + 1)
        return clv_cfg, days, days >= window

    spans: dict[str, list[tuple[dt.date, int]]] = {}
    for p in parts:
        for v in p.versions:
            if p.as_of in todo.get(tuple(sorted(settings[v].items())), []):
                spans.setdefault(settings[v]["value_target"], []).append((p.as_of, clv_window(p, v)[1]))
    windows = {target: _Windows(ds, sp, target) for target, sp in spans.items()}
    label_tables, rows_name = dict(ds.tables), f"clvml_monitor_label_rows_{id(ds)}"
    if matured:
        last = max(d + dt.timedelta(days=settings[v]["horizon_days"]) for p in parts for v in p.versions
                   for d in [p.as_of] if d in matured)
        label_tables["transactions"] = materialize(ds.con, rows_name, _label_rows(ds, matured[0], last),
                                                   "the transactions of the realised outcomes")

    # one partition at a time: its scores, its outcomes, its rows; then it is freed. The next
    # partition's scores and outcomes are read (Parquet, the backend) in a second thread while this
    # one's figures are computed (numpy): the two use different cores; only that thread queries the
    # backend while the loop runs
    def prepare(p: Partition) -> list[tuple]:
        table = p.read()
        out = []
        for v in p.versions:
            scored = table if len(p.versions) == 1 else table.filter(pc.equal(table["model_version"], v))
            s = settings[v]
            realised, clv_actual, clv_days, complete = None, None, 0, False
            if p.as_of in todo.get(tuple(sorted(s.items())), []):
                realised = _realised(ds, label_tables, p.as_of, s, end)
                clv_cfg, clv_days, complete = clv_window(p, v)
                clv_actual = windows[s["value_target"]].realised(scored["customer_id"], p.as_of, clv_days,
                                                                 float(clv_cfg["margin"]))
            out.append((v, scored, realised, clv_actual, clv_days, complete))
        return out

    rows: list[tuple] = []
    with ThreadPoolExecutor(1) as pool:
        ahead = pool.submit(prepare, parts[0])
        for k, p in enumerate(parts):
            work = ahead.result()
            if k + 1 < len(parts):
                ahead = pool.submit(prepare, parts[k + 1])
            for v, scored, realised, clv_actual, clv_days, complete in work:
                rows += partition_rows(p, v, scored, realised, clv_actual, clv_days, complete, promises[v],
                                       mcfg.min_customers)
            del work
            progress(f"as_of={p.as_of} judged")
    windows.clear()
    if matured:
        release(ds.con, rows_name)
    metrics = pd.DataFrame(rows, columns=COLUMNS).sort_values(
        ["as_of", "model_version", "segment_by", "segment", "metric"], kind="mergesort").reset_index(drop=True)
    progress("retention KPIs and cohorts")
    with purchase_months_of(ds, end) as months:
        kpis = monthly_kpis(ds, cfg, end, months)
        cohort = cohorts(ds, end, months)
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
