"""What a scheduled scoring job can meet beyond its own data: a wrong output target, an empty or shrunk
feed, another account, a killed or live neighbour, readers in the middle of a swap, an unwritable place.
Real DuckDB, real files, real processes (a second scorer, a killed export, a reader polling a swap)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from clvml.cli import app
from clvml.io import OutputError
from clvml.scoring.job import DATA, _publish_checked, _write_duckdb, score
from tests.test_scoring import AS_OF, _cfg, _parts, trained  # noqa: F401 - the module's trained model

DAY = "2024-07-01"


def _score_cli(*args: str):
    return CliRunner().invoke(app, ["score", *args])


def _flat(res) -> str:
    return " ".join(res.output.split())


def _feed_config(tmp_path: Path, world: Path, keep: float = 1.0, **extra) -> Path:
    """A config over a copy of the world whose transactions keep the first ``keep`` share of customers
    (0: the header only, an empty feed)."""
    tables = {}
    for name in ("customers", "transactions", "activity", "social", "after_sales"):
        df = pd.read_parquet(world / f"{name}.parquet")
        if name == "transactions" and keep < 1:
            ids = sorted(df.customer_id.unique())
            df = df[df.customer_id.isin(ids[:int(len(ids) * keep)])]
        df.to_parquet(tmp_path / f"{name}.parquet")
        tables[name] = {"path": str(tmp_path / f"{name}.parquet")}
    cfg = {"name": "shop", "data": {"tables": tables}, "cutoffs": {"start": "2024-01-01"},
           "output": {"dir": str(tmp_path / "out")}, "tracking": {"enabled": False}, **extra}
    path = tmp_path / f"feed-{keep}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


# -- item 1: only a DuckDB database file (or a URL) is a --database target; every write is read back --

def test_a_data_file_or_a_folder_as_database_is_refused_with_exit_2(trained, tmp_path):  # noqa: F811
    _, cfg_path, result = trained
    d = tmp_path / "t"
    d.mkdir()
    pd.DataFrame({"a": [1, 2]}).to_parquet(d / "scores.parquet")
    pd.DataFrame({"a": [1, 2]}).to_csv(d / "scores.csv", index=False)
    (d / "empty.db").write_bytes(b"")
    (d / "folder.duckdb").mkdir()
    before = _tree(d)
    cases = {str(d / "scores.parquet"): "a Parquet file", str(d / "scores.csv"): "no DuckDB header",
             str(d / "empty.db"): "an empty file", str(d / "folder.duckdb"): "is a folder",
             f"duckdb://{d / 'scores.parquet'}": "a Parquet file",
             str(d / "new.parquet"): "named like a data file", ":memory:": "in-memory"}
    for database, why in cases.items():
        res = _score_cli("-c", str(cfg_path), "--model", str(result.model_path), "--as-of", DAY,
                         "--database", database, "--table", "churn_scores")
        assert res.exit_code == 2, (database, res.output)
        text = _flat(res)
        assert why in text and "--out" in text, text
        assert database.removeprefix("duckdb://") in text.replace(" ", "") or database == ":memory:"
        assert _tree(d) == before  # nothing written, nothing changed, not even a lock file
    # a DuckDB file made by DuckDB (with a table of its own) is a target; the count is read back
    db = d / "real.duckdb"
    duckdb.connect(str(db)).execute("CREATE TABLE other AS SELECT 42 AS x").close()
    res = _score_cli("-c", str(cfg_path), "--model", str(result.model_path), "--as-of", DAY,
                     "--database", str(db), "--table", "churn_scores")
    assert res.exit_code == 0, res.output
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT x FROM other").fetchall() == [(42,)]
    n = con.execute("SELECT count(*) FROM churn_scores WHERE as_of = DATE '2024-07-01'").fetchone()[0]
    man = json.loads(con.execute("SELECT manifest FROM churn_scores_manifests").fetchone()[0])
    assert n == man["rows_out"] > 1000
    con.close()


def test_a_write_whose_read_back_differs_is_undone(trained, tmp_path):  # noqa: F811
    _, cfg_path, result = trained
    r = score(_cfg(cfg_path), str(result.model_path), AS_OF, out=tmp_path / "s")
    part = Path(r.target)
    before = _tree(part)
    work = tmp_path / ".s.clvml-work"
    staged = work / ".as_of=2024-07-01.test.tmp"
    staged.mkdir()
    pq.write_table(pa.table({"customer_id": ["x"] * 10}), staged / DATA)
    (staged / "_manifest.json").write_text("{}")
    # the data file read back from the partition is not the one recorded (its checksum differs)
    with pytest.raises(OutputError, match=r"differs from the file written.*previous data file was put back"):
        _publish_checked(staged, part, work, {DATA: {"rows": 10, "sha256": "0" * 64}}, 10)
    assert _tree(part) == before
    # DuckDB: a count that differs inside the transaction rolls it back
    db = tmp_path / "s.duckdb"
    parts = tmp_path / "parts"
    parts.mkdir()
    pq.write_table(pa.table({"customer_id": ["a", "b"], "clv": [1.0, 2.0]}), parts / DATA)
    _write_duckdb(db, "t", parts, AS_OF, {"rows_out": 2})
    with pytest.raises(OutputError, match="would hold 2 rows for 2024-07-01, not the 3 scored; rolled back"):
        _write_duckdb(db, "t", parts, AS_OF, {"rows_out": 3})
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*), min(as_of)::VARCHAR FROM t").fetchone() == (2, "2024-07-01")
    assert json.loads(con.execute("SELECT manifest FROM t_manifests").fetchone()[0]) == {"rows_out": 2}
    con.close()


# -- item 3: an empty or shrunk output needs --allow-shrink; a skipped drift check is a warning --

def test_an_empty_feed_or_an_as_of_before_all_data_exits_3_and_keeps_the_partition(trained, tmp_path):  # noqa: F811
    tmp, cfg_path, result = trained
    out = tmp_path / "s"
    good = _score_cli("-c", str(cfg_path), "--model", str(result.model_path), "--as-of", DAY, "--out", str(out))
    assert good.exit_code == 0, good.output
    part = out / f"as_of={DAY}"
    before = _tree(part)
    n = json.loads((part / "_manifest.json").read_text())["rows_out"]
    empty = _feed_config(tmp_path, tmp / "world", keep=0)  # header-only transactions
    res = _score_cli("-c", str(empty), "--model", str(result.model_path), "--as-of", DAY, "--out", str(out))
    assert res.exit_code == 3, res.output
    text = _flat(res)
    assert f"would write 0 rows, against {n:,} rows in the previous output" in text
    assert "training population" in text and "--allow-shrink" in text and "Nothing was written" in text
    assert _tree(part) == before
    early = _score_cli("-c", str(cfg_path), "--model", str(result.model_path), "--as-of", "2020-01-01",
                       "--out", str(out))
    assert early.exit_code == 3 and "would write 0 rows" in _flat(early) and "training population" in _flat(early)
    assert not (out / "as_of=2020-01-01").exists()
    # allowed: written, with the skipped drift check in the log and the manifest
    res = _score_cli("-c", str(empty), "--model", str(result.model_path), "--as-of", DAY, "--out", str(out),
                     "--allow-shrink")
    assert res.exit_code == 0, res.output
    assert "warning: drift check skipped: no customer was scored" in res.output
    m = json.loads((part / "_manifest.json").read_text())
    assert m["rows_out"] == 0 and m["shrink"]["shrunk"] and m["shrink"]["previous_rows"] == n
    assert m["drift"]["checked"] is False and "no customer was scored" in m["drift"]["skipped"]
    assert any("drift check skipped" in w for w in m["warnings"])
    assert not list(part.glob("*.parquet"))


def test_a_partial_feed_that_shrinks_more_than_max_shrink_exits_3(trained, tmp_path):  # noqa: F811
    tmp, cfg_path, result = trained
    out = tmp_path / "s"
    db = tmp_path / "s.duckdb"
    for target in (["--out", str(out)], ["--database", str(db), "--table", "sc"]):
        assert _score_cli("-c", str(cfg_path), "--model", str(result.model_path), "--as-of", DAY,
                          *target).exit_code == 0
    before = _tree(out / f"as_of={DAY}")
    con = duckdb.connect(str(db), read_only=True)
    n = con.execute("SELECT count(*) FROM sc").fetchone()[0]
    con.close()
    partial = _feed_config(tmp_path, tmp / "world", keep=0.3)
    for target in (["--out", str(out)], ["--database", str(db), "--table", "sc"]):
        res = _score_cli("-c", str(partial), "--model", str(result.model_path), "--as-of", DAY, *target)
        assert res.exit_code == 3, res.output
        text = _flat(res)
        assert f"against {n:,} rows in the previous output of this as_of" in text
        assert "more than scoring.max_shrink=0.5 fewer" in text and "--allow-shrink" in text
    assert _tree(out / f"as_of={DAY}") == before
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM sc").fetchone()[0] == n
    con.close()
    lenient = _feed_config(tmp_path, tmp / "world", keep=0.3, scoring={"max_shrink": 0.9})
    res = _score_cli("-c", str(lenient), "--model", str(result.model_path), "--as-of", DAY, "--out", str(out))
    assert res.exit_code == 0, res.output
    m = json.loads((out / f"as_of={DAY}" / "_manifest.json").read_text())
    assert 0.1 * n < m["rows_out"] < 0.5 * n and not m["shrink"].get("shrunk")


# -- item 6: outputs readable as the umask allows; an unreadable bundle is exit 5 --

UMASK_SCRIPT = textwrap.dedent("""
    import datetime as dt, os, sys
    from pathlib import Path
    os.umask(int(sys.argv[1], 8))
    out, model, cfg_path = Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    import mlflow
    from clvml.config import load_config
    from clvml.data.loading import load_data
    from clvml.datasets.synthetic import simulate
    from clvml.features import build_features, to_pandas
    from clvml.io import atomic_write_text
    from clvml.scoring.bundle import load_bundle, save_bundle
    from clvml.scoring.job import score
    cfg = load_config(cfg_path)
    cfg.scoring.keep_replaced_s = 600
    for _ in range(2):  # the second run keeps the replaced file aside
        score(cfg, model, dt.date(2024, 7, 1), out=out / "scores")
    simulate(150, "2024-01-01", "2024-03-31", seed=1).write(out / "world")
    report = atomic_write_text("<html></html>", out / "reports" / "report.html")
    b = load_bundle(model)
    ds = load_data(cfg)
    ex = to_pandas(build_features(ds.tables, [dt.date(2024, 7, 1)], windows=b.windows, families=b.families)).head(5)
    save_bundle(b, out / "models" / "shop", ex)
    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlflow.db'}")
    exp = mlflow.create_experiment("perm", artifact_location=(out / "mlartifacts").as_uri())
    with mlflow.start_run(experiment_id=exp):
        mlflow.log_artifact(str(report))
        mlflow.log_artifacts(str(out / "models" / "shop"), "model")
