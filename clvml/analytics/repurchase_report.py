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
from matplotlib.ticker import PercentFormatter  # noqa: E402

from clvml.analytics import repurchase as analytics  # noqa: E402
from clvml.data.dataset import Dataset  # noqa: E402
from clvml.io import atomic_write_text  # noqa: E402
from clvml.plotting import CSS, axes, date_axis, save_figure  # noqa: E402


def _axes(title: str, xlabel: str = "", ylabel: str = "", width: float = 6):
    return axes(title, xlabel, ylabel, width=width, height=3.5)


def _month_starts(months: pd.Series) -> pd.Series:
    """``YYYY-MM`` labels as the first day of their month (a date axis labels them without overlap)."""
    return pd.to_datetime(months.astype(str), format="%Y-%m")


def plot_repurchase(df: pd.DataFrame):
    fig, ax = _axes("Repurchase rate by month", ylabel="share of the month's buyers", width=7)
    month = _month_starts(df["month"])
    ax.plot(month, df["returning_rate"], marker="o", label="bought in an earlier month")
    ax.plot(month, df["repeat_rate"], marker="o", label="2+ purchase days in the month")
    ax.set_ylim(0, None)
    date_axis(ax, month, "month")
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
    # the whole scale from 0: a cut axis makes a 0.34-0.43 wobble look like a collapse and recovery
    top = float(df["churn_rate"].max()) if len(df) else 1.0
    ax.set_ylim(0, min(1.0, max(top * 1.15, 0.05)))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    date_axis(ax, df["cutoff"], "cut-off")
    return fig


def plot_surveys(df: pd.DataFrame):
    """NPS (left axis, -100 to 100) and mean satisfaction (right axis, 1 to 5) by month, one legend."""
    fig, ax = _axes("Surveys by month", width=7)
    month = _month_starts(df["month"])
    lines = []
    if "nps" in df:
        lines += ax.plot(month, df["nps"], color="tab:blue", marker="o", label="NPS (left axis)")
        ax.set_ylabel("NPS (-100 to 100)", color="tab:blue")
    if "mean_satisfaction" in df:
        ax2 = ax.twinx() if "nps" in df else ax
        lines += ax2.plot(month, df["mean_satisfaction"], color="tab:orange", marker="s",
                          label="mean satisfaction (right axis)" if ax2 is not ax else "mean satisfaction")
        ax2.set_ylabel("mean satisfaction (1-5)", color="tab:orange")
    date_axis(ax, month, "month")
    if lines:  # one legend for both axes, in a row above the plot where it hides no point
        ax.legend(lines, [ln.get_label() for ln in lines], loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  ncol=len(lines), frameon=False, fontsize="small")
        ax.set_title(ax.get_title(), pad=28)
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
                        f"alt='{name}'><div class='wide'>"
                        f"{shown.to_html(index=False, float_format=lambda v: f'{v:,.3f}')}</div>")
    title = f"clvml repurchase analytics{f' as of {before}' if before else ''}"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{CSS}</style>"
            f"</head><body><h1>{title}</h1>{''.join(sections)}</body></html>")
    out["report"] = atomic_write_text(page, folder / "analytics.html")
    return out
