"""ChurnModel and ValueModel keep scikit-learn's estimator contract, and one-class training data gives
the constant model of the one class seen (or a clear ValueError where no model can be learned)."""

import warnings

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from clvml.errors import ModelIncompatibleError
from clvml.modeling import ChurnModel, ValueModel
from tests.test_models import FAST, data

#: ``check_estimator`` checks that cannot apply to these estimators: none (every check passes).
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@pytest.mark.parametrize("estimator", [ChurnModel(), ChurnModel(calibration="platt"), ValueModel(),
                                       ValueModel(form="tweedie")], ids=repr)
def test_check_estimator_passes(estimator):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(estimator, expected_failed_checks=EXPECTED_FAILED_CHECKS, on_fail=None)
    failed = {r["check_name"]: repr(r["exception"]) for r in results if r["status"] == "failed"}
    assert not failed
    assert {r["status"] for r in results} <= {"passed", "skipped"}
    assert sum(r["status"] == "passed" for r in results) >= 50


# --- one class ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("flag", [1, 0, True, False])
def test_churn_model_on_one_class_predicts_it_with_certainty(flag):
    X, _, _ = data(500)
    y = np.full(len(X), flag)
    m = ChurnModel(**FAST).fit(X, y)
    Xt, _, _ = data(200, seed=1)
    p = m.predict_proba(Xt)
    assert m.classes_.tolist() == [0, 1]  # churn flags: both classes, [:, 1] stays P(churn)
    np.testing.assert_array_equal(p[:, 1], np.full(len(Xt), float(flag)))  # exactly 1.0 / 0.0
    np.testing.assert_array_equal(p[:, 0], np.full(len(Xt), 1.0 - flag))
    np.testing.assert_array_equal(m.predict(Xt), np.full(len(Xt), flag))
    assert m.constant_ == float(flag) and m.n_rounds_ == 0 and m.calibrator_ is None
    # the booster is a constant tree at LightGBM's clamped log-odds: explanations keep adding up
    from clvml.explain.drivers import contributions, raw_score
    raw = raw_score(m, Xt)
    assert np.all(raw > 30) if flag else np.all(raw < -30)
    np.testing.assert_allclose(contributions(m, Xt).sum(axis=1), raw, rtol=1e-12)


def test_churn_model_on_one_string_label():
    X, _, _ = data(300)
    m = ChurnModel(**FAST).fit(X, np.full(len(X), "churned"))
    assert m.classes_.tolist() == ["churned"]
    np.testing.assert_array_equal(m.predict_proba(X), np.ones((len(X), 1)))
    assert (m.predict(X) == "churned").all()


def test_churn_model_one_class_with_two_class_eval_set_is_refused():
    X, y, _ = data(500)
    with pytest.raises(ValueError, match="one class only"):
        ChurnModel(**FAST).fit(X, np.ones(len(X), int), eval_set=(X, y))


def test_hurdle_when_everyone_bought_is_the_spend_model():
    X, _, spend = data(2000)
    Xt, _, _ = data(300, seed=1)
    y = spend + 1.0  # every row bought
    m = ValueModel(form="hurdle", **FAST).fit(X, y)
    assert m.buy_rate_ == 1.0 and m.n_rounds_["buy"] == 0
    np.testing.assert_array_equal(m.predict(Xt), np.maximum(m.amount_.predict(m._features(Xt)), 0.0))
    # a constant spend of 7.7: the prediction is 7.7 (LightGBM keeps leaf values in float32)
    c = ValueModel(form="hurdle", **FAST).fit(X, np.full(len(X), 7.7))
    np.testing.assert_allclose(c.predict(Xt), 7.7, rtol=1e-7)
    # explanations and fingerprints still find the two boosters
    from clvml.explain.drivers import _boosters
    assert all(b.booster_.model_to_string() for b in _boosters(c))


def test_hurdle_all_buyers_in_training_but_not_in_eval_set_is_refused():
    X, _, spend = data(500)
    with pytest.raises(ValueError, match="every training row has a purchase"):
        ValueModel(form="hurdle", **FAST).fit(X, spend + 1.0, eval_set=(X, spend))


@pytest.mark.parametrize("form", ["hurdle", "tweedie", "frequency", "offset"])
def test_value_model_without_any_spend_is_refused(form):
    X, _, _ = data(300)
    X = X.assign(btyd_expected_spend=1.0)
    with pytest.raises(ValueError, match="every spend target is 0"):
        ValueModel(form=form, **FAST).fit(X, np.zeros(len(X)), purchases=np.zeros(len(X)))


def test_value_model_without_any_purchase_count_is_refused():
    X, _, spend = data(300)
    with pytest.raises(ValueError, match="every purchase count is 0"):
        ValueModel(form="tweedie", **FAST).fit(X, spend, purchases=np.zeros(len(X)))


# --- inputs ------------------------------------------------------------------------------------------

