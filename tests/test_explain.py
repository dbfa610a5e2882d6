"""SHAP contributions: additivity, agreement with shap, reason codes, and the synthetic ground truth."""

import numpy as np
import pandas as pd
import pytest

from clvml.explain.drivers import (
    BIAS,
    check_against_shap,
    contributions,
    family_importance,
    global_importance,
    raw_score,
    segment_drivers,
)
from clvml.explain.reasons import reason_codes
from clvml.features.registry import FeatureSpec
from clvml.modeling import ChurnModel, ValueModel
from tests.test_models import FAST, data


@pytest.fixture(scope="module")
def fitted():
    X, y, spend = data()
    churn = ChurnModel(calibration="isotonic", **FAST).fit(X, y)
    values = {form: ValueModel(form=form, **FAST).fit(X, spend, purchases=(spend > 0).astype(float))
              for form in ("frequency", "tweedie")}
    return X, churn, values


def test_contributions_add_up_to_the_raw_score(fitted):
    X, churn, values = fitted
    for model in (churn, *values.values()):
        c = contributions(model, X.head(300))
        assert list(c.columns) == ["x", "noise", "tier", BIAS]
        np.testing.assert_allclose(c.sum(axis=1), raw_score(model, X.head(300)), rtol=1e-9, atol=1e-9)
    # frequency form: log E[spend] = log E[purchases] + log E[order value]
    v = values["frequency"]
    np.testing.assert_allclose(np.exp(raw_score(v, X.head(50))), v.predict(X.head(50)), rtol=1e-9)


def test_fast_path_equals_shap_tree_explainer(fitted):
    X, churn, values = fitted
    assert check_against_shap(churn, X.head(200)) < 1e-6
    assert check_against_shap(values["frequency"], X.head(200)) < 1e-6


def test_the_informative_feature_drives_and_noise_does_not(fitted):
    X, churn, _ = fitted
    imp = global_importance(contributions(churn, X))
    assert imp.index[0] == "x" and imp.index[-1] == "noise"


def test_importance_when_active():
    contrib = pd.DataFrame({"a": [0.0, 0.0, 0.0, 2.0], "b": [0.3, 0.3, 0.3, 0.3], BIAS: [0.0] * 4})
    X = pd.DataFrame({"a": [0.0, 0.0, np.nan, 1.0], "b": [1.0, 2.0, 3.0, 4.0]})
    imp = global_importance(contrib, X=X)
    assert imp.loc["a"].tolist() == pytest.approx([0.5, 0.25, 2.0])  # mean, active share, when active
    assert imp.loc["b"].tolist() == pytest.approx([0.3, 1.0, 0.3])


SPECS = [FeatureSpec("tx_recency_days", "transactions", "transactions", None, "", "days", "numeric", "",
                     "last purchase {value} days ago"),
         FeatureSpec("as_complaints_90d", "after_sales", "after_sales", 90, "", "complaints", "numeric", "",
                     "{value} complaints {span}"),
         FeatureSpec("act_sessions_30d", "activity", "activity", 30, "", "sessions", "numeric", "",
                     "{value} sessions {span}")]


def test_reason_codes_exact():
    contrib = pd.DataFrame({"tx_recency_days": [0.9, -0.2], "as_complaints_90d": [0.4, -0.1],
                            "act_sessions_30d": [-0.3, 0.05], BIAS: [-1.0, -1.0]})
    X = pd.DataFrame({"tx_recency_days": [120.0, 3.0], "as_complaints_90d": [2.0, 0.0],
                      "act_sessions_30d": [0.0, 14.0]})
    up = reason_codes(contrib, X, SPECS, k=2)
    assert up.loc[0, "reason_1"] == "tx_recency_days" and up.loc[0, "reason_1_shap"] == 0.9
    assert up.loc[0, "reason_1_text"] == "last purchase 120 days ago"
    assert up.loc[0, "reason_2_text"] == "2 complaints in the last 90 days"
    # row 1: only one feature pushes up; the second slot stays empty
    assert up.loc[1, "reason_1"] == "act_sessions_30d" and up.loc[1, "reason_1_value"] == "14.0"
    assert pd.isna(up.loc[1, "reason_2"]) and pd.isna(up.loc[1, "reason_2_text"])
    down = reason_codes(contrib, X, SPECS, k=1, direction=-1)
    assert down["reason_1"].tolist() == ["act_sessions_30d", "tx_recency_days"]


