"""``clvml demo``: synthetic world → features → labels → models → MLflow → scores, and the comparison
with the world's own truth."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pandas as pd

from clvml.config import Config
from clvml.data.cutoffs import data_end
from clvml.data.loading import Progress, load_data, quiet
from clvml.evaluation.backtest import BacktestResult
from clvml.evaluation.metrics import normalized_gini
from clvml.io import atomic_write_json
from clvml.jobs.train import train


def oracle_comparison(cfg: Config, ev: BacktestResult) -> dict[str, float] | None:
    """AUC and Gini of the true probabilities / expectations at the evaluated origins (synthetic
    only), beside LightGBM's on the same rows.

    ``oracle_*`` scores the truth given the hidden alive flag; ``observable_*`` scores the truth given
    only what the business can observe plus each customer's true traits (the ceiling for a model
    that does not know who has silently dropped out; see :class:`clvml.datasets.synthetic.AliveFilter`).
    """
    from sklearn.metrics import roc_auc_score

    if cfg.data.synthetic is None:
        return None
    truth = pd.read_parquet(Path(cfg.data.synthetic.path) / "truth.parquet")
    truth["cutoff"] = pd.to_datetime(truth["cutoff"])
    pred = ev.predictions.rename(columns={"origin": "cutoff"})
    m = pred.merge(truth, on=["customer_id", "cutoff"], how="inner")
    if m.empty:
        return None
    churn = m["churn"].astype(int)
    return {
        "rows": len(m),
        "oracle_auc": float(roc_auc_score(churn, 1 - m["p_purchase"])),
        "model_auc": float(roc_auc_score(churn, m["churn_lightgbm"])),
        "oracle_gini": normalized_gini(m["value"], m["expected_spend"]),
        "model_gini": normalized_gini(m["value"], m["value_lightgbm"]),
        "observable_auc": float(roc_auc_score(churn, 1 - m["p_purchase_observable"])),
        "observable_gini": normalized_gini(m["value"], m["expected_spend_observable"]),
    }


def demo(cfg: Config, progress: Progress = quiet) -> dict[str, Any]:
    """Synthetic world → features → labels → models → MLflow → scores as of the day after the data."""
    t0 = time.perf_counter()
    ds = load_data(cfg, progress)
    result = train(cfg, ds, progress)
    as_of = data_end(ds) + dt.timedelta(days=1)
    progress(f"scoring every customer as of {as_of} (the scheduled scoring job)")
    from clvml.scoring.job import score as score_job

    scored = score_job(cfg, str(result.model_path), as_of, ds=ds, progress=progress)
    oracle = oracle_comparison(cfg, result.evaluation)
    sm = result.summary
    report = {
        "test_cutoff": sm["test_cutoff"],
        "churn_auc": sm["churn"]["roc_auc"],
        "churn_ece": sm["churn"]["ece"],
        "value_gini": sm["value"]["normalized_gini"],
        "btyd_churn_auc": sm["churn_btyd"]["roc_auc"],
        "btyd_value_gini": sm["value_btyd"]["normalized_gini"],
        "simple_churn_auc": sm["churn_simple"]["roc_auc"],
        "simple_value_gini": sm["value_simple"]["normalized_gini"],
        "report_path": str(result.report["report"]),
        "oracle": oracle, "scores_path": scored.target, "scored_customers": scored.manifest["rows_out"],
        "drift": scored.manifest["drift"].get("scores"),
        "model_path": str(result.model_path), "run_id": result.run_id,
        "tracking_uri": None, "seconds": round(time.perf_counter() - t0, 1),
    }
    if cfg.tracking.enabled:
        from clvml.tracking import tracking_uri

        report["tracking_uri"] = tracking_uri(cfg)
    atomic_write_json(report, Path(cfg.output.dir) / "demo_summary.json")
    return report
