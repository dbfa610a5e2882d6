"""Pareto/NBD and MBG/NBD against published CDNOW estimates, independent integrals and simulation."""

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from clvml.datasets import load_cdnow_sample
from clvml.modeling.btyd import BGNBD, BoundaryWarning, BTYDModel, rfm_summary
from clvml.modeling.btyd_clv import discounted_residual_value
from clvml.modeling.mbgnbd import MBGNBD
from clvml.modeling.pareto_nbd import ParetoNBD


@pytest.fixture(scope="module")
def cdnow():
    return rfm_summary(load_cdnow_sample(), "1997-09-30", unit_days=7, holdout_end="1998-06-30")


def _args(s):
    return s["frequency"], s["recency"], s["T"]


def _with_params(model, **params):
    for k, v in params.items():
        setattr(model, f"{k}_", v)
    return model


# ----------------------------------------------------------------------------------------------- Pareto/NBD


def test_pareto_nbd_reproduces_the_paper(cdnow):
    # Fader, Hardie & Lee (2005), "A note on deriving the Pareto/NBD model": r = 0.55, α = 10.58,
    # s = 0.61, β = 11.67 (0.553, 10.578, 0.606, 11.669), LL = −9595.0
    m = ParetoNBD(unit_days=7).fit(*_args(cdnow))
    assert m.params_["r"] == pytest.approx(0.553, abs=0.005)
    assert m.params_["alpha"] == pytest.approx(10.578, abs=0.005)
    assert m.params_["s"] == pytest.approx(0.606, abs=0.005)
    assert m.params_["beta"] == pytest.approx(11.669, abs=0.005)
    assert {k: round(float(v), 2) for k, v in m.params_.items()} == {"r": 0.55, "alpha": 10.58, "s": 0.61,
                                                                     "beta": 11.67}
    assert m.diagnostics_["log_likelihood"] == pytest.approx(-9595.0, abs=0.1)
    assert m.diagnostics_["at_bound"] == [] and m.diagnostics_["gradient_norm"] < 0.1
    pa = m.p_alive(*_args(cdnow))
    assert ((pa > 0) & (pa <= 1)).all()
    pred = m.expected_purchases(39.0, *_args(cdnow))
    assert pred.sum() == pytest.approx(1665.5, abs=1)  # 1,882 observed, as for BG/NBD (1,653)
    assert np.corrcoef(pred, cdnow["holdout_purchases"])[0, 1] > 0.5


@pytest.mark.parametrize("params", [(0.55, 10.58, 0.61, 11.67),   # α < β: the CDNOW estimates
                                    (0.8, 12.0, 1.3, 3.0),        # α > β
                                    (2.0, 500.0, 0.3, 0.01),      # α ≫ β: z close to 1
                                    (0.5, 0.02, 4.0, 300.0)])     # α ≪ β
def test_pareto_nbd_likelihood_equals_the_integral_form(params):
    # L = Γ(r+x)α^r β^s/Γ(r) · [ (α+T)^-(r+x) (β+T)^-s + s ∫_{t_x}^T (α+τ)^-(r+x) (β+τ)^-(s+1) dτ ]
    from scipy.special import gammaln

    r, al, s, be = params
    m = _with_params(ParetoNBD(), r=r, alpha=al, s=s, beta=be)
    cases = [(0, 0.0, 30.0), (1, 5.0, 30.0), (2, 30.43, 38.86), (7, 20.0, 20.0), (40, 50.0, 52.0), (3, 0.5, 60.0)]
    for x, tx, T in cases:
        integral, _ = integrate.quad(lambda u, x=x: (al + u) ** -(r + x) * (be + u) ** -(s + 1), tx, T,
                                     epsabs=0, epsrel=1e-12)
        log_c = gammaln(r + x) - gammaln(r) + r * np.log(al) + s * np.log(be)
        expected = log_c + np.log((al + T) ** -(r + x) * (be + T) ** -s + s * integral)
        got = m.log_likelihood([x], [tx], [T])[0]
        assert got == pytest.approx(expected, rel=1e-8, abs=1e-8), (params, x, tx, T)


