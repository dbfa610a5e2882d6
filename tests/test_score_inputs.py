"""The scoring fast path gives the bits of the plain one: the model matrix built once per chunk, the
boosters reading it in place, tree SHAP patterns and reason-code texts remembered across chunks, and the
bundle's environment check done without MLflow's."""

from __future__ import annotations

from types import SimpleNamespace

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from clvml.explain.treeshap import CompiledBooster, compile_booster, tree_shap
from clvml.modeling import ChurnModel, ValueModel
from clvml.modeling.lgbm import model_matrix, prepare_X


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


def raw_frame(n: int, seed: int) -> pd.DataFrame:
    """Feature columns as the feature builder hands them over: float64 with NaN, int64 counts, a bool
    flag, a nullable integer with NA and a text category (with missing and unseen labels)."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "amount": np.where(rng.random(n) < 0.1, np.nan, rng.gamma(2.0, 30.0, n)),
        "orders": rng.poisson(3, n).astype(np.int64),
        "closed": rng.random(n) < 0.2,
        "tickets": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 4, n)), dtype="Int64"),
        "channel": pd.Series(rng.choice(["web", "app", "store", None], n), dtype="str"),
    })
    X["minus_zero"] = np.where(rng.random(n) < 0.5, -0.0, rng.normal(size=n))
    return X


@pytest.fixture(scope="module")
def models():
    X = raw_frame(3000, 1)
    y = ((X["amount"].fillna(60) / 60 + X["orders"] * 0.3 + (X["channel"] == "app") + X["closed"]
          + np.random.default_rng(2).normal(size=len(X))) > 2.5).astype(int)
    spend = np.where(y == 1, X["amount"].fillna(10).to_numpy() * 0.5, 0.0)
    kw = {"n_estimators": 25, "num_leaves": 7, "min_child_samples": 10, "n_jobs": 1}
    churn = ChurnModel(calibration="none", **kw).fit(X, y)
    value = ValueModel(form="frequency", **kw).fit(X, spend + 1.0, purchases=X["orders"] + 1)
    return churn, value


@pytest.mark.filterwarnings("ignore:Constructing a Categorical:DeprecationWarning")  # unseen labels: missing
def test_model_matrix_is_what_lightgbm_reads_from_the_prepared_frame(models):
    churn, _ = models
    X = raw_frame(500, 3)
    X.loc[::5, "channel"] = "kiosk"  # unseen at training: missing, as prepare_X makes it
    cols, cats = list(X.columns), churn.categories_
    F = model_matrix(X, cols, cats)
    Xp = prepare_X(X, cols, cats)
    want = Xp.assign(channel=Xp["channel"].cat.codes.replace(-1, np.nan)).to_numpy(dtype=float)
    assert F.shape == (len(cols), len(X)) and F.flags.c_contiguous
    assert np.array_equal(bits(F.T), bits(want))
    # a column already converted to the training categories is taken as it is
    Xc = X.assign(channel=Xp["channel"])
    assert np.array_equal(bits(model_matrix(Xc, cols, cats)), bits(F))


def test_predictions_from_the_matrix_equal_the_estimators_to_the_bit(models):
    churn, value = models
    X = raw_frame(700, 4)
    Xp = prepare_X(X, list(X.columns), churn.categories_)
    F = churn.matrix(X)
    assert np.array_equal(bits(churn.predict_proba_matrix(F)[:, 1]), bits(churn.booster_.predict_proba(Xp)[:, 1]))
    assert np.array_equal(bits(churn.predict_proba(X)), bits(churn.predict_proba_matrix(F)))
    spend, count = value.predict_matrix_with_purchases(value.matrix(X))
    want_count = np.maximum(value.count_.predict(Xp), 0.0)
    assert np.array_equal(bits(count), bits(want_count))
    assert np.array_equal(bits(spend), bits(want_count * np.maximum(value.amount_.predict(Xp), 0.0)))


@pytest.mark.parametrize("form", ["frequency", "tweedie", "offset", "hurdle"])
def test_predictions_from_the_explanations_raw_scores_are_lightgbms_bits(models, form):
    """The scoring job explains first and predicts from the raw scores tree SHAP found: every form's
    predictions are those LightGBM gives, to the bit, and each booster's raw scores were used."""
    from clvml.explain.drivers import _boosters, contributions

    churn, value = models
    if form != "frequency":
        X0 = raw_frame(3000, 1)
        spend = X0["amount"].fillna(10).to_numpy() * (X0["orders"].to_numpy() % 2)
        kw = {"n_estimators": 25, "num_leaves": 7, "min_child_samples": 10, "n_jobs": 1}
        value = ValueModel(form=form, **kw, **({"offset_column": "amount"} if form == "offset" else {})
                           ).fit(X0, spend, purchases=X0["orders"])
    X = raw_frame(900, 6)
    for model in (churn, value):
        F = model.matrix(X)
        raw = {}
        contributions(model, X, F=F, raw=raw)
        assert set(raw) == set(_boosters(model))
        if model is churn:
            assert np.array_equal(bits(churn.predict_proba_matrix(F, raw)), bits(churn.predict_proba_matrix(F)))
        else:
            got, want = value.predict_matrix_with_purchases(F, raw), value.predict_matrix_with_purchases(F)
            assert np.array_equal(bits(got[0]), bits(want[0]))
            assert (got[1] is None) == (want[1] is None)
            if got[1] is not None:
                assert np.array_equal(bits(got[1]), bits(want[1]))


