"""Property-based fuzzing of the scoring job: a trained bundle scores small, broken slices of a real
world (a handful of customers, injected rows with odd ids, timestamps and amounts, unknown event types,
all-null optional columns, a missing table, empty histories).

Every case must end either in a scored partition (one row per customer with a purchase before the
as_of, finite scores in range, manifest counts that add up) or in a documented clvml error; never a raw
exception from a dependency, never a silently lost row. Deterministic (``derandomize``).
"""

from __future__ import annotations

import datetime as dt
import os

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings

from clvml import cli
from clvml.config import Policies, load_config
from clvml.data.dataset import load_dataset
from clvml.data.loading import load_data
from clvml.errors import ClvmlError
from clvml.jobs.train import train
from clvml.scoring.job import score
from tests import test_fuzz_files as fz
from tests.test_demo import write_config
from tests.test_fuzz import AMOUNTS, IDS, TS

AS_OF = dt.date(2024, 7, 1)
CASES = {"scored": 0, "refused": 0}
REASONS: dict[str, int] = {}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz-scoring")
    cfg = load_config(write_config(tmp, name="fuzz"))
    cfg.scoring.drift_stop = None  # one-customer slices drift by construction; drift is tested elsewhere
    cfg.scoring.allow_shrink = True  # and are far smaller than the training population (the guard: tested
    #                                  in test_scoring_safety.py)
    ds = load_data(cfg)
    model = train(cfg, ds).model_path
    tables = {n: pd.read_parquet(tmp / "world" / f"{n}.parquet") for n in
              ("customers", "transactions", "activity", "social", "after_sales")}
    return cfg, str(model), tables, tmp


def _slice(tables: dict[str, pd.DataFrame], n: int) -> dict[str, pd.DataFrame]:
    ids = tables["customers"].customer_id.iloc[:n]
    return {k: df[df.customer_id.isin(ids)].reset_index(drop=True) for k, df in tables.items()}


def _inject(df: pd.DataFrame, rows: list) -> pd.DataFrame:
    if not rows or df.empty:
        return df
    extra = df.iloc[[0] * len(rows)].reset_index(drop=True).astype(object)
    for i, (cid, ts, amount) in enumerate(rows):
        extra.loc[i, "customer_id"] = None if cid is None else str(cid)
        extra.loc[i, "ts"] = pd.NaT if ts is None else pd.Timestamp(ts)
        if "amount" in extra:
            extra.loc[i, "amount"] = np.nan if amount is None else amount
    out = pd.concat([df.astype(object), extra], ignore_index=True)
    return out.astype({"ts": "datetime64[us]"} | ({"amount": "float64"} if "amount" in out else {}))


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(n=st.sampled_from([1, 2, 40]),
       tx_rows=st.lists(st.tuples(IDS, TS, AMOUNTS), max_size=5),
       act_types=st.lists(st.sampled_from(["session", "teleport", "", None]), max_size=3),
       null_column=st.sampled_from([None, ("activity", "duration_s"), ("transactions", "category"),
                                    ("after_sales", "satisfaction"), ("customers", "membership_tier")]),
       missing=st.sampled_from([None, None, None, "social", "after_sales"]),
       empty=st.sampled_from([None, None, "activity", "social"]),
       drop=st.sampled_from([True, True, False]))
