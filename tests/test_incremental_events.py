"""The incremental plan for the activity, social and after-sales families (running totals in NumPy,
clvml/features/incremental.py) gives exactly the cross join's features: the same rows, types, null masks
and float64 bits, at the window boundaries, with nulls, and on a synthetic world through build_features."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from clvml.data.dataset import load_dataset
from clvml.features import activity, after_sales, build_features, query, social
from clvml.features.builder import as_cutoffs, cutoff_table

C1, C2, C3 = dt.date(2024, 3, 1), dt.date(2024, 4, 1), dt.date(2024, 6, 1)  # days 19783, 19814, 19875
WINDOWS = [30, 90]


@pytest.fixture(autouse=True)
def ran(monkeypatch) -> list[bool]:
    """Whether each incremental attempt ran in NumPy (True) or fell back to the cross join (False)."""
    calls: list[bool] = []
    real = query.aggregate_incremental

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(query, "aggregate_incremental", spy)
    return calls


def _assert_same_bits(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns) and len(got) == len(want)
    for c in want.columns:
        assert got[c].dtype == want[c].dtype, c
        g, w = got[c].to_numpy(), want[c].to_numpy()
        if w.dtype.kind == "f":  # the same bits, NaN where NaN (nulls are NaN here)
            assert (np.isnan(g) == np.isnan(w)).all(), c
            assert (g.view("int64")[~np.isnan(g)] == w.view("int64")[~np.isnan(w)]).all(), c
        else:
            assert got[c].isna().equals(want[c].isna()), c
            pd.testing.assert_series_equal(got[c], want[c], check_exact=True, obj=c)


def _events(rows: list[tuple], **extra: list) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["customer_id", "ts", "event_type"])
    df["ts"] = pd.to_datetime(df.ts, format="mixed")
    for k, v in extra.items():
        df[k] = pd.to_datetime(v, format="mixed") if k.endswith("_ts") else v
    return df


def _family(module, frame: pd.DataFrame, table: str, cutoffs=(C1, C2, C3)) -> dict[str, pd.DataFrame]:
    """The family's part (before the builder fills missing rows) by each plan, rows in a fixed order."""
    t = load_dataset(frames={"transactions": pd.DataFrame({
        "customer_id": ["a"], "ts": pd.to_datetime(["2023-01-01"]), "amount": [1.0]}), table: frame},
    ).tables[table]
    out = {}
    for plan in ("cross_join", "incremental"):
        e = module.build(t, cutoff_table(as_cutoffs(list(cutoffs))), WINDOWS, plan)
        out[plan] = e.to_pyarrow().to_pandas().sort_values(["cutoff_day", "customer_id"]).reset_index(drop=True)
    return out


def _row(frame: pd.DataFrame, customer: str, day: int) -> pd.Series:
    return frame.set_index(["customer_id", "cutoff_day"]).loc[(customer, day)]


def test_activity_at_the_window_boundaries(ran):
    frame = _events([
        ("a", "2023-12-01 23:59", "session"),  # C1 - 91: outside C1's 90 days and its trend's 60 before
        ("a", "2023-12-02 00:00", "session"),  # exactly C1 - 90: inside both
        ("a", "2024-01-30 23:00", "page_view"),  # C1 - 31: in the 60 days before the last 30
        ("a", "2024-01-31 00:00", "session"),  # exactly C1 - 30: in the last 30 days
        ("a", "2024-01-31 08:00", "login"),  # the same day
        ("a", "2024-03-01 00:00", "add_to_cart"),  # at C1: not for C1
        ("a", "2024-05-20 00:00", "account_closed"),
        ("b", "2024-04-01 00:00", "session"),  # at C2: b's first row is for C3
        ("c", "2024-06-01 00:00", "login"),  # at C3: never before any cut-off
    ], duration_s=[60.5, 30.0, None, 12.25, None, None, None, 1e6 + 0.125, 5.0])
    out = _family(activity, frame, "activity")
    _assert_same_bits(out["incremental"], out["cross_join"])
    assert ran == [True]
    f = out["cross_join"]
    assert list(zip(f.customer_id, f.cutoff_day, strict=True)) == [("a", 19783), ("a", 19814), ("a", 19875),
                                                                   ("b", 19875)]
    a1, a3, b3 = _row(f, "a", 19783), _row(f, "a", 19875), _row(f, "b", 19875)
    assert (a1.act_sessions_30d, a1.act_sessions_90d, a1.act_sessions_all) == (1, 2, 3)
    assert (a1.act_active_days_30d, a1.act_active_days_90d, a1.act_views_90d, a1.act_logins_30d) == (1, 3, 1, 1)
    assert a1.act_duration_90d == 42.25 and a1.act_duration_all == 102.75 and a1.act_days_since_activity == 30
    assert a1.act_sessions_trend == pytest.approx(1 / 30 - 1 / 60)  # 1 in the last 30 days, 1 in the 60 before
    assert a3.act_closed == 1 and a3.act_days_since_activity == 12 and a3.act_carts_all == 1
    assert b3.act_duration_mean == 1e6 + 0.125 and b3.act_days_since_activity == 61


def test_social_with_ratings_missing_on_some_days(ran):
    frame = _events([
        ("a", "2023-12-02 00:00", "review"),  # exactly C1 - 90
        ("a", "2024-01-31 00:00", "review"),  # exactly C1 - 30, no rating
        ("a", "2024-02-10 00:00", "share"),
        ("a", "2024-02-10 09:00", "like"),
        ("a", "2024-03-01 00:00", "referral"),  # at C1; C2 - 31
        ("a", "2024-03-05 00:00", "referral_converted"),
        ("b", "2024-02-01 00:00", "review"),  # no rating ever: null mean
        ("c", "2024-05-31 23:59", "review"),  # the day before C3
    ], rating=[4.0, None, None, None, None, None, None, 2.5])
    out = _family(social, frame, "social")
    _assert_same_bits(out["incremental"], out["cross_join"])
    assert ran == [True]
    f = out["cross_join"]
    a1, a2, b1, c3 = _row(f, "a", 19783), _row(f, "a", 19814), _row(f, "b", 19783), _row(f, "c", 19875)
    assert (a1.soc_reviews_30d, a1.soc_reviews_90d, a1.soc_shares_30d, a1.soc_likes_all) == (1, 2, 1, 1)
    assert a1.soc_rating_mean == 4.0 and a1.soc_days_since_social == 20 and a1.soc_referrals_all == 0
    assert (a2.soc_referrals_30d, a2.soc_referrals_90d, a2.soc_referrals_converted_all) == (0, 1, 1)
    assert a2.soc_days_since_social == 27
    assert pd.isna(b1.soc_rating_mean) and c3.soc_rating_mean == 2.5 and c3.soc_days_since_social == 1
