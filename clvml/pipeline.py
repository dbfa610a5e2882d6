"""End-to-end jobs used by the CLI: load data, train (with tracking and export), score, demo.

Each stage calls the public modules (data → features → labels → modeling → evaluation → tracking →
scoring); this module only sequences them and reports progress.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clvml import __version__
from clvml.config import Config, TableSource
from clvml.data.contracts import SCHEMAS
from clvml.data.dataset import Dataset, load_dataset
from clvml.evaluation.metrics import normalized_gini
from clvml.features import build_features, to_pandas
from clvml.io import atomic_write_json, atomic_write_parquet
from clvml.modeling.training import (
    add_btyd_features,
    cutoff_grid,
    data_end,
    evaluate_holdout,
    fit_models,
    make_training_set,
)
from clvml.packaging import ModelBundle, save_bundle

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def synthetic_cutoffs(cfg: Config) -> list[dt.date]:
    """Cut-offs for the synthetic ground truth: the training grid plus the scoring date."""
    syn = cfg.data.synthetic
    grid = cutoff_grid(cfg, syn.end)
    return sorted(set(grid) | {syn.end + dt.timedelta(days=1)})


def _world_matches(path: Path, cutoffs: list[dt.date], end: dt.date) -> bool:
    """A world written earlier is reused only if its truth covers every cut-off the config needs
    (cut-offs after the last simulated day have no truth)."""
    truth = path / "truth.parquet"
    if not (path / "transactions.parquet").exists() or not truth.exists():
        return False
    have = set(pd.to_datetime(pd.read_parquet(truth, columns=["cutoff"])["cutoff"]).dt.date)
    return {c for c in cutoffs if c <= end} <= have


def load_data(cfg: Config, progress: Progress = _quiet) -> Dataset:
    """Generate the synthetic world when configured (reusing it if already written), then read and
    validate every configured table."""
    data = cfg.data
    if data.synthetic is not None:
        syn = data.synthetic
        path = Path(syn.path)
        if not _world_matches(path, synthetic_cutoffs(cfg), syn.end):
            from clvml.data.synthetic import simulate

            progress(f"generating a synthetic world of {syn.n_customers:,} customers")
            world = simulate(syn.n_customers, syn.start, syn.end, cutoffs=synthetic_cutoffs(cfg),
                             horizon_days=cfg.labels.horizon_days, seed=syn.seed)
            world.write(path)
        for name in SCHEMAS:
            if name not in data.tables:
                data.tables[name] = TableSource(path=path / f"{name}.parquet")
    progress("reading and validating input tables")
    return load_dataset(data)


@dataclass
class TrainResult:
    bundle: ModelBundle
    evaluation: dict[str, Any]
    summary: dict[str, Any]
    run_id: str | None
    model_path: Path


def train(cfg: Config, ds: Dataset | None = None, progress: Progress = _quiet) -> TrainResult:
    """Build the training set, evaluate on the latest complete cut-off, fit the final models on all
    complete cut-offs, export the bundle to ``output.model_dir/<name>`` and track it in MLflow."""
    t0 = time.perf_counter()
    ds = ds or load_data(cfg, progress)
    progress("building point-in-time features and labels")
    ts = make_training_set(ds, cfg)
    progress(f"training set: {len(ts.frame):,} rows over {len(ts.cutoffs)} cut-offs, "
             f"{len(ts.feature_columns)} features; evaluating on the latest cut-off")
    ev = evaluate_holdout(ts, cfg, ds)
    progress("fitting the final models on all complete cut-offs")
    churn, value = fit_models(ts, cfg)
    bundle = ModelBundle(
        churn=churn, value=value, specs=ts.specs, windows=list(cfg.features.windows),
        families=list(cfg.features.families), horizon_days=cfg.labels.horizon_days,
        clv_params=cfg.clv.model_dump(), trained_cutoffs=ts.cutoffs, btyd_features=cfg.model.btyd_features,
        clvml_version=__version__, name=cfg.name,
    )
    model_path = Path(cfg.output.model_dir) / cfg.name
    example = ts.frame[["customer_id", "cutoff", *ts.feature_columns]].head(50)
    save_bundle(bundle, model_path, example)
    summary = {
        "data": ds.summary(), "training_rows": len(ts.frame), "cutoffs": [str(c) for c in ts.cutoffs],
        "excluded": ts.excluded, "test_cutoff": str(ev["test_cutoff"]),
        "churn": ev["churn"], "value": ev["value"],
        "btyd_churn": ev.get("btyd_churn"), "btyd_value": ev.get("btyd_value"), "rounds": {
            "churn": churn.n_rounds_, "value": value.n_rounds_},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    run_id = None
    if cfg.tracking.enabled:
        progress("logging the run to MLflow")
        run_id = _track(cfg, ds, ts, ev, summary, model_path)
    return TrainResult(bundle, ev, summary, run_id, model_path)


def _track(cfg, ds, ts, ev, summary, model_path) -> str:
    import mlflow

    from clvml import tracking

    with tracking.start_run(cfg, run_name=f"train-{cfg.name}", tags={"clvml.job": "train"}) as run:
        tracking.log_config(cfg)
        tracking.log_metrics(ev["churn"], "test_churn_")
        tracking.log_metrics(ev["value"], "test_value_")
        if "btyd_churn" in ev:
            tracking.log_metrics(ev["btyd_churn"], "test_btyd_churn_")
            tracking.log_metrics(ev["btyd_value"], "test_btyd_value_")
        tracking.log_metrics({"training_rows": len(ts.frame), "features": len(ts.feature_columns),
                              **{f"dropped_{t}_{k}": v for t, d in ds.report.dropped.items()
                                 for k, v in d.items()}})
        tracking.log_json(summary, "summary.json")
        tracking.log_json(ds.lineage, "lineage.json")
        tracking.log_json([s.__dict__ for s in ts.specs], "feature_catalog.json")
        mlflow.log_artifacts(str(model_path), artifact_path="model")
        return run.info.run_id


def score(bundle: ModelBundle, ds: Dataset, as_of: dt.date) -> pd.DataFrame:
    """Features as of ``as_of`` (events strictly before it) → churn, value and CLV per customer."""
    feats = to_pandas(build_features(ds.tables, [as_of], windows=bundle.windows,
                                     families=bundle.families))
    if bundle.btyd_features:
        feats = add_btyd_features(ds, feats, [as_of], bundle.horizon_days)
    return bundle.predict(feats)


def oracle_comparison(cfg: Config, ev: dict[str, Any]) -> dict[str, float] | None:
    """AUC and Gini of the true probabilities / expectations on the test cut-off (synthetic only)."""
    from sklearn.metrics import roc_auc_score

    if cfg.data.synthetic is None:
        return None
    truth = pd.read_parquet(Path(cfg.data.synthetic.path) / "truth.parquet")
    truth["cutoff"] = pd.to_datetime(truth["cutoff"])
    m = ev["frame"].merge(truth, on=["customer_id", "cutoff"], how="inner")
    if m.empty:
        return None
    churn = m["churn"].astype(int)
    return {
        "rows": len(m),
        "oracle_auc": float(roc_auc_score(churn, 1 - m["p_purchase"])),
        "model_auc": float(roc_auc_score(churn, m["pred_churn"])),
        "oracle_gini": normalized_gini(m["spend"], m["expected_spend"]),
        "model_gini": normalized_gini(m["spend"], m["pred_value"]),
    }


def demo(cfg: Config, progress: Progress = _quiet) -> dict[str, Any]:
    """Synthetic world → features → labels → models → MLflow → scores as of the day after the data."""
    t0 = time.perf_counter()
    ds = load_data(cfg, progress)
    result = train(cfg, ds, progress)
    as_of = data_end(ds) + dt.timedelta(days=1)
    progress(f"scoring every customer as of {as_of}")
    scores = score(result.bundle, ds, as_of)
    out = Path(cfg.output.dir) / "scores.parquet"
    atomic_write_parquet(scores, out)
    oracle = oracle_comparison(cfg, result.evaluation)
    report = {
        "test_cutoff": str(result.evaluation["test_cutoff"]),
        "churn_auc": result.evaluation["churn"]["roc_auc"],
        "churn_ece": result.evaluation["churn"]["ece"],
        "value_gini": result.evaluation["value"]["normalized_gini"],
        "btyd_churn_auc": result.evaluation["btyd_churn"]["roc_auc"],
        "btyd_value_gini": result.evaluation["btyd_value"]["normalized_gini"],
        "oracle": oracle, "scores_path": str(out), "scored_customers": len(scores),
        "model_path": str(result.model_path), "run_id": result.run_id,
        "tracking_uri": None, "seconds": round(time.perf_counter() - t0, 1),
    }
    if cfg.tracking.enabled:
        from clvml.tracking import tracking_uri

        report["tracking_uri"] = tracking_uri(cfg)
    atomic_write_json(report, Path(cfg.output.dir) / "demo_summary.json")
    return report
