"""The packaged model: everything needed to score, as one MLflow pyfunc model.

Loading a bundle unpickles Python objects: only load bundles you trust.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clvml.errors import ModelIncompatibleError, ModelNotFoundError
from clvml.features.registry import FeatureSpec
from clvml.modeling.churn import ChurnModel
from clvml.modeling.clv import CLVShape, clv, formula_params
from clvml.modeling.intervals import ConformalIntervals
from clvml.modeling.lgbm import model_columns, prepare_column
from clvml.modeling.value import ValueModel
from clvml.tracking import BUNDLE_META

SCORE_COLUMNS = ["churn_probability", "expected_value", "clv"]
"""The core score columns of every score row (also compared by the drift check)."""
INTERVAL_COLUMNS = ["expected_value_lo", "expected_value_hi", "clv_lo", "clv_hi"]
"""The ``clv.interval`` (default 80 %) prediction intervals of every score row (NaN when the bundle
could not calibrate them: see :mod:`clvml.modeling.intervals`)."""

if TYPE_CHECKING:
    from clvml.analytics.segments import Segmenter
    from clvml.modeling.raw_scores import RawScores
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
    clv_shape: CLVShape | None = None  # BTYD dynamics of clv (clv_params survival "btyd")
    intervals: dict[str, ConformalIntervals] = field(default_factory=dict)  # "value", "clv"
    #: identities (name, source hash, table, windows, fill, function) of the custom features it uses
    custom_features: list[dict[str, Any]] = field(default_factory=list)

    @property
    def custom_names(self) -> list[str]:
        """Names of the custom features the models take (none for bundles written before them)."""
        return [r["name"] for r in getattr(self, "custom_features", [])]

    @property
    def feature_columns(self) -> list[str]:
        return [s.name for s in self.specs]

    @cached_property
    def fingerprint(self) -> str:
        """Short content hash of everything that changes a score: the fitted models (every tree,
        calibrator, value form and offset), the feature list and windows, the horizon, the CLV
        parameters, the BTYD features switch, the number of reason codes and the fitted segmenter
        (its settings and learned thresholds). Equal fingerprint, equal scores for equal data; used
        as ``model_version`` in the scores. The drift reference and the training cut-offs are left
        out: they never change a score."""
        import hashlib

        h = hashlib.sha256(b"clvml-bundle-fingerprint-v2")
        state = {"format": self.bundle_format, "specs": [s.__dict__ for s in self.specs],
                 "windows": list(self.windows), "families": list(self.families),
                 "horizon_days": self.horizon_days, "clv_params": self.clv_params,
                 "btyd_features": self.btyd_features, "reason_codes": self.reason_codes,
                 "churn": self.churn, "value": self.value, "segmenter": self.segmenter,
                 "clv_shape": self.clv_shape, "intervals": getattr(self, "intervals", {})}
        if getattr(self, "custom_features", []):  # (absent otherwise: earlier fingerprints unchanged)
            state["custom_features"] = self.custom_features
        _digest(state, h, set())
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

    def _inputs(self, features: pd.DataFrame) -> tuple[tuple[pd.DataFrame, np.ndarray], ...]:
        """For the churn and the value model: the feature columns with the categoricals converted to the
        model's categories (:func:`~clvml.modeling.lgbm.prepare_column`, once) and the input matrix
        (:meth:`ChurnModel.matrix`), shared when both models take the same columns and categories (as
        trained together)."""
        X = features[self.feature_columns]

        def inputs(model: ChurnModel | ValueModel) -> tuple[pd.DataFrame, np.ndarray]:
            Xm = X.copy(deep=False)
            for c in model.categories_:
                Xm[c] = prepare_column(X[c], c, model.categories_)
            return Xm, model.matrix(Xm)

        churn = inputs(self.churn)
        same = (model_columns(self.churn) == model_columns(self.value)
                and self.churn.categories_ == self.value.categories_)
        return churn, churn if same else inputs(self.value)

    def core_scores(self, features: pd.DataFrame,
                    inputs: tuple[tuple[pd.DataFrame, np.ndarray], ...] | None = None,
                    raw: RawScores | None = None) -> pd.DataFrame:
        """Churn probability, expected purchases and value, and CLV (no segments, no reasons).
        ``inputs``: :meth:`_inputs` of ``features`` when the caller already has them; ``raw``: the
        boosters' raw scores of those inputs when known (tree SHAP finds them, see :meth:`predict`)."""
        self.check_features(features)
        (_, Fc), (_, Fv) = self._inputs(features) if inputs is None else inputs
        p = self.churn.predict_proba_matrix(Fc, raw)[:, 1]
        value, purchases = self.value.predict_matrix_with_purchases(Fv, raw)
        if purchases is None:
            purchases = np.full(Fv.shape[1], np.nan)
        scored, undiscounted = self.clv(features, value, p)
        out = pd.DataFrame({
            "customer_id": features["customer_id"].to_numpy(),
            "as_of": pd.to_datetime(features["cutoff"]).dt.date.to_numpy(),
            "churn_probability": p,
            "expected_purchases": purchases,
            "expected_value": value,
            "expected_value_lo": np.nan, "expected_value_hi": np.nan,
            "clv": scored,
            "clv_lo": np.nan, "clv_hi": np.nan,
        })
        iv = getattr(self, "intervals", None) or {}
        if "value" in iv:
            out["expected_value_lo"], out["expected_value_hi"] = iv["value"].predict(value)
        if "clv" in iv:  # calibrated on the undiscounted CLV; the ratios apply to the discounted one
            cost = float(self.clv_params.get("cost", 0.0))
            lo, hi = iv["clv"].predict(undiscounted, scale=scored + cost)
            out["clv_lo"], out["clv_hi"] = lo - cost, hi - cost
        return out

    def clv(self, features: pd.DataFrame, value: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CLV with the bundle's parameters, and the same undiscounted and without cost (what the
        intervals are calibrated on): ``survival`` btyd (the BTYD shape of each customer, from the
        transaction features) or geometric (bundles made before the BTYD shape)."""
        params = {"survival": "geometric", **formula_params(self.clv_params)}
        weights = None
        if params["survival"] == "btyd":
            if self.clv_shape is None:
                raise ModelIncompatibleError("the bundle's CLV uses the BTYD shape but has none fitted: "
                                             "retrain with `clvml train`")
            weights = self.clv_shape.weights_from_features(features.reset_index(drop=True),
                                                           int(params["periods"]))
        scored = clv(value, p, period_weights=weights, **params)
        gross = clv(value, p, period_weights=weights, **{**params, "discount_rate": 0.0, "cost": 0.0})
        return scored, gross

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Scores for a feature table with ``customer_id`` and ``cutoff`` columns: churn, value, CLV,
        segments (when the bundle has them) and reason codes.

        The reason codes' tree SHAP passes find every row's leaf in every tree, so they run first and
        their boosters' raw scores serve the predictions too (checked against LightGBM's own on a
        sample of rows, to the bit: :func:`~clvml.modeling.lgbm.predict_matrix`)."""
        self.check_features(features)
        inputs = self._inputs(features)
        raw: RawScores = {}
        reasons = []
        if self.reason_codes:
            from clvml.explain.drivers import contributions
            from clvml.explain.reasons import reason_codes

            for (prefix, model, direction), (Xm, F) in zip((("churn", self.churn, 1), ("value", self.value, -1)),
                                                           inputs, strict=True):
                shown = _shown(Xm, F, model)
                rc = reason_codes(contributions(model, shown, F=F, raw=raw), shown, self.specs,
                                  k=self.reason_codes, direction=direction, values=False)
                del shown
                reasons.append(rc.add_prefix(f"{prefix}_").reset_index(drop=True))
        out = self.core_scores(features, inputs, raw)
        del inputs, raw
        p = out["churn_probability"].to_numpy()
        if self.segmenter is not None:
            seg = self.segmenter.transform(features.reset_index(drop=True), p, out["clv"].to_numpy())
            out.insert(3, "risk_band", seg.pop("risk_band"))
            out = pd.concat([out, seg], axis=1)
        if reasons:
            out = pd.concat([out, *reasons], axis=1)
        out["model_version"] = self.model_version
        return out


