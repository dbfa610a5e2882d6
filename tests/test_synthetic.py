import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from clvml.data.dataset import load_dataset
from clvml.datasets.synthetic import simulate


def test_same_seed_same_world_other_seed_other_world():
    a = simulate(400, "2023-01-01", "2023-12-31", seed=11)
    b = simulate(400, "2023-01-01", "2023-12-31", seed=11)
    c = simulate(400, "2023-01-01", "2023-12-31", seed=12)
    for name in a.TABLES:
        pdt.assert_frame_equal(getattr(a, name), getattr(b, name))
    pdt.assert_frame_equal(a.truth, b.truth)
    pdt.assert_frame_equal(a.traits, b.traits)
    assert not a.transactions.equals(c.transactions)
    # the latent traits, one row per customer; gold members spend more per order
    assert len(a.traits) == 400 and set(a.traits.customer_id) == set(a.customers.customer_id)
    tr = a.traits.merge(a.customers, on="customer_id")
    level = tr.groupby("membership_tier").spend_level.mean()
    assert level["gold"] > level["silver"] > level["basic"]


def test_world_passes_validation_and_has_every_history(small_world):
    ds = load_dataset(frames=small_world.tables())
    assert ds.report.ok and not ds.report.dropped
    assert set(ds.tables) == {"customers", "transactions", "activity", "social", "after_sales"}
    acts = set(small_world.activity.event_type)
    assert {"session", "page_view", "add_to_cart", "login"} <= acts
    assert {"complaint", "ticket", "survey", "return"} <= set(small_world.after_sales.event_type)
    assert (small_world.transactions.amount < 0).any()  # refunds exist


def realised(world, cutoff, horizon=90):
    t = world.transactions
    c = pd.Timestamp(cutoff)
    h = t[(t.amount > 0) & (t.ts >= c) & (t.ts < c + pd.Timedelta(days=horizon))]
    truth = world.truth[world.truth.cutoff == c]
    bought = truth.customer_id.isin(set(h.customer_id)).to_numpy()
    spend = h.groupby("customer_id").amount.sum().reindex(truth.customer_id).fillna(0).to_numpy()
    return truth, bought, spend


def test_ground_truth_matches_realised_outcomes(small_world):
    for cutoff in ("2024-03-01", "2024-06-01"):
        truth, bought, spend = realised(small_world, cutoff)
        p = truth.p_purchase.to_numpy()
        se = np.sqrt((p * (1 - p)).sum()) / len(p)
        assert abs(bought.mean() - p.mean()) < 4 * se, (bought.mean(), p.mean(), se)
        # expected spend: realised total within 4 standard errors of the predicted total
        se_spend = spend.std() / np.sqrt(len(spend))
        assert abs(spend.mean() - truth.expected_spend.mean()) < 4 * se_spend
        # the truth is informative: buyers had much higher probabilities than non-buyers
        assert p[bought].mean() > p[~bought].mean() + 0.3


def test_truth_rows_are_customers_who_arrived_before_the_cutoff(small_world):
    c = small_world.customers
    for cutoff, rows in small_world.truth.groupby("cutoff"):
        arrived = c[c.signup_ts < cutoff].customer_id
        assert set(rows.customer_id) == set(arrived)


def test_dead_customers_never_buy_in_truth(small_world):
    t = small_world.truth
    assert (t.loc[~t.alive, "p_purchase"] == 0).all()
    assert ((t.p_purchase >= 0) & (t.p_purchase <= 1)).all()


def _direct_p_alive(eng, h, lam, obs):
    """P(alive after the last day | observations) by enumerating every dropout day (O(days²)).

    ``obs`` maps buy/closed/browse/share/like to boolean arrays over days 0..T-1 (arrival on day 0)."""
    w_alive, w_dead = _direct_weights(eng, h, lam, obs)
    return w_alive / (w_alive + w_dead)


