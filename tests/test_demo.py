"""The walking skeleton end to end on a small synthetic world, and the CLI around it."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from clvml.cli import app
from clvml.config import load_config
from clvml.jobs.demo import demo
from clvml.scoring.bundle import load_bundle

FAST = {"learning_rate": 0.1, "n_estimators": 150, "min_child_samples": 50, "early_stopping_rounds": 20}


def write_config(tmp_path, **over):
    cfg = {
        "name": "small", "seed": 1,
        "data": {"synthetic": {"n_customers": 1500, "start": "2023-01-01", "end": "2024-06-30",
                               "seed": 5, "path": "world"}},
        "cutoffs": {"start": "2023-05-01", "every_days": 61},
        "labels": {"horizon_days": 90},
        "model": {"churn": FAST, "value": FAST, "auto_select": False},  # the choice: test_clv_cli, test_monitor
        "tracking": {"experiment": "small-demo"},
        "output": {"dir": "out", "model_dir": "models"},
    }
    cfg.update(over)
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    # 2 CLV periods: 180 days, so the 18-month world has a CLV origin (2023-12-31) to calibrate on
    cfg = load_config(write_config(tmp, clv={"periods": 2, "margin": 0.3, "discount_rate": 0.02}))
    return tmp, cfg, demo(cfg)


def test_demo_end_to_end(demo_run):
    tmp, cfg, r = demo_run
    # scores for every customer with a purchase before the scoring date, nothing else
    scores = pd.read_parquet(Path(r["scores_path"]).parent)  # the root: as_of is the hive key
    tx = pd.read_parquet(tmp / "world" / "transactions.parquet")
    assert len(scores) == tx.customer_id.nunique() == r["scored_customers"]
    assert set(scores.columns) >= {"customer_id", "as_of", "churn_probability", "expected_value", "clv",
                                   "churn_reason_1", "churn_reason_1_shap", "churn_reason_3_text",
                                   "value_reason_1_text"}
    # reason codes: the features pushing churn risk up (positive SHAP), in plain language
    assert scores.churn_reason_1_text.notna().mean() > 0.9
    assert (scores.churn_reason_1_shap.dropna() > 0).all()
    assert (scores.churn_reason_1_shap.fillna(0) >= scores.churn_reason_2_shap.fillna(0)).all()
    assert (scores.value_reason_1_shap.dropna() < 0).all()
    assert scores.churn_probability.between(0, 1).all() and (scores.expected_value >= 0).all()
    # 80 % intervals, calibrated on held-out time (value: the held-out cut-off; CLV: the CLV origin)
    for col in ("expected_value", "clv"):
        lo, hi = scores[f"{col}_lo"], scores[f"{col}_hi"]
        assert np.isfinite(lo).all() and np.isfinite(hi).all() and (lo <= hi).all() and (lo >= 0).all()
        assert (hi > scores[col]).mean() > 0.5  # the upper tail carries the spread
    assert str(scores.as_of.iloc[0]) == "2024-07-01"
    # segments and actions from the thresholds learned at training
    assert set(scores.value_tier) == {"high", "potential", "general", "low"}
    assert scores.recommended_action.notna().all() and scores.rfm_segment.notna().all()
    # churned (by the learned lifecycle thresholds) customers are the riskiest, active the safest
    risk = scores.groupby("lifecycle_stage").churn_probability.mean()
    assert risk["churned"] > risk["dormant"] > risk["active"]
    # the models learned something real on held-out data, close to the oracle
    o = r["oracle"]
    assert o["model_auc"] > 0.8 and o["model_auc"] > 0.9 * o["oracle_auc"]
    assert o["model_gini"] > 0.8 * o["oracle_gini"]
    # the observable ceiling (no knowledge of the hidden alive flag) sits below the oracle
    assert o["observable_auc"] < o["oracle_auc"] and o["observable_gini"] < o["oracle_gini"]
    assert o["model_auc"] > 0.9 * o["observable_auc"]
    assert json.loads((tmp / "out" / "demo_summary.json").read_text())["run_id"] == r["run_id"]


def test_demo_run_is_tracked_in_mlflow(demo_run):
    tmp, cfg, r = demo_run
    client = mlflow.MlflowClient(tracking_uri=r["tracking_uri"])
    run = client.get_run(r["run_id"])
    assert run.data.params["labels.horizon_days"] == "90"
    assert 0.5 < run.data.metrics["test_churn_roc_auc"] <= 1
    assert "test_value_normalized_gini" in run.data.metrics
    names = {a.path for a in client.list_artifacts(r["run_id"])}
    assert {"summary.json", "feature_catalog.json", "config.json", "model", "explanations"} <= names
    expl = {a.path.split("/")[-1] for a in client.list_artifacts(r["run_id"], "explanations")}
    assert {"churn_shap_importance.csv", "churn_shap_families.csv", "churn_beeswarm.png",
            "value_beeswarm.png"} <= expl
    assert sum(n.startswith("churn_dependence_") for n in expl) == 3
    assert {"churn_drivers_by_value_tier.csv", "churn_drivers_by_lifecycle_stage.csv",
            "value_drivers_by_risk_band.csv"} <= expl
    # segment drivers: churned customers' risk is driven up by how long they have been silent
    drivers = pd.read_csv(tmp / "out" / "explanations" / "churn_drivers_by_lifecycle_stage.csv")
    churned = drivers[drivers.lifecycle_stage == "churned"].iloc[0]
    assert churned.mean_shap > 0 and ("recency" in churned.feature or "since" in churned.feature)
    active = drivers[drivers.lifecycle_stage == "active"]
    assert active.mean_shap.iloc[0] < 0  # the strongest driver of active customers lowers their risk
    assert set(drivers.lifecycle_stage) <= {"new", "active", "returning", "dormant", "churned"}


def test_train_report_opens_cleanly_in_chromium(demo_run, chromium, tmp_path):
    from tests.browser import assert_opens_cleanly

    tmp, cfg, r = demo_run
    check = assert_opens_cleanly(chromium, Path(r["report_path"]), tmp_path / "train_report.png", min_images=6)
    assert {i["alt"] for i in check.images} >= {"Churn: ROC curve", "Churn: reliability (calibration) curve",
                                                "Value: predicted vs actual spend by decile"}


def test_exported_bundle_reloads_and_scores_identically(demo_run):
    tmp, cfg, r = demo_run
    bundle = load_bundle(r["model_path"])
    from clvml.data.loading import load_data
    from clvml.jobs.train import score

    ds = load_data(cfg)
    again = score(bundle, ds, pd.Timestamp("2024-07-01").date())
    first = pd.read_parquet(r["scores_path"])  # one partition: as_of is its folder's key, not a column
    assert set(again.columns) - set(first.columns) <= {"as_of"}
    pd.testing.assert_frame_equal(again[list(first.columns)].reset_index(drop=True), first.reset_index(drop=True),
                                  check_dtype=False)


def test_cli_validate_reports_bad_data_with_exit_code_3(tmp_path):
    tx = pd.DataFrame({"customer_id": ["a", None], "ts": ["2024-01-01", "2024-01-02"], "amount": [1.0, 2.0]})
    tx.to_csv(tmp_path / "tx.csv", index=False)
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  tables:\n    transactions:\n      path: tx.csv\ncutoffs:\n  start: 2024-01-01\n")
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 3, res.output
    assert "null customer_id" in res.output and "1 row(s)" in res.output


def test_cli_bad_config_exit_code_2(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  tables:\n    transactions:\n      path: tx.csv\ncutofs:\n  start: 2024-01-01\n")
    res = CliRunner().invoke(app, ["validate", str(path)])
    assert res.exit_code == 2
    assert "did you mean 'cutoffs'" in res.output


def test_cli_features_list_matches_docs():
    from pathlib import Path

    res = CliRunner().invoke(app, ["features", "list", "--markdown"])
    assert res.exit_code == 0
    doc = (Path(__file__).parents[1] / "docs" / "features.md").read_text()
    assert res.output.strip() == doc.strip(), "docs/features.md is stale: regenerate it"


def test_cached_world_is_reused_only_if_its_truth_covers_the_grid(tmp_path):
    import datetime as dt

    from clvml.data.loading import _world_matches

    assert not _world_matches(tmp_path, [dt.date(2024, 1, 1)], dt.date(2024, 12, 31))  # nothing written
    truth = pd.DataFrame({"cutoff": pd.to_datetime(["2024-01-01", "2024-02-01"])})
    truth.to_parquet(tmp_path / "truth.parquet")
    pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "transactions.parquet")
    end = dt.date(2024, 12, 31)
    assert not _world_matches(tmp_path, [dt.date(2024, 1, 1)], end)  # written before the observable truth
    truth.assign(p_purchase_observable=0.5).to_parquet(tmp_path / "truth.parquet")
    assert _world_matches(tmp_path, [dt.date(2024, 1, 1), dt.date(2025, 1, 1)], end)  # after end: no truth
    assert not _world_matches(tmp_path, [dt.date(2024, 1, 1), dt.date(2024, 3, 1)], end)  # grid changed


def test_tracking_uri_of_one_run_does_not_leak_into_the_next(tmp_path):
    import os

    from clvml.tracking import start_run, tracking_uri

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = load_config(write_config(tmp_path / "a")), load_config(write_config(tmp_path / "b"))
    with start_run(a, "first"):
        pass
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert tracking_uri(b) != tracking_uri(a) and str(tmp_path / "b") in tracking_uri(b)
