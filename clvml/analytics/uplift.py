"""Uplift modelling: who should receive the incentive.

:class:`UpliftModel` is a two-model (T-learner) estimator: one LightGBM model of the outcome fitted on
treated customers, one on controls; the uplift of a customer is the difference of their predictions.
It is judged with the Qini curve (incremental outcomes among the top-k customers by predicted uplift,
estimated from a randomised test) and the Qini coefficient; :func:`targeting_list` turns predictions
into who to contact.
"""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from clvml.errors import ConfigError
from clvml.modeling.lgbm import default_threads, learn_categories, prepare_X


class UpliftModel(BaseEstimator):
    """T-learner uplift estimator on LightGBM.

    Parameters
    ----------
    objective
        ``"binary"`` (outcome is 0/1, e.g. repurchased; uplift is a difference of probabilities) or
        ``"regression"`` (e.g. spend; uplift is a difference of expectations).
    n_estimators, learning_rate, num_leaves, min_child_samples
        LightGBM settings of both models. Uplift is a small difference of two predictions, so the
        defaults are deliberately smooth (few leaves, many samples per leaf).
    params
        Other LightGBM parameters, passed through.
    """

    def __init__(self, *, objective: str = "binary", n_estimators: int = 200,
                 learning_rate: float = 0.03, num_leaves: int = 7, min_child_samples: int = 100,
                 random_state: int = 0, n_jobs: int | None = None,
                 params: dict[str, Any] | None = None):
        self.objective = objective
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.params = params

    def _lgbm(self, rows: int):
        if self.objective not in ("binary", "regression"):
            raise ConfigError([f"objective must be 'binary' or 'regression', got {self.objective!r}"])
        params = dict(n_estimators=self.n_estimators, learning_rate=self.learning_rate,
                      num_leaves=self.num_leaves, min_child_samples=self.min_child_samples,
                      random_state=self.random_state, deterministic=True, force_row_wise=True,
                      n_jobs=self.n_jobs or default_threads(rows), verbose=-1,
                      **(self.params or {}))
        return (lgb.LGBMClassifier if self.objective == "binary" else lgb.LGBMRegressor)(**params)

    def fit(self, X: pd.DataFrame, treatment: np.ndarray, y: np.ndarray) -> UpliftModel:
        """Fit the treated and control outcome models. ``treatment`` is 1/True for treated."""
        w = np.asarray(treatment).astype(bool)
        y = np.asarray(y, dtype=float)
        if len(w) != len(X) or len(y) != len(X):
            raise ConfigError([f"X ({len(X)} rows), treatment ({len(w)}) and y ({len(y)}) differ in "
                               "length"])
        for arm, mask in (("treated", w), ("control", ~w)):
            if mask.sum() < 2 * self.min_child_samples:
                raise ConfigError([f"only {int(mask.sum())} {arm} customers: need at least "
                                   f"{2 * self.min_child_samples} (2 × min_child_samples)"])
            if self.objective == "binary" and np.unique(y[mask]).size < 2:
                raise ConfigError([f"the {arm} outcome has a single value: nothing to learn"])
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.categories_ = learn_categories(X)
        Xp = prepare_X(X, list(X.columns), self.categories_)
        self.models_ = {}
        for arm, mask in (("treatment", w), ("control", ~w)):
            m = self._lgbm(int(mask.sum()))
            m.fit(Xp[mask], y[mask])
            self.models_[arm] = m
        self.treated_share_ = float(w.mean())
        return self

    def predict_outcomes(self, X: pd.DataFrame) -> pd.DataFrame:
        """Predicted outcome under each arm: columns ``control``, ``treatment``."""
        check_is_fitted(self, "models_")
        Xp = prepare_X(X, list(self.feature_names_in_), self.categories_)
        out = {}
        for arm, m in self.models_.items():
            out[arm] = m.predict_proba(Xp)[:, 1] if self.objective == "binary" else m.predict(Xp)
        return pd.DataFrame({"control": out["control"], "treatment": out["treatment"]}, index=X.index)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted uplift: E[y | treated, x] − E[y | control, x]."""
        o = self.predict_outcomes(X)
        return (o["treatment"] - o["control"]).to_numpy()


def qini_curve(y: np.ndarray, treatment: np.ndarray, score: np.ndarray) -> pd.DataFrame:
    """Qini curve of a ranking on a randomised sample.

    Customers are sorted by ``score`` (highest first; ties broken by position). After the top k,
    ``qini = Y_t(k) − Y_c(k) · N_t(k) / N_c(k)``: the incremental outcome among the targeted treated,
    with the control group as counterfactual. ``random`` is the straight line a random ranking follows
    in expectation.

    Returns
    -------
    pandas.DataFrame
        ``k, fraction, n_treatment, n_control, qini, random``, starting at k = 0.
    """
    y = np.asarray(y, dtype=float)
    w = np.asarray(treatment).astype(bool)
    s = np.asarray(score, dtype=float)
    if not (y.size == w.size == s.size) or y.size == 0:
        raise ConfigError(["y, treatment and score must be non-empty and of equal length"])
    order = np.argsort(-s, kind="stable")
    y, w = y[order], w[order]
    nt, nc = np.cumsum(w), np.cumsum(~w)
    yt, yc = np.cumsum(y * w), np.cumsum(y * ~w)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(nc > 0, yt - yc * nt / np.maximum(nc, 1), yt)
    k = np.arange(1, y.size + 1)
    df = pd.DataFrame({"k": np.r_[0, k], "fraction": np.r_[0, k / y.size], "n_treatment": np.r_[0, nt],
                       "n_control": np.r_[0, nc], "qini": np.r_[0.0, q]})
    df["random"] = df["fraction"] * df["qini"].iloc[-1]
    return df


def _area(curve: pd.DataFrame) -> float:
    return float(np.trapezoid(curve["qini"] - curve["random"], curve["fraction"]))


def qini_coefficient(y: np.ndarray, treatment: np.ndarray, score: np.ndarray,
                     normalize: bool = True) -> float:
    """Area between the Qini curve of ``score`` and the random line.

    With ``normalize`` (default) it is divided by the same area of the best possible ranking on this
    sample (treated responders first, control responders last), so 0 is random targeting and 1 is
    perfect; without, it is in outcome units per customer of the sample.
    """
    area = _area(qini_curve(y, treatment, score))
    if not normalize:
        return area / np.asarray(y).size
    y = np.asarray(y, dtype=float)
    w = np.asarray(treatment).astype(bool)
    best = _area(qini_curve(y, w, np.where(w, y, -y)))
    return area / best if best > 0 else float("nan")


def targeting_list(customer_id: pd.Series | np.ndarray, uplift: np.ndarray, *,
                   value: float | np.ndarray = 1.0, cost: float = 0.0, budget: float | None = None,
                   max_fraction: float | None = None) -> pd.DataFrame:
    """Rank customers by expected incremental value and mark whom to contact.

    A customer is worth contacting when ``uplift × value − cost > 0`` (``value`` = what one unit of the
    outcome is worth, e.g. margin per incremental repurchase; per customer or one number). Contacts are
    then limited by ``budget`` (total cost) and ``max_fraction`` (share of the list), best first.

    Returns
    -------
    pandas.DataFrame
        ``rank, customer_id, uplift, incremental_value, net_value, target``, best first; the ranks are
        deterministic (ties by customer id).
    """
    ids = pd.Series(np.asarray(customer_id)).astype(str)
    u = np.asarray(uplift, dtype=float)
    if u.size != ids.size:
        raise ConfigError([f"{ids.size} customers but {u.size} uplift values"])
    inc = u * np.broadcast_to(np.asarray(value, dtype=float), u.shape)
    df = pd.DataFrame({"customer_id": ids, "uplift": u, "incremental_value": inc,
                       "net_value": inc - cost})
    df = df.sort_values(["net_value", "customer_id"], ascending=[False, True], kind="stable")
    df = df.reset_index(drop=True)
    target = (df["net_value"] > 0).to_numpy()
    limit = len(df)
    if budget is not None and cost > 0:
        limit = min(limit, int(budget // cost))
    if max_fraction is not None:
        limit = min(limit, int(np.floor(max_fraction * len(df))))
    target = target & (np.arange(len(df)) < limit)
    df["target"] = target
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df