def test_pareto_nbd_p_alive_matches_a_double_integral_over_the_rates():
    # independent of the 2F1 algebra: integrate the individual-level likelihood over λ ~ Γ(r, α), μ ~ Γ(s, β)
    # (on the quantile scale, which removes the r, s < 1 singularities at 0)
    r, al, s, be = 0.55, 10.58, 0.61, 11.67
    m = _with_params(ParetoNBD(), r=r, alpha=al, s=s, beta=be)
    x, tx, T = 2, 30.43, 38.86
    lam_q, mu_q = stats.gamma(r, scale=1 / al).ppf, stats.gamma(s, scale=1 / be).ppf

    def parts(v, u):
        lam, mu = lam_q(u), mu_q(v)
        alive = lam ** x * np.exp(-(lam + mu) * T)
        dead = lam ** x * mu / (lam + mu) * (np.exp(-(lam + mu) * tx) - np.exp(-(lam + mu) * T))
        return alive, dead

    opts = {"epsabs": 0, "epsrel": 1e-6}
    alive, _ = integrate.dblquad(lambda v, u: parts(v, u)[0], 0, 1, 0, 1, **opts)
    dead, _ = integrate.dblquad(lambda v, u: parts(v, u)[1], 0, 1, 0, 1, **opts)
    assert m.p_alive([x], [tx], [T])[0] == pytest.approx(alive / (alive + dead), abs=1e-4)
    assert m.p_alive([x], [tx], [T])[0] == pytest.approx(0.8684, abs=1e-4)  # both say 0.8684
    assert np.log(alive + dead) == pytest.approx(m.log_likelihood([x], [tx], [T])[0], abs=1e-4)


def _simulate_pareto_nbd(r, al, s, be, T, t, n, rng):
    lam = rng.gamma(r, 1 / al, n)
    tau = rng.exponential(1 / rng.gamma(s, 1 / be, n))
    end = np.minimum(tau, T + t)
    k = rng.poisson(lam * end)
    cust = np.repeat(np.arange(n), k)
    times = rng.uniform(0, end[cust])
    return _summarise(cust, times, n, T, alive=tau > T)


def _summarise(cust, times, n, T, alive):
    cal = times <= T
    x = np.bincount(cust[cal], minlength=n).astype(float)
    tx = np.zeros(n)
    np.maximum.at(tx, cust[cal], times[cal])
    future = np.bincount(cust[~cal], minlength=n).astype(float)
    return pd.DataFrame({"frequency": x, "recency": tx, "T": float(T), "future": future, "alive": alive})


def _check_against_simulation(m, sim, t):
    args = _args(sim)
    sim = sim.assign(e=m.expected_purchases(t, *args), pa=m.p_alive(*args), p0=m.p_no_purchase(t, *args),
                     none=sim["future"] == 0)
    assert ((sim.pa >= 0) & (sim.pa <= 1)).all() and ((sim.p0 >= 0) & (sim.p0 <= 1)).all()
    # E[future | x] = E[E[future | x, t_x] | x]: the conditional expectations average to the simulated means
    g = sim[sim.frequency <= 3].groupby("frequency")[["e", "future", "pa", "alive", "p0", "none"]].mean()
    np.testing.assert_allclose(g.e, g.future, rtol=0.05)
    np.testing.assert_allclose(g.pa, g.alive, atol=0.01)
    np.testing.assert_allclose(g.p0, g.none, atol=0.01)
    assert sim.e.mean() == pytest.approx(sim.future.mean(), rel=0.02)
    # and the unconditional curve: E[X(T)] for newcomers, E[X(T+t)] − E[X(T)] for the future
    assert m.expected_purchases_new(sim["T"].iloc[0]) == pytest.approx(sim.frequency.mean(), rel=0.02)
    T = sim["T"].iloc[0]
    assert m.expected_purchases_new(T + t) - m.expected_purchases_new(T) == pytest.approx(sim.future.mean(), rel=0.02)


def test_pareto_nbd_matches_a_simulation_from_its_parameters():
    r, al, s, be, T, t = 1.5, 6.0, 1.2, 20.0, 30.0, 20.0
    sim = _simulate_pareto_nbd(r, al, s, be, T, t, 200_000, np.random.default_rng(7))
    _check_against_simulation(_with_params(ParetoNBD(), r=r, alpha=al, s=s, beta=be), sim, t)


def test_pareto_nbd_expectation_is_continuous_at_s_equal_1():
    args = ([0, 3], [0.0, 12.0], [20.0, 20.0])
    e = [_with_params(ParetoNBD(), r=1.0, alpha=5.0, s=s, beta=8.0).expected_purchases(10.0, *args)
         for s in (1 - 1e-7, 1.0, 1 + 1e-7)]
    assert np.isfinite(e).all()
    np.testing.assert_allclose(e[0], e[1], rtol=1e-5)
    np.testing.assert_allclose(e[2], e[1], rtol=1e-5)


