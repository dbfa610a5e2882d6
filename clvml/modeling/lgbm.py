"""Shared LightGBM plumbing: input validation (scikit-learn's estimator contract), categorical handling,
early stopping on time-ordered validation data and the refit on all data with the chosen number of rounds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.utils import check_consistent_length, column_or_1d
from sklearn.utils.validation import assert_all_finite, check_is_fitted, validate_data

from clvml.console import active, count
from clvml.errors import ModelIncompatibleError

LGBM_KEYS = ("n_estimators", "learning_rate", "num_leaves", "min_child_samples", "subsample",
             "colsample_bytree", "reg_lambda")


class FeatureMismatchError(ModelIncompatibleError, ValueError):
    """The columns differ from those the model was trained on (a ``ValueError`` too, as scikit-learn's
    estimator contract asks)."""


def missing_columns_message(missing: list[str]) -> str:
    return (f"{len(missing)} feature column(s) the model was trained on are missing: "
            f"{', '.join(map(str, missing[:5]))}{'…' if len(missing) > 5 else ''}. Build features with the "
            "same feature configuration (families, windows, tables) as in training.")


def model_columns(est: Any) -> list:
    """The column names the model's LightGBMs see: ``feature_names_in_`` when fitted on a DataFrame with
    string column names, else ``x0, x1, …`` (inputs are then matched by position)."""
    names = getattr(est, "feature_names_in_", None)
    return list(names) if names is not None else [f"x{i}" for i in range(est.n_features_in_)]


def model_frame(est: Any, X: Any, *, reset: bool) -> pd.DataFrame:
    """``X`` validated as scikit-learn's ``validate_data`` does (``reset=True`` in fit sets ``n_features_in_``
    and, for a DataFrame with string column names, ``feature_names_in_``; later calls check them), as the
    DataFrame :func:`prepare_X` takes.

    DataFrames keep their dtypes: category/object/string columns are categorical features
    (:func:`learn_categories`) and are converted once, by :func:`prepare_X`. Anything else (numpy arrays,
    lists) goes through ``check_array``: numeric, 2-D, dense, NaN allowed (LightGBM routes missing values),
    infinity not; it is matched to the model's columns by position.
    """
    name = type(est).__name__
    if isinstance(X, pd.DataFrame):
        try:
            validate_data(est, X, skip_check_array=True, reset=reset)
        except ValueError as e:
            if reset:
                raise
            hint = ""
            if hasattr(est, "feature_names_in_"):
                missing = [c for c in est.feature_names_in_ if c not in X.columns]
                hint = "\n" + (missing_columns_message(missing) if missing else
                                "Pass the training columns in training order: X[model.feature_names_in_].")
            raise FeatureMismatchError(f"{str(e).rstrip()}{hint}") from None
        if X.shape[1] < 1:
            raise ValueError(f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is "
                             f"required by {name}.")
        if reset and len(X) < 1:
            raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is "
                             f"required by {name}.")
        columns = model_columns(est)
        return X if list(X.columns) == columns else X.set_axis(columns, axis=1)
    if not reset and getattr(est, "categories_", None):
        raise ValueError(f"{name} has categorical features ({', '.join(map(str, est.categories_))}): pass "
                         "a pandas DataFrame with them")
    A = validate_data(est, X, reset=reset, dtype=np.float64, ensure_all_finite="allow-nan",
                      ensure_min_samples=1 if reset else 0)
    return pd.DataFrame(A, columns=model_columns(est))


def model_target(est: Any, X: pd.DataFrame, y: Any, *, numeric: bool) -> np.ndarray:
    """``y`` validated as ``check_X_y`` does: given, 1-D (a column vector with a warning), one value per
    row of ``X``, finite; float when ``numeric``."""
    if y is None:
        raise ValueError(f"{type(est).__name__} requires y to be passed, but the target y is None.")
    y = column_or_1d(y, warn=True)
    check_consistent_length(X, y)
    if np.iscomplexobj(y):
        raise ValueError("Complex data not supported")
    if numeric:
        y = y.astype(np.float64)
    assert_all_finite(y, input_name="y")
    return y


def fit_constant(params: dict[str, Any], X: pd.DataFrame, label: int) -> Any:
    """A binary LightGBM for one-class data: one constant tree whose raw score is LightGBM's clamped
    log-odds (±34.5), so a model trained on one class still has a booster with raw scores, SHAP values
    and a fingerprint; the estimators predict the exact constant probability themselves."""
    params = {**params, "objective": "binary", "n_estimators": 1, "subsample": 1.0, "subsample_freq": 0}
    if params.get("n_jobs") is None:
        params["n_jobs"] = default_threads(len(X))
    return lgb.LGBMRegressor(**params).fit(X, np.full(len(X), label))


def learn_categories(X: pd.DataFrame) -> dict[str, list[str]]:
    """Categories of every non-numeric column, sorted (so codes are stable across runs)."""
    cats = {}
    for c in X.columns:
        if not pd.api.types.is_numeric_dtype(X[c]) or isinstance(X[c].dtype, pd.CategoricalDtype):
            values = X[c].dropna().astype(str).unique().tolist()
            cats[c] = sorted(values)
    return cats


def is_prepared(X: pd.DataFrame, columns: list[str], categories: dict[str, list[str]]) -> bool:
    """Whether ``X`` already is what :func:`prepare_X` would return (then it is used as it is)."""
    if list(X.columns) != columns:
        return False
    for c, dtype in X.dtypes.items():
        if c in categories:
            if not isinstance(dtype, pd.CategoricalDtype) or list(dtype.categories) != categories[c]:
                return False
        elif dtype != np.float64:
            return False
    return True


def prepare_X(X: pd.DataFrame, columns: list[str], categories: dict[str, list[str]]) -> pd.DataFrame:
    """Columns in training order; categoricals with the training categories (unseen -> missing)."""
    if is_prepared(X, columns, categories):
        return X
    _check_columns(X, columns)
    if list(X.columns) == columns:  # only the columns that need it are converted; the others are shared
        out = X.copy(deep=False)   # (not copied: copy-on-write keeps X as it is)
        for c in columns:
            if c in categories or X[c].dtype != np.float64:
                out[c] = prepare_column(X[c], c, categories)
        return out
    return pd.DataFrame({c: prepare_column(X[c], c, categories) for c in columns}, index=X.index)


def _check_columns(X: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise ModelIncompatibleError(missing_columns_message(missing))


def prepare_column(col: pd.Series, name: str, categories: dict[str, list[str]]) -> pd.Series | pd.Categorical:
    """One column of :func:`prepare_X`: categorical with the training categories, or float64."""
    if name in categories:
        return pd.Categorical(col.astype("string").astype(object).where(col.notna(), None),
                              categories=categories[name])
    try:
        return pd.to_numeric(col).astype("float64")
    except (TypeError, ValueError):
        raise ModelIncompatibleError(f"feature {name!r} is numeric in the model but not in the data") from None


def model_matrix(X: pd.DataFrame, columns: list[str], categories: dict[str, list[str]]) -> np.ndarray:
    """The values LightGBM reads from ``prepare_X(X, columns, categories)``, built without that frame:
    a C-ordered float64 array of shape (features, rows), one contiguous row per feature; categoricals
    as their codes among the training categories, missing values as NaN.

    Its transpose (rows, features; Fortran-ordered) is what :func:`predict_matrix` hands to LightGBM
    without a copy; LightGBM's own conversion of a DataFrame yields the same values, so predictions are
    identical to the bit.
    """
    _check_columns(X, columns)
    out = np.empty((len(columns), len(X)))
    for j, c in enumerate(columns):
        col = X[c]
        if c not in categories and isinstance(col.dtype, np.dtype) and col.dtype.kind in "fiub":
            out[j] = col.to_numpy()  # NumPy float/int/bool: converted to float64 on assignment
            continue
        ready = c in categories and isinstance(col.dtype, pd.CategoricalDtype) \
            and list(col.dtype.categories) == categories[c]  # prepared already (prepare_column keeps it)
        prepared = col.array if ready else prepare_column(col, c, categories)
        if isinstance(prepared, pd.Categorical):
            codes = prepared.codes
            out[j] = np.where(codes < 0, np.nan, codes)
        else:
            out[j] = prepared.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def fitted_matrix(est: Any, X: pd.DataFrame, fitted: str) -> np.ndarray:
    """``X`` validated for the fitted estimator ``est`` (``fitted``: an attribute set by its ``fit``) and
    converted for its boosters as one C-ordered float64 array of shape (features, rows)
    (:func:`model_matrix`), for the ``*_matrix`` methods and :func:`clvml.explain.drivers.contributions`:
    build it once to predict and explain the same rows."""
    check_is_fitted(est, fitted)
    X = model_frame(est, X, reset=False)
    return model_matrix(X, list(X.columns), est.categories_)


def predict_matrix(est: lgb.LGBMModel, F: np.ndarray, raw: Mapping[Any, Any] | None = None,
                   **kwargs: Any) -> np.ndarray:
    """``est.predict`` on the rows of a :func:`model_matrix` ``F`` (features, rows): the booster reads
    ``F.T`` in place (column-major), where the scikit-learn interface would first copy a DataFrame to
    a new array for each call. Same trees, same values, same predictions.

    ``raw``: :data:`~clvml.modeling.raw_scores.RawScores` of ``F`` already computed (by tree SHAP). When
    it holds ``est``'s, the prediction is LightGBM's output transform of them
    (:func:`~clvml.modeling.raw_scores.from_raw_score`), used only if it equals LightGBM's own prediction
    to the bit on :data:`CHECKED_ROWS` rows spread over ``F``; otherwise LightGBM predicts every row."""
    if raw is not None and set(kwargs) <= {"raw_score"}:
        known = raw.get(est)
        if known is not None and known.values.shape == (F.shape[1],):
            out = _from_raw(known, bool(kwargs.get("raw_score")))
            if out is not None and _agrees(est, F, out, kwargs):
                return out
    threads = est._process_n_jobs(est.n_jobs)  # the threads est.predict would use
    return est.booster_.predict(F.T, num_threads=threads, **kwargs)


#: rows of a matrix on which a prediction from known raw scores is checked against LightGBM's
CHECKED_ROWS = 256


def _from_raw(known: Any, raw_score: bool) -> np.ndarray | None:
    from clvml.modeling.raw_scores import from_raw_score

    return known.values.copy() if raw_score else from_raw_score(known.values, known.objective)


def _agrees(est: lgb.LGBMModel, F: np.ndarray, out: np.ndarray, kwargs: dict[str, Any]) -> bool:
    rows = np.unique(np.linspace(0, F.shape[1] - 1, min(F.shape[1], CHECKED_ROWS)).astype(np.int64))
    ref = est.booster_.predict(np.ascontiguousarray(F[:, rows].T), num_threads=1, **kwargs)
    if np.array_equal(ref, out[rows]):
        return True
    import warnings

    warnings.warn("predictions from the raw scores found by tree SHAP differ from LightGBM's in the last "
                  "bits; LightGBM predicts instead (slower, same values as before)", RuntimeWarning, stacklevel=3)
    return False


#: below this many training rows LightGBM runs on one thread: threads cost more than they save there,
#: and OpenMP threads busy-wait, so any other process on the machine slows a multi-threaded fit down
SMALL_FIT_ROWS = 50_000


def default_threads(rows: int) -> int:
    """LightGBM threads when an estimator's ``n_jobs`` is None: ``CLVML_THREADS`` if set, else one for
    small fits and every core otherwise. Set ``CLVML_THREADS`` when several processes train at once
    (parallel test workers, jobs side by side): competing OpenMP threads can make a fit ten times
    slower."""
    import os

    env = os.environ.get("CLVML_THREADS")
    if env:
        return int(env)
    return 1 if rows < SMALL_FIT_ROWS else (os.cpu_count() or 1)


def lgbm_params(est: Any, objective: str, **extra: Any) -> dict[str, Any]:
    params = dict(
        objective=objective, n_estimators=est.n_estimators, learning_rate=est.learning_rate,
        num_leaves=est.num_leaves, min_child_samples=est.min_child_samples,
        subsample=est.subsample, subsample_freq=1 if est.subsample < 1 else 0,
        colsample_bytree=est.colsample_bytree, reg_lambda=est.reg_lambda,
        random_state=est.random_state, n_jobs=est.n_jobs, deterministic=True, force_row_wise=True,
        verbose=-1,
    )
    params.update(est.params or {})
    params.update(extra)
    return params


def rounds_callback(total: int) -> list[Callable[[Any], None]]:
    """A LightGBM callback reporting boosting rounds (every tenth of ``total``) to the progress callback
    of the enclosing :func:`clvml.console.reporting` block, when it counts; else none."""
    progress = active()
    if progress is None or not getattr(progress, "counts", False):
        return []
    every = max(1, total // 10)

    def report(env: Any) -> None:
        done = env.iteration + 1
        if done % every == 0 or done == env.end_iteration:
            count(progress, f"boosting round {done}/{env.end_iteration}", done=done,
                  total=env.end_iteration, step="training rounds")

    return [report]


class Extra(NamedTuple):
    """Rows added to the final refit only (neither early stopping nor calibration see them): e.g. the
    embargoed cut-offs between the training and the validation cut-offs."""

    X: pd.DataFrame
    y: np.ndarray
    weight: np.ndarray | None = None
    init_score: np.ndarray | None = None

    def subset(self, mask: np.ndarray) -> Extra:
        return Extra(self.X[mask], np.asarray(self.y)[mask], None if self.weight is None else self.weight[mask],
                     None if self.init_score is None else self.init_score[mask])


def fit_with_early_stopping(
    make: Any, params: dict[str, Any], X: pd.DataFrame, y: np.ndarray,
    X_val: pd.DataFrame | None, y_val: np.ndarray | None, early_stopping_rounds: int,
    sample_weight: np.ndarray | None = None, sample_weight_val: np.ndarray | None = None,
    init_score: np.ndarray | None = None, init_score_val: np.ndarray | None = None,
    extra: Extra | None = None,
) -> tuple[Any, Any | None, int]:
    """Fit on (X, y) with early stopping on the validation set, then refit on train + validation (+
    ``extra``) with the chosen number of rounds. ``init_score``: raw scores to boost from (an offset).

    Returns (final model, model fitted on X only or None, number of rounds).
    """
    if params.get("n_jobs") is None:
        params = {**params, "n_jobs": default_threads(len(X) + (0 if X_val is None else len(X_val)))}
    if int(len(X) * params.get("subsample", 1.0)) < 1:  # a bag would hold no row (a one-row fit)
        params = {**params, "subsample": 1.0, "subsample_freq": 0}
    parts = [Extra(X, y, sample_weight, init_score)]
    if X_val is not None and len(X_val):
        parts.append(Extra(X_val, y_val, sample_weight_val, init_score_val))
        if extra is not None and len(extra.X):
            parts.append(extra)
    # every row once, in one array: the early-stopped fit reads the first rows and the refit all of them
    M, names = stacked_matrix([p.X for p in parts])
    if len(parts) == 1:
        model = make(**params)
        _fit(model, M, names, X.dtypes, y, sample_weight=sample_weight, init_score=init_score,
             callbacks=rounds_callback(params["n_estimators"]))
        return model, None, params["n_estimators"]
    first = make(**params)
    shown = rounds_callback(params["n_estimators"])
    n, n_val = len(X), len(X_val)
    _fit(first, M[:n], names, X.dtypes, y, sample_weight=sample_weight, init_score=init_score,
         eval_X=(M[n:n + n_val],), eval_y=(y_val,),
         eval_sample_weight=None if sample_weight_val is None else [sample_weight_val],
         eval_init_score=None if init_score_val is None else [init_score_val],
         callbacks=[lgb.early_stopping(early_stopping_rounds, verbose=False), *shown])
    rounds = max(1, int(first.best_iteration_ or params["n_estimators"]))
    if shown and first.booster_.current_iteration() < params["n_estimators"]:  # stopped early: so does the bar
        count(active(), f"boosting stopped early: {rounds} round(s) kept", done=params["n_estimators"],
              total=params["n_estimators"], step="training rounds")
    final = make(**{**params, "n_estimators": rounds})
    y_all = np.concatenate([np.asarray(p.y) for p in parts])
    w_all = None
    if sample_weight is not None:
        w_all = np.concatenate([np.ones(len(p.X)) if p.weight is None else np.asarray(p.weight) for p in parts])
    s_all = None if init_score is None else np.concatenate([p.init_score for p in parts])
    _fit(final, M, names, X.dtypes, y_all, sample_weight=w_all, init_score=s_all, callbacks=rounds_callback(rounds))
    return final, first, rounds


def stacked_matrix(frames: list[pd.DataFrame]) -> tuple[np.ndarray, list[str]]:
    """The rows of ``frames`` (prepared: :func:`prepare_X`, same columns) stacked as one C-ordered float64
    array of shape (rows, features), and the column names.

    The values are those LightGBM's scikit-learn interface makes of each DataFrame (float64;
    categoricals as their codes, missing as NaN): it copies every frame it is given to a new array, and
    the refit on training + validation rows concatenated them first (two more copies). A C-ordered
    array's leading rows are C-ordered too, so LightGBM reads the training rows and the validation rows
    of this one array in place. Filled a block of rows at a time (no frame-sized temporary).
    """
    names = [str(c) for c in frames[0].columns]
    categories = {c: list(d.categories) for c, d in frames[0].dtypes.items() if isinstance(d, pd.CategoricalDtype)}
    cols = list(frames[0].columns)
    out = np.empty((sum(len(f) for f in frames), len(cols)))
    start, block = 0, 16_384
    for f in frames:
        for i in range(0, len(f), block):
            rows = f.iloc[i:i + block]
            out[start:start + len(rows)] = model_matrix(rows, cols, categories).T
            start += len(rows)
    return out, names


def _fit(est: lgb.LGBMModel, M: np.ndarray, names: list[str], dtypes: pd.Series, y: np.ndarray,
         **kwargs: Any) -> None:
    """``est.fit`` on the rows of a :func:`stacked_matrix` ``M`` as on the DataFrame they came from (its
    ``dtypes``): the same feature names, categorical features and categories, hence the same trees and
    the same ``model_to_string()``."""
    cats = [c for c, d in dtypes.items() if isinstance(d, pd.CategoricalDtype)]
    unordered = [str(c) for c in cats if not dtypes[c].ordered]
    est.fit(M, y, feature_name=names, categorical_feature=unordered, **kwargs)
    # what LightGBM records from a DataFrame: the categories of its categorical columns (the names are
    # ``feature_name``, so ``feature_names_in_`` is set as from a DataFrame)
    est.booster_.pandas_categorical = [list(dtypes[c].categories) for c in cats]
