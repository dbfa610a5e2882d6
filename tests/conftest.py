from __future__ import annotations

import os

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
