"""The packaged model: everything needed to score, as one MLflow pyfunc model.

Loading a bundle unpickles Python objects: only load bundles you trust.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clvml.errors import ModelIncompatibleError
from clvml.features.registry import FeatureSpec
from clvml.modeling.churn import ChurnModel
from clvml.modeling.clv import clv
from clvml.modeling.value import ValueModel

SCORE_COLUMNS = ["churn_probability", "expected_value", "clv"]
"""The core score columns of every score row (also compared by the drift check)."""

if TYPE_CHECKING:
    from clvml.analytics.segments import Segmenter
    from clvml.scoring.drift import DriftReference

BUNDLE_FORMAT = 2


@dataclass
class ModelBundle:
    """Churn and value models plus the feature specification and CLV parameters they need."""

    churn: ChurnModel
    value: ValueModel
    specs: list[FeatureSpec]
    windows: list[int]
    families: list[str]
    horizon_days: int
    clv_params: dict[str, Any]
    trained_cutoffs: list[dt.date] = field(default_factory=list)
    btyd_features: bool = False  # the models also take the btyd_* features (refitted as of scoring)
    clvml_version: str = ""
    bundle_format: int = BUNDLE_FORMAT
    name: str = "clvml"
    reason_codes: int = 3  # top features pushing churn risk up / value down, per customer (0: none)
    segmenter: Segmenter | None = None  # RFM, lifecycle, value tiers, risk bands, actions
    reference: DriftReference | None = None  # training snapshot of features and scores (drift check)

    @property
    def feature_columns(self) -> list[str]:
        return [s.name for s in self.specs]

    @cached_property
    def fingerprint(self) -> str:
        """Short content hash of the fitted models and feature list: equal models, equal fingerprint
        (used as ``model_version`` in the scores)."""
        import hashlib

        from clvml.explain.drivers import _boosters

        h = hashlib.sha256("\n".join(self.feature_columns).encode())
        for model in (self.churn, self.value):
            for booster in _boosters(model):
                h.update(booster.booster_.model_to_string().encode())
        return h.hexdigest()[:12]

    @property
    def model_version(self) -> str:
        return f"{self.name}-{self.fingerprint}"

    def check_features(self, features: pd.DataFrame) -> None:
        missing = [c for c in self.feature_columns if c not in features.columns]
        if missing:
            raise ModelIncompatibleError(
                f"the data lacks {len(missing)} feature(s) the model was trained on "
                f"({', '.join(missing[:5])}{'…' if len(missing) > 5 else ''}); score with the same "
                f"tables and feature settings as training (windows {self.windows}, families "
                f"{', '.join(self.families)})")

    def _prepared(self, features: pd.DataFrame) -> pd.DataFrame:
        """The model matrix, converted once and shared by both models (they are trained on the same
        columns; a model whose columns differ converts again for itself)."""
        return self.churn._features(features[self.feature_columns])

    def core_scores(self, features: pd.DataFrame, X: pd.DataFrame | None = None) -> pd.DataFrame:
        """Churn probability, expected purchases and value, and CLV (no segments, no reasons)."""
        self.check_features(features)
        X = self._prepared(features) if X is None else X
        p = self.churn.predict_proba(X)[:, 1]
        value, purchases = self.value.predict_with_purchases(X)
        if purchases is None:
            purchases = np.full(len(X), np.nan)
        return pd.DataFrame({
            "customer_id": features["customer_id"].to_numpy(),
            "as_of": pd.to_datetime(features["cutoff"]).dt.date.to_numpy(),
            "churn_probability": p,
            "expected_purchases": purchases,
            "expected_value": value,
            "clv": clv(value, p, **self.clv_params),
        })

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Scores for a feature table with ``customer_id`` and ``cutoff`` columns: churn, value, CLV,
        segments (when the bundle has them) and reason codes."""
        self.check_features(features)
        X = self._prepared(features)
        out = self.core_scores(features, X)
        p = out["churn_probability"].to_numpy()
        if self.segmenter is not None:
            seg = self.segmenter.transform(features.reset_index(drop=True), p, out["clv"].to_numpy())
            out.insert(3, "risk_band", seg.pop("risk_band"))
            out = pd.concat([out, seg], axis=1)
        if self.reason_codes:
            from clvml.explain.drivers import contributions
            from clvml.explain.reasons import reason_codes

            for prefix, model, direction in (("churn", self.churn, 1), ("value", self.value, -1)):
                rc = reason_codes(contributions(model, X), X, self.specs, k=self.reason_codes,
                                  direction=direction)
                keep = [c for c in rc.columns if not c.endswith("_value")]
                out = pd.concat([out, rc[keep].add_prefix(f"{prefix}_").reset_index(drop=True)], axis=1)
        out["model_version"] = self.model_version
        return out


