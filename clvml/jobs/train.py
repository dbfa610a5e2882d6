"""``clvml train``: build the training set, evaluate on the latest complete cut-off, fit the final
models, export the bundle, write the report and explanations, and track it all in MLflow.

This module only sequences the public stages (data → features → labels → modeling → evaluation →
explain → scoring bundle) and reports progress.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvml._version import __version__
from clvml.allocator import return_freed_memory  # noqa: F401 (its documented place: clvml.jobs.train)
from clvml.config import Config
from clvml.console import reporting
from clvml.data.cutoffs import clv_origins, clv_window_days, data_end, trainable_at
from clvml.data.dataset import Dataset
from clvml.data.loading import Progress, load_data, quiet
from clvml.errors import UnusableModelError
from clvml.evaluation.backtest import BacktestResult, InSampleCalibration, backtest, in_sample_clv_calibration
from clvml.evaluation.report import write_report
from clvml.explain.drivers import write_explanations
from clvml.features import build_features, to_pandas
from clvml.features.custom import custom_identities
from clvml.modeling.clv import CLVShape
from clvml.modeling.intervals import ConformalIntervals
from clvml.modeling.training import (
    Selection,
    add_btyd_features,
    fit_models,
    make_training_set,
    select_models,
    transactions_frame,
)
from clvml.scoring.bundle import SCORE_COLUMNS, ModelBundle, stage_bundle


@dataclass
class TrainResult:
    bundle: ModelBundle
    evaluation: BacktestResult
    summary: dict[str, Any]
    run_id: str | None
    model_path: Path
    report: dict[str, Path]


def metric_dict(result: BacktestResult, task: str, model: str) -> dict[str, float]:
    """Every metric of one (task, model): its value at the single origin the train job evaluates a task
    on (the mean, were there several)."""
    m = result.metrics[(result.metrics.task == task) & (result.metrics.model == model)]
    return {k: float(v) for k, v in m.groupby("metric")["value"].mean().items()}


def _result_summary(result: BacktestResult) -> dict[str, Any]:
    return {f"{task}_{model}" if model != "lightgbm" else task: metric_dict(result, task, model)
            for task in ("churn", "value", "clv") for model in result.metrics.model.unique()
            if ((result.metrics.task == task) & (result.metrics.model == model)).any()}


def train(cfg: Config, ds: Dataset | None = None, progress: Progress = quiet) -> TrainResult:
    """Build the training set, evaluate on the latest complete cut-off, fit the final models on all
    complete cut-offs, export the bundle to ``output.model_dir/<name>``, write the evaluation report to
    ``output.dir/evaluation`` and track it all in MLflow.

    The bundle folder, the MLflow run and the registry alias change together: the run is started
    first (and marked FAILED by MLflow if anything below raises, ``KeyboardInterrupt`` and SIGTERM
    included); the bundle is staged beside its folder and its artifacts logged; the new version is
    registered and the alias moved; only then does the staged folder replace the old one, and the
    run ends FINISHED. A run killed outright (SIGKILL, power loss) is settled by the next ``train``
    on the same tracking store (:func:`clvml.tracking.recover_interrupted_runs`).
    """
    t0 = time.perf_counter()
    ds = ds or load_data(cfg, progress)
    if ds.con.name == "duckdb":  # DuckDB's allocator purges freed memory in the background, not at its next use
        ds.con.raw_sql("SET allocator_background_threads = true")
    if not cfg.tracking.enabled:
        return _train(cfg, ds, progress, t0, None)
    import os
    import socket

    from clvml import tracking

    for note in tracking.recover_interrupted_runs(cfg):
        progress(note)
    tags = {"clvml.job": "train", "clvml.pid": str(os.getpid()), "clvml.host": socket.gethostname()}
    with tracking.start_run(cfg, run_name=f"train-{cfg.name}", tags=tags) as run:
        try:
            return _train(cfg, ds, progress, t0, run.info.run_id)
        except BaseException:  # the run ends FAILED (MLflow); the alias must not point at it
            note = tracking.roll_back_registration(cfg, run.info.run_id)
            if note:
                progress(f"train failed{note}")
            raise


def _train(cfg: Config, ds: Dataset, progress: Progress, t0: float, run_id: str | None) -> TrainResult:
    with reporting(progress):  # LightGBM's boosting rounds report to it (clvml.console.reporting)
        return _train_steps(cfg, ds, progress, t0, run_id)


def _train_steps(cfg: Config, ds: Dataset, progress: Progress, t0: float, run_id: str | None) -> TrainResult:
    from clvml.io import replace_dir

    progress("building point-in-time features and labels")
    auto = cfg.model.auto_select and not cfg.model.btyd_features
    ts = make_training_set(ds, with_btyd_features(cfg) if auto else cfg, progress=progress)
    fitted, choice = None, None
    if cfg.model.auto_select:
        progress("choosing the models on the validation cut-offs (model.auto_select)")
        sel = select_models(ts, cfg, progress)
        cfg, ts, fitted, choice = sel.cfg, sel.ts, sel.models, sel
        progress(f"chosen: {sel.chosen}")
    test_cutoff = ts.cutoffs[-1]
    mode = evaluation_mode(cfg, ts.cutoffs)
    progress(f"training set: {len(ts.frame):,} rows over {len(ts.cutoffs)} cut-offs, "
             f"{len(ts.feature_columns)} features; evaluating on the latest cut-off {test_cutoff} ({mode})")
    last_day = data_end(ds)
    long = clv_origins(cfg, ts.cutoffs, last_day, n=1) if mode == "test_cutoff" else []
    if long:
        progress(f"evaluating CLV over {clv_window_days(cfg)} days at {long[0]}")
    in_sample = None
    if mode == "validation":  # scored by models that never saw it (their early stopping did see its weeks)
        before = (ts.frame["cutoff"] < pd.Timestamp(test_cutoff)).to_numpy()
        earlier = fit_models(ts, cfg, before)
        ev = backtest(ts, cfg, ds, [test_cutoff], fitted=earlier)
    else:
        ev = backtest(ts, cfg, ds, [test_cutoff], clv_origins=long)
        earlier = ev.models[test_cutoff]
    if not long:  # no held-out CLV window: the CLV interval from the longest window the history holds
        in_sample = in_sample_clv_calibration(ts, cfg, ds, earlier, last_day)
    check_metrics(ev, ts, test_cutoff)
    progress("fitting the final models on all complete cut-offs")
    churn, value = fitted or fit_models(ts, cfg)
    shape = None
    if cfg.clv.survival == "btyd":
        end = last_day + dt.timedelta(days=1)
        shape = CLVShape(periods=cfg.clv.periods, period_days=cfg.labels.horizon_days,
                         model=cfg.clv.btyd_model).fit(transactions_frame(ds, end), end)
    bundle = ModelBundle(
        churn=churn, value=value, specs=ts.specs, windows=list(cfg.features.windows),
        families=list(cfg.features.families), horizon_days=cfg.labels.horizon_days,
        clv_params=cfg.clv.model_dump(), trained_cutoffs=ts.cutoffs, btyd_features=cfg.model.btyd_features,
        clvml_version=__version__, name=cfg.name, clv_shape=shape, intervals=fit_intervals(ev, cfg, in_sample),
        custom_features=custom_identities(ts.specs, cfg.features.windows),
    )
    latest = ts.frame[ts.frame["cutoff"] == pd.Timestamp(test_cutoff)]
    fit_segments_and_reference(bundle, latest, ds, test_cutoff, cfg)
    model_path = Path(cfg.output.model_dir) / cfg.name
    example = ts.frame[["customer_id", "cutoff", *ts.feature_columns]].head(50)
    meta = {"name": cfg.name, "model_version": bundle.model_version, "run_id": run_id,
            **backtest_meta(ev, cfg, test_cutoff, long[0] if long else None)}
    with stage_bundle(bundle, model_path, example, meta) as staged:
        summary = {
            "data": ds.summary(), "training_rows": len(ts.frame), "cutoffs": [str(c) for c in ts.cutoffs],
            "excluded": ts.excluded, "test_cutoff": str(test_cutoff), "evaluation": mode,
            **({"model_choice": choice.table.to_dict("records")} if choice is not None else {}),
            **_result_summary(ev),
            "rounds": {"churn": churn.n_rounds_, "value": value.n_rounds_},
            "seconds": round(time.perf_counter() - t0, 1),
        }
        progress("explaining the models (SHAP) on the latest cut-off")
        core = bundle.core_scores(latest)
        segs = bundle.segmenter.transform(latest.reset_index(drop=True), core["churn_probability"], core["clv"])
        segs.index = latest.index
        explanations = write_explanations(churn, value, latest[ts.feature_columns], ts.specs,
                                          Path(cfg.output.dir) / "explanations", seed=cfg.seed,
                                          segments=segs[["value_tier", "lifecycle_stage", "risk_band"]])
        report = write_report(ev, Path(cfg.output.dir) / "evaluation", f"clvml train: {cfg.name}",
                              {**evaluation_notes(mode, test_cutoff, cfg, choice, in_sample),
                               "CLV origin": long[0] if long else "none (too little data)",
                               "horizon (days)": cfg.labels.horizon_days,
                               "training rows": len(ts.frame), "features": len(ts.feature_columns),
                               "SHAP explanations": f"final models, customers at {test_cutoff}"},
                              explanations={k: Path(v) for k, v in explanations.items()})
        if run_id is not None:
            progress("logging the run to MLflow")
            _track_train(cfg, ds, ts, ev, summary, staged, report, explanations, run_id)
        replace_dir(staged, model_path)  # the commit point of the folder
    return TrainResult(bundle, ev, summary, run_id, model_path, report)


def with_btyd_features(cfg: Config) -> Config:
    """``cfg`` with ``model.btyd_features`` on (the training set of ``model.auto_select``)."""
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"btyd_features": True})})


def evaluation_mode(cfg: Config, labelled: list[dt.date]) -> str:
    """``test_cutoff`` or ``validation`` (``backtest.train_evaluation``; ``auto``: a held-out test
    cut-off when models can be trained for the latest labelled cut-off on earlier ones alone)."""
    mode = cfg.backtest.train_evaluation
    if mode == "auto":
        return "test_cutoff" if trainable_at(cfg, labelled, labelled[-1]) else "validation"
    return mode


def evaluation_notes(mode: str, cutoff: dt.date, cfg: Config, choice: Selection | None,
                     in_sample: InSampleCalibration | None = None) -> dict[str, str]:
    """The report's lines on what the figures were measured on and which models were chosen."""
    if mode == "test_cutoff":
        notes = {"held-out cut-off (churn, value)": f"{cutoff}: the models scored there were trained on "
                 "earlier cut-offs whose horizon ends by it; the exported models on all complete cut-offs"}
    else:
        why = ("backtest.train_evaluation: validation" if cfg.backtest.train_evaluation == "validation" else
               "the history is too short for a held-out test cut-off, its validation cut-offs and the "
               "embargo between them (backtest.train_evaluation: auto)")
        notes = {"evaluation (churn, value)": f"latest cut-off {cutoff}, no separate test cut-off: {why}. It "
                 "is scored by models trained on the cut-offs before it, with no embargo before it (their "
                 "early stopping saw horizons overlapping its weeks): mildly optimistic. The exported "
                 "models are refit on all complete cut-offs. No CLV origin is evaluated"}
    if in_sample is not None:
        notes["CLV interval (clv_lo, clv_hi)"] = in_sample.note(cfg)
    if choice is not None:
        figures = "; ".join(f"{r.candidate} {r.value_rmse:.4g}" for r in choice.table.itertuples())
        notes["models (model.auto_select)"] = (f"{choice.chosen}, the lowest validation RMSE of expected value "
                                               f"({figures})")
    return notes