def test_tree_shap_patterns_remembered_across_calls_give_the_same_bits(models):
    churn, _ = models
    booster = churn.booster_.booster_
    X = prepare_X(raw_frame(4000, 5), churn.feature_names_in_.tolist(), churn.categories_)
    first, second = X.iloc[:1500], X.iloc[1500:]
    tree_shap(booster, first)  # fills the memo
    assert sum(m.codes.size for m in compile_booster(booster).memo) > 0
    remembered = tree_shap(booster, second)
    fresh_cb = CompiledBooster(booster)  # nothing remembered: every pattern asked from LightGBM
    from clvml.explain import treeshap

    treeshap._CACHE[booster] = fresh_cb
    try:
        fresh = tree_shap(booster, second)
    finally:
        treeshap._CACHE.pop(booster, None)
    assert np.array_equal(bits(remembered), bits(fresh))
    full = np.asarray(booster.predict(second, pred_contrib=True))
    assert np.abs(remembered - full).max() < 1e-9


def test_reason_texts_remembered_across_chunks_are_the_catalogs():
    from clvml.explain.reasons import _Texts
    from clvml.features.registry import FeatureSpec, Say

    spec = FeatureSpec("tx_spend_30d", "transactions", "transactions", 30, "spend", "money", "float64",
                       "zero", "spent {value} {span}", say=Say("spent {value} {span}", zero="spent nothing {span}",
                                                              kind="money"))
    old = FeatureSpec("legacy_x", "transactions", "transactions", None, "x", "count", "float64", "zero",
                      "{value} things {span}")
    texts = _Texts(limit=4)
    values = [12.5, 0.0, -0.0, 1234.0, 12.5, None, 7.0, 8.0, 9.0]
    for spec_ in (spec, old):
        for _ in range(2):  # the second pass is served from memory (until the limit drops the oldest)
            assert texts.render(spec_, spec_.name, values) == [spec_.explain(v) for v in values]
    assert texts.render(old, "legacy_x", [-0.0]) == ["-0 things over all history"]  # never served as 0.0's
    assert texts.size <= 4 + len(values)
    assert texts.render(None, "feat", [3.0]) == ["feat = 3.0"]


def test_environment_mismatches_name_the_package_and_python(tmp_path):
    import platform

    from clvml.scoring.bundle import environment_mismatches, warn_environment

    (tmp_path / "requirements.txt").write_text(f"numpy=={np.__version__}\nlightgbm==0.0.1\nnot-a-package-xyz==1.0\n"
                                               "mlflow\n")
    (tmp_path / "MLmodel").write_text("flavors:\n  python_function:\n    python_version: 2.7.18\n")
    found = environment_mismatches(tmp_path)
    assert found == [f"lightgbm==0.0.1 (installed: {lgb.__version__})",
                     "not-a-package-xyz==1.0 (installed: not installed)",
                     f"Python 2.7.18 (running: {platform.python_version()})"]
    with pytest.warns(UserWarning, match=r"lightgbm==0\.0\.1 .*pip install -r"):
        warn_environment(tmp_path, "models/x")
    (tmp_path / "requirements.txt").write_text(f"numpy=={np.__version__}\n")
    (tmp_path / "MLmodel").write_text(f"python_version: {platform.python_version()}\n")
    assert environment_mismatches(tmp_path) == []


