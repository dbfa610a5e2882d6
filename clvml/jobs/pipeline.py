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
import pyarrow.parquet as pq

from clvml import __version__
from clvml.config import Config, TableSource
from clvml.data.contracts import SCHEMAS
from clvml.data.dataset import Dataset, load_dataset
from clvml.evaluation.backtest import BacktestResult, backtest
from clvml.evaluation.metrics import normalized_gini
from clvml.evaluation.report import write_report
from clvml.explain.drivers import write_explanations
from clvml.features import build_features, to_pandas
from clvml.io import atomic_write_json
from clvml.modeling.training import (
    add_btyd_features,
    cutoff_grid,
    data_end,
    fit_models,
    make_training_set,
)
from clvml.scoring.bundle import ModelBundle, save_bundle

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def synthetic_cutoffs(cfg: Config) -> list[dt.date]:
    """Cut-offs for the synthetic ground truth: the training grid plus the scoring date."""
    syn = cfg.data.synthetic
    grid = cutoff_grid(cfg, syn.end)
    return sorted(set(grid) | {syn.end + dt.timedelta(days=1)})


def _world_matches(path: Path, cutoffs: list[dt.date], end: dt.date, campaigns: bool = False) -> bool:
    """A world written earlier is reused only if its truth covers every cut-off the config needs
    (cut-offs after the last simulated day have no truth) and it has the configured campaigns."""
    truth = path / "truth.parquet"
    if not (path / "transactions.parquet").exists() or not truth.exists():
        return False
    if campaigns and not (path / "assignments.parquet").exists():
        return False
    if "p_purchase_observable" not in pq.read_schema(truth).names:  # written before that truth
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
        if not _world_matches(path, synthetic_cutoffs(cfg), syn.end, bool(syn.campaigns)):
            from clvml.datasets.synthetic import Campaign, simulate

            progress(f"generating a synthetic world of {syn.n_customers:,} customers")
            world = simulate(syn.n_customers, syn.start, syn.end, cutoffs=synthetic_cutoffs(cfg),
                             horizon_days=cfg.labels.horizon_days, seed=syn.seed,
                             campaigns=[Campaign(**c.model_dump()) for c in syn.campaigns])
            world.write(path)
        for name in SCHEMAS:
            if name not in data.tables:
                data.tables[name] = TableSource(path=path / f"{name}.parquet")
    from clvml.engine import connect_engine

    progress(f"reading and validating input tables ({cfg.engine.backend})")
    return load_dataset(data, con=connect_engine(cfg.engine))


@dataclass
class TrainResult:
    bundle: ModelBundle
    evaluation: BacktestResult
    summary: dict[str, Any]
    run_id: str | None
    model_path: Path
    report: dict[str, Path]


def metric_dict(result: BacktestResult, task: str, model: str) -> dict[str, float]:
    """Mean over origins of every metric of one (task, model)."""
    m = result.metrics[(result.metrics.task == task) & (result.metrics.model == model)]
    return {k: float(v) for k, v in m.groupby("metric")["value"].mean().items()}


def _result_summary(result: BacktestResult) -> dict[str, Any]:
    return {f"{task}_{model}" if model != "lightgbm" else task: metric_dict(result, task, model)
            for task in ("churn", "value") for model in result.metrics.model.unique()}


