"""What the backtest promised for the model that scored a partition.

``clvml train`` records, in the bundle's ``clvml_meta.json``, the label settings and the held-out
figures of its backtest (see :func:`clvml.jobs.train.backtest_meta`); it also logs them to its MLflow
run (``test_churn_roc_auc`` …). A partition's manifest names the model it was scored with: a bundle
folder (its meta is read, if it still holds the same model version), ``runs:/<id>/…`` or
``models:/<name>@<alias>`` (the run's metrics are read from the config's tracking store).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clvml.config import Config
from clvml.tracking import BUNDLE_META, using_tracking


@dataclass
class Promise:
    """The backtest figures (``{"churn": {...}, "value": {...}, "clv": {...}}``) and label settings of
    one model version, where they were found, or why not."""

    model_version: str
    backtest: dict[str, dict[str, float]] = field(default_factory=dict)
    labels: dict[str, Any] | None = None
    clv: dict[str, Any] | None = None
    source: str | None = None
    note: str | None = None

    def figure(self, task: str, metric: str) -> float:
        v = self.backtest.get(task, {}).get(metric)
        return float(v) if isinstance(v, int | float) else float("nan")


def _meta(folder: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((folder / BUNDLE_META).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _from_run(cfg: Config, run_id: str) -> dict[str, dict[str, float]]:
    """The ``test_<task>_<metric>`` metrics of a train run, as ``{task: {metric: value}}``."""
    from mlflow import MlflowClient

    with using_tracking(cfg):
        metrics = MlflowClient().get_run(run_id).data.metrics
    out: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        m = re.fullmatch(r"test_(churn|value|clv)_(?!origin_)(\w+)", key)
        if m:
            out.setdefault(m.group(1), {})[m.group(2)] = float(value)
    return out


def _run_of_uri(cfg: Config, uri: str) -> str | None:
    m = re.fullmatch(r"runs:/([^/]+)/.*", uri)
    if m:
        return m.group(1)
    m = re.fullmatch(r"models:/([^/@]+)(?:@(.+)|/(\d+))", uri)
    if not m:
        return None
    from mlflow import MlflowClient

    with using_tracking(cfg):
        client = MlflowClient()
        mv = (client.get_model_version_by_alias(m.group(1), m.group(2)) if m.group(2)
              else client.get_model_version(m.group(1), m.group(3)))
    return mv.run_id


def promise(cfg: Config, model_version: str, manifest: dict[str, Any]) -> Promise:
    """The promise of ``model_version``, from the model named in a partition's ``manifest``."""
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    uri = str(model.get("uri") or "")
    if not uri:
        return Promise(model_version, note="the partition has no manifest naming its model")
    run_id = None
    folder = Path(uri)
    if "://" not in uri and not uri.startswith(("runs:/", "models:/")):
        meta = _meta(folder)
        if meta is None:
            return Promise(model_version, note=f"the model folder {uri} (or its {BUNDLE_META}) is gone")
        if meta.get("model_version") != model_version:
            return Promise(model_version, note=f"the model folder {uri} now holds another model "
                           f"({meta.get('model_version')}); the figures of {model_version} are in its MLflow run")
        if isinstance(meta.get("backtest"), dict):
            tasks = {k: v for k, v in meta["backtest"].items() if isinstance(v, dict)}
            return Promise(model_version, tasks, meta.get("labels"), meta.get("clv"), f"{folder / BUNDLE_META}")
        run_id = meta.get("run_id")
    try:
        run_id = run_id or _run_of_uri(cfg, uri)
        if not run_id:
            return Promise(model_version, note=f"no backtest figures recorded for {uri}")
        figures = _from_run(cfg, run_id)
    except Exception as exc:  # noqa: BLE001 - the promise is context: monitoring goes on without it
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Promise(model_version, note=f"cannot read the MLflow run of {uri}: {first}")
    if not figures:
        return Promise(model_version, note=f"the MLflow run {run_id} of {uri} holds no backtest figures")
    return Promise(model_version, figures, source=f"MLflow run {run_id}")
