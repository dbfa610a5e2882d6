"""Custom features used by the tests (importable as ``tests.custom_feature_defs:<name>`` from a config)."""

from __future__ import annotations

import ibis

from clvml.features.custom import PointInTime


def big_orders(history: ibis.Table, at: PointInTime) -> ibis.Value:
    """Orders of 50 or more (undecorated: a config entry gives its name, description and say)."""
    return history.amount.count(where=history.amount >= 50)


def days_since_refund(history: ibis.Table, at: PointInTime) -> ibis.Value:
    """Days from the last refund to the cut-off (null without a refund)."""
    return at.cutoff_day - history.day.max(where=history.amount < 0)


def session_days(history: ibis.Table, at: PointInTime) -> ibis.Table:
    """Distinct days with a session, as a per-customer table."""
    s = history.filter(history.event_type == "session")
    return s.group_by(at.keys).aggregate(days=s.day.nunique())


def not_a_function_value() -> int:  # referenced by a config test as a callable that is not a feature
    return 1
