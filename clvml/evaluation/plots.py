"""Evaluation plots (matplotlib, PNG): every churn/value model of a backtest on the same axes.

Each function takes the ``predictions`` frame of :class:`~clvml.evaluation.backtest.BacktestResult`
(pooled over origins) and returns a Figure; :func:`save_plots` writes them all as PNG files.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: scheduled jobs and CI have no display

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from clvml.evaluation.backtest import MODELS  # noqa: E402
from clvml.plotting import axes, save_figure  # noqa: E402

LABELS = {"lightgbm": "LightGBM", "btyd": "BG/NBD + Gamma-Gamma", "simple": "simple baseline",
          "pareto_nbd": "Pareto/NBD + Gamma-Gamma", "mbgnbd": "MBG/NBD + Gamma-Gamma",
          "lightgbm_geometric": "LightGBM, geometric survival", "oracle": "oracle (synthetic truth)"}
PLOTTED = ("lightgbm", "btyd", "simple")  # the churn/value plots stay readable with three curves


def _models(pred: pd.DataFrame, task: str) -> list[str]:
    return [m for m in MODELS if m in PLOTTED and f"{task}_{m}" in pred]


def roc(pred: pd.DataFrame):
    from sklearn.metrics import roc_auc_score

    fig, ax = axes("Churn: ROC curve", "false positive rate", "true positive rate")
    for m in _models(pred, "churn"):
        fpr, tpr, _ = roc_curve(pred["churn"], pred[f"churn_{m}"])
        ax.plot(fpr, tpr, label=f"{LABELS[m]} (AUC {roc_auc_score(pred['churn'], pred[f'churn_{m}']):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.legend(loc="lower right")
    return fig


def precision_recall(pred: pd.DataFrame):
    fig, ax = axes("Churn: precision-recall curve", "recall", "precision")
    for m in _models(pred, "churn"):
        prec, rec, _ = precision_recall_curve(pred["churn"], pred[f"churn_{m}"])
        ax.plot(rec, prec, label=LABELS[m])
    ax.axhline(pred["churn"].mean(), color="k", ls=":", lw=1, label="churn rate (a random score)")
    # below the axes: inside, any corner can hide a curve or the churn-rate line along the bottom
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=9, frameon=False)
    return fig


def calibration_table(y, p, bins: int = 10) -> pd.DataFrame:
    """Mean predicted and observed churn per equal-width probability bin (non-empty bins only)."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    df = pd.DataFrame({"bin": idx, "y": y, "p": p}).groupby("bin")
    return pd.DataFrame({"predicted": df.p.mean(), "observed": df.y.mean(), "n": df.size()})


def calibration(pred: pd.DataFrame):
    fig, ax = axes("Churn: reliability (calibration) curve", "mean predicted probability",
                   "observed churn rate")
    for m in _models(pred, "churn"):
        t = calibration_table(pred["churn"], pred[f"churn_{m}"])
        ax.plot(t.predicted, t.observed, "o-", label=LABELS[m])
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfect")
    ax.legend(loc="upper left")
    return fig


def gain_curve(y, score) -> tuple[np.ndarray, np.ndarray]:
    """(fraction targeted, fraction of positives captured), targeting by decreasing score."""
    y = np.asarray(y, float)[np.argsort(-np.asarray(score, float), kind="stable")]
    x = np.arange(len(y) + 1) / len(y)
    return x, np.concatenate([[0.0], np.cumsum(y) / max(y.sum(), 1e-12)])


def cumulative_gain(pred: pd.DataFrame):
    fig, ax = axes("Churn: cumulative gain", "share of customers targeted (highest risk first)",
                   "share of churners reached")
    for m in _models(pred, "churn"):
        ax.plot(*gain_curve(pred["churn"], pred[f"churn_{m}"]), label=LABELS[m])
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="random")
    ax.legend(loc="lower right")
    return fig


def decile_table(actual, predicted) -> pd.DataFrame:
    """Mean predicted and actual value per decile of the prediction (decile 1 = highest)."""
    order = np.argsort(-np.asarray(predicted, float), kind="stable")
    rows = []
    for d, chunk in enumerate(np.array_split(order, 10), start=1):
        rows.append((d, float(np.asarray(predicted)[chunk].mean()), float(np.asarray(actual)[chunk].mean())))
    return pd.DataFrame(rows, columns=["decile", "predicted", "actual"]).set_index("decile")


def value_deciles(pred: pd.DataFrame):
    models = _models(pred, "value")
    fig, ax = axes("Value: mean predicted vs actual spend by predicted decile",
                   "decile of the prediction (1 = highest)", "mean spend in the horizon")
    width = 0.8 / (len(models) + 1)
    for i, m in enumerate(models):
        t = decile_table(pred["value"], pred[f"value_{m}"])
        ax.bar(t.index + (i - len(models) / 2) * width, t.predicted, width, label=f"{LABELS[m]}: predicted")
        ax.plot(t.index, t.actual, "o-", label=f"{LABELS[m]}: actual")
    ax.set_xticks(range(1, 11))
    ax.legend(fontsize=8)
    return fig


def clv_distribution(pred: pd.DataFrame):
    fig, ax = axes("Predicted CLV distribution (LightGBM)", "CLV", "customers")
    v = pred["clv_lightgbm"].to_numpy(float)
    ax.hist(v, bins=60, color="tab:blue", alpha=0.8)
    ax.axvline(np.median(v), color="k", ls="--", lw=1, label=f"median {np.median(v):,.1f}")
    ax.set_yscale("log")
    ax.legend()
    return fig


def shap_drivers(importances: dict[str, pd.DataFrame], top: int = 10):
    """The ``top`` features by mean |SHAP| of each model (one panel per model, bars coloured by
    feature family); ``importances``: model -> :func:`clvml.explain.drivers.global_importance` table."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    space = {"churn": "log-odds of churn", "value": "log of expected spend"}
    families = sorted({f for imp in importances.values() for f in imp.get("family", pd.Series()).head(top)})
    colour = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(families)}
    fig, axs = plt.subplots(len(importances), 1, figsize=(6, 3.2 * len(importances)), dpi=100, squeeze=False)
    for ax, (model, imp) in zip(axs[:, 0], importances.items(), strict=True):
        t = imp.head(top)[::-1]
        ax.barh(range(len(t)), t["mean_abs_shap"],
                color=[colour.get(f, "tab:blue") for f in t.get("family", [None] * len(t))])
        ax.set_yticks(range(len(t)), t.index)
        ax.set_title(f"{model}: top {len(t)} features by mean |SHAP|")
        ax.set_xlabel(f"mean |SHAP| ({space.get(model, 'raw score')})")
        ax.grid(axis="x", alpha=0.3)
    if families:
        fig.legend(handles=[Patch(color=colour[f], label=f) for f in families], title="family",
                   loc="upper center", ncol=min(len(families), 5), frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout()
    return fig


PLOTS = {"roc": roc, "precision_recall": precision_recall, "calibration": calibration,
         "cumulative_gain": cumulative_gain, "value_deciles": value_deciles,
         "clv_distribution": clv_distribution}


def save_plots(pred: pd.DataFrame, folder: str | Path) -> dict[str, Path]:
    """Write every plot as ``<folder>/<name>.png`` (atomically); returns name -> path."""
    return {name: save_figure(make(pred), Path(folder) / f"{name}.png") for name, make in PLOTS.items()}