# ----------------------------------------------------------------------------------------------- MBG/NBD


def test_mbgnbd_reproduces_btydplus_on_cdnow(cdnow):
    # BTYDplus (Platzer) MBG/NBD on the same CDNOW sample: r = 0.525, α = 6.183, a = 0.891, b = 1.614
    m = MBGNBD(unit_days=7).fit(*_args(cdnow))
    got = {k: round(float(v), 3) for k, v in m.params_.items()}
    assert got == {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}
    assert m.diagnostics_["at_bound"] == [] and np.isfinite(list(m.params_.values())).all()
    # one more parameter-free dropout chance fits CDNOW a little better than BG/NBD (−9582.4)
    bg = BGNBD(unit_days=7).fit(*_args(cdnow))
    assert m.diagnostics_["log_likelihood"] == pytest.approx(-9582.14, abs=0.01)
    assert m.diagnostics_["log_likelihood"] > bg.diagnostics_["log_likelihood"]
    pa = m.p_alive(*_args(cdnow))
    one = (cdnow["frequency"] == 0).to_numpy()
    assert ((pa > 0) & (pa < 1)).all()
    # P(alive) < 1 for one-time buyers too: 1 / (1 + a/b · ((α+T)/α)^r) <= b/(a+b)
    T1 = cdnow["T"].to_numpy()[one]
    np.testing.assert_allclose(pa[one], 1 / (1 + m.a_ / m.b_ * ((m.alpha_ + T1) / m.alpha_) ** m.r_), rtol=1e-12)
    assert (pa[one] <= m.b_ / (m.a_ + m.b_)).all()
    pred = m.expected_purchases(39.0, *_args(cdnow))
    assert pred.sum() == pytest.approx(1576.7, abs=1)
    assert np.corrcoef(pred, cdnow["holdout_purchases"])[0, 1] > 0.5


def _simulate_mbgnbd(r, al, a, b, T, t, n, rng):
    lam, p = rng.gamma(r, 1 / al, n), rng.beta(a, b, n)
    nmax = rng.geometric(p) - 1  # repeat purchases before dropping out (0: gone right after the first)
    k = rng.poisson(lam * (T + t))
    cust = np.repeat(np.arange(n), k)
    times = rng.uniform(0, T + t, len(cust))
    order = np.lexsort((times, cust))
    cust, times = cust[order], times[order]
    rank = np.arange(len(cust)) - np.repeat(np.cumsum(k) - k, k)
    keep = rank < nmax[cust]  # dropout happens right after purchase number nmax
    alive = np.bincount(cust[times <= T], minlength=n) < nmax
    return _summarise(cust[keep], times[keep], n, T, alive=alive)


def test_mbgnbd_matches_a_simulation_from_its_parameters():
    r, al, a, b, T, t = 1.5, 6.0, 2.0, 6.0, 30.0, 20.0
    sim = _simulate_mbgnbd(r, al, a, b, T, t, 200_000, np.random.default_rng(11))
    _check_against_simulation(_with_params(MBGNBD(), r=r, alpha=al, a=a, b=b), sim, t)


@pytest.mark.parametrize("model", [ParetoNBD, MBGNBD])
def test_p_alive_is_monotone_in_recency(cdnow, model):
    m = model().fit(*_args(cdnow))
    tx = np.linspace(0.0, 40.0, 81)
    for x in (1, 3, 10):
        pa = m.p_alive(np.full_like(tx, x), tx, np.full_like(tx, 40.0))
        assert ((pa >= 0) & (pa <= 1)).all() and (np.diff(pa) > 0).all()
        # bought on the last day: certainly alive (Pareto/NBD) or alive unless dropped right then (MBG/NBD)
        top = 1.0 if model is ParetoNBD else (m.b_ + x) / (m.a_ + m.b_ + x)
        assert pa[-1] == pytest.approx(top, rel=1e-12)