def backtest_meta(ev: BacktestResult, cfg: Config, test_cutoff: dt.date, clv_origin: dt.date | None
                  ) -> dict[str, Any]:
    """What the bundle records for monitoring (``clvml monitor``): the label settings its outcomes must
    be built with, and the held-out figures the backtest promised (LightGBM's churn and value metrics
    at the held-out cut-off, CLV metrics at the CLV origin; finite values only)."""
    import math

    summary = _result_summary(ev)
    promised = {task: {k: v for k, v in summary[task].items() if math.isfinite(v)}
                for task in ("churn", "value", "clv") if task in summary}
    return {"labels": cfg.labels.model_dump(mode="json"), "clv": cfg.clv.model_dump(mode="json"),
            "backtest": {"test_cutoff": str(test_cutoff), "clv_origin": str(clv_origin) if clv_origin else None,
                         **promised}}


def fit_intervals(ev: BacktestResult, cfg: Config, in_sample: InSampleCalibration | None = None
                  ) -> dict[str, ConformalIntervals]:
    """The score intervals, calibrated on held-out time: expected value on the held-out cut-off,
    CLV on the CLV origin (predictions of models that never saw them, against what was realised).
    Without a CLV origin (validation mode), the CLV interval of ``in_sample`` when there is one."""
    out = {} if in_sample is None else {"clv": in_sample.intervals}
    for name, pred, actual, col in (("value", ev.predictions, "value", "value_lightgbm"),
                                    ("clv", ev.clv_predictions, "realised_k", "clvk_lightgbm")):
        if col in pred and len(pred):
            cal = pred[pred.origin == pred.origin.max()]
            out[name] = ConformalIntervals(coverage=cfg.clv.interval).fit(cal[col], cal[actual])
    return out


