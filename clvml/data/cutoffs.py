"""The cut-off grid of a config and the last observed day of a dataset."""

from __future__ import annotations

import datetime as dt

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