def train(cfg: Config, ds: Dataset | None = None, progress: Progress = _quiet) -> TrainResult:
    """Build the training set, evaluate on the latest complete cut-off, fit the final models on all
    complete cut-offs, export the bundle to ``output.model_dir/<name>``, write the evaluation report to
    ``output.dir/evaluation`` and track it all in MLflow."""
    t0 = time.perf_counter()
    ds = ds or load_data(cfg, progress)
    progress("building point-in-time features and labels")
    ts = make_training_set(ds, cfg)
    test_cutoff = ts.cutoffs[-1]
    progress(f"training set: {len(ts.frame):,} rows over {len(ts.cutoffs)} cut-offs, "
             f"{len(ts.feature_columns)} features; evaluating on the latest cut-off {test_cutoff}")
    ev = backtest(ts, cfg, ds, [test_cutoff])
    progress("fitting the final models on all complete cut-offs")
    churn, value = fit_models(ts, cfg)
    bundle = ModelBundle(
        churn=churn, value=value, specs=ts.specs, windows=list(cfg.features.windows),
        families=list(cfg.features.families), horizon_days=cfg.labels.horizon_days,
        clv_params=cfg.clv.model_dump(), trained_cutoffs=ts.cutoffs, btyd_features=cfg.model.btyd_features,
        clvml_version=__version__, name=cfg.name,
    )
    latest = ts.frame[ts.frame["cutoff"] == pd.Timestamp(test_cutoff)]
    fit_segments_and_reference(bundle, latest, ds, test_cutoff, cfg)
    model_path = Path(cfg.output.model_dir) / cfg.name
    example = ts.frame[["customer_id", "cutoff", *ts.feature_columns]].head(50)
    save_bundle(bundle, model_path, example)
    summary = {
        "data": ds.summary(), "training_rows": len(ts.frame), "cutoffs": [str(c) for c in ts.cutoffs],
        "excluded": ts.excluded, "test_cutoff": str(test_cutoff), **_result_summary(ev),
        "rounds": {"churn": churn.n_rounds_, "value": value.n_rounds_},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    report = write_report(ev, Path(cfg.output.dir) / "evaluation", f"clvml train: {cfg.name}",
                          {"held-out cut-off": test_cutoff, "horizon (days)": cfg.labels.horizon_days,
                           "training rows": len(ts.frame), "features": len(ts.feature_columns)})
    progress("explaining the models (SHAP) on the latest cut-off")
    core = bundle.core_scores(latest)
    segs = bundle.segmenter.transform(latest.reset_index(drop=True), core["churn_probability"], core["clv"])
    segs.index = latest.index
    explanations = write_explanations(churn, value, latest[ts.feature_columns], ts.specs,
                                      Path(cfg.output.dir) / "explanations", seed=cfg.seed,
                                      segments=segs[["value_tier", "lifecycle_stage", "risk_band"]])
    run_id = None
    if cfg.tracking.enabled:
        progress("logging the run to MLflow")
        run_id = _track_train(cfg, ds, ts, ev, summary, model_path, report, explanations)
    return TrainResult(bundle, ev, summary, run_id, model_path, report)


def fit_segments_and_reference(bundle: ModelBundle, latest: pd.DataFrame, ds: Dataset, cutoff: dt.date,
                               cfg: Config) -> None:
    """Learn the segment thresholds and the drift reference from the latest training cut-off and
    attach them to ``bundle``."""
    from clvml.analytics.repurchase import interpurchase_times
    from clvml.analytics.segments import Segmenter
    from clvml.scoring.drift import DriftReference
    from clvml.scoring.job import SCORE_COLUMNS

    core = bundle.core_scores(latest)
    gaps = interpurchase_times(ds.tables["transactions"], before=cutoff)
    bundle.segmenter = Segmenter(cfg.segments).fit(latest, core["clv"], gaps)
    snapshot = pd.concat([latest[bundle.feature_columns].reset_index(drop=True),
                          core[SCORE_COLUMNS].reset_index(drop=True)], axis=1)
    bundle.reference = DriftReference.fit(snapshot)


def _log_data(ds: Dataset, ts) -> None:
    from clvml import tracking

    tracking.log_metrics({"training_rows": len(ts.frame), "features": len(ts.feature_columns),
                          **{f"dropped_{t}_{k}": v for t, d in ds.report.dropped.items()
                             for k, v in d.items()}})
    tracking.log_json(ds.summary(), "data_summary.json")
    tracking.log_json(ds.lineage, "lineage.json")
    tracking.log_json([s.__dict__ for s in ts.specs], "feature_catalog.json")


def _log_evaluation(ev: BacktestResult, report: dict[str, Path], prefix: str) -> None:
    import mlflow

    from clvml import tracking

    for (task, model), g in ev.metrics.groupby(["task", "model"]):
        name = f"{prefix}{task}_" if model == "lightgbm" else f"{prefix}{model}_{task}_"
        tracking.log_metrics(g.groupby("metric")["value"].mean().to_dict(), name)
        if g.origin.nunique() > 1:  # per origin, as steps in date order
            for step, (_, go) in enumerate(g.groupby("origin")):
                tracking.log_metrics(dict(zip(go.metric, go.value, strict=True)), name + "origin_",
                                     step=step)
    for name, path in report.items():
        mlflow.log_artifact(str(path), artifact_path="evaluation/plots" if name.startswith("plot_")
                            else "evaluation")


def _track_train(cfg, ds, ts, ev, summary, model_path, report, explanations) -> str:
    import mlflow

    from clvml import tracking

    with tracking.start_run(cfg, run_name=f"train-{cfg.name}", tags={"clvml.job": "train"}) as run:
        tracking.log_config(cfg)
        _log_data(ds, ts)
        _log_evaluation(ev, report, "test_")
        tracking.log_json(summary, "summary.json")
        for path in explanations.values():
            mlflow.log_artifact(str(path), artifact_path="explanations")
        mlflow.log_artifacts(str(model_path), artifact_path="model")
        run_id = run.info.run_id
    tracking.register_model(cfg, run_id)
    return run_id


def backtest_origins(cfg: Config, labelled: list[dt.date]) -> list[dt.date]:
    """The configured origins, else the latest ``backtest.last`` labelled cut-offs."""
    if cfg.backtest.origins:
        return sorted(set(cfg.backtest.origins))
    return labelled[-cfg.backtest.last:]


@dataclass
class BacktestRun:
    result: BacktestResult
    report: dict[str, Path]
    run_id: str | None


def run_backtest(cfg: Config, ds: Dataset | None = None, progress: Progress = _quiet) -> BacktestRun:
    """``clvml backtest``: rolling-origin evaluation, report in ``output.dir/backtest``, MLflow run."""
    ds = ds or load_data(cfg, progress)
    progress("building point-in-time features and labels")
    ts = make_training_set(ds, cfg)
    origins = backtest_origins(cfg, ts.cutoffs)
    result = backtest(ts, cfg, ds, origins, progress)
    report = write_report(result, Path(cfg.output.dir) / "backtest", f"clvml backtest: {cfg.name}",
                          {"origins": ", ".join(str(o) for o in origins),
                           "horizon (days)": cfg.labels.horizon_days, "rows": len(ts.frame),
                           "features": len(ts.feature_columns)})
    run_id = None
    if cfg.tracking.enabled:
        from clvml import tracking

        with tracking.start_run(cfg, run_name=f"backtest-{cfg.name}",
                                tags={"clvml.job": "backtest"}) as run:
            tracking.log_config(cfg)
            _log_data(ds, ts)
            _log_evaluation(result, report, "backtest_")
            run_id = run.info.run_id
    return BacktestRun(result, report, run_id)


def score(bundle: ModelBundle, ds: Dataset, as_of: dt.date) -> pd.DataFrame:
    """Features as of ``as_of`` (events strictly before it) → churn, value and CLV per customer."""
    feats = to_pandas(build_features(ds.tables, [as_of], windows=bundle.windows,
                                     families=bundle.families))
    if bundle.btyd_features:
        feats = add_btyd_features(ds, feats, [as_of], bundle.horizon_days)
    return bundle.predict(feats)


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


def demo(cfg: Config, progress: Progress = _quiet) -> dict[str, Any]:
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
