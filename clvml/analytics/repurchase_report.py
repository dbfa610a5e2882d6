"""``clvml report analytics``: every repurchase analytic as CSV + PNG, and one self-contained HTML page."""

from __future__ import annotations

import base64
import datetime as dt
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from clvml.analytics import repurchase as analytics  # noqa: E402
from clvml.data.dataset import Dataset  # noqa: E402
from clvml.io import atomic_write_text  # noqa: E402
from clvml.plotting import (  # noqa: E402
    CSS,  # noqa: E402
    axes,
    save_figure,
)


def _axes(title: str, xlabel: str = "", ylabel: str = "", width: float = 6):
    return axes(title, xlabel, ylabel, width=width, height=3.5)


def plot_repurchase(df: pd.DataFrame):
    fig, ax = _axes("Repurchase rate by month", ylabel="share of the month's buyers", width=7)
    ax.plot(df["month"], df["returning_rate"], marker="o", label="bought in an earlier month")
    ax.plot(df["month"], df["repeat_rate"], marker="o", label="2+ purchase days in the month")
    ax.tick_params(axis="x", rotation=90)
    ax.legend()
    return fig


def plot_cohorts(df: pd.DataFrame):
    m = df.pivot(index="cohort", columns="months_since", values="retention")
    fig, ax = plt.subplots(figsize=(8, max(3, 0.25 * len(m))))
    im = ax.imshow(m.to_numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=max(0.01, np.nanmax(
        m.drop(columns=0, errors="ignore").to_numpy()) if m.shape[1] > 1 else 1))
    ax.set_yticks(range(len(m)), m.index)
    ax.set_xlabel("months since first purchase")
    ax.set_title("Cohort retention (share of the cohort buying in the month; month 0 = 100%)")
    fig.colorbar(im, ax=ax)
    return fig


def plot_cycle(gaps: np.ndarray):
    fig, ax = _axes("Inter-purchase time", "days between purchases", "gaps")
    ax.hist(gaps, bins=np.arange(0, min(gaps.max() if len(gaps) else 1, 730) + 7, 7))
    return fig


def plot_second(df: pd.DataFrame):
    fig, ax = _axes("First to second purchase", "days since the first purchase", "share who bought again")
    ax.plot(df["days"], df["rate"])
    return fig


def plot_churn(df: pd.DataFrame):
    fig, ax = _axes("Churn rate over time (active buyers with no purchase in the next horizon)",
                    ylabel="churn rate")
    ax.plot(pd.to_datetime(df["cutoff"]), df["churn_rate"], marker="o")
    return fig


def plot_surveys(df: pd.DataFrame):
    fig, ax = _axes("Surveys by month", width=7)
    if "nps" in df:
        ax.plot(df["month"], df["nps"], marker="o", label="NPS")
        ax.set_ylabel("NPS")
    if "mean_satisfaction" in df:
        ax2 = ax.twinx()
        ax2.plot(df["month"], df["mean_satisfaction"], color="tab:orange", marker="s", label="satisfaction")
        ax2.set_ylabel("mean satisfaction (1-5)")
    ax.tick_params(axis="x", rotation=90)
    return fig


def write_analytics_report(ds: Dataset, folder: str | Path, *, horizon_days: int = 90,
                           before: dt.date | None = None, segments: pd.DataFrame | None = None,
                           max_days: int = 365) -> dict[str, Path]:
    """Compute every analytic, write ``<name>.csv``, ``plots/<name>.png`` and ``analytics.html``."""
    folder = Path(folder)
    tx = ds.tables["transactions"]
    gaps = analytics.interpurchase_times(tx, before)
    tables: dict[str, tuple[pd.DataFrame, object]] = {
        "repurchase_rate": (analytics.repurchase_rate(tx, before), plot_repurchase),
        "cohort_retention": (analytics.cohort_retention(tx, before), plot_cohorts),
        "repurchase_cycle": (analytics.repurchase_cycle(tx, segments, before), lambda _: plot_cycle(gaps)),
        "second_purchase": (analytics.second_purchase_curve(tx, max_days, before), plot_second),
        "churn_rate": (analytics.churn_rate_over_time(tx, horizon_days, before), plot_churn),
    }
    if "after_sales" in ds.tables and {"satisfaction", "nps"} & set(ds.tables["after_sales"].columns):
        tables["surveys"] = (analytics.survey_summary(ds.tables["after_sales"], before), plot_surveys)
    out: dict[str, Path] = {}
    sections = []
    for name, (df, plot) in tables.items():
        out[name] = atomic_write_text(df.to_csv(index=False), folder / f"{name}.csv")
        png = save_figure(plot(df), folder / "plots" / f"{name}.png")
        out[f"plot_{name}"] = png
        shown = df if len(df) <= 40 else pd.concat([df.head(20), df.tail(20)])
        img = base64.b64encode(png.read_bytes()).decode()
        sections.append(f"<h2>{html.escape(name.replace('_', ' '))}</h2><img src='data:image/png;base64,{img}' "
                        f"alt='{name}'>{shown.to_html(index=False, float_format=lambda v: f'{v:,.3f}')}")
    title = f"clvml repurchase analytics{f' as of {before}' if before else ''}"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{CSS}</style>"
            f"</head><body><h1>{title}</h1>{''.join(sections)}</body></html>")
    out["report"] = atomic_write_text(page, folder / "analytics.html")
    return out