def _pyfunc_class():
    import mlflow.pyfunc

    class ClvmlPyfunc(mlflow.pyfunc.PythonModel):
        """MLflow wrapper: input is a feature table, output the scores of :class:`ModelBundle`."""

        def __init__(self, bundle: ModelBundle):
            self.bundle = bundle

        def predict(self, context, model_input: pd.DataFrame, params=None):  # noqa: ARG002
            return self.bundle.predict(model_input)

    return ClvmlPyfunc


#: what scoring a bundle imports (pinned to the installed versions when the bundle is saved)
RUNTIME_PACKAGES = ("clvml", "pandas", "numpy", "scipy", "scikit-learn", "lightgbm", "mlflow", "pyarrow",
                    "ibis-framework", "duckdb", "sqlglot", "pydantic", "PyYAML")


def pip_requirements() -> list[str]:
    """The bundle's requirements, pinned to this environment: stated, not inferred (MLflow's inference
    imports the model in a subprocess and costs ~9 s per export)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in RUNTIME_PACKAGES:
        try:
            out.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            out.append(pkg)
    return out


def save_bundle(bundle: ModelBundle, path: str | Path, example: pd.DataFrame) -> Path:
    """Export as an MLflow pyfunc model folder (replacing an older export atomically).

    The export is built in a staging folder ``.<name>.XXXX.tmp`` beside ``path`` with an owner lock;
    staging folders of killed exports (their lock free) are removed first, a live export's never.
    """
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    from clvml.io import atomic_write_json, remove_dead_staging, replace_dir, staging_dir

    path = Path(path)
    remove_dead_staging(path.parent, f".{path.name}.")
    with staging_dir(path.parent, f".{path.name}.", f"the model {path}") as tmp:
        folder = tmp / "model"  # MLflow writes into a folder that does not exist yet
        model = _pyfunc_class()(bundle)
        signature = infer_signature(example, bundle.predict(example))
        mlflow.pyfunc.save_model(str(folder), python_model=model, signature=signature,
                                 input_example=example.head(3), pip_requirements=pip_requirements())
        atomic_write_json({"algorithm": "sha256", "files": bundle_checksums(folder)}, folder / CHECKSUMS)
        return replace_dir(folder, path)


#: the file in a bundle folder listing the SHA-256 of every other file
CHECKSUMS = "clvml_checksums.json"
#: metadata MLflow writes into a model it downloads from the registry (YAML, never unpickled)
MLFLOW_ADDED = {"registered_model_meta"}


def bundle_checksums(folder: Path, uri: str | Path | None = None) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (relative POSIX paths), the checksum file excepted.

    A file or folder that cannot be read raises :class:`ModelIncompatibleError` (exit 5) naming it.
    """
    import hashlib
    import os

    def unreadable(exc: OSError) -> ModelIncompatibleError:
        return ModelIncompatibleError(
            f"model {uri or folder}: cannot read {exc.filename or folder} ({exc.strerror or exc}); the "
            f"bundle's files must be readable by the account that scores (uid {os.getuid()}). Export it "
            "again under the usual umask, or make it readable (chmod -R a+rX or a shared group)")

    def fail(exc: OSError) -> None:
        raise unreadable(exc)

    out = {}
    try:
        for root, dirs, files in os.walk(folder, onerror=fail):
            dirs.sort()
            for name in files:
                p = Path(root) / name
                rel = p.relative_to(folder).as_posix()
                if rel != CHECKSUMS and p.is_file():
                    out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    except OSError as exc:
        raise unreadable(exc) from None
    return dict(sorted(out.items()))


