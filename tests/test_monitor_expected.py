"""The monitor's "expected" figures read from the MLflow run of the model that scored a partition, on the
real tracking server: for ``runs:/…`` and ``models:/name@alias`` URIs, and for a bundle folder whose
``clvml_meta.json`` records its run but no backtest (a bundle made before the figures were recorded).

The run is made the way ``clvml train`` leaves it (``test_<task>_<metric>`` metrics, a registered
version under an alias); the partitions are hand-built on a small shop so that the test takes seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from clvml.config import load_config
from clvml.monitoring import monitor

TX = [("a", "2024-01-05", 10.0), ("a", "2024-02-12", 50.0), ("b", "2024-01-10", 20.0),
      ("c", "2024-01-20", 30.0), ("c", "2024-02-20", 10.0), ("d", "2024-01-25", 5.0),
      ("f", "2024-03-20", 10.0)]
SCORES = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "churn_probability": [0.2, 0.7, 0.4, 0.6],
                       "expected_value": [40.0, 5.0, 20.0, 10.0], "clv": [60.0, 5.0, 30.0, 10.0]})
#: what clvml train logs to its run (clvml/jobs/train.py); only test_<churn|value|clv>_<metric> are
#: backtest figures: the BTYD baseline's and the CLV origin's are not the model's promise
RUN_METRICS = {"test_churn_roc_auc": 0.91, "test_churn_ece": 0.04, "test_value_total_error_pct": -3.0,
               "test_value_normalized_gini": 0.62, "test_btyd_value_normalized_gini": 0.11,
               "test_clv_origin_days": 360.0, "training_rows": 5000.0}


def _partition(root: Path, as_of: str, version: str, uri: str) -> None:
    folder = root / f"as_of={as_of}"
    folder.mkdir(parents=True)
    SCORES.assign(model_version=version).to_parquet(folder / "part-0000.parquet", index=False)
    (folder / "_manifest.json").write_text(json.dumps({"model": {"uri": uri, "version": version}}))


@pytest.fixture()
def shop(server, tmp_path):
    """A train-like run with its figures and a registered version ``shop-exp@champion``; four
    partitions (all matured: data to 2024-03-20, H = 30), each scored by another model version named
    by another kind of URI."""
    url, _ = server
    client = mlflow.MlflowClient(tracking_uri=url)
    exp = client.create_experiment(f"expected-{tmp_path.name}")
    run = client.create_run(exp).info.run_id
    for k, v in RUN_METRICS.items():
        client.log_metric(run, k, v)
    client.set_terminated(run)
    empty = client.create_run(exp).info.run_id  # a run without backtest figures
    client.set_terminated(empty)
    name = f"shop-exp-{tmp_path.name}"
    client.create_registered_model(name)
    mv = client.create_model_version(name, f"runs:/{run}/model", run_id=run)
    client.set_registered_model_alias(name, "champion", mv.version)

    pd.DataFrame(TX, columns=["customer_id", "ts", "amount"]).assign(ts=lambda d: pd.to_datetime(d.ts)).to_parquet(
        tmp_path / "transactions.parquet", index=False)
    cfg = {"name": "shop", "data": {"tables": {"transactions": {"path": "transactions.parquet"}}},
           "cutoffs": {"start": "2024-01-01"}, "labels": {"horizon_days": 30}, "clv": {"periods": 2},
           "tracking": {"uri": url, "experiment": "expected"}, "output": {"dir": "out"},
           "monitoring": {"min_customers": 1, "report": False, "ece_max": None, "auc_drop": None,
                          "value_total_error_max": None}}
    (tmp_path / "shop.yaml").write_text(yaml.safe_dump(cfg))
    old = tmp_path / "models" / "old"  # a bundle folder from before the figures were in its meta
    old.mkdir(parents=True)
    (old / "clvml_meta.json").write_text(json.dumps({"model_version": "v-folder", "run_id": run}))
    root = tmp_path / "out" / "scores"
    _partition(root, "2024-02-01", "v-folder", str(old))
    _partition(root, "2024-02-05", "v-run", f"runs:/{run}/model")
    _partition(root, "2024-02-10", "v-alias", f"models:/{name}@champion")
    _partition(root, "2024-02-15", "v-empty", f"runs:/{empty}/model")
    return load_config(tmp_path / "shop.yaml"), run, empty


def test_expected_figures_come_from_the_mlflow_run_of_the_scoring_model(shop):
    cfg, run, empty = shop
    r = monitor(cfg)
    m = r.metrics[(r.metrics.segment_by == "all") & (r.metrics.horizon == "complete")]
    expected = m.pivot(index="as_of", columns="metric", values="expected")
    expected.index = expected.index.astype(str)
    for as_of in ("2024-02-01", "2024-02-05", "2024-02-10"):  # bundle meta -> run, runs:/, models:/@alias
        row = expected.loc[as_of]
        assert (row.churn_roc_auc, row.churn_ece, row.value_total_error_pct, row.value_normalized_gini) == (
            0.91, 0.04, -3.0, 0.62), as_of
        # the run recorded no PR AUC or MAE, and the BTYD baseline's Gini is not the model's
        assert math.isnan(row.churn_pr_auc) and math.isnan(row.value_mae), as_of
    # the realised figures sit beside them: churners b, d scored above a, c
    auc = m[(m.metric == "churn_roc_auc") & (m.as_of.astype(str) == "2024-02-05")].iloc[0]
    assert (auc.value, auc.expected) == (1.0, 0.91)
    # a run without figures: monitored all the same, no expected column, and a note saying why
    assert expected.loc["2024-02-15"].isna().all()
    assert f"model v-empty: no expected figures (the MLflow run {empty} of runs:/{empty}/model holds no " \
           "backtest figures)" in r.notes
    assert not [n for n in r.notes if n.startswith(("model v-folder", "model v-run", "model v-alias"))], r.notes