@pytest.mark.parametrize("model", [ParetoNBD, MBGNBD])
def test_nobody_repeats_gives_a_boundary_fit_not_a_crash(model):
    rng = np.random.default_rng(0)
    T = rng.uniform(10, 50, 400)
    zeros = np.zeros_like(T)
    with pytest.warns(BoundaryWarning, match="boundary solution"):
        m = model().fit(zeros, zeros, T)
    assert m.diagnostics_["at_bound"] and np.isfinite(m.diagnostics_["log_likelihood"])
    e = m.expected_purchases(10.0, zeros, zeros, T)
    assert np.isfinite(e).all() and (e >= 0).all() and e.max() < 1e-3
    p0 = m.p_no_purchase(10.0, zeros, zeros, T)
    assert np.isfinite(p0).all() and (p0 > 0.999).all()


# ------------------------------------------------------------------------------------------- BTYDModel + CLV


@pytest.fixture(scope="module")
def transactions():
    return load_cdnow_sample()


def test_btyd_model_default_is_bgnbd_and_unchanged(transactions):
    a = BTYDModel().fit(transactions, "1997-10-01")
    b = BTYDModel(model="bgnbd").fit(transactions, "1997-10-01")
    assert a.bgnbd_ is a.purchase_model_ and isinstance(a.bgnbd_, BGNBD)
    pd.testing.assert_frame_equal(a.predict(273), b.predict(273))
    assert a.predict(273)["expected_purchases"].sum() == pytest.approx(1653.4, abs=1)
    with pytest.raises(ValueError, match="unknown purchase model"):
        BTYDModel(model="nbd").fit(transactions, "1997-10-01")


@pytest.mark.parametrize(("name", "cls", "total"), [("pareto_nbd", ParetoNBD, 1665.5), ("mbgnbd", MBGNBD, 1576.7)])
def test_btyd_model_with_the_other_purchase_models(transactions, name, cls, total):
    m = BTYDModel(model=name).fit(transactions, "1997-10-01")
    assert isinstance(m.purchase_model_, cls) and not hasattr(m, "bgnbd_") and m.warnings_ == []
    p = m.predict(273)
    assert p["expected_purchases"].sum() == pytest.approx(total, abs=1)
    assert ((p.p_alive >= 0) & (p.p_alive <= 1)).all() and ((p.p_no_purchase >= 0) & (p.p_no_purchase <= 1)).all()
    holdout = rfm_summary(transactions, "1997-09-30", holdout_end="1998-06-30")["holdout_purchases"]
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(holdout.reindex(p.index) == 0, p.p_no_purchase) > 0.75


@pytest.mark.parametrize("name", ["bgnbd", "pareto_nbd", "mbgnbd"])
def test_clv_is_the_discounted_sum_of_period_spends(transactions, name):
    m = BTYDModel(model=name).fit(transactions, "1997-10-01")
    # one undiscounted period = predict's expected spend over that period
    one = m.clv(periods=1, period_days=91, discount_rate=0.0)
    np.testing.assert_allclose(one, m.predict(91)["expected_spend"], rtol=1e-12)
    # K undiscounted periods telescope to the spend over K·H days
    np.testing.assert_allclose(m.clv(periods=4, period_days=91, discount_rate=0.0),
                               m.predict(364)["expected_spend"], rtol=1e-9)
    # discounting: period k weighs (1+d)^-k
    d = 0.05
    per = [m.predict(91 * k)["expected_spend"] - m.predict(91 * (k - 1))["expected_spend"] if k > 1
           else m.predict(91)["expected_spend"] for k in range(1, 5)]
    manual = sum(v / (1 + d) ** k for k, v in enumerate(per, start=1))
    c = m.clv(periods=4, period_days=91, discount_rate=d, margin=0.3)
    np.testing.assert_allclose(c, 0.3 * manual, rtol=1e-9)
    assert (c >= 0).all() and c.name == "clv" and c.index.equals(m.summary_.index)
    with pytest.raises(ValueError, match="periods"):
        discounted_residual_value(m.purchase_model_, 1.0, [0], [0], [1], periods=0, period_days=7,
                                  discount_rate=0.0)


# ------------------------------------------------------------------------------------------- diagnostic plots


@pytest.fixture(scope="module")
def fitted(cdnow):
    return {cls.__name__: cls().fit(*_args(cdnow)) for cls in (BGNBD, ParetoNBD, MBGNBD)}