def test_scoring_broken_slices_ends_in_scores_or_a_clvml_error(setup, tmp_path_factory, n, tx_rows,
                                                               act_types, null_column, missing, empty,
                                                               drop):
    cfg, model, world, _ = setup
    tables = _slice(world, n)
    tables["transactions"] = _inject(tables["transactions"], tx_rows)
    act = tables["activity"]
    if act_types and not act.empty:
        bad = act.iloc[[0] * len(act_types)].copy()
        bad["event_type"] = act_types
        tables["activity"] = pd.concat([act, bad], ignore_index=True)
    if null_column:
        t, c = null_column
        tables[t] = tables[t].assign(**{c: None})
    if missing:
        del tables[missing]
    if empty and empty in tables:
        tables[empty] = tables[empty].iloc[:0]
    policy = "drop" if drop else "error"
    policies = Policies(duplicates=policy, null_keys=policy, future_events=policy,
                        unknown_event_types=policy, orphan_customers="drop" if drop else "error")
    out = tmp_path_factory.mktemp("out")
    try:
        ds = load_dataset(frames=tables, policies=policies, as_of=AS_OF)
        res = score(cfg, model, AS_OF, out=out, ds=ds)
    except ClvmlError as exc:
        CASES["refused"] += 1
        REASONS[type(exc).__name__] = REASONS.get(type(exc).__name__, 0) + 1
        assert str(exc)
        return
    CASES["scored"] += 1
    rep, m = ds.report, res.manifest
    for name, n_in in rep.rows_in.items():  # nothing lost silently
        assert n_in == rep.rows_out[name] + sum(rep.dropped.get(name, {}).values())
    tx = ds["transactions"].to_pandas()
    buyers = set(tx.loc[tx.ts < pd.Timestamp(AS_OF), "customer_id"])
    scores = pd.read_parquet(res.target)
    assert set(scores.customer_id) == buyers and scores.customer_id.is_unique
    assert m["rows_out"] == len(scores) == m["customers"]["scored"]
    p = scores.churn_probability
    assert p.between(0, 1).all() and np.isfinite(scores.expected_value).all()
    assert (scores.expected_value >= 0).all() and np.isfinite(scores.clv).all()
    assert scores.recommended_action.notna().all() and scores.churn_reason_1_text.notna().all()


def test_scoring_fuzz_reached_both_outcomes():
    if not sum(CASES.values()):
        pytest.skip("counts the cases of the fuzz test above: run the whole module")
    print(f"scoring fuzz cases: {CASES}, refused by {REASONS}")
    assert CASES["scored"] >= 8 and CASES["refused"] >= 5, CASES


#: output targets a scheduled job can be handed, and the exit code each must end in (0: scores written)
TARGETS = {"parquet file as --database": 2, "csv file as --database": 2, "folder as --database": 2,
           "empty file as --database": 2, "new data-file name as --database": 2, ":memory: as --database": 2,
           "new DuckDB file": 0, "existing DuckDB file": 0, "--out is a file": 6, "--out below a file": 6,
           "--out is a folder": 0, "lock path is a folder": 6, "--database below a file": 6}


def _snapshot(folder):
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(TARGETS)), mode=st.sampled_from([0o644, 0o444, 0o600]),
       prefix=st.booleans())
def test_output_targets_end_in_scores_or_the_documented_exit_code(setup, tmp_path_factory, kind, mode, prefix):
    import duckdb

    cfg, model, world, _ = setup
    d = tmp_path_factory.mktemp("target")
    db = "duckdb://" if prefix else ""  # the duckdb:// spelling of a file path must behave the same
    (d / "file").write_text("not a folder")
    pd.DataFrame({"a": [1, 2]}).to_parquet(d / "scores.parquet")
    pd.DataFrame({"a": [1, 2]}).to_csv(d / "scores.csv", index=False)
    (d / "empty.db").write_bytes(b"")
    (d / "folder").mkdir()
    duckdb.connect(str(d / "old.duckdb")).execute("CREATE TABLE keep AS SELECT 7 AS x").close()
    (d / "root" / f".as_of={AS_OF}.lock").mkdir(parents=True)
    for p in d.rglob("*"):
        if p.is_file():
            p.chmod(mode)
    where = {"parquet file as --database": {"database": f"{db}{d / 'scores.parquet'}"},
             "csv file as --database": {"database": f"{db}{d / 'scores.csv'}"},
             "folder as --database": {"database": f"{db}{d / 'folder'}"},
             "empty file as --database": {"database": f"{db}{d / 'empty.db'}"},
             "new data-file name as --database": {"database": f"{db}{d / 'new.csv'}"},
             ":memory: as --database": {"database": f"{db}:memory:"},
             "new DuckDB file": {"database": f"{db}{d / 'new.duckdb'}"},
             "existing DuckDB file": {"database": f"{db}{d / 'old.duckdb'}"},
             "--database below a file": {"database": f"{db}{d / 'file' / 'x.duckdb'}"},
             "--out is a file": {"out": d / "file"}, "--out below a file": {"out": d / "file" / "scores"},
             "--out is a folder": {"out": d / "scores"}, "lock path is a folder": {"out": d / "root"}}[kind]
    if "database" in where:
        where["table"] = "fuzz_scores"
    before = _snapshot(d)
    ds = load_dataset(frames=_slice(world, 40), as_of=AS_OF)
    try:
        res = score(cfg, model, AS_OF, ds=ds, allow_shrink=True, **where)
    except ClvmlError as exc:
        assert exc.exit_code == TARGETS[kind], (kind, exc)
        named = str(where.get("database") or where["out"]).removeprefix("duckdb://")
        assert named in str(exc) or str(d / "file") in str(exc) or "memory" in str(exc), str(exc)
        assert _snapshot(d) == before  # every file that was there is byte-identical, nothing added
        return
    assert TARGETS[kind] == 0, (kind, res.target)
    n = res.manifest["rows_out"]
    assert n == ds["transactions"].to_pandas().customer_id.nunique() > 0
    if "out" in where:
        assert len(pd.read_parquet(where["out"])) == n  # read back through the root
    else:
        path = where["database"].removeprefix("duckdb://")
        con = duckdb.connect(path, read_only=True)
        assert con.execute("SELECT count(*) FROM fuzz_scores").fetchone()[0] == n
        if kind == "existing DuckDB file":
            assert con.execute("SELECT x FROM keep").fetchall() == [(7,)]
        con.close()
    for name in ("scores.parquet", "scores.csv", "empty.db", "file"):  # bystanders untouched
        assert (d / name).read_bytes() == before[name]


