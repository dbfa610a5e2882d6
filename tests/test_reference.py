"""The Ibis builders agree with the independent pandas reference on random small tables."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from clvml.data.dataset import load_dataset
from clvml.features import build_features, to_pandas
from clvml.features.reference import REFERENCE_COLUMNS, reference_features

WINDOWS = (7, 30, 90)


def random_tables(seed: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n_cust = int(rng.integers(1, 25))
    ids = [f"c{i}" for i in range(n_cust)]
    start = pd.Timestamp("2024-01-01")

    def stamps(n):  # seconds resolution, some exactly at midnight (the cut-off boundary)
        secs = rng.integers(0, 200 * 86400, n)
        return start + pd.to_timedelta(np.where(rng.random(n) < 0.2, (secs // 86400) * 86400, secs), unit="s")

    def events(n, types):
        return pd.DataFrame({"customer_id": rng.choice(ids, n), "ts": stamps(n),
                             "event_type": rng.choice(types, n)})

    n_tx = int(rng.integers(1, 120))
    amount = np.round(rng.gamma(2.0, 20.0, n_tx), 2)
    amount[rng.random(n_tx) < 0.1] *= -1
    tx = pd.DataFrame({"customer_id": rng.choice(ids, n_tx), "ts": stamps(n_tx), "amount": amount})
    tx["order_id"] = [f"o{i}" for i in range(n_tx)]
    act = events(int(rng.integers(0, 200)), ["session", "page_view", "login", "add_to_cart"])
    soc = events(int(rng.integers(0, 40)), ["share", "review", "like", "referral"])
    af = events(int(rng.integers(0, 40)), ["ticket", "complaint", "survey", "return"])
    lag = pd.to_timedelta(rng.integers(0, 30 * 86400, len(af)), unit="s")
    af["resolved_ts"] = (af.ts + lag).where(rng.random(len(af)) < 0.7)
    return {"transactions": tx, "activity": act, "social": soc, "after_sales": af}


@pytest.mark.parametrize("seed", range(8))
def test_builders_match_pandas_reference(seed):
    tables = random_tables(seed)
    cutoffs = [dt.date(2024, 2, 1), dt.date(2024, 3, 15), dt.date(2024, 5, 1), dt.date(2024, 7, 20)]
    ref = reference_features(tables, cutoffs, WINDOWS)
    ds = load_dataset(frames=tables)
    got = to_pandas(build_features(ds.tables, cutoffs, windows=WINDOWS)).set_index(["customer_id", "cutoff"])
    assert sorted(got.index) == sorted(ref.index)
    cols = [c.format(w=w) for c in REFERENCE_COLUMNS for w in ([f"{x}d" for x in WINDOWS] + ["all"])
            if "{w}" in c or w == "all"]
    assert len(cols) == 61
    got = got.loc[ref.index, cols].astype("float64")
    exp = ref[cols].astype("float64")
    pd.testing.assert_frame_equal(got, exp, check_exact=False, rtol=1e-9, atol=1e-9, check_names=False)
