"""A self-contained HTML evaluation report (metrics tables, metric definitions, embedded PNG plots and,
for ``clvml train``, the SHAP drivers) for one run."""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from clvml.evaluation.backtest import BacktestResult
from clvml.evaluation.plots import LABELS, PLOTTED, save_plots, shap_drivers
from clvml.io import atomic_write_parquet, atomic_write_text
from clvml.plotting import CSS, save_figure

# metrics where lower is better (the best model is highlighted per row)
LOWER_IS_BETTER = {"log_loss", "brier", "ece", "mae", "rmse", "decile_mape"}

#: what each metric of the reports means, keyed by (task, metric) or by metric alone (any task);
#: ``P`` stands for the tier of ``capture_topP`` / ``best_topP``
DEFINITIONS: dict[tuple[str, str] | str, str] = {
    "roc_auc": "ROC AUC: the probability that a random churner gets a higher churn score than a random "
               "non-churner. 0.5 is a random score, 1 a perfect ranking; calibration does not matter.",
    "pr_auc": "PR AUC (average precision): precision averaged over the recall levels reached as the "
              "threshold is lowered, weighted by the gain in recall. A random score gets the churn rate.",
    "log_loss": "Log loss: mean of −[y·ln p + (1 − y)·ln(1 − p)] over customers (p clipped to "
                "[10⁻⁶, 1 − 10⁻⁶]). Lower is better; it punishes confident mistakes hardest.",
    "brier": "Brier score: mean of (p − y)², y = 1 for a churner. Lower is better; 0.25 is what a "
             "constant 0.5 gets.",
    "ece": "ECE (expected calibration error): Σ_b (n_b / n)·|observed churn rate_b − mean predicted p_b| over "
           "ten equal-width probability bins. 0 means predicted probabilities match observed rates.",
    "lift_top10": "Lift at 10 %: the churn rate among the 10 % of customers with the highest churn score, "
                  "divided by the overall churn rate (1 = no better than random).",
    ("churn", "capture_top10"): "Capture at 10 % (churn): the share of all churners found among the 10 % of "
                                "customers with the highest churn score.",
    "mae": "MAE: mean absolute error |actual − predicted| per customer, in the currency of the data.",
    "rmse": "RMSE: square root of the mean squared error per customer, in currency; large errors weigh "
            "more than in the MAE.",
    "normalized_gini": "Normalized Gini: the Gini coefficient of the actual values ordered by the "
                       "prediction, divided by that of the actual values ordered by themselves. 1 puts "
                       "customers in the order of their actual value, 0 is a random order.",
    "spearman": "Spearman: rank correlation between predicted and actual values.",
    "decile_mape": "Decile MAPE: customers split into ten deciles by prediction; mean over deciles of "
                   "|predicted total − actual total| / actual total.",
    "total_actual": "Total actual: the sum of the realised values over all customers scored.",
    "total_predicted": "Total predicted: the sum of the predictions over the same customers.",
    "total_error_pct": "Total error %: 100 · (total predicted − total actual) / total actual; positive "
                       "is an over-forecast of the total (what a budget built on the scores would be off by).",
    ("clv", "capture_topP"): "Tier capture (CLV), capture_topP: the share of the total realised value "
                             "held by the customers the prediction puts in its top P % (P = 1, 5, 20).",
    ("clv", "best_topP"): "best_topP: the share held by the customers who really produced the most (the "
                          "real top P %): the most any prediction can capture.",
    "coverage": "Coverage: the share of customers whose realised value falls inside the prediction interval "
                "(nominal: the configured clv.interval).",
    "below": "Below / above: the shares of customers whose realised value fell below the interval or above it.",
    "mean_width": "Mean width: the mean of (upper − lower bound) of the intervals, in currency.",
}