# ---- files and config, through the CLI's own error handling (see tests/test_fuzz_files.py) ----
FILE_CASES: dict[str, int] = {}


@settings(max_examples=int(os.environ.get("FZ_SCORE_N", 60)), deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate] + ([] if os.environ.get("FZ_NO_SHRINK") else [Phase.shrink]),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(changes=st.lists(fz.TABLE_CHANGE, min_size=0, max_size=2), forms=st.lists(fz.FILE_FORM, min_size=1, max_size=2),
       cfg_changes=fz.CONFIG_CHANGES, pick=st.integers(0, 1000))
def test_scoring_files_end_in_scores_or_a_documented_exit(setup, tmp_path_factory, changes, forms, cfg_changes,
                                                          pick):
    _, model, world, tmp = setup
    d = tmp_path_factory.mktemp("fzs")
    frames = _slice(world, 12)
    for table, kind, p in changes:
        frames[table] = fz._change(frames[table], kind, p, table)
    paths = {}
    for i, name in enumerate(fz.TABLES):
        fmt, dialect, header, corrupt = forms[i % len(forms)]
        paths[name] = d / f"{name}.{'parquet' if fmt == 'parquet' else 'csv'}"
        fz._write(frames[name], paths[name], fmt, dialect, header, corrupt, pick)
    data_yaml = yaml.safe_load(fz._config(d, paths, cfg_changes, pick).read_text())["data"]
    full = yaml.safe_load((tmp / "small.yaml").read_text())
    full["data"] = data_yaml
    full["scoring"] = {"drift_stop": None, "allow_shrink": True}  # tiny slices: see the fixture
    cfg_path = d / "score.yaml"
    cfg_path.write_text(yaml.safe_dump(full))
    seen: dict = {"log": []}

    def go():
        cfg = cli._config(cfg_path)
        seen["ds"] = ds = load_data(cfg, seen["log"].append)
        seen["res"] = score(cfg, model, AS_OF, out=d / "scores", ds=ds, progress=seen["log"].append)

    code, err = fz._run_command(go)
    FILE_CASES[str(code)] = FILE_CASES.get(str(code), 0) + 1
    if code:
        fz._refused_clearly(code, err, cfg_path)
        assert not (d / "scores" / f"as_of={AS_OF}").exists()  # a refused run writes nothing
        return
    ds, res = seen["ds"], seen["res"]
    fz._accounted(ds, seen["log"])
    tx = ds["transactions"].to_pandas()
    buyers = set(tx.loc[tx.ts < pd.Timestamp(AS_OF), "customer_id"])
    scores = pd.read_parquet(res.target)
    assert set(scores.customer_id) == buyers and scores.customer_id.is_unique
    assert res.manifest["rows_out"] == len(scores)
    assert scores.churn_probability.between(0, 1).all()
    assert np.isfinite(scores[["expected_value", "clv"]].to_numpy()).all()


def test_scoring_files_fuzz_reached_both_outcomes():
    if not sum(FILE_CASES.values()):
        pytest.skip("counts the cases of the fuzz test above: run the whole module")
    print(f"scoring file fuzz outcomes by exit code: {FILE_CASES}")
    assert FILE_CASES.get("0", 0) >= 15 and sum(v for k, v in FILE_CASES.items() if k != "0") >= 15, FILE_CASES
