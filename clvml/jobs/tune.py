"""Hyper-parameter tuning with Optuna on time-ordered validation (never random folds).

Each trial samples the LightGBM parameters of the search space (``tune.space``), then, for each of the
latest ``tune.origins`` labelled cut-offs in time order, trains the churn and value models on the
earlier cut-offs only (embargoed: no training horizon overlaps the origin's) and scores the origin.
The running mean of the objective is reported after each origin, so the median pruner can stop a
poor trial early. The sampler is seeded with the config's seed and LightGBM is deterministic, so the
same data and config give the same study.

The best parameters are written back as a complete config file that ``clvml train -c`` accepts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clvml.config import TUNABLE, Config
from clvml.console import count
from clvml.data.dataset import Dataset
from clvml.errors import ClvmlError
from clvml.evaluation.backtest import evaluate_origin
from clvml.io import atomic_write_text
from clvml.modeling.training import TrainingSet, make_training_set


@dataclass
class TuneResult:
    best_params: dict[str, Any]
    best_value: float
    default_value: float | None  # the config's own parameters (trial 0), when inside the space
    trials: int
    pruned: int
    config_path: Path
    run_id: str | None


def with_params(cfg: Config, params: dict[str, Any]) -> Config:
    """A copy of ``cfg`` with ``churn.<p>`` / ``value.<p>`` model parameters replaced."""
    new = cfg.model_copy(deep=True)
    for key, v in params.items():
        model, name = key.split(".")
        setattr(getattr(new.model, model), name, TUNABLE[name](v))
    return new


def objective_value(metrics, objective: str) -> float:
    """The tuned quantity from one origin's long metrics table (LightGBM rows)."""
    m = metrics[metrics.model == "lightgbm"].set_index(["task", "metric"])["value"]
    auc, gini = float(m[("churn", "roc_auc")]), float(m[("value", "normalized_gini")])
    return {"churn_auc": auc, "value_gini": gini, "both": (auc + gini) / 2}[objective]


def tuning_origins(ts: TrainingSet, cfg: Config) -> list[dt.date]:
    n = cfg.tune.origins
    if len(ts.cutoffs) <= n + cfg.cutoffs.validation:
        raise ClvmlError(f"tuning needs more than tune.origins + cutoffs.validation = "
                         f"{n + cfg.cutoffs.validation} labelled cut-offs, got {len(ts.cutoffs)}: start the "
                         "cut-off grid earlier or lower tune.origins")
    return ts.cutoffs[-n:]


def tune(cfg: Config, ds: Dataset | None = None, progress=lambda _: None) -> TuneResult:
    """Run the study; log it to MLflow (one child run per trial); write the tuned config."""
    import optuna

    from clvml.data.loading import load_data

    ds = ds or load_data(cfg, progress)
    progress("building point-in-time features and labels")
    ts = make_training_set(ds, cfg, progress=progress)
    origins = tuning_origins(ts, cfg)
    space = cfg.tune.space
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", study_name=f"tune-{cfg.name}",
        sampler=optuna.samplers.TPESampler(seed=cfg.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0))

    def objective(trial: optuna.Trial) -> float:
        params = {}
        for key, r in space.items():
            if TUNABLE[key.split(".")[1]] is int:
                params[key] = trial.suggest_int(key, int(r.low), int(r.high), log=r.log)
            else:
                params[key] = trial.suggest_float(key, r.low, r.high, log=r.log)
        tcfg = with_params(cfg, params)
        values = []
        for step, origin in enumerate(origins):
            _, metrics, _ = evaluate_origin(ts, tcfg, None, origin)
            values.append(objective_value(metrics, cfg.tune.objective))
            trial.report(sum(values) / len(values), step)
            if trial.should_prune():
                _log_trial(cfg, trial, params, values, pruned=True)
                raise optuna.TrialPruned()
        _log_trial(cfg, trial, params, values, pruned=False)
        count(progress, f"trial {trial.number}: {cfg.tune.objective} {sum(values) / len(values):.4f}",
              done=trial.number + 1, total=cfg.tune.n_trials, step="tuning trials")
        return sum(values) / len(values)

    # trial 0 is the config as given, so the study can only match or improve on it
    current = {k: getattr(getattr(cfg.model, k.split(".")[0]), k.split(".")[1]) for k in space}
    in_space = all(space[k].low <= v <= space[k].high for k, v in current.items())
    if in_space:
        study.enqueue_trial(current)
    run_id = None
    if cfg.tracking.enabled:
        from clvml import tracking

        with tracking.start_run(cfg, run_name=f"tune-{cfg.name}", tags={"clvml.job": "tune"}) as run:
            tracking.log_config(cfg)
            study.optimize(objective, n_trials=cfg.tune.n_trials, timeout=cfg.tune.timeout_s)
            run_id = run.info.run_id
            path = _write_tuned(cfg, study)
            _log_study(study, path)
    else:
        study.optimize(objective, n_trials=cfg.tune.n_trials, timeout=cfg.tune.timeout_s)
        path = _write_tuned(cfg, study)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    first = study.trials[0]
    default = first.value if in_space and first.state == optuna.trial.TrialState.COMPLETE else None
    return TuneResult(dict(study.best_params), float(study.best_value), default, len(study.trials), pruned,
                      path, run_id)


def _write_tuned(cfg: Config, study) -> Path:
    tuned = with_params(cfg, study.best_params)
    text = (f"# written by `clvml tune` (study tune-{cfg.name}, {len(study.trials)} trials, best "
            f"{cfg.tune.objective} {study.best_value:.4f}); train with `clvml train -c <this file>`\n"
            + yaml.safe_dump(tuned.model_dump(mode="json", exclude_none=True), sort_keys=False))
    return atomic_write_text(text, Path(cfg.output.dir) / f"tuned-{cfg.name}.yaml")


def _log_trial(cfg: Config, trial, params: dict[str, Any], values: list[float], pruned: bool) -> None:
    if not cfg.tracking.enabled:
        return
    import mlflow

    with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True,
                          tags={"clvml.job": "tune-trial", "pruned": str(pruned)}):
        mlflow.log_params(params)
        for step, v in enumerate(values):
            mlflow.log_metric("objective_origin", v, step=step)
        mlflow.log_metric("objective", sum(values) / len(values))


def _log_study(study, path: Path) -> None:
    import mlflow

    from clvml import tracking

    mlflow.log_params({f"best.{k}": v for k, v in study.best_params.items()})
    tracking.log_metrics({"best_objective": study.best_value, "trials": len(study.trials)})
    mlflow.log_artifact(str(path))