SHAP_CAVEAT = (
    "SHAP values describe the model, not the customer: how much each feature moved a prediction, given "
    "the other features, as learned from past data. They are associations, not causal effects: a feature "
    "can rank high because it is a consequence of churn (a customer who has left stops visiting) or a "
    "proxy for something unobserved, and changing it need not change the outcome. Whether an action "
    "changes behaviour is answered by a randomised experiment: <code>clvml experiment evaluate</code> "
    "(<code>clvml.evaluate_experiment</code>) and <code>clvml experiment uplift</code> "
    "(<code>clvml.UpliftModel</code>).")

CAPTIONS = {"roc": "Churn: ROC curve", "precision_recall": "Churn: precision-recall curve",
            "calibration": "Churn: reliability (calibration) curve", "cumulative_gain": "Churn: cumulative gain",
            "value_deciles": "Value: predicted vs actual spend by decile", "clv_distribution": "Predicted CLV",
            "shap_drivers": "Top SHAP drivers (mean |SHAP|)"}


def definition(task: str, metric: str) -> str | None:
    """The definition of ``metric`` of ``task`` (see :data:`DEFINITIONS`), or None."""
    generic = re.sub(r"^(capture|best)_top\d+$", r"\1_topP", metric)
    return DEFINITIONS.get((task, metric)) or DEFINITIONS.get((task, generic)) or DEFINITIONS.get(metric)


def _fmt(v: Any) -> str:
    if isinstance(v, float | np.floating):
        if not np.isfinite(v):
            return "–"
        return f"{v:,.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return html.escape(str(v))


def task_scope(result: BacktestResult, task: str) -> str:
    """Where ``task``'s metrics come from: one origin, or a mean over several."""
    origins = sorted(pd.to_datetime(result.metrics.loc[result.metrics.task == task, "origin"].unique()))
    if len(origins) == 1:
        return f"at {origins[0].date()}"
    return f"mean over {len(origins)} origins, {origins[0].date()} to {origins[-1].date()}"