def _direct_weights(eng, h, lam, obs):
    """P(observations, alive at the end) and P(observations, dropped out), by enumeration."""
    pb, ps, pl = min(0.025 * eng, 0.6), min(0.004 * eng, 0.2), min(0.006 * eng, 0.2)
    T = len(obs["buy"])
    lam = np.where(np.arange(T) == 0, 1.0, lam)
    b, cl, br, sh, lk = (obs[k] for k in ("buy", "closed", "browse", "share", "like"))

    def alive_day(t):
        return ((1 - h[t]) * (not cl[t]) * (lam[t] if b[t] else (1 - lam[t]) * (pb if br[t] else 1 - pb))
                * (ps if sh[t] else 1 - ps) * (pl if lk[t] else 1 - pl))

    w_alive = np.prod([alive_day(t) for t in range(T)])
    w_dead = 0.0
    for d in range(T):
        w = np.prod([alive_day(t) for t in range(d)])
        w *= h[d] * (0.25 if cl[d] else 0.75) * (not (b[d] or sh[d] or lk[d]))
        w *= 0.3 * pb if br[d] else 1 - 0.3 * pb
        for t in range(d + 1, T):
            q = 0.3 * pb * np.exp(-(t - d) / 45)
            w *= (not (b[t] or sh[t] or lk[t] or cl[t])) * (q if br[t] else 1 - q)
        w_dead += w
    return w_alive, w_dead


def _observations(rng, n, T, eng, lam):
    """Random daily hazards (days × customers) and the observable days of ``n`` customers who arrive
    on day 0 and drop out on a random day."""
    h = rng.uniform(0.002, 0.08, (T, n))
    death = rng.integers(1, 2 * T, n)  # about half drop out within the window
    days = np.arange(T)[:, None]
    alive = days < death
    age = days - death
    pb = np.minimum(0.025 * eng, 0.6)
    u = rng.random((5, T, n))
    obs = {"buy": alive & ((u[0] < lam) | (days == 0)), "closed": (age == 0) & (u[1] < 0.25)}
    obs["browse"] = ~obs["buy"] & (u[2] < np.where(alive, pb, 0.3 * pb * np.exp(-np.maximum(age, 0) / 45)))
    obs["share"] = alive & (u[3] < 10 * np.minimum(0.004 * eng, 0.2))  # more to check
    obs["like"] = alive & (u[4] < np.minimum(0.006 * eng, 0.2))
    return h, obs


def test_alive_filter_is_the_exact_posterior():
    from clvml.datasets.synthetic import AliveFilter

    rng = np.random.default_rng(4)
    n, T = 40, 70
    eng = rng.lognormal(0, 0.8, n)
    lam = rng.uniform(0.01, 0.2, n)
    h, obs = _observations(rng, n, T, eng, lam)
    filt = AliveFilter(eng, memory=T + 5)
    arrived = np.ones(n, bool)
    for t in range(T):
        filt.update(t, np.full(n, t == 0), arrived, h[t], np.where(t == 0, 1.0, lam),
                    *(obs[k][t] for k in ("buy", "closed", "browse", "share", "like")))
    got = filt.p_alive()
    want = [_direct_p_alive(eng[i], h[:, i], lam[i], {k: v[:, i] for k, v in obs.items()})
            for i in range(n)]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert (got[obs["closed"].any(axis=0)] == 0).all()  # a closed account is gone for sure
    assert 0.05 < got.mean() < 0.95


