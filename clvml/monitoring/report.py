"""The monitoring outputs: the tidy Parquet dataset, the recommendation, and one HTML report with
small PNG time series (expected band drawn), written together into ``<scores root>/_monitoring``.

The folder is built in a staging folder beside it and swapped in whole (:func:`clvml.io.replace_dir`),
so a reader sees the previous outputs or the new ones, never a mix. Nothing in it depends on the time
of the run: a rerun on the same partitions and data writes byte-identical files.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from clvml.config import Config
from clvml.io import (
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
    remove_dead_staging,
    replace_dir,
    staging_dir,
)
from clvml.monitoring.partitions import MONITORING_DIR
from clvml.monitoring.result import MonitorResult
from clvml.plotting import CSS, plt, save_figure

#: the time series of the report: metric, title, band kind (see :func:`_band`)
SERIES = [("churn_roc_auc", "Churn ROC AUC", "auc"), ("churn_ece", "Churn calibration error (ECE)", "ece"),
          ("observed_churn_rate", "Churn rate: observed (predicted dashed)", None),
          ("value_normalized_gini", "Value normalized Gini", "expected"),
          ("value_total_error_pct", "Value total error (% of realised)", "total"),
          ("value_capture_top5", "Realised value in the predicted top 5 % (best dotted)", None)]


BAND_LABELS = {"auc": "backtest ± auc_drop (alert below)", "ece": "≤ ece_max (alert above)",
               "total": "± value_total_error_max"}


def _band(kind: str | None, expected: float, cfg: Config) -> tuple[float, float] | None:
    m = cfg.monitoring
    if kind == "auc" and np.isfinite(expected) and m.auc_drop is not None:
        return expected - m.auc_drop, expected + m.auc_drop
    if kind == "ece" and m.ece_max is not None:
        return 0.0, m.ece_max
    if kind == "total" and m.value_total_error_max is not None:
        return -m.value_total_error_max, m.value_total_error_max
    return None


def _draw_series(ax, metrics: pd.DataFrame, metric: str, title: str, kind: str | None, cfg: Config) -> None:
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    m = metrics[(metrics.segment_by == "all") & (metrics.horizon == "complete")]
    dates = sorted(m.loc[m.metric == "observed_churn_rate", "as_of"].astype(str).unique())
    x = {d: i for i, d in enumerate(dates)}
    for version, g in m[m.metric == metric].groupby("model_version", sort=True):
        g = g.sort_values("as_of")
        ax.plot([x[str(d)] for d in g.as_of], g["value"], marker="o", label=f"realised {version}")
        exp = g["expected"].dropna()
        if len(exp):
            ax.axhline(float(exp.iloc[0]), ls="--", color="grey", lw=1, label=f"backtest {float(exp.iloc[0]):.3f}")
        band = _band(kind, float(exp.iloc[0]) if len(exp) else float("nan"), cfg)
        if band is not None:
            ax.axhspan(*band, color="tab:green", alpha=0.12, label=BAND_LABELS[kind])
        twin = {"observed_churn_rate": "predicted_churn_rate", "value_capture_top5": "value_best_top5"}.get(metric)
        if twin:
            t = m[(m.metric == twin) & (m.model_version == version)].sort_values("as_of")
            ax.plot([x[str(d)] for d in t.as_of], t["value"], ls="--" if "predicted" in twin else ":",
                    marker=".", label=twin.replace("_", " "))
    ax.set_xticks(range(len(dates)), dates, rotation=45, ha="right", fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=6)


def _series_figure(metrics: pd.DataFrame, cfg: Config):
    """The metric time series, one small panel each, in one figure (one PNG to draw)."""
    fig, axs = plt.subplots(2, 3, figsize=(12, 6), dpi=80)
    for ax, (metric, title, kind) in zip(axs.ravel(), SERIES, strict=True):
        _draw_series(ax, metrics, metric, title, kind, cfg)
    fig.subplots_adjust(hspace=0.55, wspace=0.25)  # fixed spacing: tight_layout costs a second layout pass
    return fig


def _kpi_figure(kpis: pd.DataFrame):
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.4), dpi=80)
    for ax, cols, title in ((a, ("active_customers", "new_customers", "returning_customers"),
                             "Customers buying per month"),
                            (b, ("churn_rate", "returning_rate", "repeat_rate"), "Churn and repurchase rates")):
        for c in cols:
            ax.plot(kpis["month"], kpis[c], marker=".", label=c.replace("_", " "))
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(axis="x", rotation=90, labelsize=7)
        ax.legend(fontsize=7)
    fig.subplots_adjust(wspace=0.2)
    return fig


def _overall_table(metrics: pd.DataFrame) -> pd.DataFrame:
    m = metrics[(metrics.segment_by == "all") & (metrics.horizon != "n/a")].copy()

    def cell(r) -> str:
        v = "" if pd.isna(r.value) else f"{r.value:,.3f}"
        return v + (f" ({r.expected:,.3f})" if not pd.isna(r.expected) else "")

    m["cell"] = [cell(r) for r in m.itertuples()]
    m["metric"] = m["metric"] + np.where(m["horizon"] == "partial", " [partial]", "")
    t = m.pivot_table(index=["as_of", "model_version"], columns="metric", values="cell", aggfunc="first")
    t.columns.name = None
    return t.reset_index().fillna("")


def _page(result: MonitorResult, images: dict[str, Path], cfg: Config) -> str:
    rec = result.recommendation
    esc = html.escape
    parts = [f"<h1>clvml monitoring: {esc(cfg.name)}</h1>",
             f"<p><b>{'RETRAIN' if rec['retrain'] else 'OK'}</b>: {esc(rec['summary'])} "
             f"(data end {rec['data_end']})</p>"]
    if result.alerts:
        parts.append("<h2>Alerts</h2><ul>" + "".join(f"<li>{esc(a.message)}</li>" for a in result.alerts) + "</ul>")
    if result.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in result.notes) + "</ul>")
    if result.pending:
        parts.append("<h2>Pending partitions</h2>" + pd.DataFrame(result.pending).to_html(index=False))
    parts.append("<h2>Metrics over time</h2><p>Overall figures of each matured partition; the backtest's "
                 "figure for that model version dashed, the band inside which no alert is raised shaded.</p>")
    imgs = "".join(f"<img src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}' alt='{esc(n)}'>"
                   for n, p in images.items())
    parts.append(f"<div class='plots'>{imgs}</div>")
    parts.append("<h2>Overall figures (backtest in parentheses)</h2>"
                 + _overall_table(result.metrics).to_html(index=False, escape=True))
    seg = result.metrics[(result.metrics.segment_by != "all") & (result.metrics.horizon != "partial")
                         & result.metrics.metric.isin(["customers", "observed_churn_rate", "predicted_churn_rate",
                                                       "churn_roc_auc", "value_total_error_pct"])]
    if len(seg):
        latest = seg["as_of"].max()
        t = seg[seg.as_of == latest].pivot_table(index=["model_version", "segment_by", "segment"],
                                                  columns="metric", values="value", aggfunc="first")
        t.columns.name = None
        t = t.reset_index()
        parts.append(f"<h2>Segments of the latest matured partition ({latest})</h2>"
                     + t.to_html(index=False, float_format=lambda v: f"{v:,.3f}"))
    if len(result.campaigns):
        cols = ["campaign_id", "assigned_from", "scores_as_of", "segment_by", "segment", "metric", "n_treatment",
                "n_control", "effect", "ci_low", "ci_high", "p_value_holm", "note"]
        parts.append("<h2>Campaigns: realised effect (treatment − control, with interval)</h2>"
                     + result.campaigns[cols].to_html(index=False, float_format=lambda v: f"{v:,.3f}"))
    if result.challenger is not None:
        c, d = result.challenger, result.challenger.decision
        parts.append("<h2>Champion and challenger</h2><p>Production (champion) against shadow (challenger) "
                     f"scores on the same matured partitions and customers; decision on "
                     f"<code>{esc(str(cfg.promote.metric))}</code>: <b>{esc(str(d.get('outcome')))}</b> — "
                     f"{esc(str(d.get('reason', '')))}</p>"
                     + c.runs.to_html(index=False, float_format=lambda v: f"{v:,.4f}", na_rep=""))
    parts.append("<h2>Retention KPIs by month</h2>"
                 + result.kpis.to_html(index=False, float_format=lambda v: f"{v:,.3f}"))
    if len(result.cohorts):
        c = result.cohorts.pivot(index="cohort", columns="months_since", values="retention")
        parts.append("<h2>Cohort retention</h2><p>Share of each cohort (month of the first purchase) buying "
                     "in each month since; 0 when nobody bought in an observed month, blank when the month is "
                     "not observed yet.</p>" + c.to_html(float_format=lambda v: f"{v:.2f}", na_rep=""))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>clvml monitoring: {esc(cfg.name)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>")


def write_outputs(result: MonitorResult, root: Path, cfg: Config) -> dict[str, Path]:
    """Write every output into a staging folder, then swap it in as ``root/_monitoring``."""
    target = root / MONITORING_DIR
    remove_dead_staging(root, f".{MONITORING_DIR}.")
    with staging_dir(root, f".{MONITORING_DIR}.", str(target)) as tmp:
        metrics = result.metrics.assign(as_of=pd.to_datetime(result.metrics["as_of"]).dt.date)
        atomic_write_parquet(metrics, tmp / "metrics.parquet")
        atomic_write_parquet(result.kpis, tmp / "kpis.parquet")
        atomic_write_parquet(result.cohorts, tmp / "cohorts.parquet")
        atomic_write_json(result.recommendation, tmp / "recommendation.json")
        if len(result.campaigns):
            atomic_write_parquet(result.campaigns, tmp / "campaigns.parquet")
        if result.challenger is not None:
            atomic_write_parquet(result.challenger.table, tmp / "challenger.parquet")
            atomic_write_json(result.challenger.decision, tmp / "challenger_decision.json")
        if cfg.monitoring.report:
            _write_report(result, tmp, cfg)
        names = sorted(p.relative_to(tmp) for p in tmp.rglob("*") if p.is_file())
        replace_dir(tmp, target)
    return {str(n): target / n for n in names}


def _write_report(result: MonitorResult, tmp: Path, cfg: Config) -> None:
    """``report.html`` and its PNGs (embedded in the page, also kept under ``plots/``)."""
    from clvml.analytics.repurchase_report import plot_cohorts

    images: dict[str, Path] = {}
    if (result.metrics.metric == "observed_churn_rate").any():
        images["metrics"] = save_figure(_series_figure(result.metrics, cfg), tmp / "plots" / "metrics.png")
    if len(result.kpis):
        images["kpis"] = save_figure(_kpi_figure(result.kpis), tmp / "plots" / "kpis.png")
    if len(result.cohorts):
        images["cohorts"] = save_figure(plot_cohorts(result.cohorts), tmp / "plots" / "cohorts.png")
    atomic_write_text(_page(result, images, cfg), tmp / "report.html")
