import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline

from clvml.errors import ModelIncompatibleError
from clvml.modeling import ChurnModel, ValueModel, clv


def data(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"x": rng.normal(size=n), "noise": rng.normal(size=n),
                      "tier": rng.choice(["gold", "basic"], n)})
    logit = 1.5 * X.x + (X.tier == "gold") * 1.0
    churn = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    spend = np.where(churn == 1, 0.0, rng.gamma(2.0, 10 * np.exp(0.5 * X.x)))
    return X, churn, spend


FAST = dict(n_estimators=200, learning_rate=0.1, min_child_samples=20, early_stopping_rounds=20)


def test_sklearn_contract():
    m = ChurnModel(calibration="platt", **FAST)
    assert clone(m).get_params() == m.get_params()
    with pytest.raises(NotFittedError):
        m.predict_proba(pd.DataFrame({"x": [1.0]}))
    with pytest.raises(TypeError):
        ChurnModel("isotonic")  # keyword-only
    X, y, _ = data()
    pipe = Pipeline([("m", ChurnModel(**FAST))]).fit(X, y)
    assert pipe.predict_proba(X).shape == (len(X), 2)


@pytest.mark.parametrize("calibration", ["isotonic", "platt", "none"])
def test_churn_model_learns_and_calibrates(calibration):
    X, y, _ = data()
    Xv, yv, _ = data(seed=1)
    Xt, yt, _ = data(seed=2)
    m = ChurnModel(calibration=calibration, **FAST).fit(X, y, eval_set=(Xv, yv))
    p = m.predict_proba(Xt)[:, 1]
    from clvml.evaluation.metrics import churn_metrics
    met = churn_metrics(yt, p)
    assert met["roc_auc"] > 0.75
    assert met["ece"] < 0.05
    assert m.n_rounds_ < 200  # early stopping chose the rounds
    assert (calibration == "none") == (m.calibrator_ is None)


@pytest.mark.parametrize("form", ["hurdle", "tweedie", "frequency"])
def test_value_model_is_non_negative_and_ranks(form):
    X, y, spend = data()
    Xv, _, sv = data(seed=1)
    m = ValueModel(form=form, **FAST).fit(X, spend, purchases=(spend > 0).astype(float),
                                          eval_set=(Xv, sv, (sv > 0).astype(float)))
    pred = m.predict(Xv)
    assert (pred >= 0).all()
    from clvml.evaluation.metrics import normalized_gini
    logit = 1.5 * Xv.x + (Xv.tier == "gold") * 1.0
    oracle = (1 - 1 / (1 + np.exp(-logit))) * 20 * np.exp(0.5 * Xv.x)  # true E[spend]
    assert normalized_gini(sv, pred) > 0.85 * normalized_gini(sv, oracle)
    assert abs(pred.sum() / sv.sum() - 1) < 0.15
    assert (m.predict_purchases(Xv) >= 0).all()


def test_frequency_form_is_purchases_times_order_value():
    rng = np.random.default_rng(3)
    n = 4000
    X = pd.DataFrame({"rate": rng.uniform(0.2, 3, n), "aov": rng.uniform(10, 100, n)})
    k = rng.poisson(X.rate)
    spend = np.array([rng.gamma(3.0, a / 3.0, c).sum() for a, c in zip(X.aov, k, strict=True)])
    m = ValueModel(form="frequency", **FAST).fit(X, spend, purchases=k)
    pred = m.predict(X)
    # E[spend] = rate x aov exactly; the two LightGBMs recover it closely on average
    assert abs(pred.mean() / (X.rate * X.aov).mean() - 1) < 0.05
    assert np.corrcoef(pred, X.rate * X.aov)[0, 1] > 0.9
    np.testing.assert_allclose(pred, m.predict_purchases(X) * m.amount_.predict(X), rtol=1e-12)
    with pytest.raises(ValueError, match="needs purchases"):
        ValueModel(form="frequency").fit(X, spend)


def test_offset_form_corrects_the_baseline_and_extrapolates_with_it():
    # truth: E[spend] = baseline x exp(0.5 z); the baseline alone misses the z factor
    rng = np.random.default_rng(4)

    def world(n, lo, hi):
        X = pd.DataFrame({"btyd_expected_spend": rng.uniform(lo, hi, n), "z": rng.normal(size=n)})
        mean = X.btyd_expected_spend * np.exp(0.5 * X.z)
        return X, rng.gamma(2.0, mean / 2.0), mean

    X, y, _ = world(4000, 5, 50)
    Xv, yv, _ = world(1000, 5, 50)
    Xt, _, truth = world(2000, 200, 500)  # baselines 4-100x larger than any training row
    m = ValueModel(form="offset", **FAST).fit(X, y, eval_set=(Xv, yv))
    ratio = m.predict(Xt) / truth
    assert abs(ratio.mean() - 1) < 0.1 and np.corrcoef(m.predict(Xt), truth)[0, 1] > 0.95
    # a free-standing LightGBM cannot predict beyond the largest training target level
    free = ValueModel(form="tweedie", **FAST).fit(X, y, eval_set=(Xv, yv))
    assert (free.predict(Xt) / truth).mean() < 0.3
    # explanations stay additive: the baseline's log is attributed to the baseline feature
    from clvml.explain.drivers import BIAS, check_against_shap, contributions, raw_score
    c = contributions(m, Xt.head(50))
    np.testing.assert_allclose(c.sum(axis=1), np.log(m.predict(Xt.head(50))), rtol=1e-6)
    np.testing.assert_allclose(raw_score(m, Xt.head(50)), c.sum(axis=1), rtol=1e-9)
    assert check_against_shap(m, Xt.head(50)) < 1e-6
    assert c.drop(columns=BIAS).abs().mean().idxmax() == "btyd_expected_spend"
    with pytest.raises(ValueError, match="btyd_features: true"):
        ValueModel(form="offset").fit(X.drop(columns="btyd_expected_spend"), y)


def test_missing_feature_is_a_clear_error():
    X, y, _ = data()
    m = ChurnModel(**FAST).fit(X, y)
    with pytest.raises(ModelIncompatibleError, match="missing: noise"):
        m.predict_proba(X.drop(columns="noise"))


def test_unseen_category_is_treated_as_missing():
    X, y, _ = data()
    m = ChurnModel(**FAST).fit(X, y)
    X2 = X.head(5).assign(tier="platinum")
    assert np.isfinite(m.predict_proba(X2)).all()


def test_clv_formula_exact():
    # spend 100, churn 0.5, 3 periods, margin 0.3, d = 0.1: 0.3*100*(1/1.1 + 0.5/1.21 + 0.25/1.331) - 5
    got = clv([100.0], [0.5], periods=3, margin=0.3, discount_rate=0.1, cost=5.0)
    want = 0.3 * 100 * (1 / 1.1 + 0.5 / 1.21 + 0.25 / 1.331) - 5
    assert got[0] == pytest.approx(want)
    assert clv([100.0], [1.0], periods=4, margin=1.0, discount_rate=0.0)[0] == pytest.approx(100.0)
