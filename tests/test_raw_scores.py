"""Predictions from raw scores found by tree SHAP equal LightGBM's, to the bit, or LightGBM predicts."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from clvml.explain.treeshap import compile_booster, tree_shap_and_raw
from clvml.modeling.lgbm import predict_matrix
from clvml.modeling.raw_scores import RawScore, from_raw_score


def data(n: int = 4000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.exponential(size=n), "c": rng.integers(0, 4, n) * 1.0})
    X.loc[rng.random(n) < 0.1, "a"] = np.nan
    return X, rng.poisson(np.exp(0.4 * X.a.fillna(0) - 0.3 * X.b + 0.2 * X.c)).astype(float)


@pytest.mark.parametrize("objective", ["binary", "poisson", "gamma", "tweedie", "regression", "huber"])
def test_from_raw_score_is_lightgbms_output(objective):
    X, y = data()
    target = {"binary": (y > 0).astype(float), "gamma": y + 0.5}.get(objective, y)
    params = {"objective": objective, "verbose": -1, "num_threads": 1, "num_leaves": 31, "learning_rate": 0.3}
    if objective == "binary":
        params["sigmoid"] = 0.7  # the objective string carries it: "binary sigmoid:0.7"
    booster = lgb.train(params, lgb.Dataset(X, target), num_boost_round=60)
    objective_string = compile_booster(booster).objective
    _, raw = tree_shap_and_raw(booster, X)
    out = from_raw_score(raw, objective_string)
    if objective == "huber":  # not covered: the caller asks LightGBM
        assert out is None
        return
    assert np.array_equal(out, booster.predict(X))  # every value, to the last bit
    # NumPy's exp is not the C library's: it would not be the same bits (this is why from_raw_score
    # compiles its own loop)
    if objective in ("poisson", "gamma", "tweedie"):
        assert not np.array_equal(np.exp(raw), booster.predict(X))


def test_regression_sqrt_and_unknown_strings_are_not_converted():
    raw = np.array([0.5, -1.0])
    assert from_raw_score(raw, "regression sqrt") is None
    assert from_raw_score(raw, "") is None
    assert from_raw_score(raw, "multiclass num_class:3") is None


def test_predict_matrix_uses_known_raw_scores_only_when_they_agree():
    X, y = data(3000, 1)
    est = lgb.LGBMRegressor(objective="poisson", n_estimators=40, verbose=-1, n_jobs=1).fit(X, y)
    F = np.ascontiguousarray(X.to_numpy().T)
    expected = est.booster_.predict(X)
    _, raw = tree_shap_and_raw(est.booster_, None, F=F)
    known = {est: RawScore(raw, compile_booster(est.booster_).objective)}
    assert np.array_equal(predict_matrix(est, F, known), expected)
    assert np.array_equal(predict_matrix(est, F, known, raw_score=True), raw)
    # wrong raw scores (here shifted by a little): detected on the checked rows, LightGBM predicts
    wrong = {est: RawScore(raw + 1e-12, known[est].objective)}
    with pytest.warns(RuntimeWarning, match="differ from LightGBM"):
        got = predict_matrix(est, F, wrong)
    assert np.array_equal(got, expected)
    # another estimator's scores, or another matrix's (other length), are never used
    other = lgb.LGBMRegressor(objective="poisson", n_estimators=5, verbose=-1, n_jobs=1).fit(X, y)
    assert np.array_equal(predict_matrix(other, F, known), other.booster_.predict(X))
    assert np.array_equal(predict_matrix(est, F[:, :100], known), expected[:100])
