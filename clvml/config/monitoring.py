"""The ``monitoring`` section: what ``clvml monitor`` reads and when it raises an alert."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from clvml.config.base import _Strict


class MonitoringConfig(_Strict):
    """Thresholds of the alerts of ``clvml monitor`` (null switches a check off) and its scope.

    Every check is judged on the overall figures of the latest ``judge_last`` matured partitions; a
    crossed threshold is an alert (exit code 10) and a retraining recommendation.
    """

    since: dt.date | None = Field(None, description="Ignore score partitions with an as_of before this "
                                  "date (e.g. older than the history the data still covers).")
    judge_last: int = Field(1, ge=1, description="How many of the latest matured partitions the "
                            "alerts judge.")
    auc_drop: float | None = Field(0.03, ge=0, description="Alert when the realised churn ROC AUC is "
                                   "below the backtest's by more than this.")
    ece_max: float | None = Field(0.05, gt=0, description="Alert when the realised calibration error "
                                  "(ECE) is above this.")
    value_total_error_max: float | None = Field(25.0, gt=0, description="Alert when the predicted total "
                                                "value of the horizon is off the realised total by "
                                                "more than this percentage (either way).")
    psi_max: float | None = Field(None, gt=0, description="Alert when the scoring run recorded a PSI "
                                  "(feature or score, from its manifest) above this (null: no check).")
    report: bool = Field(True, description="Write report.html and its PNGs (false: the Parquet dataset, "
                         "the KPIs and the recommendation only, for a scheduled check that only needs the "
                         "exit code).")
    min_customers: int = Field(30, ge=1, description="Segments with fewer matched customers get no "
                               "metrics (too few to judge).")
