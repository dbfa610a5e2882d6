"""The scheduled scoring job: output, idempotence, crash safety, locks, drift stop, model checks."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from clvml.cli import app
from clvml.config import load_config
from clvml.data.loading import load_data
from clvml.errors import DriftError, LockError, ModelIncompatibleError
from clvml.io import OutputError
from clvml.jobs.train import train
from clvml.scoring.job import output_lock, score
from tests.incremental_helpers import spy_incremental
from tests.test_demo import write_config

AS_OF = dt.date(2024, 7, 1)
COLUMNS = ["customer_id", "as_of", "churn_probability", "risk_band", "expected_purchases", "expected_value",
           "clv", "value_tier", "lifecycle_stage", "rfm_segment", "recommended_action", "churn_reason_1",
           "churn_reason_1_shap", "churn_reason_1_text", "value_reason_3_text", "model_version"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scoring")
    cfg_path = write_config(tmp, name="shop")
    cfg = load_config(cfg_path)
    ds = load_data(cfg)
    result = train(cfg, ds)
    return tmp, cfg_path, result


def _cfg(cfg_path, **scoring):
    cfg = load_config(cfg_path)
    for k, v in scoring.items():
        setattr(cfg.scoring, k, v)
    return cfg


def _parts(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("part-*.parquet"))}


def test_progress_lines_of_a_score_run_carry_counts_and_eta(trained, tmp_path, capsys):
    """Off a terminal, each scoring chunk is one JSON line with done/total and the ETA in seconds."""
    from clvml.console import progress

    tmp, cfg_path, result = trained
    score(_cfg(cfg_path, chunk_customers=400), str(result.model_path), AS_OF, out=tmp_path / "s",
          progress=progress())
    lines = [json.loads(ln) for ln in capsys.readouterr().err.splitlines() if ln.startswith("{")]
    chunks = [ln for ln in lines if ln.get("step") == "scoring chunks"]
    total = chunks[0]["total"]
    assert total >= 3 and [c["done"] for c in chunks] == list(range(1, total + 1))
    assert all(c["total"] == total and c["eta_s"] >= 0 for c in chunks) and chunks[-1]["eta_s"] == 0
    assert chunks[0]["event"].startswith(f"chunk 1/{total}: ")
    reading = [ln for ln in lines if ln.get("step") == "reading tables"]
    assert reading and reading[-1]["done"] == reading[-1]["total"] == 5
    assert all(set(ln) >= {"t", "event"} for ln in lines)


def test_scores_every_customer_with_segments_reasons_and_a_manifest(trained, tmp_path):
    tmp, cfg_path, result = trained
    r = score(_cfg(cfg_path), str(result.model_path), AS_OF, out=tmp_path / "scores")
    folder = tmp_path / "scores" / "as_of=2024-07-01"
    assert r.target == str(folder)
    s = pd.read_parquet(tmp_path / "scores")  # the root: as_of comes from the folder name (hive key)
    assert set(COLUMNS) <= set(s.columns) and "as_of" not in pd.read_parquet(folder).columns
    tx = pd.read_parquet(tmp / "world" / "transactions.parquet")
    before = tx[tx.ts < pd.Timestamp(AS_OF, tz=tx.ts.dt.tz)].customer_id
    assert sorted(s.customer_id) == sorted(before.unique())  # one row per customer seen before as_of
    assert s.customer_id.is_unique and (s.as_of.astype(str) == "2024-07-01").all()
    assert set(s.value_tier) == {"high", "potential", "general", "low"}
    assert set(s.risk_band) <= {"low", "medium", "high"} and s.recommended_action.notna().all()
    assert set(s.lifecycle_stage) <= {"new", "active", "returning", "dormant", "churned"}
    m = json.loads((folder / "_manifest.json").read_text())
    assert m["rows_out"] == len(s) == m["customers"]["scored"]
    assert m["customers"]["skipped_first_transaction_on_or_after_as_of"] == (
        tx.customer_id.nunique() - before.nunique())
    assert m["model"]["version"] == s.model_version.iloc[0] == result.bundle.model_version
    assert sum(f["rows"] for f in m["files"].values()) == len(s)
    assert list(m["files"]) == ["part-0000.parquet"]  # one data file, replaced by one atomic rename
    assert m["shrink"]["rows"] == len(s) and m["warnings"] == []
    assert m["drift"]["checked"] and set(m["drift"]["scores"]) == {"churn_probability", "expected_value", "clv"}


def test_rerun_is_byte_identical_and_chunks_do_not_change_scores(trained, tmp_path, monkeypatch):
    _, cfg_path, result = trained
    out = tmp_path / "scores"
    score(_cfg(cfg_path), str(result.model_path), AS_OF, out=out)
    first = _parts(out / "as_of=2024-07-01")
    score(_cfg(cfg_path), str(result.model_path), dt.date(2024, 6, 1), out=out)  # another partition
    score(_cfg(cfg_path), str(result.model_path), AS_OF, out=out)
    assert _parts(out / "as_of=2024-07-01") == first
    assert (out / "as_of=2024-06-01").is_dir()  # untouched by the re-run of another as_of
    lines = []
    chunked = score(_cfg(cfg_path, chunk_customers=400), str(result.model_path), AS_OF, out=tmp_path / "c",
                    progress=lines.append)
    assert chunked.manifest["chunks"] == 4
    # DuckDB was limited by the default scoring.memory_budget (4GiB) less the chunks' memory
    assert any(line.startswith("DuckDB memory_limit ") and "scoring.memory_budget 4GiB" in line for line in lines)
    a = pd.read_parquet(out / "as_of=2024-07-01").sort_values("customer_id").reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "c" / "as_of=2024-07-01").sort_values("customer_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    # features.plan reaches the scoring job's features (auto is the cross join at one cut-off): the same bytes
    inc = _cfg(cfg_path)
    inc.features.plan = "incremental"
    ran = spy_incremental(monkeypatch)
    score(inc, str(result.model_path), AS_OF, out=tmp_path / "i")
    assert ran and all(ran)  # computed in NumPy, not by the cross join
    assert _parts(tmp_path / "i" / "as_of=2024-07-01") == first


KILLER = textwrap.dedent("""
    import os, signal, sys, datetime as dt
    import clvml.io, clvml.scoring.job
    from clvml.config import load_config
    stage = sys.argv[3]
    calls = {"n": 0}
    real_write, real_publish = clvml.scoring.job.ChunkWriter.write, clvml.scoring.job._publish
    def write(*a, **k):  # killed while the second chunk is written: the data file is half written
        calls["n"] += 1
        if stage == "mid-chunks" and calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write(*a, **k)
    def publish(*a):
        if stage == "before-swap":
            os.kill(os.getpid(), signal.SIGKILL)
        out = real_publish(*a)
        if stage == "after-swap":
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    clvml.scoring.job.ChunkWriter.write = write
    clvml.scoring.job._publish = publish
    cfg = load_config(sys.argv[1])
    cfg.scoring.chunk_customers = 750
    clvml.scoring.job.score(cfg, sys.argv[2], dt.date(2024, 7, 1), out=cfg.output.dir / "killed")