def check_metrics(ev: BacktestResult, ts, cutoff: dt.date) -> None:
    """Refuse to go on (nothing exported or registered) when a held-out metric of the LightGBM
    models is not a number: such a model has not been evaluated at all."""
    m = ev.metrics[(ev.metrics.model == "lightgbm") & ev.metrics.task.isin(["churn", "value"])]
    bad = m[~np.isfinite(m["value"].astype(float))]
    if bad.empty:
        return
    rows = ts.frame[ts.frame["cutoff"] == pd.Timestamp(cutoff)]
    churn = rows["churn"].astype(float)
    names = ", ".join(f"{t} {k}" for t, k in zip(bad.task, bad.metric, strict=True))
    raise UnusableModelError(
        f"held-out metrics are not numbers ({names}) at the held-out cut-off {cutoff}: its "
        f"{len(rows):,} rows have a churn rate of {churn.mean():.3f}"
        f"{' (a single class)' if churn.nunique() < 2 else ''} and total spend "
        f"{float(rows['spend'].sum()) if 'spend' in rows else float('nan'):,.2f}. Nothing was exported "
        "or registered. Usually the labels reach past the data (a stale export or a horizon longer "
        "than the history): check the validation warnings, data.as_of and data.observed_until.")


def fit_segments_and_reference(bundle: ModelBundle, latest: pd.DataFrame, ds: Dataset, cutoff: dt.date,
                               cfg: Config) -> None:
    """Learn the segment thresholds and the drift reference from the latest training cut-off and
    attach them to ``bundle``."""
    from clvml.analytics.repurchase import interpurchase_times
    from clvml.analytics.segments import Segmenter
    from clvml.scoring.drift import DriftReference

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
                             for k, v in d.items()},
                          **{f"line_items_{t}_{k}": v for t, d in ds.report.line_items.items()
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


def _track_train(cfg, ds, ts, ev, summary, staged: Path, report, explanations, run_id: str) -> None:
    """Log everything to the active run, then register the staged bundle and move the alias."""
    import mlflow

    from clvml import tracking

    tracking.log_config(cfg)
    _log_data(ds, ts)
    _log_evaluation(ev, report, "test_")
    tracking.log_json(summary, "summary.json")
    for path in explanations.values():
        mlflow.log_artifact(str(path), artifact_path="explanations")
    mlflow.log_artifacts(str(staged), artifact_path="model")
    tracking.register_model(cfg, run_id)


def score(bundle: ModelBundle, ds: Dataset, as_of: dt.date) -> pd.DataFrame:
    """Features as of ``as_of`` (events strictly before it) → churn, value and CLV per customer."""
    feats = to_pandas(build_features(ds.tables, [as_of], windows=bundle.windows,
                                     families=bundle.families, custom=bundle.custom_names))
    if bundle.btyd_features:
        feats = add_btyd_features(ds, feats, [as_of], bundle.horizon_days)
    return bundle.predict(feats)