""")


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_outputs_get_the_permissions_of_the_umask(trained, tmp_path, umask):  # noqa: F811
    _, cfg_path, result = trained
    out = tmp_path / "o"
    script = tmp_path / "umask.py"
    script.write_text(UMASK_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), oct(umask), str(out), str(result.model_path),
                           str(cfg_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    paths = list(out.rglob("*"))  # with the work folder out/.scores.clvml-work (a replaced file)
    assert list(out.glob(".scores.clvml-work/.as_of=2024-07-01.replaced-*.parquet"))
    part = out / "scores" / f"as_of={DAY}"
    kinds = {"scores": part / DATA, "manifest": part / "_manifest.json",
             "simulate": out / "world" / "transactions.parquet", "report": out / "reports" / "report.html",
             "bundle checksums": out / "models" / "shop" / "clvml_checksums.json"}
    assert all(p.is_file() for p in kinds.values())
    assert list((out / "mlartifacts").rglob("artifacts/report.html"))
    assert list((out / "mlartifacts").rglob("artifacts/model/clvml_checksums.json"))
    assert len(paths) > 40
    wrong = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.lstat().st_mode)) for p in paths
             if stat.S_IMODE(p.lstat().st_mode) != (0o777 if p.is_dir() else 0o666) & ~umask}
    assert not wrong, wrong  # 0644/0755 under 022, 0640/0750 under 027: files and folders alike


NO_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
          "--bounding-set=-dac_override,-dac_read_search"]


def _can_drop_dac() -> bool:
    return os.geteuid() == 0 and shutil.which("setpriv") is not None and subprocess.run(
        [*NO_DAC, "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_drop_dac(), reason="needs root and setpriv to act as another account")
def test_a_bundle_of_another_account_loads_and_an_unreadable_one_exits_5(trained, tmp_path):  # noqa: F811
    """The bundle belongs to another account (uid 12345, as if `clvml train` ran as it); the scorer is
    root without the capabilities that bypass file permissions, i.e. any other account."""
    _, cfg_path, result = trained
    bundle = tmp_path / "shared" / "shop"
    shutil.copytree(result.model_path, bundle, symlinks=True)  # copytree keeps the export's modes
    for p in [bundle.parent, bundle, *bundle.rglob("*")]:
        os.chown(p, 12345, 12345)
    load = [*NO_DAC, sys.executable, "-c",
            "import sys; from clvml.scoring.bundle import load_bundle; print(load_bundle(sys.argv[1]).model_version)",
            str(bundle)]
    proc = subprocess.run(load, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith("shop-")
    (bundle / "python_model.pkl").chmod(0o600)  # owner-only: the scorer cannot read it
    proc = subprocess.run([*NO_DAC, sys.executable, "-m", "clvml.cli", "score", "-c", str(cfg_path),
                           "--model", str(bundle), "--as-of", DAY, "--out", str(tmp_path / "s")],
                          capture_output=True, text=True, timeout=300)
    err = "".join(proc.stderr.split())  # the console wraps long paths
    assert proc.returncode == 5, proc.stderr[-2000:]
    assert f"cannotread{bundle}/python_model.pkl(Permissiondenied)" in err and "Traceback" not in err
    assert not (tmp_path / "s" / f"as_of={DAY}").exists()


# -- item 7: a run removes only temporary folders whose owner is dead --

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from clvml.io import staging_dir
    with staging_dir(Path(sys.argv[1]), sys.argv[2], "test") as tmp:
        (tmp / "part-0000.parquet").write_bytes(b"a live run's chunk")
        print(tmp, flush=True)
        time.sleep(600)
""")