def _shown(X: pd.DataFrame, F: np.ndarray, model: ChurnModel | ValueModel) -> pd.DataFrame:
    """The model's inputs as the reason codes show them: the numbers of ``F = model.matrix(X)`` (a view,
    no copy) with the categorical columns of ``X`` (converted to the model's categories, see
    :meth:`ModelBundle._inputs`)."""
    columns = model_columns(model)
    shown = pd.DataFrame(F.T, columns=columns, index=X.index, copy=False)
    for c in model.categories_:
        shown[c] = X.iloc[:, columns.index(c)].array
    return shown


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
RUNTIME_PACKAGES = ("clvml", "pandas", "numpy", "scipy", "scikit-learn", "lightgbm", "numba", "mlflow", "pyarrow",
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


@contextmanager
def stage_bundle(bundle: ModelBundle, path: str | Path, example: pd.DataFrame,
                 meta: dict[str, Any] | None = None) -> Iterator[Path]:
    """Build the MLflow pyfunc model folder of ``bundle`` beside ``path`` and yield it, not yet in place.

    The folder lives in a staging folder ``.<name>.XXXX.tmp`` with an owner lock held for the block
    (staging folders of killed exports, whose lock is free, are removed first; a live export's never).
    Move it into place inside the block with :func:`clvml.io.replace_dir`; whatever is left is removed
    when the block ends. ``meta`` is written as ``clvml_meta.json`` in the bundle (e.g. the MLflow run
    that produced it), covered by the checksums like every other file.
    """
    import mlflow.pyfunc
    from mlflow.models import ModelSignature

    from clvml.io import atomic_write_json, remove_dead_staging, staging_dir

    path = Path(path)
    remove_dead_staging(path.parent, f".{path.name}.")
    with staging_dir(path.parent, f".{path.name}.", f"the model {path}") as tmp:
        folder = tmp / "model"  # MLflow writes into a folder that does not exist yet
        model = _pyfunc_class()(bundle)
        signature = ModelSignature(inputs=_schema(example), outputs=_schema(bundle.predict(example)))
        with _without_cloudpickle_notice():
            mlflow.pyfunc.save_model(str(folder), python_model=model, signature=signature,
                                     input_example=example.head(3), pip_requirements=pip_requirements())
        if meta is not None:
            atomic_write_json(meta, folder / BUNDLE_META)
        atomic_write_json({"algorithm": "sha256", "files": bundle_checksums(folder)}, folder / CHECKSUMS)
        yield folder


@contextmanager
def _without_cloudpickle_notice() -> Iterator[None]:
    """MLflow warns on every export that a Python-object model is pickled and that unpickling can run
    code. A user cannot act on it, and clvml already guards the risk: a bundle's files are checked
    against the SHA-256 sums recorded at export before anything is unpickled (:func:`verify_bundle`)."""
    import logging

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "CloudPickle" not in record.getMessage()

    log, drop = logging.getLogger("mlflow.pyfunc"), _Drop()
    log.addFilter(drop)
    try:
        yield
    finally:
        log.removeFilter(drop)


def _schema(frame: pd.DataFrame):
    """The MLflow schema of ``frame``, declared from its dtypes instead of inferred from values.

    Integer columns are counts that the feature registry fills with 0, so they are never missing and
    are declared ``long``; a column that can be missing is a float (``double``, optional) or text.
    MLflow's inference cannot know that and warns about every integer column.
    """
    from mlflow.types import DataType
    from mlflow.types.schema import ColSpec, Schema

    cols = []
    for name, dtype in frame.dtypes.items():
        if pd.api.types.is_bool_dtype(dtype):
            kind = DataType.boolean
        elif pd.api.types.is_integer_dtype(dtype):
            kind = DataType.long
        elif pd.api.types.is_float_dtype(dtype):
            kind = DataType.double
        elif pd.api.types.is_datetime64_any_dtype(dtype):
            kind = DataType.datetime
        else:
            kind = DataType.string
        cols.append(ColSpec(kind, str(name), required=not frame[name].isna().any()))
    return Schema(cols)


def save_bundle(bundle: ModelBundle, path: str | Path, example: pd.DataFrame,
                meta: dict[str, Any] | None = None) -> Path:
    """Export as an MLflow pyfunc model folder, replacing an older export atomically (see
    :func:`stage_bundle`)."""
    from clvml.io import replace_dir

    with stage_bundle(bundle, path, example, meta) as folder:
        return replace_dir(folder, Path(path))


#: the file in a bundle folder listing the SHA-256 of every other file
CHECKSUMS = "clvml_checksums.json"
#: metadata MLflow writes into a model it downloads from the registry (YAML, never unpickled)
MLFLOW_ADDED = {"registered_model_meta"}


def bundle_checksums(folder: Path, uri: str | Path | None = None) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (relative POSIX paths), the checksum file excepted.

    A file or folder that cannot be read raises :class:`ModelIncompatibleError` (exit 5) naming it.
    """
    import hashlib

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
        doc = json.loads(listed.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelIncompatibleError(f"model {uri}: {CHECKSUMS} is not JSON ({exc}); not loaded") from None
    except OSError as exc:
        raise ModelIncompatibleError(f"model {uri}: cannot read {listed} ({exc.strerror or exc}); not loaded. "
                                     "The bundle's files must be readable by the account that scores") from None
    want = doc.get("files") if isinstance(doc, dict) else None
    if not (isinstance(want, dict) and want
            and all(isinstance(k, str) and isinstance(v, str) for k, v in want.items())):
        raise ModelIncompatibleError(
            f"model {uri}: {CHECKSUMS} is malformed (expected {{\"files\": {{\"<path>\": \"<sha256>\", …}}}}, "
            f"found {json.dumps(doc)[:80]}); not loaded, because loading runs pickled code. Re-export it with "
            "`clvml train`, or copy it again from its source")
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


#: bundle format -> the clvml releases that read it (None: only ever written by development builds)
FORMAT_READERS: dict[int, str | None] = {1: None, 2: "clvml~=0.1.0"}


def _series(version: str) -> str | None:
    """The pip requirement of the releases compatible with ``version`` (see :func:`_compatible`)."""
    import re

    m = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", version)
    if not m:
        return None
    major, minor = m.groups()
    return f"clvml~={major}.{minor}.0" if major == "0" else f"clvml~={major}.0"


def reader_advice(made_by: str, bundle_format: Any) -> str:
    """How to score a bundle this clvml cannot read: the clvml release that can, or retraining."""
    from clvml._version import __version__

    retrain = "retrain with `clvml train`"
    fmt_known = isinstance(bundle_format, int) and bundle_format in FORMAT_READERS
    if bundle_format == BUNDLE_FORMAT or (isinstance(bundle_format, int) and not fmt_known):
        reader = _series(made_by)  # same format, other series, or a newer format: its writer reads it
        if reader is None and bundle_format == BUNDLE_FORMAT:
            return f"the bundle does not record a valid clvml version; {retrain}"
        if reader is None and isinstance(bundle_format, int) and bundle_format > BUNDLE_FORMAT:
            return f"a clvml newer than {__version__} wrote it: upgrade (pip install -U clvml), or {retrain}"
    else:
        reader = FORMAT_READERS.get(bundle_format) if fmt_known else None
    if reader is None or reader == _series(__version__):
        return f"no released clvml reads bundle format {bundle_format} (written by clvml {made_by}); {retrain}"
    return f"{retrain}, or score with a clvml that reads it: pip install '{reader}'"


URI_FORMS = ("Give a bundle folder exported by `clvml train` (models/<name>), runs:/<run_id>/model or "
             "models:/<name>@<alias>")
#: the package a remote artifact store needs, by the module MLflow fails to import
STORE_PACKAGES = {"botocore": "boto3", "boto3": "boto3", "google": "google-cloud-storage",
                  "azure": "azure-storage-blob azure-identity", "hdfs": "pyarrow"}


def _fetch_error(uri: str, exc: Exception) -> Exception:
    """The clvml error for a model URI MLflow could not fetch: not found (listing what exists), a
    missing package for the artifact store (with the pip command), or another failure."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, ModuleNotFoundError):
        module = (exc.name or "").split(".")[0]
        scheme = uri.split("://")[0] if "://" in uri else "this store"
        pkg = STORE_PACKAGES.get(module, module)
        return ModelIncompatibleError(f"cannot load model {uri}: reading {scheme}:// needs the Python package "
                                      f"{pkg}, which is not installed: pip install {pkg}")
    if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST" or "not found" in first:
        return ModelNotFoundError(f"model {uri} not found: {first.rstrip('.')}{_registry_hint(uri)}. "
                                  f"{URI_FORMS}")
    return ModelIncompatibleError(f"cannot load model {uri}: {first}. {URI_FORMS}, and that it was exported "
                                  "by `clvml train`")


def _registry_hint(uri: str) -> str:
    """For ``models:/name@alias`` / ``models:/name/version``: what the registry does hold."""
    import re

    m = re.fullmatch(r"models:/([^/@]+)(?:@(.+)|/(.+))?", uri)
    if not m:
        return ""
    try:
        import mlflow

        client = mlflow.MlflowClient()
        try:
            model = client.get_registered_model(m.group(1))
        except Exception:
            names = sorted(r.name for r in client.search_registered_models(max_results=20))
            return (f"; registered models: {', '.join(names)}" if names else "; the registry holds no models "
                    f"(tracking URI {mlflow.get_tracking_uri()})")
        aliases = ", ".join(f"{a} (version {v})" for a, v in sorted(model.aliases.items()))
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{model.name}'"))
        listed = f"; its versions: {', '.join(map(str, versions))}" if versions else "; it has no versions"
        return (f"; model {model.name} has the aliases {aliases}{listed}" if aliases else
                f"; model {model.name} has no aliases{listed}")
    except Exception:  # the hint is a courtesy: never hide the real error behind a second one
        return ""


def load_bundle(uri: str | Path) -> ModelBundle:
    """Load a bundle from a folder, ``runs:/…`` or ``models:/name@alias`` URI.

    Raises :class:`~clvml.errors.ModelNotFoundError` when nothing is found at the URI (listing the
    aliases / versions / models the registry does hold) and
    :class:`~clvml.errors.ModelIncompatibleError` when the URI cannot be loaded, its files do not
    match the checksums recorded at export (checked before anything is unpickled: see
    :func:`verify_bundle`), or the bundle was written by an incompatible clvml version (the message
    names both versions).
    """
    from clvml._version import __version__

    local = Path(str(uri))
    if not local.is_dir():  # runs:/… or models:/…: fetch the files, check them, then unpickle
        if "://" not in str(uri) and not str(uri).startswith(("runs:/", "models:/")):
            what = "is a file, not a bundle folder" if local.exists() else "does not exist"
            err = ModelIncompatibleError if local.exists() else ModelNotFoundError
            raise err(f"model {uri} {what}. {URI_FORMS}")
        try:
            import mlflow.artifacts

            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=str(uri)))
        except Exception as exc:
            raise _fetch_error(str(uri), exc) from None
    try:
        verify_bundle(local, uri)
    except OSError as exc:
        raise ModelIncompatibleError(f"model {uri}: cannot read {exc.filename or local} ({exc.strerror or exc}); "
                                     "the bundle's files must be readable by the account that scores") from None
    warn_environment(local, uri)
    bundle = unpickle_bundle(local)
    if bundle is None:  # not the layout clvml writes, or it did not unpickle alone: MLflow's own loader
        import mlflow.pyfunc

        try:  # (MLflow's own check of the same costs ~2 s: it maps every installed module to its package)
            model = mlflow.pyfunc.load_model(str(local), suppress_warnings=True)
        except Exception as exc:
            raise ModelIncompatibleError(f"cannot load model {uri}: {str(exc).splitlines()[0]}. Check the "
                                         "URI (a bundle folder, runs:/<id>/model or models:/<name>@<alias>) "
                                         "and that it was exported by `clvml train`") from None
        bundle = getattr(model.unwrap_python_model(), "bundle", None)
    if not isinstance(bundle, ModelBundle):
        raise ModelIncompatibleError(f"model {uri} is not a clvml bundle (exported by `clvml train`)")
    made_by = getattr(bundle, "clvml_version", "") or "unknown"
    if getattr(bundle, "bundle_format", None) != BUNDLE_FORMAT or not _compatible(made_by, __version__):
        fmt = getattr(bundle, "bundle_format", None)
        raise ModelIncompatibleError(
            f"model {uri} was exported by clvml {made_by} (bundle format {fmt}); this is clvml "
            f"{__version__} (format {BUNDLE_FORMAT}): {reader_advice(made_by, fmt)}")
    return bundle