def test_family_and_segment_drivers():
    contrib = pd.DataFrame({"tx_recency_days": [1.0, -1.0, 0.5], "as_complaints_90d": [0.5, 0.5, 0.0],
                            "act_sessions_30d": [0.0, -0.1, 0.0], BIAS: [0.0, 0.0, 0.0]})
    fam = family_importance(contrib, SPECS)
    assert fam.to_dict() == pytest.approx({"transactions": 2.5 / 3, "after_sales": 1 / 3,
                                           "activity": 0.1 / 3})
    seg = segment_drivers(contrib, pd.Series(["high", "low", "high"]), top=1)
    assert seg.to_dict("records") == [{"segment": "high", "feature": "tx_recency_days", "mean_shap": 0.75},
                                      {"segment": "low", "feature": "tx_recency_days", "mean_shap": -1.0}]


def test_synthetic_world_drivers_rank_as_the_generator_built_them(tmp_path):
    from clvml.config import load_config
    from clvml.data.loading import load_data
    from clvml.modeling.training import make_training_set, split_by_cutoff
    from tests.test_demo import write_config

    cfg = load_config(write_config(tmp_path, cutoffs={"start": "2023-04-01", "every_days": 30},
                                   data={"synthetic": {"n_customers": 4000, "start": "2023-01-01",
                                                       "end": "2024-06-30", "seed": 11, "path": "world"}}))
    ts = make_training_set(load_data(cfg), cfg)
    f = ts.frame.assign(noise=np.random.default_rng(0).normal(size=len(ts.frame)))
    cols = [*ts.feature_columns, "noise"]
    tr, va = split_by_cutoff(f, 1, cfg.labels.horizon_days)
    m = ChurnModel(calibration="none", n_estimators=300, learning_rate=0.05, min_child_samples=50,
                   early_stopping_rounds=30).fit(f.loc[tr, cols], f.loc[tr, "churn"].astype(int),
                                                 eval_set=(f.loc[va, cols], f.loc[va, "churn"].astype(int)))
    c = contributions(m, f.loc[va, cols])
    imp = global_importance(c, ts.specs)
    rank = {n: i for i, n in enumerate(imp.index)}
    top = list(imp.index[:15])
    best = lambda prefix: min(i for n, i in rank.items() if n.startswith(prefix))  # noqa: E731
    # recency / engagement and frequency lead, as the generator built them
    assert any("recency" in n or "days_since_activity" in n for n in top[:5]), top
    assert any("orders" in n or "purchase_days" in n or "ipt" in n for n in top), top
    # a pure-noise column is negligible and ranks below every family the generator made relevant
    assert imp.loc["noise", "mean_abs_shap"] < 0.05 * imp["mean_abs_shap"].iloc[0]
    assert rank["noise"] > max(best(p) for p in ("as_", "soc_", "act_", "tx_"))
    fam = family_importance(c, ts.specs)
    assert fam.index[0] in ("transactions", "activity")
    # unresolved complaints/tickets touch few customers but drive their risk: ranked by the effect on
    # the customers they touch, they are among the top drivers
    cond = global_importance(c, ts.specs, f.loc[va, cols]).sort_values("mean_abs_shap_when_active",
                                                                     ascending=False)
    after = [n for n in cond.index[:15] if n.startswith("as_")]
    assert after, list(cond.index[:15])
    # the latest satisfaction / NPS answer (the generator: satisfaction <= 2 raises the hazard, >= 4
    # lowers it) is in the top 25 of ~150 by effect on the customers who answered a survey
    order = list(cond.index)
    assert min(order.index("as_satisfaction_last"), order.index("as_nps_last")) < 25, order[:30]
    assert list(cond.index).index("noise") > 15
