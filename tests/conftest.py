from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.pop("MLFLOW_TRACKING_URI", None)
if os.environ.get("PYTEST_XDIST_WORKER"):  # parallel workers: one LightGBM thread each (no oversubscription)
    os.environ.setdefault("CLVML_THREADS", "1")


@pytest.fixture(scope="session")
def small_world():
    from clvml.datasets.synthetic import simulate

    cuts = [pd.Timestamp("2024-03-01").date(), pd.Timestamp("2024-06-01").date()]
    return simulate(1500, "2023-01-01", "2024-09-30", cutoffs=cuts, seed=3)


def tx(rows):
    """Transactions frame from (customer, ts, amount) tuples."""
    return pd.DataFrame(rows, columns=["customer_id", "ts", "amount"]).assign(
        ts=lambda d: pd.to_datetime(d.ts, format="mixed"))


@pytest.fixture(scope="session")
def chromium():
    """Debian's headless Chromium driven by Playwright (tests/browser.py); skips, saying why, without it."""
    from tests.browser import launch_chromium

    pw, browser = launch_chromium()
    yield browser
    browser.close()
    pw.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A real MLflow tracking server (SQLite backend, local artifacts) on 127.0.0.1: one per test process,
    shared by the modules that use it (each names its own experiments and registered models)."""
    tmp = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    log = (tmp / "server.log").open("w")  # noqa: SIM115 (open for the server's lifetime)
    proc = subprocess.Popen(
        [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp / 'backend.db'}",
         "--artifacts-destination", str(tmp / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        # (no job runner: MLflow's background jobs are not used here, and its extra process made every
        # start ~4 s slower and every stop wait up to 20 s on a loaded machine)
        env={**os.environ, "MLFLOW_TRACKING_URI": "", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
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
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a loaded machine: uvicorn may not stop in time (a test store)
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)
        log.close()
