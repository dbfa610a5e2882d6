"""The cut-off grid of a config and the last observed day of a dataset."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from clvml.config import Config
from clvml.data.dataset import Dataset
from clvml.errors import ClvmlError


def data_end(ds: Dataset) -> dt.date:
    """Last observed day (inclusive): ``data.observed_until`` when configured, else the last transaction
    day.

    ``data.as_of`` is deliberately not used: it is the snapshot time of an export, and an export can
    be stale. Taking it as the end of observation would count the days between the last event and
    the snapshot as days without purchases, and turn every customer of the newest cut-offs into a
    churner.
    """
    if ds.observed_until is not None:
        return ds.observed_until
    return ds.date_range()[1].date()


def cutoff_grid(cfg: Config, last_day: dt.date) -> list[dt.date]:
    """The configured cut-offs up to the last one that can still have any history (≤ last_day + 1)."""
    c = cfg.cutoffs
    if c.dates is not None:
        return sorted(set(c.dates))
    end = c.end or (last_day + dt.timedelta(days=1))
    out, d = [], c.start
    while d <= end:
        out.append(d)
        d += dt.timedelta(days=c.every_days)
    if not out:
        raise ClvmlError(f"cutoffs.start {c.start} is after the end {end}: no cut-offs")
    return out


def clv_window_days(cfg: Config) -> int:
    """``K·H``: the days of data a CLV origin needs after it."""
    return cfg.clv.periods * cfg.labels.horizon_days


def trainable_at(cfg: Config, labelled: list[dt.date], origin: dt.date) -> bool:
    """Whether models can be trained for ``origin`` on earlier cut-offs alone, as the backtest does:
    more than ``cutoffs.validation`` labelled cut-offs whose horizon ends by ``origin``, and an
    embargoed training cut-off before the first validation one."""
    h = pd.Timedelta(days=cfg.labels.horizon_days)
    before = sorted(pd.Timestamp(x) for x in labelled if pd.Timestamp(x) + h <= pd.Timestamp(origin))
    if len(before) <= cfg.cutoffs.validation:
        return False
    held = before[-cfg.cutoffs.validation]
    return any(x + h <= held for x in before)


def clv_origins(cfg: Config, labelled: list[dt.date], last_day: dt.date, n: int | None = None
                ) -> list[dt.date]:
    """Cut-offs usable for the long-horizon CLV evaluation: ``K·H`` days of data after them and more
    than ``cutoffs.validation`` embargoed training cut-offs before them. ``backtest.clv_origins`` when
    set (each checked), else the latest ``n`` (default ``backtest.clv_last``) such cut-offs."""
    window = clv_window_days(cfg)
    end = pd.Timestamp(last_day) + pd.Timedelta(days=1)

    def covered(c) -> bool:
        return pd.Timestamp(c) + pd.Timedelta(days=window) <= end

    def trainable(c) -> bool:
        return trainable_at(cfg, labelled, c)

    if cfg.backtest.clv_origins:
        bad = [c for c in cfg.backtest.clv_origins if c not in labelled or not covered(c) or not trainable(c)]
        if bad:
            raise ClvmlError(f"backtest.clv_origins {', '.join(map(str, bad))}: a CLV origin must be a labelled "
                             f"cut-off with {window} days of data after it (clv.periods x "
                             f"labels.horizon_days; data end {last_day}) and more than cutoffs.validation "
                             "earlier cut-offs to train on")
        return sorted(set(cfg.backtest.clv_origins))
    n = cfg.backtest.clv_last if n is None else n
    ok = [c for c in labelled if covered(c) and trainable(c)]
    return ok[-n:] if n else []
