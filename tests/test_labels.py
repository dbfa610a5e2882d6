import datetime as dt

import pandas as pd
import pytest

from clvml.data.dataset import load_dataset
from clvml.errors import ClvmlError
from clvml.labels import build_labels
from tests.conftest import tx


def labels(frames, cutoffs, **kw):
    ds = load_dataset(frames=frames)
    return build_labels(ds.tables, cutoffs, **kw).to_pandas().set_index("customer_id")


def test_horizon_boundaries_are_closed_open():
    t = tx([("a", "2024-01-01", 1.0),
            ("a", "2024-02-10 00:00", 10.0),   # exactly at the cut-off: in the horizon
            ("a", "2024-02-19 23:59", 20.0),   # last second of the horizon
            ("a", "2024-02-20 00:00", 40.0),   # first second after: out
            ("a", "2024-02-12", -3.0),         # refunds are not purchases
            ("b", "2024-02-09 23:59", 5.0),    # arrived one minute before: a row, churned
            ("c", "2024-02-10 00:00", 5.0),    # arrives at the cut-off: not a row
            ])
    lab = labels({"transactions": t}, [dt.date(2024, 2, 10)], horizon_days=10)
    assert sorted(lab.index) == ["a", "b"]
    assert lab.loc["a", "purchases"] == 2 and lab.loc["a", "spend"] == 30.0
    assert not lab.loc["a", "churn"] and lab.loc["b", "churn"]
    assert lab.loc["b", "spend"] == 0.0


def test_incomplete_horizon_is_flagged():
    t = tx([("a", "2024-01-01", 1.0), ("a", "2024-03-01", 1.0)])
    lab = labels({"transactions": t}, [dt.date(2024, 2, 1), dt.date(2024, 2, 20)], horizon_days=10,
                 data_end=dt.date(2024, 2, 25))
    flags = dict(zip(pd.to_datetime(lab["cutoff"]).dt.date, lab["horizon_complete"], strict=True))
    assert flags == {dt.date(2024, 2, 1): True, dt.date(2024, 2, 20): False}


def test_alternative_churn_definitions():
    t = tx([("a", "2024-01-01", 1.0), ("b", "2024-01-01", 1.0)])
    act = pd.DataFrame({"customer_id": ["a", "b"], "ts": pd.to_datetime(["2024-02-12", "2024-02-13"]),
                        "event_type": ["session", "account_closed"]})
    frames = {"transactions": t, "activity": act}
    cut = [dt.date(2024, 2, 10)]
    no_act = labels(frames, cut, horizon_days=10, churn_definition="no_activity")
    assert not no_act.loc["a", "churn"] and not no_act.loc["b", "churn"]
    cancel = labels(frames, cut, horizon_days=10, churn_definition="cancellation")
    assert not cancel.loc["a", "churn"] and cancel.loc["b", "churn"]
    with pytest.raises(ClvmlError, match="needs an activity table"):
        labels({"transactions": t}, cut, horizon_days=10, churn_definition="no_activity")
