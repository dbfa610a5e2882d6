"""MLflow tracking: one run per invocation, with the flattened config, data summary, metrics and model."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clvml.config import Config


def tracking_uri(cfg: Config) -> str:
    """Config, else ``MLFLOW_TRACKING_URI``, else a SQLite store in the output folder."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    Path(cfg.output.dir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(cfg.output.dir).resolve() / 'mlflow.db'}"


@contextmanager
def using_tracking(cfg: Config) -> Iterator[str]:
    """Point MLflow at the config's tracking store for the duration of the block."""
    import mlflow

    uri = tracking_uri(cfg)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)  # also exports MLFLOW_TRACKING_URI: restored below, so the next
    try:                          # config in this process is not sent to this store
        yield uri
    finally:
        if env is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = env


@contextmanager
def start_run(cfg: Config, run_name: str, tags: dict[str, str] | None = None) -> Iterator[Any]:
    """Start an MLflow run in the config's experiment (created with a local artifact folder)."""
    import mlflow

    with using_tracking(cfg) as uri:
        exp = mlflow.get_experiment_by_name(cfg.tracking.experiment)
        if exp is None:
            art = None
            if uri.startswith("sqlite:"):
                art = (Path(cfg.output.dir).resolve() / "mlartifacts").as_uri()
            mlflow.create_experiment(cfg.tracking.experiment, artifact_location=art)
        mlflow.set_experiment(cfg.tracking.experiment)
        with mlflow.start_run(run_name=run_name, tags=tags) as run:
            yield run


def register_model(cfg: Config, run_id: str) -> str | None:
    """Register the run's ``model`` artifact as ``cfg.name`` and point ``tracking.alias`` at the new
    version; returns the version (None when registration is off)."""
    import mlflow
    from mlflow import MlflowClient

    if not cfg.tracking.register_model:
        return None
    with using_tracking(cfg):
        mv = mlflow.register_model(f"runs:/{run_id}/model", cfg.name)
        if cfg.tracking.alias:
            MlflowClient().set_registered_model_alias(cfg.name, cfg.tracking.alias, mv.version)
        return str(mv.version)


def log_config(cfg: Config) -> None:
    import mlflow

    items = sorted(cfg.flat().items())
    for i in range(0, len(items), 90):
        mlflow.log_params({k: v[:500] for k, v in items[i:i + 90]})
    mlflow.log_text(cfg.model_dump_json(indent=2), "config.json")


def log_metrics(metrics: dict[str, float], prefix: str = "", step: int | None = None) -> None:
    import math

    import mlflow

    clean = {f"{prefix}{k}": float(v) for k, v in metrics.items()
             if isinstance(v, int | float) and math.isfinite(v)}
    mlflow.log_metrics(clean, step=step)


def log_json(obj: Any, name: str) -> None:
    import mlflow

    mlflow.log_text(json.dumps(obj, indent=2, default=str, sort_keys=True), name)
