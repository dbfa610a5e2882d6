"""BG/NBD and Gamma-Gamma against the published CDNOW figures (Fader, Hardie & Lee 2005)."""

import numpy as np
import pandas as pd
import pytest

from clvml.datasets import load_cdnow_sample
from clvml.modeling.btyd import BGNBD, BTYD_FEATURES, BoundaryWarning, GammaGamma, btyd_features, rfm_summary


@pytest.fixture(scope="module")
def cdnow():
    return rfm_summary(load_cdnow_sample(), "1997-09-30", unit_days=7, holdout_end="1998-06-30")


def test_cdnow_sample_loader():
    df = load_cdnow_sample()
    assert len(df) == 6919 and df.customer_id.nunique() == 2357
    assert df.customer_id.iloc[0] == "00004"


def test_bgnbd_reproduces_the_paper(cdnow):
    m = BGNBD(unit_days=7).fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    got = {k: round(float(v), 3) for k, v in m.params_.items()}
    assert got == {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    assert m.diagnostics_["log_likelihood"] == pytest.approx(-9582.4, abs=0.1)
    assert m.diagnostics_["at_bound"] == []
    # one-time buyers are alive by construction; repeaters less so
    pa = m.p_alive(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert (pa[cdnow["frequency"] == 0] == 1).all() and pa.min() < 0.5
    # 39-week holdout: 1,653 purchase days predicted vs 1,882 observed (-12%), ranking informative
    pred = m.expected_purchases(39.0, cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert pred.sum() == pytest.approx(1653.4, abs=1)
    assert np.corrcoef(pred, cdnow["holdout_purchases"])[0, 1] > 0.5


def test_gamma_gamma_reproduces_the_paper(cdnow):
    g = GammaGamma().fit(cdnow["frequency"], cdnow["monetary_value"])
    assert g.params_["p"] == pytest.approx(6.25, abs=0.01)
    assert g.params_["q"] == pytest.approx(3.74, abs=0.01)
    assert g.params_["v"] == pytest.approx(15.44, abs=0.01)


def tx(rows):
    return pd.DataFrame(rows, columns=["customer_id", "ts", "amount"]).assign(ts=lambda d: pd.to_datetime(d.ts, format="mixed"))


def test_calibration_holdout_split_edges():
    t = tx([("a", "2024-01-01", 10), ("a", "2024-01-01 18:00", 5),   # same day: merged
            ("a", "2024-01-15", 20),                                # last calibration day (inclusive)
            ("a", "2024-01-16", 7),                                 # first holdout day
            ("a", "2024-02-15", 8),                                 # last holdout day (inclusive)
            ("a", "2024-02-16", 9),                                 # after the holdout: ignored, counted
            ("a", "2024-01-10", -4),                                # refund: not a purchase, counted
            ("b", "2024-01-15", 3),                                 # first purchase on the last day
            ("c", "2024-01-16", 3)])                                # first seen in the holdout: excluded
    s = rfm_summary(t, "2024-01-15", unit_days=1, holdout_end="2024-02-15")
    assert list(s.index) == ["a", "b"]
    assert s.loc["a", "frequency"] == 1 and s.loc["a", "recency"] == 14 and s.loc["a", "T"] == 14
    assert s.loc["a", "first_amount"] == 15 and s.loc["a", "monetary_value"] == 20
    assert s.loc["b", "frequency"] == 0 and s.loc["b", "T"] == 0 and s.loc["b", "monetary_value"] == 0
    assert s.loc["a", "holdout_purchases"] == 2 and s.loc["a", "holdout_spend"] == 15
    assert s.loc["b", "holdout_purchases"] == 0 and s.loc["a", "holdout_duration"] == 31
    assert s.attrs == {"excluded_new_in_holdout": 1, "excluded_refund_rows": 1, "rows_after_holdout": 1}


def test_boundary_solution_warns_and_keeps_predicting():
    # nobody ever drops out: every repeat buyer bought on the last calibration day (t_x = T)
    rng = np.random.default_rng(0)
    n = 400
    x = rng.poisson(3.0, n).astype(float)
    T = rng.uniform(10, 50, n)
    tx_ = np.where(x > 0, T, 0.0)
    with pytest.warns(BoundaryWarning, match="boundary solution"):
        m = BGNBD(unit_days=7).fit(x, tx_, T)
    assert m.diagnostics_["at_bound"] and {"log_likelihood", "gradient_norm"} <= set(m.diagnostics_)
    pa = m.p_alive(x, tx_, T)
    e = m.expected_purchases(10.0, x, tx_, T)
    assert np.isfinite(e).all() and (e >= 0).all() and (pa > 0.999).all()


def test_p_no_purchase_is_the_churn_score(cdnow):
    m = BGNBD(unit_days=7).fit(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    args = (cdnow["frequency"], cdnow["recency"], cdnow["T"])
    p0 = m.p_no_purchase(39.0, *args)
    assert ((p0 > 0) & (p0 < 1)).all()
    # one-time buyers: P(alive) is 1, yet most will not buy again: P(no purchase) says so
    one = (cdnow["frequency"] == 0).to_numpy()
    assert p0[one].mean() > 0.6
    assert np.all(m.p_no_purchase(0.0, *args) == pytest.approx(1 - m.p_alive(*args) + m.p_alive(*args)))
    # longer horizons only make a purchase more likely; it predicts the holdout well
    assert (m.p_no_purchase(78.0, *args) <= p0 + 1e-12).all()
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(cdnow["holdout_purchases"] == 0, p0) > 0.75


def test_btyd_features_are_point_in_time():
    t = load_cdnow_sample()
    f = btyd_features(t, ["1997-07-01", "1997-10-01"], horizon_days=91)
    later = pd.concat([t, pd.DataFrame({"customer_id": ["00004"] * 2, "ts": pd.to_datetime(
        ["1997-10-01", "1998-01-01"]), "amount": [1000.0, 5.0]})], ignore_index=True)
    g = btyd_features(later, ["1997-07-01", "1997-10-01"], horizon_days=91)
    pd.testing.assert_frame_equal(f, g)
    assert list(f.columns) == ["customer_id", "cutoff", *BTYD_FEATURES]
    assert f.groupby("cutoff").size().to_dict() == {pd.Timestamp("1997-07-01"): 2357,
                                                    pd.Timestamp("1997-10-01"): 2357}


def test_lightgbm_vs_bgnbd_on_the_cdnow_holdout():
    from clvml.evaluation.cdnow import compare_on_cdnow

    r = compare_on_cdnow()
    base, lgbm = r.loc["BG/NBD + Gamma-Gamma"], r.loc["LightGBM, BG/NBD-shaped"]
    assert base.actual_total == pytest.approx(r.actual_total.iloc[0]) and base.actual_total > 60_000
    # measured: MAE 30.17 vs 30.41, Gini 0.692 vs 0.638, AUC 0.782 vs 0.757, total -13.0 % vs -15.6 %
    # (seeds 2, 3, 11: MAE 30.16, 30.18, 29.99); the issue's bar: at least match BG/NBD on every one
    assert lgbm.spend_mae < base.spend_mae
    assert lgbm.normalized_gini > base.normalized_gini + 0.03
    assert lgbm.churn_auc > base.churn_auc + 0.01
    assert abs(lgbm.total_error_pct) < abs(base.total_error_pct)
    assert np.isfinite(r.to_numpy(float)).all()


def test_clv_on_cdnow_against_the_39_week_holdout():
    """Issue 25 on CDNOW (measured figures in docs/guide/models.md): the BTYD-shaped CLV beats BG/NBD + Gamma-Gamma's
    own CLV on MAE, Gini and the top-20 % tier, and misses the total by less; the geometric survival
    undervalues by more than a third."""
    from clvml.evaluation.cdnow import clv_on_cdnow

    r = clv_on_cdnow()
    ours, bg = r.loc["clvml (BG/NBD-shaped)"], r.loc["BG/NBD + Gamma-Gamma"]
    assert ours.mae < bg.mae and ours.normalized_gini > bg.normalized_gini + 0.04
    assert ours.capture_top20 > bg.capture_top20
    assert -15 < ours.total_error_pct < -10 and abs(ours.total_error_pct) < abs(bg.total_error_pct)
    assert r.loc["clvml (geometric survival)", "total_error_pct"] < -30
    assert (r.capture_top1 <= r.best_top1).all() and r.total_actual.nunique() == 1
