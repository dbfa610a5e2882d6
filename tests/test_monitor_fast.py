"""The monitor's fast paths give the reference figures to the bit.

``clvml monitor`` computes each partition's segment figures with one sort per partition
(:class:`clvml.monitoring.metrics.GroupFigures`), the realised outcomes from the horizon rows only
(``_label_rows``), the monthly churn rate from one narrow read (``_churn_rates``) and the monthly
margin in table order. Each is checked here against the definition it replaces: the scikit-learn /
scipy / clvml functions on each group, :func:`clvml.labels.build_labels` on all the transactions,
and the label rows' churn rate — on data with ties, zeros, NaN, one-class and tiny groups.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from clvml.monitoring.metrics import GroupFigures, clv_window_metrics, horizon_metrics


def _same(fast: dict[str, float], ref: dict[str, float]) -> None:
    assert fast.keys() == ref.keys()
    for k, r in ref.items():
        f = fast[k]
        assert (math.isnan(f) and math.isnan(r)) or (f == r and math.copysign(1, f) == math.copysign(1, r)), (k, f, r)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("seed", range(2))
def test_group_figures_are_the_reference_figures_to_the_bit(seed):
    rng = np.random.default_rng(seed)
    for trial in range(40):
        n = 3000 if trial == 0 else int(rng.choice([1, 2, 3, 7, 40, 300]))
        digits = int(rng.choice([1, 2, 6, 12]))  # few digits: many ties in scores and values
        p = np.round(rng.random(n), digits)
        y = (rng.random(n) < p).astype(int) if trial % 5 else np.zeros(n, int)  # one class: AUC undefined
        actual = np.round(rng.exponential(20, n) * (rng.random(n) < 0.4), digits)  # mostly zeros
        pred = np.round(rng.random(n) * 30, digits)
        clv_actual, clv_pred = actual * 2.5 * (rng.random(n) < 0.8), pred * 3
        if trial % 7 == 0 and n > 2:
            clv_actual[1] = np.nan  # scipy's NaN rules
        if trial % 9 == 0:
            clv_pred[:] = 1.0  # a constant prediction: Spearman undefined
        figures = GroupFigures(y, p, actual, pred, clv_actual, clv_pred)
        segment = rng.integers(0, 3, n)
        for mask in [None, *(segment == k for k in range(3))]:
            rows = slice(None) if mask is None else mask
            if mask is not None and not mask.any():
                continue
            frame = pd.DataFrame({"churn": y[rows], "churn_probability": p[rows], "value": actual[rows],
                                  "expected_value": pred[rows]})
            _same(figures.horizon(mask), horizon_metrics(frame))
            for complete in (True, False):
                _same(figures.clv(mask, complete, 45), clv_window_metrics(clv_actual[rows], clv_pred[rows], complete, 45))


@pytest.fixture(scope="module")
def shop_data(tmp_path_factory):
    """Three years of a small shop's transactions (refunds, same-day purchases, a margin column), read
    as clvml reads them."""
    from clvml.data.dataset import load_dataset

    rng = np.random.default_rng(3)
    n = 6000
    first = pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 900, 400), unit="D")
    cust = rng.integers(0, 400, n)
    ts = first[cust] + pd.to_timedelta(rng.integers(0, 300 * 86400, n), unit="s")
    amount = np.round(rng.exponential(30, n), 2) * np.where(rng.random(n) < 0.05, -1, 1)
    tx = pd.DataFrame({"customer_id": [f"c{c:04d}" for c in cust], "ts": ts, "amount": amount,
                       "margin": np.round(amount * rng.random(n), 2)})
    return load_dataset(frames={"transactions": tx[tx.ts < "2024-01-01"]})


def test_label_rows_give_the_labels_of_all_the_transactions(shop_data):
    from clvml.labels import build_labels
    from clvml.monitoring.monitor import _label_rows

    cuts = [dt.date(2022, m, 1) for m in (3, 4, 5, 9)] + [dt.date(2023, 1, 1)]
    end = dt.date(2023, 12, 31)
    rows = _label_rows(shop_data, cuts[0], cuts[-1] + dt.timedelta(days=60))

    def labels(tables):
        lab = build_labels(tables, cuts, horizon_days=60, data_end=end).to_pandas()
        return lab.sort_values(["cutoff", "customer_id"]).reset_index(drop=True)

    full = labels(shop_data.tables)
    assert len(full) > 1000
    pd.testing.assert_frame_equal(labels({"transactions": rows}), full, check_exact=True)


def test_churn_rate_shortcut_is_the_labels_churn_rate(shop_data):
    from clvml.config import Config
    from clvml.labels import build_labels
    from clvml.monitoring.kpis import _churn_rates

    cfg = Config.model_validate({"name": "shop", "data": {"tables": {"transactions": {"path": "x"}}},
                                 "cutoffs": {"start": "2021-06-01"}, "labels": {"horizon_days": 45}})
    starts = [dt.date(y, m, 1) for y in (2021, 2022, 2023) for m in range(1, 13)]
    end = dt.date(2023, 12, 31)
    got = _churn_rates(shop_data, starts, cfg, end)
    done = [s for s in starts if s + dt.timedelta(days=44) <= end]
    lab = build_labels(shop_data.tables, done, horizon_days=45, data_end=end).to_pandas()
    want = lab.groupby(pd.to_datetime(lab.cutoff).dt.strftime("%Y-%m"))["churn"].mean().to_dict()
    assert got.keys() == want.keys() and len(got) > 20
    assert all(got[k] == pytest.approx(want[k], rel=1e-15) for k in want)
