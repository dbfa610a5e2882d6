"""Memoised tree SHAP equals LightGBM's pred_contrib on every kind of split and missing value."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from clvml.explain.treeshap import BINCOUNT_SPLITS, compile_booster, tree_shap, tree_shap_and_raw


def frame(n: int, seed: int, nan_share: float = 0.1) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "a": rng.normal(size=n), "b": rng.exponential(size=n), "c": rng.integers(0, 5, n).astype(float),
        "z": np.where(rng.random(n) < 0.3, 0.0, rng.normal(size=n)),
        "cat": pd.Categorical(rng.choice(["red", "green", "blue", "grey"], n),
                              categories=["blue", "green", "grey", "red"]),
    })
    X.loc[rng.random(n) < nan_share, "a"] = np.nan
    X.loc[rng.random(n) < nan_share, "cat"] = np.nan
    logit = X.a.fillna(1.5) - X.b + 0.5 * X.c + (X.cat == "red") * 1.2 + (X.z == 0) * 0.8
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def check(booster, X) -> float:
    full = np.asarray(booster.predict(X, pred_contrib=True))
    ours = tree_shap(booster, X)
    assert ours.shape == full.shape
    return float(np.abs(ours - full).max())


@pytest.mark.parametrize("params", [
    {"max_depth": 4, "num_leaves": 15},                        # the demo's shape: bincount path
    {"num_leaves": 63, "min_child_samples": 5},                # > BINCOUNT_SPLITS splits: sort path
    {"max_depth": 3, "zero_as_missing": True},                 # missing type "Zero"
    {"max_depth": 4, "objective": "regression"},
], ids=["depth4", "deep", "zero_missing", "regression"])
def test_equals_pred_contrib(params):
    X, y = frame(3000, 1)
    params = {"objective": "binary", "n_estimators": 40, "verbose": -1, "deterministic": True,
              "force_row_wise": True, "num_threads": 1, **params}
    target = y if params["objective"] == "binary" else X.b.to_numpy() * 2 + y
    model = lgb.train(params, lgb.Dataset(X, target), num_boost_round=params.pop("n_estimators"))
    if params.get("num_leaves") == 63:
        assert max(len(t.splits) for t in compile_booster(model).trees) > BINCOUNT_SPLITS
    # scoring data: NaN in a column that had none in training (missing type None), unseen NaN
    # categories, values outside the training range
    Xs, _ = frame(5000, 2, nan_share=0.2)
    Xs.loc[::7, "b"] = np.nan
    Xs.loc[::11, "c"] = 99.0
    assert check(model, Xs) < 1e-9
    assert check(model, Xs.iloc[:1]) < 1e-9
    # the raw score found on the way is LightGBM's, to the bit
    phi, raw = tree_shap_and_raw(model, Xs)
    assert np.array_equal(phi, tree_shap(model, Xs))
    assert raw is not None and np.array_equal(raw, model.predict(Xs, raw_score=True))


def test_falls_back_for_very_large_trees_and_empty_input():
    X, y = frame(4000, 3)
    model = lgb.train({"objective": "regression", "num_leaves": 100, "min_child_samples": 2, "verbose": -1,
                       "num_threads": 1}, lgb.Dataset(X, X.b.to_numpy() + y), num_boost_round=3)
    assert not compile_booster(model).supported  # > 62 splits in a tree: codes would overflow
    assert check(model, X) < 1e-9
    assert tree_shap_and_raw(model, X)[1] is None  # no patterns, no raw scores: the caller asks LightGBM
    assert tree_shap(model, X.iloc[:0]).shape[0] == 0


def test_contributions_use_it_and_match_shap(small_world):
    from clvml.data.dataset import load_dataset
    from clvml.explain.drivers import check_against_shap, contributions
    from clvml.features import build_features, to_pandas
    from clvml.labels import build_labels
    from clvml.modeling import ChurnModel

    ds = load_dataset(frames=small_world.tables())
    f = to_pandas(build_features(ds.tables, ["2024-03-01"]))
    lab = build_labels(ds.tables, ["2024-03-01"], horizon_days=90).to_pandas()
    d = f.merge(lab, on=["customer_id", "cutoff"])
    X = d.drop(columns=[c for c in d.columns if c in lab.columns])
    model = ChurnModel(n_estimators=30, params={"max_depth": 4}).fit(X, d["churn"])
    c = contributions(model, X)
    raw = model.booster_.predict(model._features(X), raw_score=True)
    assert np.allclose(c.sum(axis=1), raw, atol=1e-9)
    assert check_against_shap(model, X.iloc[:300]) < 1e-6


@pytest.mark.parametrize("n_splits", [2, 40], ids=["direct_table", "hash_table"])
def test_distinct_codes_numbered_by_first_appearance(n_splits):
    from clvml.explain.treeshap import _distinct

    big = 1 << 39 if n_splits == 40 else 0
    code = np.array([3, 1, 3, 0, 1, 1, 2, 3], dtype=np.int64) | big
    first, inv = _distinct(code, n_splits)
    assert first.tolist() == [0, 1, 3, 6]
    assert inv.tolist() == [0, 1, 0, 2, 1, 1, 3, 0]
    # many colliding-prone codes (multiples of a large power of two) through the hash table
    many = (np.arange(5000, dtype=np.int64) % 777) << 30
    first, inv = _distinct(many, 62)
    assert first.tolist() == list(range(777))
    assert np.array_equal(inv, np.arange(5000) % 777)


def test_decision_codes_follow_lightgbms_rules_row_by_row():
    from clvml.explain.treeshap import _CAT_NAN, _CAT_OTHER, _NUM_NAN, _NUM_NONE, _NUM_ZERO, _codes

    nan = np.nan
    F = np.array([[-1.0, 0.5, 2.0, nan, 0.0, 1e-36],   # feature 0: numeric
                  [0.0, 1.0, 2.0, nan, 3.0, 1.0]])      # feature 1: category codes
    splits = [  # (feature, threshold, kind, default left), then the rows expected to go left
        ((0, 0.5, _NUM_NONE, False), [1, 1, 0, 1, 1, 1]),   # NaN counts as 0
        ((0, 0.5, _NUM_NAN, True), [1, 1, 0, 1, 1, 1]),     # NaN the default way (left)
        ((0, 0.5, _NUM_NAN, False), [1, 1, 0, 0, 1, 1]),    # NaN the default way (right)
        ((0, -2.0, _NUM_ZERO, True), [0, 0, 0, 1, 1, 1]),   # zero, near zero and NaN: default (left)
        ((1, 0.0, _CAT_NAN, False), [0, 1, 1, 0, 0, 1]),    # codes {1, 2} left; NaN is -1: right
        ((1, 0.0, _CAT_OTHER, False), [1, 1, 1, 1, 0, 1]),  # codes {0, 1, 2}; NaN counts as code 0
    ]
    cats = {4: [1, 2], 5: [0, 1, 2]}
    offsets = np.cumsum([0] + [len(cats.get(j, [])) for j in range(len(splits))]).astype(np.int64)
    code = np.empty(F.shape[1], dtype=np.int64)
    _codes(F, np.array([s[0][0] for s in splits], dtype=np.int64), np.array([s[0][1] for s in splits]),
           np.array([s[0][2] for s in splits], dtype=np.int64), np.array([s[0][3] for s in splits]),
           offsets, np.array(cats[4] + cats[5], dtype=np.int64), code)
    expected = sum(np.array(left, dtype=np.int64) << j for j, (_, left) in enumerate(splits))
    assert code.tolist() == expected.tolist()


def test_kernels_compile_without_a_cache_where_no_cache_folder_is_writable(monkeypatch):
    import numba

    from clvml.jit import compiled

    real = numba.njit

    def njit(*args, **kw):  # what Numba does when neither the package's folder nor a user cache is writable
        if kw.get("cache"):
            raise RuntimeError("cannot cache function 'double': no locator available for file 'x.py'")
        return real(*args, **kw)

    monkeypatch.setattr(numba, "njit", njit)

    def double(x):
        return 2 * x

    assert compiled(double)(21) == 42


def test_raw_scores_of_a_tree_without_splits():
    """A tree without a split (LightGBM grows one when no split gains, e.g. for a constant target)
    adds its one leaf to every row."""
    X, _ = frame(2000, 4)
    model = lgb.train({"objective": "regression", "verbose": -1, "num_threads": 1}, lgb.Dataset(X, np.full(2000, 2.5)),
                      num_boost_round=5)
    assert [len(t.splits) for t in compile_booster(model).trees] == [0]
    phi, raw = tree_shap_and_raw(model, X)
    assert np.array_equal(raw, model.predict(X, raw_score=True)) and np.all(raw == 2.5)
    assert np.allclose(phi, model.predict(X, pred_contrib=True))


def test_leaves_follow_the_pattern_bits():
    """Split j's bit set sends a row left; the walk ends at the leaf the bits lead to."""
    from clvml.explain.treeshap import _leaves

    # split 0 at the root; left child split 1, right child leaf 2; split 1's children leaves 0 and 1
    left = np.array([1, ~0], dtype=np.int64)
    right = np.array([~2, ~1], dtype=np.int64)
    values = np.array([10.0, 20.0, 30.0])
    codes = np.array([0b11, 0b01, 0b00, 0b10], dtype=np.int64)
    assert _leaves(codes, left, right, values).tolist() == [10.0, 20.0, 30.0, 30.0]


def test_zero_missing_threshold_is_lightgbms_float():
    """LightGBM's kZeroThreshold is the float 1e-35f: a value between 1e-35 and that float is (near)
    zero for a missing type Zero split."""
    from clvml.explain.treeshap import _NUM_ZERO, ZERO, _codes

    assert float(np.float32(1e-35)) == ZERO and ZERO > 1e-35
    # one split "x <= -1", missing type Zero, default left: (near) zero goes left, other values compare
    between = (1e-35 + ZERO) / 2
    F = np.array([[0.0, np.nan, between, ZERO, 2 * ZERO, -2.0, 0.5]])
    code = np.empty(F.shape[1], dtype=np.int64)
    _codes(F, np.array([0]), np.array([-1.0]), np.array([_NUM_ZERO]), np.array([True]),
           np.array([0, 0]), np.zeros(0, np.int64), code)
    assert code.tolist() == [1, 1, 1, 1, 0, 1, 0]