def summary_table(result: BacktestResult) -> str:
    """HTML table: (task, metric) rows under one heading row per task saying which origin(s) its
    values come from, one column per model, the best value per row in bold; – where a model does not
    have that metric."""
    s = result.summary()
    head = "".join(f"<th>{html.escape(LABELS.get(m, m))}</th>" for m in s.columns)
    rows = []
    for task in s.index.get_level_values("task").unique():
        rows.append(f"<tr class='task'><th colspan='{len(s.columns) + 1}'>{html.escape(task)} "
                    f"({task_scope(result, task)})</th></tr>")
        for metric, r in s.loc[task].iterrows():
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
            rows.append(f"<tr><td>{html.escape(task)}: {html.escape(metric)}</td>{cells}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"


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


def definitions_html(result: BacktestResult) -> str:
    """A definition list of the metrics in the summary table, each defined once, in table order."""
    seen: dict[str, str] = {}
    for task, metric in result.summary().index:
        text = definition(task, metric)
        if text and text not in seen.values():
            seen[f"{task}: {metric}"] = text
    items = "".join(f"<li>{html.escape(text)}</li>" for text in seen.values())
    return (f"<h2 id='definitions'>Metric definitions</h2><p>y is 1 for a customer who churned (no purchase "
            f"in the horizon), p the predicted churn probability; value metrics compare predicted and "
            f"realised spend over the horizon per customer.</p><ul class='defs'>{items}</ul>")


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _link(path: Path, folder: Path) -> str:
    rel = Path(os.path.relpath(path, folder)).as_posix()
    return f"<a href='{html.escape(quote(rel))}'>{html.escape(Path(path).name)}</a>"


def shap_importances(explanations: Mapping[str, Path]) -> dict[str, pd.DataFrame]:
    """model -> the global importance table (``<model>_shap_importance.csv``) of the explanations."""
    return {k.removesuffix("_importance"): pd.read_csv(p, index_col="feature")
            for k, p in explanations.items() if k.endswith("_importance")}


def shap_section(explanations: Mapping[str, Path], folder: Path, plot: Path | None, top: int = 10) -> str:
    """The SHAP section: the caveat, the top drivers of each model (plot and table) and a link to every
    file of the explanations folder (relative to the report's ``folder``)."""
    parts = [f"<h2 id='shap'>What the models' predictions move with (SHAP)</h2><p class='caveat'>{SHAP_CAVEAT}"
             "</p>"]
    if plot is not None:
        parts.append(f"<div class='plots'>{_img(plot, CAPTIONS['shap_drivers'])}</div>")
    space = {"churn": "log-odds of churn", "value": "log of expected spend"}
    for model, imp in shap_importances(explanations).items():
        cols = [c for c in ("family", "mean_abs_shap", "active_share", "mean_abs_shap_when_active")
                if c in imp]
        head = "".join(f"<th>{html.escape(c)}</th>" for c in ["rank", "feature", *cols])
        rows = "".join(f"<tr><td>{i}</td><td>{html.escape(str(f))}</td>"
                       f"{''.join(f'<td>{_fmt(r[c])}</td>' for c in cols)}</tr>"
                       for i, (f, r) in enumerate(imp.head(top).iterrows(), start=1))
        parts.append(f"<h3>{html.escape(model)}: top {top} of {len(imp)} features "
                     f"({space.get(model, 'raw score')})</h3><table><tr>{head}</tr>{rows}</table>")
    parts.append("<p>mean_abs_shap: mean |SHAP| over the customers explained; active_share: the share of "
                 "them for whom the feature is non-zero and not missing; mean_abs_shap_when_active: mean "
                 "|SHAP| over those customers only (rare but strong drivers rank high here).</p>")
    links = "".join(f"<li>{_link(p, folder)}</li>" for p in explanations.values())
    parts.append(f"<p>All explanation files (rankings, family totals, drivers by segment, beeswarm and "
                 f"dependence plots):</p><ul class='files'>{links}</ul>")
    return "".join(parts)


def render_html(title: str, meta: dict[str, Any], result: BacktestResult, plots: dict[str, Path],
                shap: str = "") -> str:
    """The report as one HTML string (plots embedded as base64 PNG; only the links of the SHAP
    section, ``shap``, point to files beside the report)."""
    info = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{_fmt(v)}</dd>" for k, v in meta.items())
    imgs = "".join(_img(p, CAPTIONS.get(n, n)) for n, p in plots.items())
    several = result.metrics.groupby("task")["origin"].nunique().max() > 1
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><dl>{info}</dl>"
            f"<h2>Metrics</h2><p>Every model is scored on the same customers at every origin (a cut-off whose "
            f"outcome is known and that no model was trained on). Best per row in bold; – where a model has "
            f"no such prediction. Task <i>clv</i>: CLV over the K periods (undiscounted, no cost) against the "
            f"margin realised over the same days, at the origins with that much data after them. Each metric "
            f"is defined <a href='#definitions'>below</a>.</p>{summary_table(result)}"
            f"{f'<h2>Per origin</h2>{per_origin_table(result)}' if several else ''}"
            f"<h2>Plots</h2><div class='plots'>{imgs}</div>{shap}{definitions_html(result)}</body></html>")


def write_report(result: BacktestResult, folder: str | Path, title: str, meta: dict[str, Any],
                 explanations: Mapping[str, Path] | None = None) -> dict[str, Path]:
    """Write metrics (CSV), predictions (Parquet), the PNG plots and ``report.html`` into ``folder``.

    ``explanations`` (name -> path, as written by :func:`clvml.explain.drivers.write_explanations`)
    adds the SHAP section: a plot and tables of the top drivers and links to those files.
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
    shap, extra = "", {}
    if explanations:
        imp = shap_importances(explanations)
        if imp:
            extra["shap_drivers"] = save_figure(shap_drivers(imp), folder / "plots" / "shap_drivers.png")
        shap = shap_section(explanations, folder, extra.get("shap_drivers"))
    out["report"] = atomic_write_text(render_html(title, meta, result, plots, shap), folder / "report.html")
    return {**out, **{f"plot_{k}": v for k, v in {**plots, **extra}.items()}}
