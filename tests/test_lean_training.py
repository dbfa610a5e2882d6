"""Lean training (issue 26 item 4): the memory-saving paths give what the plain ones give, to the bit.

* LightGBM fitted on one stacked C-ordered matrix (:func:`clvml.modeling.lgbm.stacked_matrix`) grows the
  same trees, with the same ``model_to_string()``, as LightGBM's scikit-learn interface fitted on the
  DataFrames (early-stopped fit and the refit on training + validation + extra rows concatenated).
* :func:`clvml.modeling.training.join_labels` is pandas' inner one-to-one merge, whether the matched rows
  are a prefix of the features (no copy) or not.
* :func:`clvml.modeling.training.take_rows` is ``iloc``, a view for consecutive rows.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from clvml.modeling.lgbm import Extra, fit_with_early_stopping, prepare_X, stacked_matrix
from clvml.modeling.training import KEYS, join_labels, take_rows


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    X = pd.DataFrame({
        "a": x, "b": np.where(rng.random(n) < 0.2, np.nan, rng.gamma(2.0, size=n)),
        "n_orders": rng.poisson(3, size=n),  # int64: prepare_X makes it float64
        "region": pd.Series(rng.choice(["north", "south", "west", None], size=n), dtype="category"),
        "c": rng.normal(size=n),
    })
    y = (x + (X["region"] == "west") + rng.normal(size=n) > 0.5).astype(int).to_numpy()
    return X, y


def _plain_fit(params: dict, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame, y_val: np.ndarray,
               extra: Extra, rounds_es: int) -> tuple[str, str]:
    """What fit_with_early_stopping did before: the scikit-learn interface on the DataFrames, the refit on
    their pandas concatenation."""
    first = lgb.LGBMClassifier(**params).fit(X, y, eval_X=(X_val,), eval_y=(y_val,),
                                             callbacks=[lgb.early_stopping(rounds_es, verbose=False)])
    rounds = max(1, int(first.best_iteration_ or params["n_estimators"]))
    final = lgb.LGBMClassifier(**{**params, "n_estimators": rounds}).fit(
        pd.concat([X, X_val, extra.X]), np.concatenate([y, y_val, extra.y]))
    return first.booster_.model_to_string(), final.booster_.model_to_string()


def test_stacked_matrix_fit_grows_the_trees_of_the_dataframe_fit():
    X, y = _frame(3000, 0)
    cats = {"region": sorted(X["region"].dropna().unique())}
    Xp = prepare_X(X, list(X.columns), cats)
    tr, va, ex = slice(0, 2000), slice(2000, 2500), slice(2500, 3000)
    params = {"objective": "binary", "n_estimators": 60, "learning_rate": 0.2, "num_leaves": 15,
              "min_child_samples": 20, "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.8,
              "random_state": 3, "n_jobs": 1, "deterministic": True, "force_row_wise": True, "verbose": -1}
    extra = Extra(Xp.iloc[ex], y[ex])
    final, first, rounds = fit_with_early_stopping(lgb.LGBMClassifier, params, Xp.iloc[tr], y[tr], Xp.iloc[va],
                                                   y[va], 5, extra=extra)
    plain_first, plain_final = _plain_fit(params, Xp.iloc[tr], y[tr], Xp.iloc[va], y[va], extra, 5)
    assert 1 < rounds < 60  # stopped early: the refit is a different model from the first fit
    assert first.booster_.model_to_string() == plain_first
    assert final.booster_.model_to_string() == plain_final
    assert "pandas_categorical:[[\"north\", \"south\", \"west\"]]" in plain_final
    assert list(final.feature_names_in_) == list(X.columns)
    M, names = stacked_matrix([Xp.iloc[tr], Xp.iloc[va]])
    # a DataFrame through the estimator (LightGBM maps its categories) predicts as the matrix does
    np.testing.assert_array_equal(first.predict_proba(Xp.iloc[va])[:, 1], first.booster_.predict(M[2000:]))
    assert M.flags.c_contiguous and M[:2000].flags.c_contiguous and names == list(X.columns)
    codes = Xp["region"].cat.codes.to_numpy()
    np.testing.assert_array_equal(M[:, 3], np.where(codes[:2500] < 0, np.nan, codes[:2500]))


def test_join_labels_is_the_inner_merge_with_or_without_a_prefix():
    rng = np.random.default_rng(1)
    feats = pd.DataFrame({"customer_id": np.tile(["c1", "c2", "c3", "c4"], 3),
                          "cutoff": pd.to_datetime(np.repeat(["2024-01-01", "2024-02-01", "2024-03-01"], 4)),
                          "f1": rng.normal(size=12), "f2": rng.integers(0, 5, 12)})
    labels = feats[KEYS].assign(churn=rng.random(12) < 0.5, spend=rng.gamma(1.0, size=12))
    for keep in (np.arange(8), np.array([0, 2, 3, 5, 9, 11]), np.array([11, 0, 4])):
        lab = labels.iloc[keep].sample(frac=1.0, random_state=0)  # labels in any order
        expected = feats.merge(lab, on=KEYS, how="inner", validate="one_to_one")
        pd.testing.assert_frame_equal(join_labels(feats, lab), expected, check_exact=True)
    joined = join_labels(feats, labels.iloc[:8])
    assert np.shares_memory(joined["f1"].to_numpy(), feats["f1"].to_numpy())  # the prefix: not copied
    with pytest.raises(pd.errors.MergeError):
        join_labels(feats, pd.concat([labels, labels.iloc[:1]]))


def test_take_rows_is_iloc_and_a_view_for_consecutive_rows():
    frame = pd.DataFrame({f"c{i}": np.arange(10.0) + i for i in range(4)}, copy=False)
    cols = np.array([0, 2, 3])
    for rows in (np.arange(3, 8), np.array([1, 4, 5]), np.array([6]), np.array([], dtype=int)):
        pd.testing.assert_frame_equal(take_rows(frame, rows, cols), frame.iloc[rows, cols])
    assert np.shares_memory(take_rows(frame, np.arange(3, 8), cols)["c2"].to_numpy(), frame["c2"].to_numpy())
