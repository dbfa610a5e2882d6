"""What ``clvml monitor`` returns: the tidy metrics, the KPIs, the alerts and the recommendation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from clvml.monitoring.alerts import Alert

COLUMNS = ["as_of", "model_version", "segment_by", "segment", "metric", "horizon", "customers", "value",
           "expected"]
"""The tidy monitoring table: one row per as_of × model version × segment × metric. ``horizon`` is
``complete`` (the figure's whole window is observed), ``partial`` (CLV so far) or ``n/a`` (counts and
drift); ``expected`` is the backtest's figure for that model version (overall rows only)."""


@dataclass
class MonitorResult:
    """What ``clvml monitor`` found and wrote."""

    metrics: pd.DataFrame
    kpis: pd.DataFrame
    cohorts: pd.DataFrame
    alerts: list[Alert]
    recommendation: dict[str, Any]
    pending: list[dict[str, str]]
    notes: list[str]
    out: Path
    campaigns: pd.DataFrame = field(default_factory=pd.DataFrame)
    files: dict[str, Path] = field(default_factory=dict)
    #: champion (production scores) against challenger (shadow scores, ``clvml score --shadow``) on the
    #: same matured partitions and customers: a ``clvml.monitoring.challenger.Comparison``, or None when
    #: no as_of is in both datasets
    challenger: Any = None
