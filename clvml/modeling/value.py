"""Value model: expected spend (or margin) and expected number of purchases in the horizon."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils import check_consistent_length, column_or_1d
from sklearn.utils.validation import assert_all_finite, check_is_fitted

from clvml.modeling.lgbm import (
    Extra,
    fit_constant,
    fit_with_early_stopping,
    fitted_matrix,
    learn_categories,
    lgbm_params,
    model_columns,
    model_frame,
    model_target,
    predict_matrix,
    prepare_X,
)

if TYPE_CHECKING:
    from clvml.modeling.raw_scores import RawScores

FORMS = ("hurdle", "tweedie", "frequency", "offset")
#: baseline floor of the offset form (a baseline of 0 would pin the prediction to 0 for ever)
OFFSET_FLOOR = 0.01


class ValueModel(RegressorMixin, BaseEstimator):
    """Expected spend in the horizon, never negative.

    Parameters
    ----------
    form
        ``hurdle``: P(any purchase) × E[spend | purchase] (a binary LightGBM times a gamma-objective
        LightGBM fitted on buyers only); ``tweedie``: one LightGBM with a Tweedie objective;
        ``frequency``: E[number of purchases] × E[order value] (a Poisson LightGBM times a gamma
        LightGBM of the mean order value, fitted on buyers weighted by their number of orders) — the
        BG/NBD × Gamma-Gamma decomposition, right when order values do not depend on how often a
        customer buys; needs ``purchases`` at fit; ``offset``: a Poisson (log-link) LightGBM boosted
        from a baseline expectation that is one of the features (``offset_column``, e.g. the BG/NBD +
        Gamma-Gamma ``btyd_expected_spend``), so it learns a multiplicative correction of that
        baseline; where the trees cannot extrapolate (customers older or busier than any training
        row) the baseline's own dynamics carry the prediction. Its rounds are chosen by squared error
        on the validation set: the Poisson likelihood of currency amounts is dominated by the few
        largest spenders.
    offset_column
        Feature holding the baseline expectation for ``form="offset"`` (values <= 0 count as 0.01).
    tweedie_variance_power
        Tweedie power (1 < p < 2) for ``form="tweedie"``.

    Notes
    -----
    A Poisson LightGBM for the expected number of purchases is fitted when ``purchases`` is passed to
    :meth:`fit` (:meth:`predict_purchases`).

    A scikit-learn regressor: ``X`` is a DataFrame (category/object/string columns are categorical
    features; columns must match training by name and order) or a numeric array (matched by position).
    Targets must be >= 0 with at least one positive (all zeros leave no spend to learn: a ValueError).
    When every training row has a purchase, the hurdle's P(purchase) is the constant 1 and its
    prediction is the spend model's.

    Attributes
    ----------
    n_features_in_, feature_names_in_ (fitted on a DataFrame with string column names)
        As in scikit-learn.
    buy_, amount_, spend_, count_
        The fitted LightGBMs of the form (None where the form has none).
    buy_rate_
        1.0 when every training row had a purchase (``buy_`` is then a one-tree constant), else None.
    categories_, n_rounds_
        Categories of the categorical features; boosting rounds per model.
    """

    def __init__(self, *, form: str = "hurdle", offset_column: str = "btyd_expected_spend",
                 tweedie_variance_power: float = 1.5,
                 n_estimators: int = 2000, learning_rate: float = 0.05, num_leaves: int = 31,
                 min_child_samples: int = 50, subsample: float = 0.8, colsample_bytree: float = 0.8,
                 reg_lambda: float = 1.0, early_stopping_rounds: int = 50, random_state: int = 0,
                 n_jobs: int | None = None, params: dict[str, Any] | None = None):
        self.form = form
        self.offset_column = offset_column
        self.tweedie_variance_power = tweedie_variance_power
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

    def fit(self, X: pd.DataFrame, y, *, purchases=None,
            eval_set: tuple[pd.DataFrame, Any] | tuple[pd.DataFrame, Any, Any] | None = None,
            refit_extra: tuple[pd.DataFrame, Any] | tuple[pd.DataFrame, Any, Any] | None = None,
            keep_stages: bool = False):
        """Fit on spend ``y`` (and purchase counts). ``eval_set=(X_val, y_val[, purchases_val])``.
        ``refit_extra=(X_more, y_more[, purchases_more])``: rows added to the final refit only, with the
        rounds early stopping chose on ``eval_set`` (e.g. embargoed cut-offs; needs ``eval_set``).
        ``keep_stages``: keep the early-stopped boosters (``stages_``) for :meth:`predict_early_stopped`
        (model selection on the ``eval_set`` rows); delete ``stages_`` afterwards to get the model a
        plain fit gives."""
        if self.form not in FORMS:
            raise ValueError(f"form must be one of {', '.join(FORMS)}, not {self.form!r}")
        X = model_frame(self, X, reset=True)
        if self.form == "offset" and self.offset_column not in X.columns:
            raise ValueError(f"form='offset' needs the baseline column {self.offset_column!r} among the "
                             "features (e.g. model.btyd_features: true gives btyd_expected_spend)")
        if self.form == "frequency" and purchases is None:
            raise ValueError("form='frequency' needs purchases=... (purchase counts in the horizon)")
        y = model_target(self, X, y, numeric=True)
        if (y < 0).any():
            raise ValueError(f"{int((y < 0).sum())} negative spend targets: value targets must be >= 0")
        if not (y > 0).any():
            raise ValueError("every spend target is 0: there is no spend to learn a value model from")
        if purchases is not None:
            purchases = _counts(X, purchases)
        self.categories_ = learn_categories(X)
        cols = list(X.columns)
        Xp = prepare_X(X, cols, self.categories_)
        Xv = yv = pv = None
        if eval_set is not None:
            Xe = model_frame(self, eval_set[0], reset=False)
            Xv = prepare_X(Xe, cols, self.categories_)
            yv = model_target(self, Xe, eval_set[1], numeric=True)
            pv = _counts(Xe, eval_set[2], some=False) if len(eval_set) > 2 and eval_set[2] is not None else None
        ex = ey = ep = None
        if refit_extra is not None and eval_set is not None and len(refit_extra[0]):
            Xx = model_frame(self, refit_extra[0], reset=False)
            ex, ey = prepare_X(Xx, cols, self.categories_), model_target(self, Xx, refit_extra[1], numeric=True)
            ep = _counts(Xx, refit_extra[2], some=False) if len(refit_extra) > 2 and refit_extra[2] is not None \
                else None

        def more(mask=None, target=None, weight=None, init=None) -> Extra | None:
            """The extra refit rows of one booster (``mask``: its rows; ``target``: its target)."""
            if ex is None:
                return None
            m = np.ones(len(ex), bool) if mask is None else mask
            return Extra(ex, ey if target is None else target, weight, init).subset(m)

        es = self.early_stopping_rounds
        self.n_rounds_ = {}
        stages: dict[str, Any] = {}  # the early-stopped boosters, before the refit (keep_stages)
        self.buy_rate_ = None
        if self.form == "offset":
            self.spend_, stages["spend_"], self.n_rounds_["spend"] = fit_with_early_stopping(
                lgb.LGBMRegressor, lgbm_params(self, "poisson", metric="l2"), Xp, y, Xv, yv, es,
                init_score=self._offset(X),
                init_score_val=None if Xv is None else self._offset(Xe),
                extra=None if ex is None else more(init=self._offset(Xx)))
            self.buy_ = self.amount_ = None
        elif self.form == "tweedie":
            params = lgbm_params(self, "tweedie", tweedie_variance_power=self.tweedie_variance_power)
            self.spend_, stages["spend_"], self.n_rounds_["spend"] = fit_with_early_stopping(
                lgb.LGBMRegressor, params, Xp, y, Xv, yv, es, extra=more())
            self.buy_ = self.amount_ = None
        elif self.form == "frequency":
            self.spend_ = self.buy_ = None
            n = purchases
            mask = (y > 0) & (n > 0)
            if not mask.any():
                raise ValueError("no training row has both spend > 0 and purchases > 0: the frequency form's "
                                 "order-value model has nothing to learn from")
            vmask = None if yv is None or pv is None else (yv > 0) & (pv > 0)
            self.amount_, stages["amount_"], self.n_rounds_["amount"] = fit_with_early_stopping(
                lgb.LGBMRegressor, lgbm_params(self, "gamma"), Xp[mask], y[mask] / n[mask],
                None if vmask is None else Xv[vmask], None if vmask is None else yv[vmask] / pv[vmask],
                es, sample_weight=n[mask], sample_weight_val=None if vmask is None else pv[vmask],
                extra=None if ex is None or ep is None else more(
                    (ey > 0) & (ep > 0), ey / np.maximum(ep, 1), ep))
        else:
            self.spend_ = None
            bought = (y > 0).astype(int)
            if bought.all():  # everyone bought: P(purchase) = 1, the value is the spend model's
                if yv is not None and not (yv > 0).all():
                    raise ValueError("every training row has a purchase but some eval_set rows do not: the "
                                     "purchase model needs rows without purchases in training")
                self.buy_rate_ = 1.0
                self.buy_, self.n_rounds_["buy"] = fit_constant(lgbm_params(self, "binary"), Xp, 1), 0
            else:
                self.buy_, stages["buy_"], self.n_rounds_["buy"] = fit_with_early_stopping(
                    lgb.LGBMClassifier, lgbm_params(self, "binary"), Xp, bought, Xv,
                    None if yv is None else (yv > 0).astype(int), es,
                    extra=None if ex is None else more(target=(ey > 0).astype(int)))
            mask, vmask = y > 0, None if yv is None else yv > 0
            self.amount_, stages["amount_"], self.n_rounds_["amount"] = fit_with_early_stopping(
                lgb.LGBMRegressor, lgbm_params(self, "gamma"), Xp[mask], y[mask],
                None if Xv is None else Xv[vmask], None if yv is None else yv[vmask], es,
                extra=None if ex is None else more(ey > 0))
        self.count_ = None
        if purchases is not None:
            self.count_, stages["count_"], self.n_rounds_["purchases"] = fit_with_early_stopping(
                lgb.LGBMRegressor, lgbm_params(self, "poisson"), Xp, purchases, Xv, pv, es,
                extra=None if ex is None or ep is None else more(target=ep))
        if keep_stages:
            if eval_set is None:
                raise ValueError("keep_stages needs an eval_set (the stages are the early-stopped boosters)")
            self.stages_ = {k: b for k, b in stages.items() if b is not None}
        return self

    def predict_early_stopped(self, X: pd.DataFrame) -> np.ndarray:
        """Expected spend from the early-stopped boosters, fitted on the training rows only (before
        the refit that adds the ``eval_set`` rows): honest predictions for the ``eval_set`` rows. Needs
        ``fit(..., keep_stages=True)``."""
        check_is_fitted(self, "stages_")
        staged = copy.copy(self)
        for name, booster in self.stages_.items():
            setattr(staged, name, booster)
        return staged.predict(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # LightGBM routes missing values
        tags.target_tags.positive_only = True  # spend >= 0
        return tags

    def _offset(self, X: pd.DataFrame) -> np.ndarray:
        """log of the baseline expectation (the raw score the offset form boosts from)."""
        return _log_baseline(pd.to_numeric(X[self.offset_column], errors="coerce").to_numpy(float))

    def _frames(self, X: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(``X`` validated, ``X`` converted for the boosters: columns, categories, float64)."""
        check_is_fitted(self, "categories_")
        X = model_frame(self, X, reset=False)
        return X, prepare_X(X, list(X.columns), self.categories_)

    def _features(self, X: pd.DataFrame) -> pd.DataFrame:
        return self._frames(X)[1]

    def matrix(self, X: pd.DataFrame) -> np.ndarray:
        """``X`` as the boosters' model matrix (:func:`~clvml.modeling.lgbm.fitted_matrix`)."""
        return fitted_matrix(self, X, "categories_")

    def offset_matrix(self, F: np.ndarray) -> np.ndarray:
        """:meth:`_offset` of the rows of ``F = self.matrix(X)`` (the baseline column is numeric)."""
        return _log_baseline(F[model_columns(self).index(self.offset_column)])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Expected spend in the horizon (>= 0)."""
        return self.predict_with_purchases(X)[0]

    def predict_with_purchases(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """(expected spend, expected purchases or None without a count model), each booster run once."""
        return self.predict_matrix_with_purchases(self.matrix(X))

    def predict_matrix_with_purchases(self, F: np.ndarray, raw: RawScores | None = None
                                      ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`predict_with_purchases` of the rows of ``F = self.matrix(X)`` (``raw``: the boosters' raw
        scores of ``F`` when known, see :func:`~clvml.modeling.lgbm.predict_matrix`)."""
        check_is_fitted(self, "categories_")
        count = None
        if getattr(self, "count_", None) is not None:
            count = np.maximum(predict_matrix(self.count_, F, raw), 0.0)
        if self.form == "offset":
            return np.exp(predict_matrix(self.spend_, F, raw, raw_score=True) + self.offset_matrix(F)), count
        if self.form == "tweedie":
            return np.maximum(predict_matrix(self.spend_, F, raw), 0.0), count
        if self.form == "frequency":
            return count * np.maximum(predict_matrix(self.amount_, F, raw), 0.0), count
        amount = np.maximum(predict_matrix(self.amount_, F, raw), 0.0)
        if getattr(self, "buy_rate_", None) is not None:
            return self.buy_rate_ * amount, count
        return predict_matrix(self.buy_, F, raw) * amount, count

    def predict_purchases(self, X: pd.DataFrame) -> np.ndarray:
        """Expected number of purchases in the horizon (needs ``purchases`` at fit time)."""
        check_is_fitted(self, "count_")
        if self.count_ is None:
            raise ValueError("fit with purchases=... to predict purchase counts")
        return np.maximum(predict_matrix(self.count_, self.matrix(X)), 0.0)


def _log_baseline(base: np.ndarray) -> np.ndarray:
    """log of a baseline expectation, missing as 0 and floored at ``OFFSET_FLOOR``."""
    return np.log(np.maximum(np.nan_to_num(base, nan=0.0), OFFSET_FLOOR))


def _counts(X: pd.DataFrame, purchases, some: bool = True) -> np.ndarray:
    """Purchase counts: one per row, finite, >= 0 and, with ``some``, not all 0 (a Poisson model needs
    some purchases to learn from)."""
    n = column_or_1d(purchases, warn=True).astype(np.float64)
    check_consistent_length(X, n)
    assert_all_finite(n, input_name="purchases")
    if (n < 0).any():
        raise ValueError(f"{int((n < 0).sum())} negative purchase counts: counts must be >= 0")
    if some and not (n > 0).any():
        raise ValueError("every purchase count is 0: there are no purchases to learn a count model from")
    return n
