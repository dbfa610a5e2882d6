import numpy as np
import pandas as pd
import pandas.testing as pdt

from clvml.data.dataset import load_dataset
from clvml.data.synthetic import simulate


def test_same_seed_same_world_other_seed_other_world():
    a = simulate(400, "2023-01-01", "2023-12-31", seed=11)
    b = simulate(400, "2023-01-01", "2023-12-31", seed=11)
    c = simulate(400, "2023-01-01", "2023-12-31", seed=12)
    for name in a.TABLES:
        pdt.assert_frame_equal(getattr(a, name), getattr(b, name))
    pdt.assert_frame_equal(a.truth, b.truth)
    assert not a.transactions.equals(c.transactions)


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