def _hold(tmp_path: Path, parent: Path, prefix: str) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "hold.py"
    script.write_text(HOLDER)
    proc = subprocess.Popen([sys.executable, str(script), str(parent), prefix], stdout=subprocess.PIPE,
                            text=True)
    return proc, Path(proc.stdout.readline().strip())


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_live_runs_staging_folder_is_kept_and_a_dead_ones_removed(trained, tmp_path):  # noqa: F811
    _, cfg_path, result = trained
    folder = tmp_path / "db"
    folder.mkdir()
    # a first run of the same as_of writing to another database in the same folder, alive
    live, held = _hold(tmp_path, folder, f".as_of={DAY}.")
    dead, gone = _hold(tmp_path, folder, ".as_of=2024-06-01.")  # another as_of's run, then killed
    try:
        assert held.is_dir() and gone.is_dir()
        _kill(dead)
        r = score(_cfg(cfg_path), str(result.model_path), AS_OF, database=str(folder / "b.duckdb"), table="s")
        assert held.is_dir() and (held / "part-0000.parquet").read_bytes() == b"a live run's chunk"
        assert not gone.exists() and not Path(f"{gone}.lock").exists()
        assert r.manifest["stale_temp_folders_removed"] == 1
    finally:
        _kill(live)
    r = score(_cfg(cfg_path), str(result.model_path), AS_OF, database=str(folder / "b.duckdb"), table="s")
    assert r.manifest["stale_temp_folders_removed"] == 1 and not held.exists()
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) == ["b.duckdb"]