class _PythonModel:
    """Stands for ``mlflow.pyfunc.PythonModel``, the base of the pickled wrapper, in :func:`unpickle_bundle`."""


class _Ignored:
    """Stands for the wrapper's type hints (``mlflow.models.signature._TypeHints``): built, never used."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def _untracked_class(type_constructor, name, bases, type_kwargs, class_tracker_id, extra):  # noqa: ANN001, ANN202, ARG001
    """cloudpickle's ``_make_skeleton_class`` without its class tracker. cloudpickle reuses a class it
    rebuilt for every later pickle of the same class id, so the wrapper class rebuilt on a stand-in base
    would be the one MLflow's loader got afterwards in this process (without ``load_context``)."""
    from cloudpickle import cloudpickle

    return cloudpickle._make_skeleton_class(type_constructor, name, bases, type_kwargs, None, extra)


#: what :func:`unpickle_bundle` gives for these (module, name) references of a bundle's pickle
_STAND_INS = {("cloudpickle.cloudpickle", "_make_skeleton_class"): _untracked_class,
              ("mlflow.pyfunc.model", "PythonModel"): _PythonModel,
              ("mlflow.models.signature", "_TypeHints"): _Ignored}


def unpickle_bundle(folder: Path) -> ModelBundle | None:
    """The :class:`ModelBundle` of a bundle folder written by :func:`save_bundle`, unpickled without importing
    MLflow; None when the folder is not in that layout or its pickle does not unpickle that way (the caller
    then uses MLflow's loader).

    ``mlflow.pyfunc.load_model`` imports MLflow (~1.2 s: every scoring run paid it before reading a row) to
    run the flavour's loader, which for this wrapper (no code paths, a ``load_context`` that does nothing)
    unpickles ``python_model.pkl`` and nothing else. Here the pickle's two references to MLflow (the
    wrapper's base class and its type hints) resolve to stand-ins, and only the wrapper's ``bundle`` is
    kept; a pickle referring to anything else of MLflow's is left to MLflow (None), so nothing a bundle
    uses can be replaced by a stand-in. The classes the pickle defines are rebuilt untracked by cloudpickle
    (:func:`_untracked_class`), so MLflow's loader still gets the real ones later in the same process. Call
    it after :func:`verify_bundle`: unpickling runs the pickle's code."""
    import pickle

    import yaml

    try:
        meta = yaml.safe_load((folder / "MLmodel").read_text())
        flavor = meta["flavors"]["python_function"]
        if flavor.get("loader_module") != "mlflow.pyfunc.model" or flavor.get("code") \
                or not isinstance(flavor.get("python_model"), str):
            return None
        path = (folder / flavor["python_model"]).resolve()
        if folder.resolve() not in path.parents:
            return None

        class Unpickler(pickle.Unpickler):
            def find_class(self, module: str, name: str) -> Any:
                if (module, name) in _STAND_INS:
                    return _STAND_INS[module, name]
                if module == "mlflow" or module.startswith("mlflow."):
                    raise pickle.UnpicklingError(f"{module}.{name}: left to MLflow's loader")
                return super().find_class(module, name)

        with open(path, "rb") as f:
            wrapper = Unpickler(f).load()
    except Exception:  # noqa: BLE001 - any surprise: MLflow's loader decides, with its own message
        return None
    bundle = getattr(wrapper, "bundle", None)
    return bundle if isinstance(bundle, ModelBundle) else None