def verify_bundle(folder: Path, uri: str | Path) -> None:
    """Refuse a bundle folder whose files differ from the checksums recorded at export.

    Loading a bundle unpickles Python objects, which can run arbitrary code: only load bundles from
    sources you trust. The checksums catch bundles altered or corrupted after ``clvml train`` wrote
    them (a swapped pickle, a truncated copy); they do not authenticate who wrote them.
    """
    import json

    listed = folder / CHECKSUMS
    if not listed.is_file():
        raise ModelIncompatibleError(
            f"model {uri} has no {CHECKSUMS}: it was not exported by this version's `clvml train`; it is "
            "not loaded, because loading runs pickled code. Re-export it with `clvml train`")
    try:
        want = json.loads(listed.read_text())["files"]
    except (ValueError, KeyError, OSError) as exc:
        raise ModelIncompatibleError(f"model {uri}: cannot read {listed} ({exc}); not loaded. The bundle's "
                                     "files must be readable by the account that scores") from None
    have = bundle_checksums(folder, uri)
    changed = sorted(f for f in want if f in have and have[f] != want[f])
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want) - MLFLOW_ADDED)
    if changed or missing or extra:
        what = "; ".join(f"{k}: {', '.join(v[:5])}" for k, v in
                         (("changed", changed), ("missing", missing), ("unexpected", extra)) if v)
        raise ModelIncompatibleError(
            f"model {uri} does not match the checksums recorded when it was exported ({what}); it is "
            "not loaded, because loading runs pickled code. Re-export it with `clvml train`, or copy it "
            "again from its source")


def _compatible(made_by: str, running: str) -> bool:
    """Bundles are compatible within a minor version (0.1.x reads 0.1.y; 1.x reads 1.y)."""
    a, b = made_by.split("."), running.split(".")
    return len(a) >= 2 and (a[:2] == b[:2] if a[0] == "0" else a[0] == b[0])


def load_bundle(uri: str | Path) -> ModelBundle:
    """Load a bundle from a folder, ``runs:/…`` or ``models:/name@alias`` URI.

    Raises :class:`~clvml.errors.ModelIncompatibleError` when the URI cannot be loaded, its files do not
    match the checksums recorded at export (checked before anything is unpickled: see
    :func:`verify_bundle`), or the bundle was written by an incompatible clvml version (the message
    names both versions).
    """
    import mlflow.pyfunc

    from clvml._version import __version__

    try:
        local = Path(str(uri))
        if not local.is_dir():  # runs:/… or models:/…: fetch the files, check them, then unpickle
            import mlflow.artifacts

            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=str(uri)))
    except Exception as exc:
        raise ModelIncompatibleError(f"cannot load model {uri}: {str(exc).splitlines()[0]}. Check the "
                                     "URI (a bundle folder, runs:/<id>/model or models:/<name>@<alias>) "
                                     "and that it was exported by `clvml train`") from None
    try:
        verify_bundle(local, uri)
    except OSError as exc:
        raise ModelIncompatibleError(f"model {uri}: cannot read {exc.filename or local} ({exc.strerror or exc}); "
                                     "the bundle's files must be readable by the account that scores") from None
    try:
        model = mlflow.pyfunc.load_model(str(local))
    except Exception as exc:
        raise ModelIncompatibleError(f"cannot load model {uri}: {str(exc).splitlines()[0]}. Check the "
                                     "URI (a bundle folder, runs:/<id>/model or models:/<name>@<alias>) "
                                     "and that it was exported by `clvml train`") from None
    bundle = getattr(model.unwrap_python_model(), "bundle", None)
    if not isinstance(bundle, ModelBundle):
        raise ModelIncompatibleError(f"model {uri} is not a clvml bundle (exported by `clvml train`)")
    made_by = getattr(bundle, "clvml_version", "") or "unknown"
    if getattr(bundle, "bundle_format", None) != BUNDLE_FORMAT or not _compatible(made_by, __version__):
        raise ModelIncompatibleError(
            f"model {uri} was exported by clvml {made_by} (bundle format "
            f"{getattr(bundle, 'bundle_format', None)}); this is clvml {__version__} (format "
            f"{BUNDLE_FORMAT}). Retrain with `clvml train`, or score with clvml=={made_by}")
    return bundle
