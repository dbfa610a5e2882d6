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
.plots{display:flex;flex-wrap:wrap;gap:1em}.plots figure{margin:0}.plots img{width:520px;border:1px solid #eee}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 1em}dt{font-weight:bold}"""
"""The style sheet of every self-contained HTML report."""


def axes(title: str, xlabel: str = "", ylabel: str = "", width: float = 6, height: float = 4.5):
    """A figure with one titled, labelled, lightly gridded axes (every clvml plot starts here)."""
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as PNG atomically and close it."""
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", bbox_inches="tight"))
    finally:
        plt.close(fig)
