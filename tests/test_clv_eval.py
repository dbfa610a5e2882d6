"""CLV against realised value: the metrics on a hand-built table, the realised label, intervals."""

import numpy as np
import pytest

from clvml.evaluation.clv_eval import clv_metrics, interval_metrics, tier_capture, tier_size

# ten customers: realised margin over the K periods and a predicted CLV
ACTUAL = [100, 50, 30, 20, 0, 0, 0, 0, 0, 0]
PRED = [80, 90, 20, 30, 1, 0, 0, 0, 0, 0]


def test_tier_size_rounds_up_and_keeps_at_least_one():
    assert [tier_size(10, s) for s in (0.01, 0.05, 0.2)] == [1, 1, 2]
    assert [tier_size(1000, s) for s in (0.01, 0.05, 0.2)] == [10, 50, 200]
    assert tier_size(101, 0.2) == 21


def test_clv_metrics_on_a_hand_built_table():
    m = clv_metrics(ACTUAL, PRED)
    # top 1 % = top 5 % = 1 customer: the prediction's top is customer 1 (50 of 200), the best is 100
    assert m["capture_top1"] == m["capture_top5"] == pytest.approx(0.25)
    assert m["best_top1"] == m["best_top5"] == pytest.approx(0.5)
    # top 20 % = 2 customers: {1, 0} hold 150 of 200, as many as the best pair
    assert m["capture_top20"] == m["best_top20"] == pytest.approx(0.75)
    assert m["mae"] == pytest.approx(81 / 10)  # 20 + 40 + 10 + 10 + 1
    assert m["total_actual"] == 200 and m["total_predicted"] == 221
    assert m["total_error_pct"] == pytest.approx(10.5)
    # Lorenz sums: by prediction .25 .75 .85 1 (then 1s) -> 0.335; perfect .5 .75 .9 1 -> 0.365
    assert m["normalized_gini"] == pytest.approx(0.335 / 0.365)
    # perfect ranking: Spearman 1, capture = best
    p = clv_metrics([4, 3, 2, 1], [40, 30, 20, 10])
    assert p["spearman"] == pytest.approx(1.0) and p["normalized_gini"] == pytest.approx(1.0)
    assert p["capture_top20"] == p["best_top20"] == pytest.approx(0.4)


def test_tier_capture_breaks_ties_by_row_order():
    # all predictions equal: the top tier is the first row
    assert tier_capture([1, 9], [5, 5], shares=(0.5,)) == {"capture_top50": 0.1, "best_top50": 0.9}


def test_interval_metrics():
    m = interval_metrics([0, 5, 10, 20], [0, 6, 0, 0], [1, 8, 12, 15])
    assert m == {"coverage": 0.5, "below": 0.25, "above": 0.25, "mean_width": np.mean([1, 2, 12, 15])}