""")


def test_a_run_killed_at_any_stage_leaves_a_readable_partition(trained, tmp_path):
    _, cfg_path, result = trained
    cfg = _cfg(cfg_path, chunk_customers=750)
    root = Path(cfg.output.dir) / "killed"
    score(cfg, str(result.model_path), AS_OF, out=root)
    before = _parts(root / "as_of=2024-07-01")
    work = root.parent / ".killed.clvml-work"
    script = tmp_path / "kill.py"
    script.write_text(KILLER)
    for stage in ("mid-chunks", "before-swap", "after-swap"):  # SIGKILL: no cleanup code runs
        proc = subprocess.run([sys.executable, str(script), str(cfg_path), str(result.model_path), stage],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        # the old partition (or, after the swap, the identical new one), complete and readable
        assert _parts(root / "as_of=2024-07-01") == before, stage
        assert len(pd.read_parquet(root / "as_of=2024-07-01")) > 0
        assert not [p for p in root.rglob("*.tmp")]  # staging lives in the work folder, beside the root
        left = [p for p in work.iterdir() if p.name.endswith(".tmp")]
        assert len(left) == 1  # this run's (after the swap: holding the old version); the next run removes it
    proc = subprocess.run([sys.executable, str(script), str(cfg_path), str(result.model_path), "before-swap"],
                          capture_output=True, text=True, timeout=300)
    r = score(cfg, str(result.model_path), AS_OF, out=root)  # a re-run completes and cleans up
    assert r.manifest["stale_temp_folders_removed"] == 1
    assert _parts(root / "as_of=2024-07-01") == before
    assert not [p for p in work.iterdir() if p.name.endswith((".tmp", ".tmp.lock"))]


def test_concurrent_run_of_the_same_as_of_is_refused(trained, tmp_path):
    _, cfg_path, result = trained
    out = tmp_path / "scores"
    with output_lock(out / ".as_of=2024-07-01.lock", 0), pytest.raises(LockError) as err:
        score(_cfg(cfg_path), str(result.model_path), AS_OF, out=out)
    assert "another scoring run" in str(err.value) and f"pid {os.getpid()}" in str(err.value)
    assert not (out / "as_of=2024-07-01").exists()
    score(_cfg(cfg_path), str(result.model_path), AS_OF, out=out)  # lock released: runs


def _world_config(tmp_path, world: Path, drop: str | None = None, scale: float = 1.0, **extra) -> Path:
    tables = {}
    for name in ("customers", "transactions", "activity", "social", "after_sales"):
        if name == drop:
            continue
        df = pd.read_parquet(world / f"{name}.parquet")
        if name == "transactions" and scale != 1.0:
            df["amount"] = df["amount"] * scale
        df.to_parquet(tmp_path / f"{name}.parquet")
        tables[name] = {"path": f"{name}.parquet"}
    cfg = {"name": "shop", "data": {"tables": tables}, "cutoffs": {"start": "2024-01-01"},
           "output": {"dir": "out"}, "tracking": {"enabled": False}, **extra}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_bundle_folder_loads_without_mlflow_and_scores_as_mlflows_loader_does(trained, tmp_path):
    """A bundle folder is unpickled without importing MLflow (its import cost every scoring run ~1.2 s);
    the bundle is the one MLflow's loader gives, score for score. Anything unexpected is left to MLflow."""
    import pickle
    from types import SimpleNamespace

    import mlflow.pyfunc
    import mlflow.tracking

    from clvml.features import build_features, to_pandas
    from clvml.scoring.bundle import unpickle_bundle

    tmp, cfg_path, result = trained
    ours = unpickle_bundle(result.model_path)
    theirs = mlflow.pyfunc.load_model(str(result.model_path)).unwrap_python_model().bundle
    assert type(ours) is type(theirs) and ours.model_version == theirs.model_version
    ds = load_data(load_config(cfg_path))
    feats = to_pandas(build_features(ds.tables, [AS_OF], windows=ours.windows, families=ours.families))
    pd.testing.assert_frame_equal(ours.predict(feats), theirs.predict(feats), check_exact=True)

    code = ("import gc, sys; gc.disable(); "  # (nothing freed: the rebuilt classes stay alive, as they may)
            "from clvml.scoring.bundle import load_bundle; "
            f"b = load_bundle({str(result.model_path)!r}); "
            "print(type(b).__name__, sorted({m.split('.')[0] for m in sys.modules if m.startswith('mlflow')})); "
            "import mlflow.pyfunc; "  # then MLflow's own loader, in the same process, still works
            f"m = mlflow.pyfunc.load_model({str(result.model_path)!r}); "
            "print(type(m.unwrap_python_model().bundle).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["ModelBundle", "[]", "ModelBundle"]  # loaded, MLflow never imported; MLflow's too

    def folder(name: str, pickled: bytes, **flavor) -> Path:
        d = tmp_path / name
        shutil.copytree(result.model_path, d)
        meta = yaml.safe_load((d / "MLmodel").read_text())
        meta["flavors"]["python_function"].update(flavor)
        (d / "MLmodel").write_text(yaml.safe_dump(meta))
        (d / "python_model.pkl").write_bytes(pickled)
        return d

    good = (result.model_path / "python_model.pkl").read_bytes()
    assert unpickle_bundle(folder("same", good)) is not None
    assert isinstance(unpickle_bundle(folder("plain", pickle.dumps(SimpleNamespace(bundle=theirs)))), type(ours))
    other = pickle.dumps(SimpleNamespace(bundle=theirs, client=mlflow.tracking.MlflowClient))
    assert unpickle_bundle(folder("other_mlflow", other)) is None  # any other MLflow object: MLflow's loader
    assert unpickle_bundle(folder("code", good, code="code")) is None  # code paths: MLflow's loader adds them
    assert unpickle_bundle(folder("outside", good, python_model="../same/python_model.pkl")) is None
    assert unpickle_bundle(folder("loader", good, loader_module="mlflow.sklearn")) is None
    assert unpickle_bundle(folder("broken", b"not a pickle")) is None
    # (load_bundle checks the checksums before unpickling: test_altered_bundles_are_refused_before_unpickling)


def test_schema_mismatch_fails_with_exit_5_naming_the_table(trained, tmp_path):
    tmp, _, result = trained
    path = _world_config(tmp_path, tmp / "world", drop="activity")
    res = CliRunner().invoke(app, ["score", "-c", str(path), "--model", str(result.model_path),
                                   "--as-of", "2024-07-01"])
    assert res.exit_code == 5, res.output
    assert "activity" in res.output and "not configured" in res.output
    scores = tmp_path / "out" / "scores"
    assert not [p for p in scores.iterdir() if not p.name.endswith(".lock")]  # nothing but the lock file


def test_bundle_from_another_clvml_version_is_refused(trained, tmp_path):
    from clvml.scoring.bundle import load_bundle, save_bundle

    tmp, cfg_path, result = trained
    bundle = load_bundle(result.model_path)
    bundle.clvml_version = "9.0.0"
    from clvml.features import build_features, to_pandas

    ds = load_data(load_config(cfg_path))
    ex = to_pandas(build_features(ds.tables, [AS_OF], windows=bundle.windows, families=bundle.families)).head(5)
    save_bundle(bundle, tmp_path / "old", ex)
    with pytest.raises(ModelIncompatibleError) as err:
        load_bundle(tmp_path / "old")
    assert str(err.value) == (
        f"model {tmp_path / 'old'} was exported by clvml 9.0.0 (bundle format 2); this is clvml 0.1.0 (format "
        "2): retrain with `clvml train`, or score with a clvml that reads it: pip install 'clvml~=9.0'")
    bundle.clvml_version, bundle.bundle_format = "0.1.0", 1  # format 1: development builds only
    save_bundle(bundle, tmp_path / "format1", ex)
    with pytest.raises(ModelIncompatibleError) as err:
        load_bundle(tmp_path / "format1")
    assert str(err.value).endswith("(bundle format 1); this is clvml 0.1.0 (format 2): no released clvml reads "
                                   "bundle format 1 (written by clvml 0.1.0); retrain with `clvml train`")
    res = CliRunner().invoke(app, ["score", "-c", str(cfg_path), "--model", str(tmp_path / "old"),
                                   "--as-of", "2024-07-01", "--out", str(tmp_path / "s")])
    assert res.exit_code == 5 and not (tmp_path / "s" / "as_of=2024-07-01").exists()


def test_drift_stop_writes_nothing_and_exits_4(trained, tmp_path):
    tmp, _, result = trained
    path = _world_config(tmp_path, tmp / "world", scale=25.0,
                         scoring={"drift_stop": 0.5})  # a currency bug: amounts 25x
    out = tmp_path / "s"
    res = CliRunner().invoke(app, ["score", "-c", str(path), "--model", str(result.model_path),
                                   "--as-of", "2024-07-01", "--out", str(out)])
    assert res.exit_code == 4, res.output
    assert "tx_spend" in res.output and "nothing was written" in res.output
    assert not (out / "as_of=2024-07-01").exists() and not [p for p in out.iterdir() if p.is_dir()]
    with pytest.raises(DriftError):  # also from the API, and the same data passes with the stop off
        score(load_config(path), str(result.model_path), AS_OF, out=out)
    cfg = load_config(path)
    cfg.scoring.drift_stop = None
    r = score(cfg, str(result.model_path), AS_OF, out=out)
    assert max(r.manifest["drift"]["warnings"].values()) > 0.5


def test_scores_from_a_registry_alias_equal_the_local_bundle(trained, tmp_path):
    _, cfg_path, result = trained
    local = score(_cfg(cfg_path), str(result.model_path), AS_OF, out=tmp_path / "a")
    reg = score(_cfg(cfg_path), "models:/shop@candidate", AS_OF, out=tmp_path / "b")
    assert reg.manifest["model"]["registry_version"] == "1"
    assert _parts(Path(local.target)) == _parts(Path(reg.target))


def test_output_to_a_duckdb_table_replaces_its_as_of(trained, tmp_path):
    _, cfg_path, result = trained
    db = tmp_path / "scores.duckdb"
    args = ["score", "-c", str(cfg_path), "--model", str(result.model_path), "--database", str(db),
            "--table", "churn_scores"]
    for as_of in ("2024-07-01", "2024-07-01", "2024-06-01"):  # re-run of 07-01 replaces its rows
        res = CliRunner().invoke(app, [*args, "--as-of", as_of])
        assert res.exit_code == 0, res.output
    con = duckdb.connect(str(db), read_only=True)
    counts = dict(con.execute("SELECT as_of::VARCHAR, count(*) FROM churn_scores GROUP BY 1").fetchall())
    n = len(pd.read_parquet(score(_cfg(cfg_path), str(result.model_path), AS_OF,
                                  out=tmp_path / "p").target))
    assert counts["2024-07-01"] == n and set(counts) == {"2024-07-01", "2024-06-01"}
    man = con.execute("SELECT as_of::VARCHAR, manifest FROM churn_scores_manifests ORDER BY 1").fetchall()
    assert [m[0] for m in man] == ["2024-06-01", "2024-07-01"]
    assert json.loads(man[1][1])["rows_out"] == n
    bad = CliRunner().invoke(app, [*args[:-2], "--table", "x; DROP TABLE churn_scores", "--as-of", "2024-07-01"])
    assert bad.exit_code == 2 and "not a plain identifier" in " ".join(bad.output.split())  # config, not output


def test_output_to_an_ibis_backend_url_replaces_its_as_of(trained, tmp_path):
    import sqlite3

    _, cfg_path, result = trained
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    for as_of in (AS_OF, AS_OF, dt.date(2024, 6, 1)):  # the re-run of AS_OF replaces its rows
        r = score(_cfg(cfg_path), str(result.model_path), as_of, database=url, table="churn_scores")
        assert r.target.endswith(":churn_scores")
    parquet = pd.read_parquet(score(_cfg(cfg_path), str(result.model_path), AS_OF, out=tmp_path / "p").target)
    con = sqlite3.connect(tmp_path / "scores.db")
    counts = dict(con.execute("SELECT as_of, count(*) FROM churn_scores GROUP BY 1").fetchall())
    assert counts == {"2024-06-01": counts["2024-06-01"], "2024-07-01": len(parquet)}
    got = pd.read_sql("SELECT * FROM churn_scores WHERE as_of = '2024-07-01' ORDER BY customer_id", con)
    assert np.allclose(got["churn_probability"], parquet.sort_values("customer_id")["churn_probability"])
    assert got["churn_reason_1_text"].tolist() == parquet.sort_values("customer_id")["churn_reason_1_text"].tolist()
    man = con.execute("SELECT as_of, manifest FROM churn_scores_manifests ORDER BY 1").fetchall()
    assert [m[0] for m in man] == ["2024-06-01", "2024-07-01"] and json.loads(man[1][1])["rows_out"] == len(parquet)
    tables = {t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"churn_scores", "churn_scores_manifests"}  # staging tables dropped
    with pytest.raises(OutputError, match="cannot connect"):
        score(_cfg(cfg_path), str(result.model_path), AS_OF, database="nosuchdb://user:secret@host/x",
              table="churn_scores")


def test_altered_bundles_are_refused_before_unpickling(trained, tmp_path):
    import shutil

    from clvml.scoring.bundle import CHECKSUMS, load_bundle

    _, cfg_path, result = trained
    cases = {"changed": lambda d: (d / "python_model.pkl").write_bytes(
                 (d / "python_model.pkl").read_bytes() + b"\0"),
             "unexpected": lambda d: (d / "evil.pkl").write_bytes(b"x"),
             "missing": lambda d: (d / "MLmodel").unlink(),
             f"no {CHECKSUMS}": lambda d: (d / CHECKSUMS).unlink()}
    for word, alter in cases.items():
        d = tmp_path / word.replace(" ", "_")
        shutil.copytree(result.model_path, d)
        load_bundle(d)  # an intact copy loads
        alter(d)
        with pytest.raises(ModelIncompatibleError, match=word):
            load_bundle(d)
    res = CliRunner().invoke(app, ["score", "-c", str(cfg_path), "--model", str(tmp_path / "changed"),
                                   "--as-of", "2024-07-01", "--out", str(tmp_path / "s")])
    assert res.exit_code == 5 and "python_model.pkl" in res.output


@pytest.mark.parametrize(("code", "at_call", "text"), [
    (28, 2, "No space left on device"),  # ENOSPC while the second chunk is written
    (30, 1, "Read-only file system"),    # EROFS: the location turned read-only (root ignores chmod)
])
def test_disk_full_or_read_only_is_a_clear_error_and_keeps_the_previous_partition(
        trained, tmp_path, monkeypatch, code, at_call, text):
    import clvml.scoring.job as scoring_mod

    _, cfg_path, result = trained
    cfg = _cfg(cfg_path, chunk_customers=200)
    score(cfg, str(result.model_path), AS_OF, out=tmp_path / "s")
    folder = tmp_path / "s" / "as_of=2024-07-01"
    before = _parts(folder)
    real = scoring_mod.ChunkWriter.write
    calls = []

    def failing(self, table, b):
        calls.append(b)
        if len(calls) == at_call:
            raise OSError(code, text)
        return real(self, table, b)

    monkeypatch.setattr(scoring_mod.ChunkWriter, "write", failing)
    with pytest.raises(OutputError, match=f"{text}.*previous output.*unchanged") as err:
        score(cfg, str(result.model_path), AS_OF, out=tmp_path / "s")
    assert err.value.exit_code == 6
    assert _parts(folder) == before  # the earlier partition is byte-identical
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if not p.name.endswith(".lock")) == [
        "as_of=2024-07-01"]  # no temporary folder left behind