def test_rate_mixture_filter_is_the_exact_joint_posterior():
    from clvml.datasets.synthetic import RATE_CLIP, RATE_ENG, RateMixtureFilter, rate_grid

    rng = np.random.default_rng(5)
    n, T, K = 12, 60, 9
    eng = rng.lognormal(0, 0.8, n)
    g, prior = rate_grid(K)
    assert prior.sum() == pytest.approx(1.0) and (np.diff(g) > 0).all()
    lam = np.clip(g[rng.integers(2, K - 2, n)] * eng**RATE_ENG, *RATE_CLIP)  # true rate on a node
    h, obs = _observations(rng, n, T, eng, lam)
    mix = RateMixtureFilter(eng, points=K, memory=T + 5)
    arrived = np.ones(n, bool)
    for t in range(T):
        mix.update(t, np.full(n, t == 0), arrived, h[t], np.ones(n),
                   *(obs[k][t] for k in ("buy", "closed", "browse", "share", "like")))
    w, p_alive = mix.posterior()
    for i in range(n):
        joint = np.array([_direct_weights(eng[i], h[:, i], mix.lam[i, j],
                                          {k: v[:, i] for k, v in obs.items()}) for j in range(K)])
        post = prior * joint.sum(axis=1)
        np.testing.assert_allclose(w[i], post / post.sum(), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(p_alive[i], joint[:, 0] / joint.sum(axis=1), rtol=1e-8, atol=1e-12)
    # buying often moves the posterior to high rates
    rate = (w * mix.lam).sum(axis=1)
    buys = obs["buy"].sum(axis=0)
    assert np.corrcoef(rate, buys)[0, 1] > 0.5


def test_rate_unknown_truth_is_honest_and_below_the_observable_truth():
    kw = dict(start="2023-01-01", end="2023-12-31", seed=21, cutoffs=["2023-07-01", "2023-09-28"])
    plain = simulate(1500, **kw)
    w = simulate(1500, **kw, rate_unknown_truth=["2023-09-28"])
    pd.testing.assert_frame_equal(plain.transactions, w.transactions)  # same world
    t = w.truth
    at = t.cutoff == pd.Timestamp("2023-09-28")
    assert t.loc[~at, "p_purchase_rate_unknown"].isna().all()
    t = t[at]
    assert ((t.p_purchase_rate_unknown >= 0) & (t.p_purchase_rate_unknown <= 1)).all()
    assert (t.p_alive_rate_unknown[t.p_alive_observable == 0] == 0).all()  # closed accounts
    truth, bought, _ = realised(w, "2023-09-28")
    from sklearn.metrics import roc_auc_score

    auc = {k: roc_auc_score(bought, truth[f"p_purchase{k}"]) for k in ("", "_observable", "_rate_unknown")}
    assert auc[""] > auc["_observable"] > auc["_rate_unknown"] > 0.7, auc
    p = truth.p_purchase_rate_unknown.to_numpy()  # still an honest forecast
    assert abs(bought.mean() - p.mean()) < 4 * np.sqrt((p * (1 - p)).sum()) / len(p)
    with pytest.raises(ValueError, match="among the cut-offs"):
        simulate(50, **kw, rate_unknown_truth=["2023-08-01"])


def test_observable_truth_is_calibrated_and_sits_between_model_and_oracle():
    w = simulate(4000, "2023-01-01", "2023-12-31", seed=21)
    t = w.truth.copy()
    # P(alive | what is observable, traits) is calibrated against the hidden flag
    t["bin"] = pd.cut(t.p_alive_observable, [-0.01, 0.2, 0.4, 0.6, 0.8, 0.95, 1.0])
    cal = t.groupby("bin", observed=True).agg(n=("alive", "size"), alive=("alive", "mean"),
                                               post=("p_alive_observable", "mean"))
    assert (cal.n > 200).all(), cal
    assert ((cal.alive - cal.post).abs() < 0.04).all(), cal
    # it only removes knowledge of the alive flag: the same truth for the surely alive ...
    sure = t.p_alive_observable > 1 - 1e-12
    assert sure.sum() > 300
    np.testing.assert_allclose(t.p_purchase_observable[sure], t.p_purchase[sure], rtol=1e-9)
    # ... and it is a forecast as honest as the oracle, with less resolution
    truth, bought, _ = realised(w, "2023-09-28")
    p = truth.p_purchase_observable.to_numpy()
    assert abs(bought.mean() - p.mean()) < 4 * np.sqrt((p * (1 - p)).sum()) / len(p)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(bought, p) < roc_auc_score(bought, truth.p_purchase)
