"""BTYD diagnostic plots known from ``lifetimes`` (matplotlib, PNG), for any fitted purchase model.

Works with :class:`~clvml.modeling.btyd.BGNBD`, :class:`~clvml.modeling.pareto_nbd.ParetoNBD` and
:class:`~clvml.modeling.mbgnbd.MBGNBD`. Each plot has a table function returning the plotted numbers
and a plot function returning the Figure (nothing is drawn on screen, nothing is written);
:func:`save_btyd_plots` writes them as PNG files with :func:`clvml.evaluation.plots.save_figure`.

* :func:`calibration_vs_holdout`: mean holdout purchases, actual and expected, by calibration frequency;
* :func:`p_alive_matrix`: P(alive) over a frequency × recency grid for customers of one age;
* :func:`cumulative_purchases`: actual and expected cumulative repeat purchases over time.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import matplotlib.ticker
import numpy as np
import pandas as pd

from clvml.plotting import axes, save_figure


def _name(model) -> str:
    return {"BGNBD": "BG/NBD", "ParetoNBD": "Pareto/NBD", "MBGNBD": "MBG/NBD"}.get(type(model).__name__,
                                                                                  type(model).__name__)


# ------------------------------------------------------------------------------ calibration vs holdout


def calibration_holdout_table(model, summary: pd.DataFrame, *, max_frequency: int = 7) -> pd.DataFrame:
    """Mean actual and expected holdout purchases per calibration frequency (``max_frequency`` = "or more").

    ``summary`` is :func:`~clvml.modeling.btyd.rfm_summary` with a holdout (``holdout_purchases``,
    ``holdout_duration``). Returns columns ``actual``, ``expected``, ``n`` indexed by ``frequency``.
    """
    x, tx, T = summary["frequency"], summary["recency"], summary["T"]
    expected = np.asarray(model.expected_purchases(summary["holdout_duration"].to_numpy(float), x, tx, T), float)
    df = pd.DataFrame({"frequency": np.minimum(x.to_numpy(), max_frequency).astype(int),
                       "actual": summary["holdout_purchases"].to_numpy(float), "expected": expected})
    g = df.groupby("frequency")
    return pd.DataFrame({"actual": g["actual"].mean(), "expected": g["expected"].mean(), "n": g.size()})


def calibration_vs_holdout(model, summary: pd.DataFrame, *, max_frequency: int = 7):
    """Line plot of :func:`calibration_holdout_table`: two lines (actual, model) on one axes."""
    t = calibration_holdout_table(model, summary, max_frequency=max_frequency)
    fig, ax = axes("Purchases in the holdout by calibration frequency",
                    "purchases in the calibration period (repeat purchase days)", "mean purchases in the holdout")
    ax.plot(t.index, t["actual"], "o-", label="actual")
    ax.plot(t.index, t["expected"], "s--", label=_name(model))
    ax.set_xticks(t.index, [f"{i}+" if i == max_frequency else str(i) for i in t.index])
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return fig


# ------------------------------------------------------------------------------------ P(alive) matrix


def p_alive_grid(model, *, T: float, max_frequency: int = 20, recency_steps: int = 41) -> pd.DataFrame:
    """P(alive) of customers of age ``T`` for frequency ``0..max_frequency`` (rows) and recency ``0..T``.

    Impossible cells (no repeat purchase yet a positive recency) are NaN.
    """
    freq = np.arange(max_frequency + 1)
    rec = np.linspace(0.0, T, recency_steps)
    xx, rr = np.meshgrid(freq.astype(float), rec, indexing="ij")
    pa = np.asarray(model.p_alive(xx.ravel(), rr.ravel(), np.full(xx.size, float(T))), float).reshape(xx.shape)
    pa[(xx == 0) & (rr > 0)] = np.nan
    return pd.DataFrame(pa, index=pd.Index(freq, name="frequency"), columns=pd.Index(rec, name="recency"))


def p_alive_matrix(model, *, T: float, max_frequency: int = 20, recency_steps: int = 41):
    """Heat map of :func:`p_alive_grid` (frequency up, recency across) with a colour bar."""
    grid = p_alive_grid(model, T=T, max_frequency=max_frequency, recency_steps=recency_steps)
    fig, ax = axes(f"{_name(model)}: P(alive) of customers aged {T:.4g} time units",
                    "recency (time of the last purchase)", "frequency (repeat purchase days)")
    rec = grid.columns.to_numpy(float)
    half = (rec[1] - rec[0]) / 2 if len(rec) > 1 else 0.5  # cells centred on the grid's recencies
    image = ax.imshow(grid.to_numpy(), origin="lower", aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0,
                      extent=(rec[0] - half, rec[-1] + half, -0.5, len(grid) - 0.5), interpolation="nearest")
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.colorbar(image, ax=ax, label="P(alive)")
    return fig


# --------------------------------------------------------------------------- cumulative repeat purchases


def cumulative_purchases_table(model, transactions: pd.DataFrame, calibration_end: dt.date | str,
                               holdout_end: dt.date | str, *, unit_days: float = 7.0) -> pd.DataFrame:
    """Actual and expected cumulative repeat purchases of the calibration customers over time.

    Customers are those first seen up to ``calibration_end``; purchases are the purchase days after a
    customer's first (refunds, ``amount < 0``, are not purchases), as in :func:`~clvml.modeling.btyd.rfm_summary`.
    Time points are every ``unit_days`` days from the first purchase in the data to ``holdout_end``;
    the expectation sums ``expected_purchases_new(age)`` over the customers (``age`` = units since the
    customer's first purchase). Returns ``date``, ``actual``, ``expected`` indexed by time in units.
    """
    cal_end, h_end = pd.Timestamp(calibration_end), pd.Timestamp(holdout_end)
    t = transactions[transactions["amount"] >= 0]
    days = pd.DataFrame({"customer_id": t["customer_id"].to_numpy(),
                         "day": pd.to_datetime(t["ts"]).dt.normalize().to_numpy()}).drop_duplicates()
    first = days.groupby("customer_id")["day"].min()
    first = first[first <= cal_end]
    days = days[days["customer_id"].isin(first.index)]
    repeat_days = np.sort(days.loc[days["day"] > days["customer_id"].map(first), "day"].to_numpy())
    start = first.min()
    steps = np.arange(1, int((h_end - start).days // unit_days) + 1)
    points = start + pd.to_timedelta(steps * unit_days, unit="D")
    actual = np.searchsorted(repeat_days, points.to_numpy(), side="right")
    age_days = (points.to_numpy()[:, None] - first.to_numpy()[None, :]) / np.timedelta64(1, "D")
    expected = np.asarray(model.expected_purchases_new(np.clip(age_days, 0, None) / unit_days), float).sum(axis=1)
    return pd.DataFrame({"date": points, "actual": actual, "expected": expected},
                        index=pd.Index(steps * 1.0, name="t"))


def cumulative_purchases(model, transactions: pd.DataFrame, calibration_end: dt.date | str,
                         holdout_end: dt.date | str, *, unit_days: float = 7.0):
    """Line plot of :func:`cumulative_purchases_table` (actual, model) with the end of calibration marked."""
    tab = cumulative_purchases_table(model, transactions, calibration_end, holdout_end, unit_days=unit_days)
    fig, ax = axes("Cumulative repeat purchases", f"time since the first purchase in the data "
                    f"(units of {unit_days:g} days)", "cumulative repeat purchases")
    ax.plot(tab.index, tab["actual"], "-", label="actual")
    ax.plot(tab.index, tab["expected"], "--", label=_name(model))
    cal = tab.index[tab["date"] <= pd.Timestamp(calibration_end)]
    if len(cal):
        ax.axvline(cal[-1], color="k", ls=":", lw=1, label="end of calibration")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return fig


def save_btyd_plots(model, summary: pd.DataFrame, transactions: pd.DataFrame, calibration_end: dt.date | str,
                    holdout_end: dt.date | str, folder: str | Path, *, unit_days: float = 7.0) -> dict[str, Path]:
    """Write the three plots as ``<folder>/btyd_<name>.png`` (atomically); returns name -> path."""

    figures = {
        "calibration_vs_holdout": lambda: calibration_vs_holdout(model, summary),
        "p_alive_matrix": lambda: p_alive_matrix(model, T=float(summary["T"].max())),
        "cumulative_purchases": lambda: cumulative_purchases(model, transactions, calibration_end, holdout_end,
                                                             unit_days=unit_days),
    }
    return {name: save_figure(make(), Path(folder) / f"btyd_{name}.png") for name, make in figures.items()}
