"""Training against a real MLflow tracking server (SQLite backend, local artifacts) on 127.0.0.1."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import pytest

from clvml.config import load_config
from clvml.jobs.train import train
from tests.test_demo import write_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = (tmp / "server.log").open("w")  # noqa: SIM115 (open for the server's lifetime)
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp / 'backend.db'}",
         "--artifacts-destination", str(tmp / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240  # a loaded 2-core CI machine: the import alone took 90 s once
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("mlflow server did not start:\n" + (tmp / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url, tmp
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a loaded machine: gunicorn/uvicorn may not stop in time
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)
        log.close()


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
