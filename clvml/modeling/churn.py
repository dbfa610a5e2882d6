"""Churn model: LightGBM binary classifier with probability calibration on held-out cut-offs."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from clvml.modeling.lgbm import fit_with_early_stopping, learn_categories, lgbm_params, prepare_X


class ChurnModel(ClassifierMixin, BaseEstimator):
    """P(churn in the horizon) from point-in-time features.

    Parameters
    ----------
    calibration
        ``isotonic``, ``platt`` or ``none``. The calibrator is fitted on the validation cut-offs
        (``eval_set`` in :meth:`fit`), scored by the model trained without them.
    n_estimators, learning_rate, num_leaves, min_child_samples, subsample, colsample_bytree, reg_lambda
        LightGBM settings; ``n_estimators`` is an upper bound when an ``eval_set`` enables early stopping.
    params
        Any further LightGBM parameters.
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

    def fit(self, X: pd.DataFrame, y, *, eval_set: tuple[pd.DataFrame, Any] | None = None):
        """Fit; ``eval_set=(X_val, y_val)`` are later cut-offs used for early stopping and calibration."""
        if self.calibration not in ("isotonic", "platt", "none"):
            raise ValueError(f"calibration must be isotonic, platt or none, not {self.calibration!r}")
        self.feature_names_in_ = np.array(list(X.columns), dtype=object)
        self.categories_ = learn_categories(X)
        cols = list(X.columns)
        Xp = prepare_X(X, cols, self.categories_)
        y = np.asarray(y).astype(int)
        Xv = yv = None
        if eval_set is not None:
            Xv, yv = prepare_X(eval_set[0], cols, self.categories_), np.asarray(eval_set[1]).astype(int)
        params = lgbm_params(self, "binary")
        self.booster_, first, self.n_rounds_ = fit_with_early_stopping(
            lgb.LGBMClassifier, params, Xp, y, Xv, yv, self.early_stopping_rounds)
        self.classes_ = np.array([0, 1])
        self.calibrator_ = None
        if self.calibration != "none" and first is not None:
            raw = first.predict_proba(Xv)[:, 1]
            if self.calibration == "isotonic":
                self.calibrator_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
                self.calibrator_.fit(raw, yv)
            else:
                self.calibrator_ = LogisticRegression(C=1e6).fit(_logit(raw)[:, None], yv)
        return self

    def _features(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "booster_")
        return prepare_X(X, list(self.feature_names_in_), self.categories_)

    def predict_raw(self, X: pd.DataFrame) -> np.ndarray:
        """Uncalibrated LightGBM log-odds (the space SHAP values add up in)."""
        Xp = self._features(X)
        return self.booster_.predict(Xp, raw_score=True)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        Xp = self._features(X)
        p = self.booster_.predict_proba(Xp)[:, 1]
        if self.calibrator_ is not None:
            if isinstance(self.calibrator_, IsotonicRegression):
                p = self.calibrator_.predict(p)
            else:
                p = self.calibrator_.predict_proba(_logit(p)[:, None])[:, 1]
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))
