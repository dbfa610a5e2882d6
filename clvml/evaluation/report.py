"""A self-contained HTML evaluation report (metrics tables + embedded PNG plots) for one run."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvml.evaluation.backtest import BacktestResult
from clvml.evaluation.plots import LABELS, PLOTTED, save_plots
from clvml.io import atomic_write_parquet, atomic_write_text
from clvml.plotting import CSS

# metrics where lower is better (the best model is highlighted per row)
LOWER_IS_BETTER = {"log_loss", "brier", "ece", "mae", "rmse", "decile_mape"}


def _fmt(v: Any) -> str:
    if isinstance(v, float) and np.isnan(v):
        return "–"  # not computed for this model or origin
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return html.escape(str(v))


def summary_table(result: BacktestResult) -> str:
    """HTML table: (task, metric) rows, one column per model, the best value per row in bold."""
    s = result.summary()
    head = "".join(f"<th>{html.escape(LABELS.get(m, m))}</th>" for m in s.columns)
    rows = []
    for (task, metric), r in s.iterrows():
        vals = r.dropna()
        best = None
        vals = vals.drop("oracle", errors="ignore")  # the truth is a reference, not a contender
        if len(vals) > 1 and metric not in ("total_actual", "total_predicted") \
                and not metric.startswith("best_"):
            if metric == "total_error_pct":
                best = vals.abs().idxmin()
            else:
                best = vals.idxmin() if metric in LOWER_IS_BETTER else vals.idxmax()
        cells = "".join(f"<td class='best'>{_fmt(v)}</td>" if m == best else f"<td>{_fmt(v)}</td>"
                        for m, v in r.items())
        rows.append(f"<tr><td>{task}: {metric}</td>{cells}</tr>")
    origins = sorted(pd.to_datetime(result.metrics["origin"].unique()))
    scope = (f"held-out cut-off {origins[0].date()}" if len(origins) == 1
             else f"mean over {len(origins)} origins")
    return (f"<div class='wide'><table><tr><th>metric ({scope})</th>{head}</tr>{''.join(rows)}</table>"
            "</div>")


def per_origin_table(result: BacktestResult, metrics=("roc_auc", "ece", "normalized_gini",
                                                      "total_error_pct")) -> str:
    """HTML table: one row per (task, metric, model), one column per origin (the page stays narrow
    however many models are compared; an origin where a task was not scored shows "–")."""
    m = result.metrics[result.metrics.metric.isin(metrics) & result.metrics.model.isin(PLOTTED)]
    t = m.pivot_table(index=["task", "metric", "model"], columns="origin", values="value")
    head = "".join(f"<th>{pd.Timestamp(o).date()}</th>" for o in t.columns)
    rows = "".join(f"<tr><td>{html.escape(f'{a}: {b} ({LABELS.get(c, c)})')}</td>"
                   f"{''.join(f'<td>{_fmt(v)}</td>' for v in r)}</tr>" for (a, b, c), r in t.iterrows())
    return f"<div class='wide'><table><tr><th>metric (model)</th>{head}</tr>{rows}</table></div>"


def render_html(title: str, meta: dict[str, Any], result: BacktestResult, plots: dict[str, Path]) -> str:
    """The report as one HTML string (plots embedded as base64 PNG, no external files)."""
    info = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{_fmt(v)}</dd>" for k, v in meta.items())
    imgs = "".join(
        f"<figure><img alt='{html.escape(n)}' src='data:image/png;base64,"
        f"{base64.b64encode(Path(p).read_bytes()).decode()}'><figcaption>{html.escape(n)}</figcaption></figure>"
        for n, p in plots.items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><dl>{info}</dl>"
            f"<h2>Metrics</h2><p>Every model is scored on the same customers at every origin. Best per "
            f"row in bold. Task <i>clv</i>: CLV over the K periods (undiscounted, no cost) against the "
            f"margin realised over the same days, at the origins with that much data after them; "
            f"capture_topP is the share of the realised value held by the predicted top P %, best_topP "
            f"the share held by the real top P %.</p>{summary_table(result)}"
            f"<h2>Per origin</h2>{per_origin_table(result)}"
            f"<h2>Plots</h2><div class='plots'>{imgs}</div></body></html>")


def write_report(result: BacktestResult, folder: str | Path, title: str,
                 meta: dict[str, Any]) -> dict[str, Path]:
    """Write metrics (CSV), predictions (Parquet), the PNG plots and ``report.html`` into ``folder``.

    Returns name -> path of everything written (all writes atomic).
    """
    folder = Path(folder)
    out = {"metrics": folder / "metrics.csv", "summary": folder / "summary.csv",
           "predictions": folder / "predictions.parquet"}
    atomic_write_text(result.metrics.to_csv(index=False), out["metrics"])
    atomic_write_text(result.summary().to_csv(), out["summary"])
    atomic_write_parquet(result.predictions, out["predictions"])
    if len(result.clv_predictions):
        out["clv_predictions"] = folder / "clv_predictions.parquet"
        atomic_write_parquet(result.clv_predictions, out["clv_predictions"])
    plots = save_plots(result.predictions, folder / "plots")
    out["report"] = atomic_write_text(render_html(title, meta, result, plots), folder / "report.html")
    return {**out, **{f"plot_{k}": v for k, v in plots.items()}}