@pytest.mark.parametrize("direction", [1, -1])
def test_reason_codes_are_the_top_features_by_push_ties_in_column_order(direction):
    from clvml.explain.drivers import BIAS
    from clvml.explain.reasons import reason_codes

    rng = np.random.default_rng(7)
    n, m = 400, 12
    C = np.round(rng.normal(size=(n, m)), 1)  # rounded: many ties
    C[:, [2, 7]] = 0.0  # unused features
    C[:, 9] = -direction * np.abs(C[:, 9])  # pushes the other way only
    C[::13] = 0.0  # rows no feature pushes
    names = [f"f{j}" for j in range(m)]
    contrib = pd.DataFrame(np.column_stack([C, np.ones(n)]), columns=[*names, BIAS])
    X = pd.DataFrame(rng.integers(0, 3, (n, m)).astype(float), columns=names)
    got = reason_codes(contrib, X, [], k=3, direction=direction)
    for r in range(n):
        push = sorted((-direction * C[r, j], j) for j in range(m) if direction * C[r, j] > 0)[:3]
        want = [names[j] for _, j in push] + [None] * (3 - len(push))
        assert [None if pd.isna(v) else v for v in (got.at[r, f"reason_{i}"] for i in (1, 2, 3))] == want
        assert [got.at[r, f"reason_{i}_text"] for i in (1, 2, 3)][:len(push)] == \
            [f"{names[j]} = {X.iat[r, j]}" for _, j in push]
    assert "reason_1_value" not in reason_codes(contrib, X, [], k=3, direction=direction, values=False)


def test_one_pass_top_k_is_the_argmax_search_where_a_feature_pushes():
    """The running top-k (no NaN in the SHAP values) picks what k argmax passes pick, wherever the
    value pushes the asked way: same features, same order, ties by column order, none past the last."""
    from clvml.explain.reasons import _top_k_argmax, _top_k_positive

    rng = np.random.default_rng(3)
    for trial in range(60):
        n, m = 80, int(rng.integers(1, 9))
        C = np.round(rng.normal(size=(n, m)), 1) * (rng.random((n, m)) < 0.6)  # ties, zeros, -0.0
        C = np.asfortranarray(C) if trial % 2 else C
        for d in (1, -1):
            cand = np.flatnonzero((C * d).max(axis=0) > 0)
            for k in (1, 3, 5):
                kk = min(k, cand.size)
                want = _top_k_argmax(C, cand, kk, d)
                pushes = np.stack([C[np.arange(n), want[:, i]] * d > 0 for i in range(kk)], axis=1) \
                    if kk else np.zeros((n, 0), dtype=bool)
                got, ok = _top_k_positive(C, cand, kk, d)
                assert np.array_equal(ok, pushes)
                assert np.array_equal(np.where(ok, got, -1), np.where(pushes, want, -1))


def test_a_nan_shap_value_takes_a_place_as_argmax_ranks_it():
    from clvml.explain.drivers import BIAS
    from clvml.explain.reasons import reason_codes

    C = np.array([[0.5, np.nan, 0.2, 0.9], [0.1, 0.3, 0.0, 0.2]])
    contrib = pd.DataFrame(np.column_stack([C, np.zeros(2)]), columns=["a", "b", "c", "d", BIAS])
    X = pd.DataFrame(np.ones((2, 4)), columns=["a", "b", "c", "d"])
    got = reason_codes(contrib, X, [], k=3)
    # row 0: the NaN (feature b) ranks first and pushes nowhere: its place stays empty
    assert pd.isna(got.at[0, "reason_1"]) and pd.isna(got.at[0, "reason_1_shap"])
    assert [got.at[0, f"reason_{i}"] for i in (2, 3)] == ["d", "a"]
    assert [got.at[1, f"reason_{i}"] for i in (1, 2, 3)] == ["b", "d", "a"]


