"""Monitoring of stored scores: realised outcomes per partition, retention KPIs, alerts and the
retraining recommendation (``clvml monitor``)."""

from clvml.monitoring.alerts import Alert
from clvml.monitoring.monitor import monitor, summary_table
from clvml.monitoring.result import COLUMNS, MonitorResult

__all__ = ["COLUMNS", "Alert", "MonitorResult", "monitor", "summary_table"]
