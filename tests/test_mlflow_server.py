"""Training against a real MLflow tracking server (SQLite backend, local artifacts) on 127.0.0.1."""

from pathlib import Path

import mlflow
import pytest

from clvml.config import load_config
from clvml.jobs.train import train
from tests.test_demo import write_config


def test_train_logs_to_a_real_tracking_server(server, tmp_path, monkeypatch):
    url, srv = server
    cfg = load_config(write_config(tmp_path, tracking={"uri": url, "experiment": "server-test"}))
    r = train(cfg)
    client = mlflow.MlflowClient(tracking_uri=url)
    run = client.get_run(r.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["labels.horizon_days"] == "90" and run.data.params["name"] == "small"
    assert run.data.metrics["test_churn_roc_auc"] == pytest.approx(r.summary["churn"]["roc_auc"])
    assert "test_btyd_value_normalized_gini" in run.data.metrics
    top = {a.path for a in client.list_artifacts(r.run_id)}
    assert {"summary.json", "lineage.json", "feature_catalog.json", "data_summary.json", "config.json",
            "model", "evaluation"} <= top
    assert "model/MLmodel" in {a.path for a in client.list_artifacts(r.run_id, "model")}
    # artifacts went through the server into its own store, and come back intact
    local = mlflow.artifacts.download_artifacts(run_id=r.run_id, artifact_path="evaluation/report.html",
                                                tracking_uri=url, dst_path=str(tmp_path / "dl"))
    assert Path(local).read_text() == r.report["report"].read_text()
    assert list((srv / "artifacts").rglob("report.html"))
    # and the packaged model loads from the run
    from clvml.scoring.bundle import load_bundle

    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    mlflow.set_tracking_uri(url)
    bundle = load_bundle(f"runs:/{r.run_id}/model")
    assert bundle.name == "small" and bundle.horizon_days == 90
