"""MLflow tracking: one run per invocation, with the flattened config, data summary, metrics and model."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clvml.config import Config
from clvml.io import pid_alive


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
    version; returns the version (None when registration is off).

    The version the alias pointed to before is recorded on the run (tag
    ``clvml.previous_alias_version``), so that an interrupted train can be rolled back.
    """
    import mlflow
    from mlflow import MlflowClient

    if not cfg.tracking.register_model:
        return None
    with using_tracking(cfg):
        client = MlflowClient()
        previous = _alias_version(client, cfg.name, cfg.tracking.alias)
        client.set_tag(run_id, "clvml.previous_alias_version", previous or "")
        mv = mlflow.register_model(f"runs:/{run_id}/model", cfg.name)
        if cfg.tracking.alias:
            client.set_registered_model_alias(cfg.name, cfg.tracking.alias, mv.version)
        return str(mv.version)


def _alias_version(client: Any, name: str, alias: str | None) -> str | None:
    from mlflow.exceptions import MlflowException

    if not alias:
        return None
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


#: the file in a bundle folder naming the MLflow run that produced it (written by the train job)
BUNDLE_META = "clvml_meta.json"


def _bundle_run_id(folder: Path) -> str | None:
    try:
        return json.loads((folder / BUNDLE_META).read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


def roll_back_registration(cfg: Config, run_id: str) -> str:
    """Undo what a failed train run did to the registry: its versions are tagged
    ``clvml.state=failed`` and the alias, if it was moved to one of them, goes back to the version it
    pointed to before (or is removed when there was none). Returns a note ('' if nothing moved)."""
    from mlflow import MlflowClient

    with using_tracking(cfg):
        client = MlflowClient()
        previous = client.get_run(run_id).data.tags.get("clvml.previous_alias_version") or ""
        return _undo_registration(client, cfg, run_id, previous)


def _undo_registration(client: Any, cfg: Config, run_id: str, previous: str) -> str:
    if not (cfg.tracking.register_model and cfg.tracking.alias):
        return ""
    try:
        mine = [str(v.version) for v in client.search_model_versions(f"run_id = '{run_id}'")]
    except Exception:  # noqa: BLE001 - no registered model yet
        return ""
    for v in mine:
        client.set_model_version_tag(cfg.name, v, "clvml.state", "failed")
    current = _alias_version(client, cfg.name, cfg.tracking.alias)
    if current is None or current not in mine:
        return ""
    if previous:
        client.set_registered_model_alias(cfg.name, cfg.tracking.alias, previous)
        return f"; alias {cfg.tracking.alias!r} moved back to version {previous}"
    client.delete_registered_model_alias(cfg.name, cfg.tracking.alias)
    return f"; alias {cfg.tracking.alias!r} removed (it had no earlier version)"


def recover_interrupted_runs(cfg: Config) -> list[str]:
    """Settle ``train`` runs of this experiment that were killed outright (still RUNNING, started on
    this host by a process that no longer exists), so that the bundle folder, the run and the
    registry alias agree again. Returns one line per run settled.

    * If the bundle folder ``output.model_dir/<name>`` names the run (its ``clvml_meta.json``), the
      train had committed everything but the run's end: the run is marked FINISHED.
    * Otherwise the run is marked FAILED; if the alias was already moved to its model version, it is
      moved back to the version it pointed to before (or removed when there was none), and that
      version is tagged ``clvml.state=failed``.
    """
    import socket

    import mlflow
    from mlflow import MlflowClient

    notes: list[str] = []
    with using_tracking(cfg):
        exp = mlflow.get_experiment_by_name(cfg.tracking.experiment)
        if exp is None:
            return notes
        client = MlflowClient()
        host = socket.gethostname()
        runs = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING' and "
                                  "tags.`clvml.job` = 'train'", max_results=1000)
        folder_run = _bundle_run_id(Path(cfg.output.model_dir) / cfg.name)
        for run in runs:
            tags = run.data.tags
            pid = tags.get("clvml.pid", "")
            if tags.get("clvml.host") != host or not pid.isdigit() or pid_alive(int(pid)):
                continue
            rid = run.info.run_id
            if folder_run == rid:
                client.set_tag(rid, "clvml.recovered", "process ended after committing the bundle")
                client.set_terminated(rid, "FINISHED")
                notes.append(f"MLflow run {rid}: its train (pid {pid}) ended after committing the bundle; "
                             "marked FINISHED")
                continue
            client.set_tag(rid, "clvml.recovered", f"process {pid} ended before committing the bundle")
            client.set_terminated(rid, "FAILED")
            note = f"MLflow run {rid}: its train (pid {pid}) was killed before committing; marked FAILED"
            note += _undo_registration(client, cfg, rid, tags.get("clvml.previous_alias_version") or "")
            notes.append(note)
    return notes


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