def environment_mismatches(folder: Path) -> list[str]:
    """The bundle's pinned requirements (``requirements.txt``) and Python version (``MLmodel``) that this
    environment does not match, e.g. ``lightgbm==4.7.0 (installed: 4.6.0)``."""
    import platform
    import re
    from importlib.metadata import PackageNotFoundError, version

    out = []
    req = folder / "requirements.txt"
    for line in req.read_text().splitlines() if req.is_file() else []:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)\s*", line)
        if not m:
            continue
        try:
            have = version(m.group(1))
        except PackageNotFoundError:
            have = "not installed"
        if have != m.group(2):
            out.append(f"{m.group(1)}=={m.group(2)} (installed: {have})")
    meta = folder / "MLmodel"
    m = re.search(r"^\s*python_version:\s*(\S+)", meta.read_text(), re.M) if meta.is_file() else None
    if m and m.group(1).split(".")[:2] != platform.python_version().split(".")[:2]:
        out.append(f"Python {m.group(1)} (running: {platform.python_version()})")
    return out


def warn_environment(folder: Path, uri: str | Path) -> None:
    """Warn when the environment differs from the one the bundle was exported in (scores may then
    differ from training's: e.g. another LightGBM)."""
    import warnings

    found = environment_mismatches(folder)
    if found:
        warnings.warn(f"model {uri} was exported with {'; '.join(found)}. Scores may differ from those of the "
                      f"training environment: install its versions (pip install -r {folder / 'requirements.txt'})",
                      UserWarning, stacklevel=3)