def test_same_data_config_and_seed_give_identical_features_models_and_scores(trained, tmp_path):
    from clvml.features import write_features

    tmp, cfg_path, result = trained
    cfg = load_config(cfg_path)
    cfg.output.model_dir, cfg.output.dir = tmp_path / "models", tmp_path / "out"
    cfg.tracking.enabled = False
    again = train(cfg, load_data(cfg))  # a second, independent training run
    assert again.bundle.model_version == result.bundle.model_version  # hash of every tree
    a = score(_cfg(cfg_path), str(result.model_path), AS_OF, out=tmp_path / "a")
    b = score(_cfg(cfg_path), str(again.model_path), AS_OF, out=tmp_path / "b")
    assert _parts(Path(a.target)) == _parts(Path(b.target)) != {}
    feats = [write_features(load_data(cfg).tables, [AS_OF], tmp_path / f"f{i}", batches=2).path
             for i in range(2)]  # two fresh loads: byte-identical Parquet files
    assert _parts(feats[0]) == _parts(feats[1]) != {}


def test_model_version_covers_everything_that_changes_a_score(trained):
    """Issue 24.5: the version is a hash of every setting a score depends on, not only the trees."""
    import copy

    from clvml.scoring.bundle import load_bundle

    _, _, result = trained
    base = load_bundle(result.model_path)
    assert base.model_version == result.bundle.model_version  # stable across save and load

    def version_after(change) -> str:
        b = copy.deepcopy(base)
        b.__dict__.pop("fingerprint", None)  # the cached hash
        change(b)
        return b.model_version

    assert version_after(lambda b: None) == base.model_version
    changed = {
        "clv margin": version_after(lambda b: b.clv_params.update(margin=b.clv_params["margin"] / 2)),
        "clv periods": version_after(lambda b: b.clv_params.update(periods=b.clv_params["periods"] + 1)),
        "reason codes": version_after(lambda b: setattr(b, "reason_codes", b.reason_codes + 1)),
        "tier edges": version_after(lambda b: setattr(b.segmenter, "clv_edges_", b.segmenter.clv_edges_ * 2)),
        "segment rules": version_after(lambda b: setattr(b.segmenter.config.budget, "total",
                                                         (b.segmenter.config.budget.total or 1) * 3)),
        "calibrator": version_after(lambda b: setattr(b.churn, "calibrator_", None)),
        "horizon": version_after(lambda b: setattr(b, "horizon_days", b.horizon_days + 1)),
    }
    assert base.model_version not in changed.values(), changed
    assert len(set(changed.values())) == len(changed)