@pytest.mark.parametrize("name", ["BGNBD", "ParetoNBD", "MBGNBD"])
def test_calibration_vs_holdout_plot(cdnow, fitted, name):
    from clvml.evaluation.btyd_plots import calibration_vs_holdout

    m = fitted[name]
    fig = calibration_vs_holdout(m, cdnow, max_frequency=7)
    (ax,) = fig.axes
    actual, expected = ax.get_lines()
    x = cdnow["frequency"].clip(upper=7)
    want = cdnow["holdout_purchases"].groupby(x).mean()
    np.testing.assert_array_equal(actual.get_xdata(), np.arange(8))
    np.testing.assert_allclose(actual.get_ydata(), want.to_numpy())
    pred = pd.Series(m.expected_purchases(39.0, *_args(cdnow)), index=cdnow.index)
    np.testing.assert_allclose(expected.get_ydata(), pred.groupby(x).mean().to_numpy())
    assert [t.get_text() for t in ax.get_xticklabels()][-1] == "7+"
    # the models track the holdout: mean absolute error per frequency group below 0.5 purchases
    assert np.abs(np.asarray(expected.get_ydata()) - want.to_numpy()).mean() < 0.5


@pytest.mark.parametrize("name", ["BGNBD", "ParetoNBD", "MBGNBD"])
def test_p_alive_matrix_plot(fitted, name):
    from clvml.evaluation.btyd_plots import p_alive_matrix

    m = fitted[name]
    fig = p_alive_matrix(m, T=39.0, max_frequency=10, recency_steps=40)
    ax, bar = fig.axes  # the heat map and its colour bar
    (image,) = ax.get_images()
    data = np.ma.filled(image.get_array(), np.nan)
    assert data.shape == (11, 40)
    rec = np.linspace(0, 39.0, 40)
    np.testing.assert_allclose(data[3], m.p_alive(np.full(40, 3.0), rec, np.full(40, 39.0)))
    np.testing.assert_allclose(data[10, -1], m.p_alive([10], [39.0], [39.0])[0])
    assert np.isnan(data[0, 1:]).all() and np.isfinite(data[1:]).all()
    assert (np.nanmin(data) >= 0) and (np.nanmax(data) <= 1) and (np.diff(data[1:], axis=1) > 0).all()


def test_cumulative_purchases_plot(transactions, cdnow, fitted):
    from clvml.evaluation.btyd_plots import cumulative_purchases

    m = fitted["ParetoNBD"]
    fig = cumulative_purchases(m, transactions, "1997-09-30", "1998-06-30", unit_days=7)
    (ax,) = fig.axes
    actual, expected, cal_line = ax.get_lines()
    t = np.asarray(actual.get_xdata())
    np.testing.assert_array_equal(t, np.arange(1, 78))  # 1997-01-01 + 77 weeks = 1998-06-24
    assert cal_line.get_xdata()[0] == 38  # the last point in the calibration period (1997-09-24)
    # actual: repeat purchase days (one per customer and day after the first) up to each point
    days = transactions.assign(day=transactions.ts.dt.normalize()).drop_duplicates(["customer_id", "day"])
    days = days[days.day > days.groupby("customer_id").day.transform("min")]
    for k in (1, 20, 38, 77):
        point = pd.Timestamp("1997-01-01") + pd.Timedelta(weeks=k)
        assert actual.get_ydata()[k - 1] == (days.day <= point).sum()
    # the calibration total: the summaries' frequencies; the holdout adds the holdout purchases
    assert actual.get_ydata()[-1] < cdnow["frequency"].sum() + cdnow["holdout_purchases"].sum()
    # expected: the newcomer curve summed over customers at their ages
    first = transactions.groupby("customer_id").ts.min()
    age = (pd.Timestamp("1997-01-01") + pd.Timedelta(weeks=38) - first).dt.days.clip(lower=0) / 7
    assert expected.get_ydata()[37] == pytest.approx(m.expected_purchases_new(age.to_numpy()).sum(), rel=1e-12)
    # fitted on the calibration period: the curves agree there within 5 %
    assert expected.get_ydata()[37] == pytest.approx(actual.get_ydata()[37], rel=0.05)


def test_save_btyd_plots(tmp_path, transactions, cdnow, fitted):
    from clvml.evaluation.btyd_plots import save_btyd_plots

    paths = save_btyd_plots(fitted["MBGNBD"], cdnow, transactions, "1997-09-30", "1998-06-30", tmp_path)
    assert sorted(paths) == ["calibration_vs_holdout", "cumulative_purchases", "p_alive_matrix"]
    for p in paths.values():
        assert p.exists() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