def test_duckdb_memory_limit_is_the_budget_less_the_chunks_memory():
    from clvml.config import parse_config
    from clvml.scoring.job import BASE_BYTES, CHUNK_BYTES_PER_VALUE, MIN_DUCKDB_BYTES, duckdb_memory_limit, size_bytes

    def cfg(**kw):
        engine = kw.pop("engine", "duckdb")
        return parse_config({"name": "m", "data": {"tables": {"transactions": {"path": "tx.parquet"}}},
                             "cutoffs": {"start": "2024-01-01"}, "engine": engine, "scoring": kw})

    assert size_bytes("4GiB") == 4 * 2**30 and size_bytes("1500MB") == 1_500_000_000
    assert size_bytes(" 2.5 GB ") == 2_500_000_000
    want = (4 * 2**30 - 125_000 * 153 * CHUNK_BYTES_PER_VALUE - BASE_BYTES) // 2**20
    assert duckdb_memory_limit(cfg(), 153) == f"{want}MiB"  # the default budget: 4GiB
    assert 1700 < want < 1900
    small = duckdb_memory_limit(cfg(memory_budget="3GiB", chunk_customers=10_000), 153)
    assert small == f"{(3 * 2**30 - 10_000 * 153 * CHUNK_BYTES_PER_VALUE - BASE_BYTES) // 2**20}MiB"
    # a budget the chunks alone would fill: DuckDB still gets its floor
    assert duckdb_memory_limit(cfg(memory_budget="1GB"), 153) == f"{MIN_DUCKDB_BYTES // 2**20}MiB"
    # a configured memory limit wins; a null budget leaves DuckDB's default; Spark has none
    assert duckdb_memory_limit(cfg(engine={"duckdb": {"memory_limit": "6GB"}}), 153) is None
    assert duckdb_memory_limit(cfg(memory_budget=None), 153) is None
    assert duckdb_memory_limit(cfg(engine="spark"), 153) is None


def test_a_malformed_memory_budget_is_a_config_error_naming_the_key():
    from clvml.config import parse_config
    from clvml.errors import ConfigError

    with pytest.raises(ConfigError, match="scoring.memory_budget"):
        parse_config({"name": "m", "data": {"tables": {"transactions": {"path": "tx.parquet"}}},
                      "cutoffs": {"start": "2024-01-01"}, "scoring": {"memory_budget": "4 gigs"}})


def test_the_scoring_connection_gets_the_memory_limit_and_the_callers_config_stays():
    from clvml.config import parse_config
    from clvml.engine import connect_engine
    from clvml.scoring.job import BASE_BYTES, duckdb_memory_limit, limit_for_chunks, with_memory_limit

    cfg = parse_config({"name": "m", "data": {"tables": {"transactions": {"path": "tx.parquet"}}},
                        "cutoffs": {"start": "2024-01-01"}, "scoring": {"memory_budget": "3GiB"}})
    lines = []
    run = with_memory_limit(cfg, 153, lines.append)
    loading, want = duckdb_memory_limit(cfg, 153, loading=True), duckdb_memory_limit(cfg, 153)
    assert loading == f"{(3 * 2**30 - BASE_BYTES) // 2**20}MiB"  # no chunk exists while reading
    assert run.engine.duckdb.memory_limit == loading and cfg.engine.duckdb.memory_limit is None
    assert run.data is cfg.data and run.scoring is cfg.scoring  # only the engine settings are copied
    assert lines == [f"DuckDB memory_limit {loading} while reading (scoring.memory_budget 3GiB less the process), "
                     f"then {want} (less the memory of chunks of 125,000 customers x 153 features; "
                     "engine.duckdb.memory_limit sets it instead)"]

    def shown(con) -> str:
        return con.raw_sql("SELECT current_setting('memory_limit')").fetchone()[0]

    def as_duckdb_shows(limit: str) -> set[str]:
        mib = int(limit.removesuffix("MiB"))  # DuckDB shows one decimal, rounded or cut
        return {f"{mib / 1024:.1f} GiB", f"{int(mib / 102.4) / 10:.1f} GiB", f"{mib:.1f} MiB"}

    con = connect_engine(run.engine)
    assert shown(con) in as_duckdb_shows(loading)
    limit_for_chunks(SimpleNamespace(con=con), cfg, 153)  # once the tables are loaded
    assert shown(con) in as_duckdb_shows(want)
    unlimited = parse_config({**cfg.model_dump(mode="json", exclude={"scoring"}), "scoring": {"memory_budget": None}})
    assert with_memory_limit(unlimited, 153) is unlimited