KILLED_EXPORT = textwrap.dedent("""
    import os, signal, sys
    import mlflow.pyfunc
    from clvml.scoring.bundle import load_bundle, save_bundle
    import pandas as pd
    real = mlflow.pyfunc.save_model
    def save_then_die(*a, **k):
        real(*a, **k)
        os.kill(os.getpid(), signal.SIGKILL)
    mlflow.pyfunc.save_model = save_then_die
    b = load_bundle(sys.argv[1])
    save_bundle(b, sys.argv[2], pd.read_pickle(sys.argv[3]))
""")


def test_a_killed_exports_folder_is_removed_by_the_next_export_but_a_live_one_is_kept(trained, tmp_path):  # noqa: F811
    from clvml.features import build_features, to_pandas
    from clvml.scoring.bundle import load_bundle, save_bundle

    _, cfg_path, result = trained
    bundle = load_bundle(result.model_path)
    from clvml.data.loading import load_data

    ds = load_data(_cfg(cfg_path))
    ex = to_pandas(build_features(ds.tables, [AS_OF], windows=bundle.windows, families=bundle.families)).head(5)
    ex.to_pickle(tmp_path / "ex.pkl")
    models = tmp_path / "models"
    script = tmp_path / "killed.py"
    script.write_text(KILLED_EXPORT)
    proc = subprocess.run([sys.executable, str(script), str(result.model_path), str(models / "shop"),
                           str(tmp_path / "ex.pkl")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    left = [p for p in models.iterdir() if p.name.startswith(".shop.") and p.is_dir()]
    assert len(left) == 1 and (left[0] / "model" / "MLmodel").is_file()  # the killed export's folder
    live, held = _hold(tmp_path, models, ".shop.")  # a train exporting right now
    try:
        save_bundle(bundle, models / "shop", ex)
        assert not left[0].exists() and held.is_dir()
        assert load_bundle(models / "shop").model_version == bundle.model_version
    finally:
        _kill(live)


# -- item 8: readers during swaps get one whole version; the replaced one is kept for a grace period --

SWAPPER = textwrap.dedent("""
    import sys
    from pathlib import Path
    import pyarrow as pa, pyarrow.parquet as pq
    from clvml.io import staging_dir
    from clvml.scoring.job import _merge_parts, _publish, remove_expired_replaced
    root, n = Path(sys.argv[1]), int(sys.argv[2])
    part, work = root / "as_of=2024-07-01", root.parent / f".{root.name}.clvml-work"
    VERSIONS = {0: (40, 100), 1: (25, 160)}  # chunk files x rows: 4,000 rows either way
    for i in range(n):
        files, rows = VERSIONS[i % 2]
        with staging_dir(work, ".as_of=2024-07-01.", "test") as tmp:
            for f in range(files):
                pq.write_table(pa.table({"v": pa.array([i % 2] * rows, pa.int8()),
                                         "i": pa.array(range(rows), pa.int32())}), tmp / f"part-{f:04d}.parquet")
            _merge_parts(tmp)
            _publish(tmp, part, work)
        if i % 25 == 0:
            remove_expired_replaced(work, 5)
        if i == 0:
            print("first", flush=True)
""")


def test_readers_during_swaps_get_one_whole_version(tmp_path):
    root = tmp_path / "scores"
    script = tmp_path / "swap.py"
    script.write_text(SWAPPER)
    writer = subprocess.Popen([sys.executable, str(script), str(root), "400"], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "first"
    seen: dict[str, int] = {}
    try:
        while writer.poll() is None:
            for how, read in (("partition", lambda: pq.read_table(root / "as_of=2024-07-01")),
                              ("root", lambda: pa.Table.from_pandas(pd.read_parquet(root)))):
                t = read()
                versions = set(t.column("v").to_pylist()) if "v" in t.column_names else set()
                key = f"{how}: {t.num_rows} rows of versions {sorted(versions)}"
                seen[key] = seen.get(key, 0) + 1
    finally:
        writer.wait(timeout=600)
    assert writer.returncode == 0
    good = {f"{how}: 4000 rows of versions [{v}]" for how in ("partition", "root") for v in (0, 1)}
    assert set(seen) <= good, {k: n for k, n in seen.items() if k not in good}  # never part, never mixed
    assert sum(seen.values()) > 200 and len(seen) >= 3, seen  # both versions were read during the swaps


def test_the_replaced_version_is_kept_for_keep_replaced_s(trained, tmp_path):  # noqa: F811
    _, cfg_path, result = trained
    out = tmp_path / "s"
    work = tmp_path / ".s.clvml-work"
    score(_cfg(cfg_path), str(result.model_path), AS_OF, out=out)
    old = (out / f"as_of={DAY}" / DATA).read_bytes()
    with open(out / f"as_of={DAY}" / DATA, "rb") as reader:  # a reader that opened it before the swap
        score(_cfg(cfg_path, chunk_customers=400), str(result.model_path), AS_OF, out=out)
        assert reader.read() == old  # finishes on the old version
    assert (out / f"as_of={DAY}" / DATA).read_bytes() != old  # 4 chunks: other row groups, same rows
    aside = sorted(work.glob(f".as_of={DAY}.replaced-*.parquet"))
    assert len(aside) == 1 and aside[0].read_bytes() == old  # readable by its path during the grace period
    r = score(_cfg(cfg_path), str(result.model_path), dt.date(2024, 6, 1), out=out)
    assert r.manifest["replaced_partitions_removed"] == 0 and aside[0].exists()  # default 600 s: kept
    r = score(_cfg(cfg_path, keep_replaced_s=0), str(result.model_path), dt.date(2024, 6, 1), out=out)
    assert r.manifest["replaced_partitions_removed"] == 1 and not aside[0].exists()
    assert not list(out.rglob(".*.parquet")) and not list(out.rglob("*.tmp"))  # nothing hidden in the root


# -- item 9: the root is one dataset for every reader --

def test_the_scores_root_reads_with_pandas_pyarrow_and_duckdb(trained, tmp_path):  # noqa: F811
    import pyarrow.dataset as pads

    _, cfg_path, result = trained
    root = tmp_path / "scores"
    counts = {}
    for day in (dt.date(2024, 6, 1), AS_OF, AS_OF):  # the re-run leaves the replaced file aside
        counts[str(day)] = score(_cfg(cfg_path), str(result.model_path), day, out=root).manifest["rows_out"]
    live, _ = _hold(tmp_path, tmp_path / ".scores.clvml-work", f".as_of={DAY}.")  # a run in progress
    try:
        pdf = pd.read_parquet(root)
        assert pdf.as_of.astype(str).value_counts().to_dict() == counts
        table = pads.dataset(root, partitioning="hive").to_table()
        assert pd.Series(table.column("as_of").to_pylist()).value_counts().to_dict() == counts
        got = duckdb.sql(f"SELECT as_of::VARCHAR, count(*), count(DISTINCT customer_id) FROM read_parquet("
                         f"'{root}/**/*.parquet', hive_partitioning=true) GROUP BY 1").fetchall()
        assert {d: n for d, n, _ in got} == counts and all(n == u for _, n, u in got)
        assert duckdb.sql(f"SELECT typeof(as_of) FROM read_parquet('{root}/**/*.parquet', "
                          "hive_partitioning=true) LIMIT 1").fetchone()[0] == "DATE"
    finally:
        _kill(live)
    man = json.loads((root / f"as_of={DAY}" / "_manifest.json").read_text())
    assert man["as_of"] == DAY and "as_of" not in pq.read_schema(root / f"as_of={DAY}" / DATA).names


# -- item 11: an unwritable output is exit 6 with the path; a bad table name is exit 2 --

def test_unwritable_outputs_exit_6_naming_the_path(trained, tmp_path):  # noqa: F811
    _, cfg_path, result = trained
    (tmp_path / "a-file").write_text("x")
    locked = tmp_path / "locked"
    (locked / f".as_of={DAY}.lock").mkdir(parents=True)
    base = ["-c", str(cfg_path), "--model", str(result.model_path), "--as-of", DAY]
    cases = {("--out", str(tmp_path / "a-file")): "is a file, not a folder",
             ("--out", str(tmp_path / "a-file" / "below")): "is a file, not a folder",
             ("--out", str(locked)): "is a folder; remove it",
             ("--database", str(tmp_path / "a-file" / "x.duckdb"), "--table", "t"): "is a file, not a folder"}
    for args, why in cases.items():
        res = _score_cli(*base, *args)
        assert res.exit_code == 6, (args, res.output)
        text = _flat(res).replace(" ", "")
        assert why.replace(" ", "") in text and "Traceback" not in res.output
        assert str(tmp_path / "a-file").replace(" ", "") in text or str(locked) in text
    assert (tmp_path / "a-file").read_text() == "x"
    res = _score_cli(*base, "--database", str(tmp_path / "x.duckdb"), "--table", "1bad")
    assert res.exit_code == 2 and "not a plain identifier" in _flat(res)


def _can_mount_read_only() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o ro,size=1m tmpfs /mnt"], capture_output=True
    ).returncode == 0


@pytest.mark.skipif(not _can_mount_read_only(), reason="needs root and mount namespaces (unshare -m)")
def test_a_read_only_file_system_exits_6_and_keeps_the_partition(trained, tmp_path):  # noqa: F811
    _, cfg_path, result = trained
    out = tmp_path / "ro" / "scores"
    score(_cfg(cfg_path), str(result.model_path), AS_OF, out=out)
    before = _tree(out.parent)
    # the folder becomes read-only in a private mount namespace: a real EROFS for this run only
    cmd = (f"mount --bind {out.parent} {out.parent} && mount -o remount,bind,ro {out.parent} && "
           f"exec {sys.executable} -m clvml.cli score -c {cfg_path} --model {result.model_path} "
           f"--as-of {DAY} --out {out}")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", cmd],
                          capture_output=True, text=True, timeout=300)
    err = " ".join(proc.stderr.split())
    assert proc.returncode == 6, proc.stderr[-2000:]
    assert "read-only" in err and str(out) in "".join(proc.stderr.split()), err
    assert _tree(out.parent) == before
