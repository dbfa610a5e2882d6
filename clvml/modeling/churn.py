"""Churn model: LightGBM binary classifier with probability calibration on held-out cut-offs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted

from clvml.modeling.lgbm import (
    Extra,
    fit_constant,
    fit_with_early_stopping,
    fitted_matrix,
    learn_categories,
    lgbm_params,
    model_frame,
    model_target,
    predict_matrix,
    prepare_X,
)

if TYPE_CHECKING:
    from clvml.modeling.raw_scores import RawScores


class ChurnModel(ClassifierMixin, BaseEstimator):
    """P(churn in the horizon) from point-in-time features.

    A scikit-learn binary classifier: ``X`` is a DataFrame (category/object/string columns are
    categorical features, numeric columns numbers; columns must match training by name and order) or a
    numeric array (matched by position). ``y`` holds two labels (``classes_``, sorted); the positive
    class is ``classes_[1]`` (1 or True for churn flags) and ``predict_proba(X)[:, 1]`` is its
    probability. Trained on one class only, the model predicts that class with probability 1: for
    churn flags (0/1 or False/True) ``classes_`` stays both flags, so ``predict_proba(X)[:, 1]`` is
    exactly 1.0 when everyone churned and 0.0 when nobody did; for other labels ``classes_`` is the one
    label seen and ``predict_proba`` has one column of ones.

    Parameters
    ----------
    calibration
        ``isotonic``, ``platt`` or ``none``. The calibrator is fitted on the validation cut-offs
        (``eval_set`` in :meth:`fit`), scored by the model trained without them.
    n_estimators, learning_rate, num_leaves, min_child_samples, subsample, colsample_bytree, reg_lambda
        LightGBM settings; ``n_estimators`` is an upper bound when an ``eval_set`` enables early stopping.
    params
        Any further LightGBM parameters.

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_ (fitted on a DataFrame with string column names)
        As in scikit-learn.
    booster_
        The fitted LightGBM (for one-class data a one-tree constant, see ``constant_``).
    constant_
        P(``classes_[-1]``) when the training data held one class (1.0 or 0.0), else None.
    categories_, calibrator_, n_rounds_
        Categories of the categorical features, the calibrator (or None), boosting rounds.
    """

    def __init__(self, *, calibration: str = "isotonic", n_estimators: int = 2000,
                 learning_rate: float = 0.05, num_leaves: int = 31, min_child_samples: int = 50,
                 subsample: float = 0.8, colsample_bytree: float = 0.8, reg_lambda: float = 1.0,
                 early_stopping_rounds: int = 50, random_state: int = 0, n_jobs: int | None = None,
                 params: dict[str, Any] | None = None):
        self.calibration = calibration
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.params = params

    def fit(self, X: pd.DataFrame, y, *, eval_set: tuple[pd.DataFrame, Any] | None = None,
            refit_extra: tuple[pd.DataFrame, Any] | None = None):
        """Fit; ``eval_set=(X_val, y_val)`` are later cut-offs used for early stopping and calibration.
        ``refit_extra=(X_more, y_more)``: rows added to the final refit only, with the rounds early
        stopping chose (e.g. embargoed cut-offs; needs ``eval_set``; calibration never sees them)."""
        if self.calibration not in ("isotonic", "platt", "none"):
            raise ValueError(f"calibration must be isotonic, platt or none, not {self.calibration!r}")
        X = model_frame(self, X, reset=True)
        y = model_target(self, X, y, numeric=False)
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y")
        if y_type != "binary":
            raise ValueError(f"Only binary classification is supported. The type of the target is {y_type}.")
        self.classes_ = _classes(y)
        self.categories_ = learn_categories(X)
        cols = list(X.columns)
        Xp = prepare_X(X, cols, self.categories_)
        y = self._positive(y)
        Xv = yv = None
        if eval_set is not None:
            Xe = model_frame(self, eval_set[0], reset=False)
            Xv, yv = prepare_X(Xe, cols, self.categories_), self._positive(model_target(self, Xe, eval_set[1],
                                                                                        numeric=False))
        params = lgbm_params(self, "binary")
        self.calibrator_ = None
        if len(np.unique(y)) == 1:  # one class: a constant predictor
            if yv is not None and len(np.unique(yv)) > 1:
                raise ValueError(f"y holds one class only ({self.classes_[-1 if y[0] else 0]!r}) but the "
                                 "eval_set has both: early stopping and calibration need both in training")
            self.constant_ = float(y[0])
            self.booster_, self.n_rounds_ = fit_constant(params, Xp, int(y[0])), 0
            return self
        self.constant_ = None
        extra = None
        if refit_extra is not None and eval_set is not None and len(refit_extra[0]):
            Xx = model_frame(self, refit_extra[0], reset=False)
            extra = Extra(prepare_X(Xx, cols, self.categories_),
                          self._positive(model_target(self, Xx, refit_extra[1], numeric=False)))
        self.booster_, first, self.n_rounds_ = fit_with_early_stopping(
            lgb.LGBMClassifier, params, Xp, y, Xv, yv, self.early_stopping_rounds, extra=extra)
        if self.calibration != "none" and first is not None:
            raw = first.predict_proba(Xv)[:, 1]
            if self.calibration == "isotonic":
                self.calibrator_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
                self.calibrator_.fit(raw, yv)
            else:
                self.calibrator_ = LogisticRegression(C=1e6).fit(_logit(raw)[:, None], yv)
        return self

    def _positive(self, y: np.ndarray) -> np.ndarray:
        """1 where ``y`` is the positive class ``classes_[-1]``, else 0 (labels unseen in fit: an error)."""
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if len(unknown):
            raise ValueError(f"y has labels not in the training labels {list(self.classes_)}: "
                             f"{list(unknown[:5])}")
        return (y == self.classes_[-1]).astype(int)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # LightGBM routes missing values
        tags.classifier_tags.multi_class = False
        return tags

    def _features(self, X: pd.DataFrame) -> pd.DataFrame:
        """``X`` validated and converted for the booster (columns, categories, float64)."""
        check_is_fitted(self, "booster_")
        X = model_frame(self, X, reset=False)
        return prepare_X(X, list(X.columns), self.categories_)

    def matrix(self, X: pd.DataFrame) -> np.ndarray:
        """``X`` as the boosters' model matrix (:func:`~clvml.modeling.lgbm.fitted_matrix`)."""
        return fitted_matrix(self, X, "booster_")

    def predict_raw(self, X: pd.DataFrame) -> np.ndarray:
        """Uncalibrated LightGBM log-odds (the space SHAP values add up in)."""
        return predict_matrix(self.booster_, self.matrix(X), raw_score=True)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities, columns in ``classes_`` order (``[:, 1]``: P(churn))."""
        return self.predict_proba_matrix(self.matrix(X))

    def predict_proba_matrix(self, F: np.ndarray, raw: RawScores | None = None) -> np.ndarray:
        """:meth:`predict_proba` of the rows of ``F = self.matrix(X)`` (``raw``: the booster's raw scores
        of ``F`` when known, see :func:`~clvml.modeling.lgbm.predict_matrix`)."""
        check_is_fitted(self, "booster_")
        n = F.shape[1]
        constant = getattr(self, "constant_", None)
        if constant is not None:
            if len(self.classes_) == 1:
                return np.ones((n, 1))
            p = np.full(n, constant)
            return np.column_stack([1 - p, p])
        p = predict_matrix(self.booster_, F, raw)
        if self.calibrator_ is not None:
            if isinstance(self.calibrator_, IsotonicRegression):
                p = self.calibrator_.predict(p)
            else:
                p = self.calibrator_.predict_proba(_logit(p)[:, None])[:, 1]
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The more probable class (the negative one at a tie)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


def _classes(y: np.ndarray) -> np.ndarray:
    """Sorted labels; churn flags (0/1, False/True) are always both, also when only one was seen."""
    seen = np.unique(y)
    if len(seen) == 1 and y.dtype.kind in "biuf" and seen[0] in (0, 1):
        return np.array([0, 1], dtype=y.dtype)
    return seen


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