def _digest(obj: Any, h: Any, seen: set[int]) -> None:
    """Feed a canonical, address-free description of ``obj`` into the hash ``h`` (fitted estimators,
    numpy arrays, frames, pydantic models, dataclasses and plain containers)."""
    import lightgbm as lgb
    from pydantic import BaseModel

    def tag(t: str) -> None:
        h.update(f"<{t}>".encode())

    if obj is None or isinstance(obj, bool | int | float | str | bytes):
        tag(type(obj).__name__)
        h.update(repr(obj).encode())
        return
    if isinstance(obj, dt.date):
        tag("date")
        h.update(obj.isoformat().encode())
        return
    if isinstance(obj, np.generic):
        _digest(obj.item(), h, seen)
        return
    if isinstance(obj, np.ndarray):
        tag(f"array{obj.dtype.str}{obj.shape}")
        if obj.dtype == object:
            for v in obj.ravel():
                _digest(v, h, seen)
        else:
            h.update(np.ascontiguousarray(obj).tobytes())
        return
    if isinstance(obj, pd.DataFrame | pd.Series):
        tag(type(obj).__name__)
        h.update(obj.to_json(orient="split", date_format="iso", double_precision=17).encode())
        return
    if isinstance(obj, lgb.Booster):
        tag("booster")
        h.update(obj.model_to_string().encode())
        return
    if isinstance(obj, lgb.LGBMModel):
        tag("lgbm")
        h.update(obj.booster_.model_to_string().encode())
        return
    if isinstance(obj, BaseModel):
        tag(type(obj).__qualname__)
        _digest(obj.model_dump(mode="json"), h, seen)
        return
    if isinstance(obj, dict):
        tag("dict")
        for k in sorted(obj, key=repr):
            _digest(k, h, seen)
            _digest(obj[k], h, seen)
        return
    if isinstance(obj, list | tuple | set | frozenset):
        tag(type(obj).__name__)
        for v in (sorted(obj, key=repr) if isinstance(obj, set | frozenset) else obj):
            _digest(v, h, seen)
        return
    if callable(obj) and not hasattr(obj, "__dict__") or isinstance(obj, type):
        tag(getattr(obj, "__qualname__", type(obj).__qualname__))
        return
    if id(obj) in seen:
        tag("seen")
        return
    seen.add(id(obj))
    tag(f"{type(obj).__module__}.{type(obj).__qualname__}")
    state = getattr(obj, "__dict__", None)
    if state is None:
        h.update(repr(type(obj)).encode())
        return
    _digest({k: v for k, v in state.items() if not callable(v) or hasattr(v, "__dict__")}, h, seen)
