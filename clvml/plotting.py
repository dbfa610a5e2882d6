"""What every clvml figure and HTML report shares: a headless matplotlib backend, one axes style,
atomic PNG writes and the report style sheet. Any stage may import it; it imports no stage."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: scheduled jobs and CI have no display

import matplotlib.pyplot as plt  # noqa: E402

from clvml.io import atomic_write  # noqa: E402

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.best{font-weight:bold;background:#e8f5e9}
.wide{max-width:100%;overflow-x:auto}img{max-width:100%;height:auto}figure{margin:0}
.plots{display:flex;flex-wrap:wrap;gap:1em}.plots img{width:520px;border:1px solid #eee}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 1em}dt{font-weight:bold}"""
"""The style sheet of every self-contained HTML report: pages fit a 1280 px window (a table wider
than the page scrolls inside its ``.wide`` box, images shrink to the page), two plots per row."""


def axes(title: str, xlabel: str = "", ylabel: str = "", width: float = 6, height: float = 4.5):
    """A figure with one titled, labelled, lightly gridded axes (every clvml plot starts here)."""
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def date_axis(ax, dates=None, label: str = "", max_ticks: int = 8) -> None:
    """Dates on the x axis with at most ``max_ticks`` concise labels (``2024``, ``Apr``, …), so that
    long series never print overlapping tick labels. With ``dates``, the x label gives the span
    (``label (Apr 2023 – Mar 2024)``), since a concise ``May`` tick alone does not say which year."""
    import matplotlib.dates as mdates
    import pandas as pd

    locator = mdates.AutoDateLocator(minticks=3, maxticks=max_ticks)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    if dates is not None and len(dates):
        d = pd.to_datetime(pd.Series(dates))
        ax.set_xlabel(f"{label} ({d.min():%b %Y} – {d.max():%b %Y})".strip())


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically and close it."""
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"))
    finally:
        plt.close(fig)
