"""The alerts of ``clvml monitor`` and the retraining recommendation built from them."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from clvml.config.monitoring import MonitoringConfig


@dataclass(frozen=True)
class Alert:
    """A threshold of the ``monitoring`` section crossed by one partition's overall figure."""

    check: str  # the monitoring setting: auc_drop, ece_max, value_total_error_max, psi_max
    as_of: str
    model_version: str
    metric: str
    value: float
    expected: float | None
    threshold: float
    message: str


def _overall(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    m = metrics[(metrics.segment_by == "all") & (metrics.metric == metric)]
    return m[m["value"].notna()]


def judge(metrics: pd.DataFrame, cfg: MonitoringConfig) -> tuple[list[Alert], list[str]]:
    """Check the latest ``cfg.judge_last`` matured partitions (overall figures) against the thresholds.

    Returns the alerts and the as_of dates judged. ``metrics`` is the tidy monitoring table
    (:func:`clvml.monitoring.monitor.monitor`); a missing figure (NaN, e.g. one churn class only) or
    an unknown backtest figure (for ``auc_drop``) is not an alert.
    """
    matured = sorted(metrics.loc[(metrics.metric == "observed_churn_rate"), "as_of"].astype(str).unique())
    judged = matured[-cfg.judge_last:] if matured else []
    recent = metrics[metrics.as_of.astype(str).isin(judged) | (metrics.metric == "drift_psi_max")]
    alerts: list[Alert] = []

    def add(check: str, row: Any, threshold: float, message: str) -> None:
        exp = None if pd.isna(row.expected) else float(row.expected)
        alerts.append(Alert(check, str(row.as_of), str(row.model_version), str(row.metric), float(row.value),
                            exp, float(threshold), message))

    if cfg.auc_drop is not None:
        for row in _overall(recent, "churn_roc_auc").itertuples():
            if not pd.isna(row.expected) and row.value < row.expected - cfg.auc_drop:
                add("auc_drop", row, cfg.auc_drop,
                    f"as_of {row.as_of}: churn ROC AUC {row.value:.3f}, {row.expected - row.value:.3f} below "
                    f"the backtest's {row.expected:.3f} (monitoring.auc_drop {cfg.auc_drop:g})")
    if cfg.ece_max is not None:
        for row in _overall(recent, "churn_ece").itertuples():
            if row.value > cfg.ece_max:
                add("ece_max", row, cfg.ece_max,
                    f"as_of {row.as_of}: churn calibration error (ECE) {row.value:.3f} above "
                    f"monitoring.ece_max {cfg.ece_max:g}")
    if cfg.value_total_error_max is not None:
        for row in _overall(recent, "value_total_error_pct").itertuples():
            if abs(row.value) > cfg.value_total_error_max:
                add("value_total_error_max", row, cfg.value_total_error_max,
                    f"as_of {row.as_of}: predicted total value {row.value:+.1f}% off the realised total "
                    f"(monitoring.value_total_error_max ±{cfg.value_total_error_max:g}%)")
    if cfg.psi_max is not None:
        psi = _overall(metrics, "drift_psi_max")
        latest = psi[psi.as_of.astype(str) == psi.as_of.astype(str).max()] if len(psi) else psi
        for row in latest.itertuples():
            if row.value > cfg.psi_max:
                add("psi_max", row, cfg.psi_max,
                    f"as_of {row.as_of}: the scoring run recorded a PSI of {row.value:.3f} against the "
                    f"training snapshot (monitoring.psi_max {cfg.psi_max:g})")
    return alerts, judged


def recommendation(alerts: list[Alert], judged: list[str], metrics: pd.DataFrame,
                   pending: list[dict[str, str]], data_end: str) -> dict[str, Any]:
    """The retraining recommendation (written as ``recommendation.json``): whether to retrain, why,
    and the evidence — every alert with its realised and expected figure and threshold, and the
    overall figures of the partitions judged."""
    evidence = metrics[metrics.as_of.astype(str).isin(judged) & (metrics.segment_by == "all")
                       & (metrics.horizon == "complete")]
    figures = [{"as_of": str(r.as_of), "model_version": r.model_version, "metric": r.metric,
                "value": None if pd.isna(r.value) else round(float(r.value), 6),
                "expected": None if pd.isna(r.expected) else round(float(r.expected), 6)}
               for r in evidence.itertuples()]
    checks = sorted({a.check for a in alerts})
    if alerts:
        why = (f"retrain: {len(alerts)} alert(s) ({', '.join(checks)}) on the latest matured partition(s) "
               f"{', '.join(judged)}; train on data up to {data_end} and compare it with the current model "
               "on the next matured partitions before switching")
    elif judged:
        why = f"keep the model: no threshold crossed on the latest matured partition(s) {', '.join(judged)}"
    else:
        why = "no partition has matured yet: nothing to judge"
    return {"retrain": bool(alerts), "summary": why, "data_end": data_end, "judged_partitions": judged,
            "alerts": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(a).items()}
                       for a in alerts],
            "evidence": figures, "pending_partitions": pending}
