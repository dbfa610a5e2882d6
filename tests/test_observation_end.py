"""Issue 24.4: labels only use horizons covered by data; a stale export is reported; a model whose
held-out metrics are NaN is never exported or registered."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from clvml.cli import app
from clvml.config import DataConfig, load_config, parse_config
from clvml.data.cutoffs import data_end
from clvml.data.dataset import load_dataset
from clvml.errors import ConfigError, DataValidationError
from clvml.labels import build_labels
from tests.conftest import tx
from tests.test_demo import write_config

ROWS = [("a", "2024-01-05", 10.0), ("a", "2024-03-01", 5.0), ("b", "2024-02-10", 7.0)]


def _data(**over) -> DataConfig:
    return DataConfig.model_validate({"tables": {"transactions": {"path": "unused.parquet"}}, **over})


def test_a_stale_export_is_reported_and_its_gap_is_never_labelled_as_churn():
    ds = load_dataset(_data(as_of="2024-06-01"), frames={"transactions": tx(ROWS)})
    stale = [p for p in ds.report.problems if p.check == "stale_export"]
    assert len(stale) == 1
    assert stale[0].severity == "warning" and stale[0].action == "kept"
    assert "2024-03-01, 92 days before data.as_of 2024-06-01" in stale[0].message
    assert "data.observed_until: 2024-06-01" in stale[0].fix
    assert data_end(ds) == dt.date(2024, 3, 1)  # the last event day, not the snapshot time
    labels = build_labels(ds.tables, [dt.date(2024, 1, 20), dt.date(2024, 2, 15)], horizon_days=30,
                          data_end=data_end(ds)).to_pandas().sort_values(["cutoff", "customer_id"])
    # [01-20, 02-19) ends before 03-01: labelled; [02-15, 03-16) reaches past the data: not labelled
    assert labels.groupby("cutoff")["horizon_complete"].all().tolist() == [True, False]


def test_a_short_gap_is_not_reported():
    ds = load_dataset(_data(as_of="2024-03-05"), frames={"transactions": tx(ROWS)})
    assert [p for p in ds.report.problems if p.check == "stale_export"] == []


def test_observed_until_says_the_quiet_period_is_real():
    ds = load_dataset(_data(as_of="2024-06-01", observed_until="2024-05-31"), frames={"transactions": tx(ROWS)})
    assert [p.check for p in ds.report.problems] == []
    assert data_end(ds) == dt.date(2024, 5, 31)


def test_observed_until_before_the_last_event_is_refused():
    with pytest.raises(DataValidationError, match=r"observed_until 2024-02-01 is before the last transaction "
                                                  r"day 2024-03-01") as err:
        load_dataset(_data(observed_until="2024-02-01"), frames={"transactions": tx(ROWS)})
    assert err.value.exit_code == 3


def test_observed_until_after_as_of_is_a_config_error():
    raw = {"data": {"as_of": "2024-06-01", "observed_until": "2024-07-01",
                    "tables": {"transactions": {"path": "t.parquet"}}},
           "cutoffs": {"start": "2024-01-01"}}
    with pytest.raises(ConfigError, match="observed_until 2024-07-01 is after as_of 2024-06-01"):
        parse_config(raw)


def test_training_never_exports_or_registers_a_model_with_nan_metrics(tmp_path):
    """as_of and observed_until far past the data (the user insists the gap is real): the held-out
    cut-off has churn 1 for everyone, its AUC is NaN, and train stops with exit 3 before exporting."""
    cfg_path = write_config(tmp_path, name="stale")
    raw = yaml.safe_load(cfg_path.read_text())
    raw["data"]["as_of"] = "2026-01-01"
    raw["data"]["observed_until"] = "2025-12-31"
    raw["data"]["synthetic"]["n_customers"] = 500  # a small world and few cut-offs: it stops after the backtest
    raw["cutoffs"]["every_days"] = 122
    raw["tracking"]["uri"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg_path.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(app, ["train", "-c", str(cfg_path)])
    assert res.exit_code == 3, res.output
    text = " ".join(res.output.split())
    assert "held-out metrics are not numbers" in text and "churn rate of 1.000 (a single class)" in text
    assert "Nothing was exported or registered" in text
    cfg = load_config(cfg_path)
    assert not cfg.output.model_dir.exists() or not any(cfg.output.model_dir.iterdir())  # nothing exported
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)
    assert client.search_registered_models() == []


def test_synthetic_worlds_are_observed_to_their_end(small_world, tmp_path):
    """The simulator observes every day up to its end: that is the end of observation even if the
    last purchase is earlier."""
    cfg = load_config(write_config(tmp_path))
    from clvml.data.loading import load_data

    ds = load_data(cfg)
    assert ds.observed_until == cfg.data.synthetic.end == dt.date(2024, 6, 30)
    assert data_end(ds) == dt.date(2024, 6, 30)
    assert pd.Timestamp(ds.date_range()[1]).date() <= dt.date(2024, 6, 30)