def numeric_data(n=2000, seed=0):
    X, y, spend = data(n, seed)
    return X[["x", "noise"]], y, spend


def test_numpy_and_dataframe_give_identical_predictions():
    X, y, spend = numeric_data()
    Xv, yv, sv = numeric_data(seed=1)
    Xt, _, _ = numeric_data(300, seed=2)
    churn_df = ChurnModel(**FAST).fit(X, y, eval_set=(Xv, yv))
    churn_np = ChurnModel(**FAST).fit(X.to_numpy(), y, eval_set=(Xv.to_numpy(), yv))
    value_df = ValueModel(**FAST).fit(X, spend, eval_set=(Xv, sv))
    value_np = ValueModel(**FAST).fit(X.to_numpy(), spend, eval_set=(Xv.to_numpy(), sv))
    np.testing.assert_array_equal(churn_df.predict_proba(Xt), churn_np.predict_proba(Xt.to_numpy()))
    np.testing.assert_array_equal(value_df.predict(Xt), value_np.predict(Xt.to_numpy()))
    assert churn_df.feature_names_in_.tolist() == ["x", "noise"] and churn_df.n_features_in_ == 2
    assert not hasattr(churn_np, "feature_names_in_") and churn_np.n_features_in_ == 2
    # a model fitted on a DataFrame takes an array in the same column order (with sklearn's warning)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        np.testing.assert_array_equal(churn_df.predict_proba(Xt.to_numpy()), churn_df.predict_proba(Xt))


def test_string_labels():
    X, y, _ = data(1500)
    Xt, _, _ = data(200, seed=1)
    m_int = ChurnModel(**FAST).fit(X, y)
    m_str = ChurnModel(**FAST).fit(X, np.where(y == 1, "yes", "no"))
    assert m_str.classes_.tolist() == ["no", "yes"]
    np.testing.assert_array_equal(m_str.predict_proba(Xt), m_int.predict_proba(Xt))  # same trees
    np.testing.assert_array_equal(m_str.predict(Xt), np.where(m_int.predict(Xt) == 1, "yes", "no"))


def test_categorical_columns_need_a_dataframe():
    X, y, _ = data(500)
    m = ChurnModel(**FAST).fit(X, y)
    assert m.categories_ == {"tier": ["basic", "gold"]}
    with pytest.raises(ValueError, match="pass a pandas DataFrame"):
        m.predict_proba(X.to_numpy())


def test_columns_must_match_training_by_name_and_order():
    X, y, _ = data(500)
    m = ChurnModel(**FAST).fit(X, y)
    for bad in (X[["noise", "x", "tier"]], X.drop(columns="noise"), X.assign(extra=1.0)):
        with pytest.raises(ValueError, match="feature names should match") as e:
            m.predict_proba(bad)
        assert isinstance(e.value, ModelIncompatibleError)


def test_pipeline_with_standard_scaler():
    X, y, spend = numeric_data()
    pipe = make_pipeline(StandardScaler(), ChurnModel(**FAST)).fit(X, y)
    p = pipe.predict_proba(X)
    assert p.shape == (len(X), 2) and np.all((p > 0) & (p < 1))
    np.testing.assert_array_equal(pipe.predict(X), (p[:, 1] > 0.5).astype(int))
    value = make_pipeline(StandardScaler(), ValueModel(**FAST)).fit(X, spend)
    assert (value.predict(X) >= 0).all() and value.score(X, spend) > 0


@pytest.mark.parametrize("model", [ChurnModel(**FAST), ValueModel(**FAST)], ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("as_numpy", [False, True], ids=["dataframe", "numpy"])
def test_empty_input_and_mismatched_lengths_raise_value_error(model, as_numpy):
    X, y, spend = numeric_data(200)
    target = y if isinstance(model, ChurnModel) else spend
    X = X.to_numpy() if as_numpy else X
    with pytest.raises(ValueError, match="0 sample"):
        model.fit(X[:0], target[:0])
    with pytest.raises(ValueError, match="0 feature"):
        model.fit(X[:, :0] if as_numpy else X.iloc[:, :0], target)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        model.fit(X, target[:-1])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        model.fit(X, target, eval_set=(X, target[:-1]))
    with pytest.raises(ValueError, match="requires y"):
        model.fit(X, None)


def test_churn_model_is_binary_only():
    X, _, _ = data(300)
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        ChurnModel(**FAST).fit(X, np.arange(len(X)) % 3)
    with pytest.raises(ValueError, match="Unknown label type"):
        ChurnModel(**FAST).fit(X, np.linspace(0, 1, len(X)))


def test_nan_features_are_allowed_and_infinity_is_not():
    X, y, _ = numeric_data(500)
    A = X.to_numpy().copy()
    A[::7, 0] = np.nan
    m = ChurnModel(**FAST).fit(A, y)
    assert np.isfinite(m.predict_proba(A)).all()
    A[0, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        m.predict_proba(A)