def test_train_report_defines_its_metrics_shows_the_shap_drivers_and_links_existing_files(trained):
    """Issue 27: the train report says where each task was scored, defines every metric it shows, has a
    SHAP section from the explanations the job wrote, and every link and image in it works."""
    import base64
    import html
    import io
    import re
    from html.parser import HTMLParser

    import matplotlib.image

    from clvml.evaluation.report import definition

    tmp, cfg_path, result = trained
    report = result.report["report"]
    page = report.read_text()

    class Page(HTMLParser):
        def __init__(self):
            super().__init__()
            self.h2, self.ids, self.imgs, self.links, self._in_h2 = [], set(), [], [], False

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            self.ids.add(a.get("id"))
            self._in_h2 = tag == "h2"
            if tag == "img":
                self.imgs.append(a["src"])
            if tag == "a":
                self.links.append(a["href"])

        def handle_data(self, data):
            if self._in_h2:
                self.h2.append(data)
                self._in_h2 = False

    p = Page()
    p.feed(page)
    assert p.h2 == ["Metrics", "Plots", "What the models' predictions move with (SHAP)", "Metric definitions"]
    # one held-out cut-off for churn and value (and one CLV origin when the data is long enough): no
    # "mean over" anything, no per-origin table
    cutoff = result.summary["test_cutoff"]
    assert f"churn (at {cutoff})" in page and f"value (at {cutoff})" in page
    m = result.evaluation.metrics
    clv = m.loc[m.task == "clv", "origin"].nunique()
    assert ("clv (at " in page) == (clv == 1) and clv <= 1
    assert not re.search(r"mean over \d+ origins", page) and "Per origin" not in page and ">nan<" not in page
    # every metric of the table is defined, and the definition is on the page
    shown = result.evaluation.summary().index
    assert len(shown) >= 15  # 7 churn and 8 value metrics, plus the CLV ones where there is a CLV origin
    for task, metric in shown:
        text = definition(task, metric)
        assert text, (task, metric)
        assert html.escape(text) in page, (task, metric)
    assert "#definitions" in p.links and "definitions" in p.ids
    # the SHAP section: the caveat, the top drivers of both models in the order of the explanations
    assert "They are associations, not causal effects" in page and "clvml experiment uplift" in page
    out = Path(report).parent
    for model in ("churn", "value"):
        imp = pd.read_csv(out.parent / "explanations" / f"{model}_shap_importance.csv")
        assert f"{model}: top 10 of {len(imp)} features" in page
        first = page.index(f"<tr><td>1</td><td>{imp.feature[0]}</td>", page.index(f"{model}: top 10"))
        assert first < page.index(f"<tr><td>2</td><td>{imp.feature[1]}</td>", first)
    # every link resolves to a non-empty file beside the report: exactly the explanation files
    files = [out / h for h in p.links if not h.startswith("#")]
    assert files and all(f.is_file() and f.stat().st_size > 0 for f in files), files
    assert {f.resolve() for f in files} == set((out.parent / "explanations").resolve().iterdir())
    # every image decodes to a drawn PNG: the six evaluation plots and the SHAP drivers
    assert len(p.imgs) == 7 and all(s.startswith("data:image/png;base64,") for s in p.imgs)
    for src in p.imgs:
        img = matplotlib.image.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert img.shape[0] > 200 and img.shape[1] > 300 and img.std() > 0.05
    drivers = result.report["plot_shap_drivers"]
    assert drivers.parent == out / "plots" and drivers.read_bytes()[:4] == b"\x89PNG"
