"""Input tables from databases (``url:`` + ``table:`` or ``query:``) against a real PostgreSQL server
started here on 127.0.0.1 and against SQLite: the same validation, counts and features as the same data
from Parquet; scores written back to PostgreSQL by the scoring job's transaction; credentials masked in
logs, manifests, messages and MLflow; every error mapped to its exit code."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from clvml.cli import app
from clvml.config import DataConfig, TableSource
from clvml.data.dataset import load_dataset
from clvml.engine import connect
from clvml.errors import EXIT_CODES
from clvml.features.builder import build_features, to_pandas
from tests.pgserver import PASSWORD, bindir, pg_server
from tests.test_demo import FAST

TABLES = ("customers", "transactions", "activity", "social", "after_sales")
#: the transactions table in the databases has the user's own column names, and one column more
TX_RENAMED = {"customer_id": "cust", "ts": "order_ts", "amount": "total"}
CUTOFFS = [dt.date(2024, 1, 1), dt.date(2024, 4, 1)]
ENV_VAR = "CLVML_TEST_PGPASSWORD"


@pytest.fixture(scope="module")
def pg():
    if bindir() is None:
        pytest.skip("no PostgreSQL server binaries (initdb): `make test` installs Debian's postgresql package; "
                    "it could not be installed here")
    server = pg_server()
    try:
        s = server.__enter__()
    except KeyError:
        pytest.skip("running as root and there is no unprivileged 'postgres' user to run the server as")
    yield s
    server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def world(pg, tmp_path_factory):
    """A small synthetic world as Parquet files, in a PostgreSQL database ``shop`` and a SQLite file."""
    import ibis

    from clvml.datasets.synthetic import simulate

    tmp = tmp_path_factory.mktemp("dbworld")
    w = simulate(300, "2023-01-01", "2024-06-30", seed=5)
    w.write(tmp / "world")
    admin = pg.connect()
    admin.execute("CREATE DATABASE shop")
    admin.execute("CREATE DATABASE scores")
    admin.close()
    con = ibis.connect(pg.url("shop"))
    for name in TABLES:
        con.create_table(name, pq.read_table(tmp / "world" / f"{name}.parquet"))
    with pg.connect("shop") as c:
        for old, new in TX_RENAMED.items():
            c.execute(f"ALTER TABLE transactions RENAME COLUMN {old} TO {new}")
        c.execute("ALTER TABLE transactions ADD COLUMN internal_note text DEFAULT 'not needed'")
        c.execute("CREATE SEQUENCE side_effect")
    con.disconnect()
    lite = sqlite3.connect(tmp / "shop.db")
    for name in TABLES:
        pd.read_parquet(tmp / "world" / f"{name}.parquet").to_sql(name, lite, index=False)
    lite.close()
    return tmp


def _features(tables: dict) -> tuple[pd.DataFrame, object]:
    ds = load_dataset(DataConfig.model_validate({"tables": tables}), con=connect())
    return to_pandas(build_features(ds.tables, CUTOFFS, windows=[30, 365])), ds.report


def test_postgres_and_sqlite_tables_and_queries_give_the_features_of_parquet(pg, world):
    parquet = {n: {"path": str(world / "world" / f"{n}.parquet")} for n in TABLES}
    want, report = _features(parquet)
    assert len(want) > 300 and report.rows_in["transactions"] > 1000
    tx_map = {"columns": {k: v for k, v in TX_RENAMED.items()}}
    postgres = {n: {"url": pg.url("shop"), "table": n, **(tx_map if n == "transactions" else {})}
                for n in TABLES}
    lite = f"sqlite:///{world / 'shop.db'}"
    sqlite = {n: {"url": lite, "table": n} for n in TABLES}
    sqlite["transactions"] = {"url": lite, "query": "SELECT * FROM transactions WHERE amount IS NOT NULL;"}
    sqlite["customers"] = {"url": lite, "query": "WITH c AS (SELECT * FROM customers) SELECT * FROM c"}
    for tables in (postgres, sqlite):
        got, rep = _features(tables)
        pd.testing.assert_frame_equal(got, want)  # exact: every value, type and row
        assert rep.rows_in == report.rows_in and rep.rows_out == report.rows_out
        assert rep.problems == report.problems
    # the query form on PostgreSQL: its own column names, joins and filters run in the database
    q = ("SELECT t.cust AS customer_id, t.order_ts AS ts, t.total AS amount FROM transactions t "
         "JOIN customers c ON c.customer_id = t.cust WHERE t.total IS NOT NULL")
    a = load_dataset(DataConfig.model_validate({"tables": {"transactions": {"url": pg.url("shop"), "query": q}}}))
    b = load_dataset(DataConfig.model_validate({"tables": {"transactions": {
        "path": str(world / "world" / "transactions.parquet"), "columns": {}}}}))
    cols = ["customer_id", "ts", "amount"]
    assert a.tables["transactions"].select(*cols).to_pyarrow().equals(
        b.tables["transactions"].select(*cols).to_pyarrow())
    assert "***" in a.lineage["transactions"] and PASSWORD not in a.lineage["transactions"]


def test_only_the_mapped_columns_are_pulled(pg, world):
    from clvml.data.database import read_database

    con = connect()
    src = TableSource(url=pg.url("shop"), table="transactions", columns=TX_RENAMED)
    t = read_database(con, "transactions", src, "pulled")
    assert "internal_note" not in t.columns and {"cust", "order_ts", "total", "order_id"} <= set(t.columns)
    assert int(t.count().to_pyarrow().as_py()) == pq.read_metadata(world / "world" / "transactions.parquet").num_rows
    # an amount expression reads its own columns: they are pulled, nothing else
    src = TableSource(url=pg.url("shop"), table="transactions", columns={"customer_id": "cust", "ts": "order_ts"},
                      amount="total * quantity")
    assert set(read_database(con, "transactions", src, "pulled2").columns) == {
        "cust", "order_ts", "total", "quantity", "order_id", "category", "channel", "discount", "margin"}


def test_train_and_score_from_postgres_into_postgres_masks_the_password(pg, world, tmp_path, monkeypatch):
    import mlflow

    monkeypatch.setenv(ENV_VAR, PASSWORD)
    monkeypatch.setenv("CLVML_TEST_PGPORT", str(pg.port))
    url = pg.url("shop", password="${" + ENV_VAR + "}")
    tables = {"transactions": {"url": url, "table": "transactions", "columns": TX_RENAMED}}
    fast = {**FAST, "n_estimators": 30}
    cfg = {"name": "pgshop", "seed": 1, "data": {"tables": tables},
           "cutoffs": {"start": "2023-10-01", "every_days": 91}, "labels": {"horizon_days": 90},
           "features": {"windows": [90, 365], "families": ["transactions"]},
           "model": {"churn": fast, "value": fast, "auto_select": False},
           "tracking": {"experiment": "pg", "uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
           "output": {"dir": "out", "model_dir": "models"},
           # scores: a literal password (masked wherever shown) and the port from the environment
           "scoring": {"database": f"postgres://clvml:{PASSWORD}@127.0.0.1:${{CLVML_TEST_PGPORT}}/scores",
                       "table": "churn_scores"}}
    path = tmp_path / "pg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    runner = CliRunner()
    tr = runner.invoke(app, ["train", "-c", str(path)])
    assert tr.exit_code == 0, tr.output
    sc = runner.invoke(app, ["score", "-c", str(path), "-m", str(tmp_path / "models" / "pgshop"),
                             "--as-of", "2024-07-01"])
    assert sc.exit_code == 0, sc.output
    assert PASSWORD not in tr.output + sc.output and "postgres://clvml:***@127.0.0.1" in sc.output
    with pg.connect("scores") as c:
        n = c.execute("SELECT count(*) FROM churn_scores WHERE as_of = '2024-07-01'").fetchone()[0]
        (manifest,) = c.execute("SELECT manifest FROM churn_scores_manifests").fetchone()
    tx = pd.read_parquet(world / "world" / "transactions.parquet")
    assert n == tx[tx.ts < "2024-07-01"].customer_id.nunique() > 250
    assert PASSWORD not in manifest and json.loads(manifest)["rows_out"] == n
    assert json.loads(manifest)["target"].startswith("postgres://clvml:***@")
    # MLflow: params, config and lineage show the placeholder (inputs) and *** (a literal password)
    client = mlflow.MlflowClient(tracking_uri=cfg["tracking"]["uri"])
    (run,) = client.search_runs([client.get_experiment_by_name("pg").experiment_id])
    params = run.data.params
    assert params["data.tables.transactions.url"] == url and "${" + ENV_VAR + "}" in url
    assert params["scoring.database"] == "postgres://clvml:***@127.0.0.1:${CLVML_TEST_PGPORT}/scores"
    assert not [k for k, v in params.items() if PASSWORD in v]
    art = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / "art"),
                                                   tracking_uri=cfg["tracking"]["uri"]))
    files = [p for d in (art, tmp_path / "models", tmp_path / "out") for p in d.rglob("*") if p.is_file()]
    assert len(files) > 10 and any(p.name == "config.json" for p in files)
    assert not [p for p in files if PASSWORD.encode() in p.read_bytes()]  # bundle, reports, MLflow artifacts


def _validate(tmp_path: Path, source: dict, **env: str) -> tuple[int, str]:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "e", "data": {"tables": {"transactions": source}},
                                    "cutoffs": {"start": "2023-07-01"}}))
    r = CliRunner().invoke(app, ["validate", str(path)], env=env)
    return r.exit_code, " ".join(r.output.split())


def test_database_errors_exit_with_their_code_name_the_table_and_hide_the_password(pg, world, tmp_path):
    shop = pg.url("shop")
    cases = [  # (source, exit code, words the message must hold)
        ({"url": pg.url("shop", password="wrong-pw-9"), "table": "transactions"}, 11,
         ["data.tables.transactions.url", "refused the login", "PGPASSWORD"]),
        ({"url": f"postgres://clvml:{PASSWORD}@127.0.0.1:1/shop", "table": "transactions"}, 11,
         ["cannot connect", "running and reachable"]),
        ({"url": shop, "table": "transaction"}, 3,
         ["no table or view 'transaction'", "did you mean 'transactions'", "data.tables.transactions.table"]),
        ({"url": shop, "query": "SELECT cust AS customer_id, order_ts AS ts, totl AS amount FROM transactions"}, 3,
         ["table 'transactions'", "query", "failed", "totl"]),
        ({"url": shop, "query": "DELETE FROM transactions"}, 2, ["not a SELECT but a DELETE"]),
        ({"url": shop, "query": "WITH d AS (DELETE FROM transactions RETURNING *) SELECT * FROM d"}, 2,
         ["contains DELETE"]),
        ({"url": shop, "query": "SELECT 1; DROP TABLE transactions"}, 2, ["2 statements"]),
        ({"url": shop, "query": "SELECT * INTO stolen FROM transactions"}, 2, ["INTO"]),
        ({"url": shop, "table": "transactions", "path": "x.parquet"}, 2, ["either path", "not both"]),
        ({"url": "postgres://clvml:${NOT_SET_PW_X}@127.0.0.1/shop", "table": "transactions"}, 2,
         ["${NOT_SET_PW_X}", "not set"]),
        ({"url": f"sqlite:///{world / 'missing.db'}", "table": "transactions"}, 3, ["does not exist"]),
        # the parser lets a function call through; the read-only transaction refuses its side effect
        ({"url": shop, "query": "SELECT cust AS customer_id, order_ts AS ts, total AS amount, "
          "nextval('side_effect') AS n FROM transactions"}, 3, ["read-only transaction"]),
    ]
    for source, code, words in cases:
        got, out = _validate(tmp_path, source)
        assert got == code, (source, got, out)
        assert code in EXIT_CODES and all(w in out for w in words), (source, out)
        assert PASSWORD not in out and "wrong-pw-9" not in out, out
    assert not (world / "missing.db").exists()  # never created by trying to read it
    with pg.connect("shop") as c:  # nothing was changed by the refused queries
        assert c.execute("SELECT count(*) FROM transactions").fetchone()[0] == pq.read_metadata(
            world / "world" / "transactions.parquet").num_rows
        assert c.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'stolen'"
                         ).fetchone()[0] == 0


def test_urls_are_masked_expanded_and_scrubbed(monkeypatch):
    from clvml.config.database import expand_env, redact_url, scrub

    cases = {
        "postgres://me:s3cret@db:5432/shop?sslmode=require&password=x": "postgres://me:***@db:5432/shop?sslmode=require&password=***",
        "postgres://me:${PW}@db/shop": "postgres://me:${PW}@db/shop",  # a placeholder names, not reveals
        "postgres://me:a/b@c@db/x": "postgres://me:***@db/x",  # unencoded / and @ in the password
        "postgresql+psycopg://me@db/shop?password=${PW}": "postgresql+psycopg://me@db/shop?password=${PW}",
        "sqlite:////data/a@b.db": "sqlite:////data/a@b.db",  # a file path, no user info
        "/plain/path.duckdb": "/plain/path.duckdb",
    }
    for url, shown in cases.items():
        assert redact_url(url) == shown
    monkeypatch.setenv("PW", "xyz%40secret")
    assert expand_env("postgres://me:${PW}@db/shop", "k") == "postgres://me:xyz%40secret@db/shop"
    monkeypatch.delenv("PW")
    with pytest.raises(ValueError, match=r"k uses \$\{PW\} but the environment variable is not set"):
        expand_env("postgres://me:${PW}@db/shop", "k")
    real = "postgres://me:xyz%40secret@db/shop"
    assert scrub("auth failed for xyz@secret at postgres://me:xyz%40secret@db/shop", real) == (
        "auth failed for *** at postgres://me:***@db/shop")
    assert scrub("missing backend b", "mysql://a:b@h/x") == "missing backend ***"  # short: whole words only
    assert scrub("bad backend", "mysql://a:b@h/x") == "bad backend"


def test_an_unset_variable_in_the_scores_url_stops_score_before_any_work(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "e", "data": {"tables": {"transactions": {"path": "tx.parquet"}}},
                                    "cutoffs": {"start": "2023-07-01"}}))
    r = CliRunner().invoke(app, ["score", "-c", str(path), "-m", str(tmp_path / "no-model"), "--as-of", "2024-07-01",
                                 "--database", "postgres://u:${CLVML_UNSET_PW_Y}@127.0.0.1/s"])
    out = " ".join(r.output.split())
    assert r.exit_code == 2 and "${CLVML_UNSET_PW_Y} but the environment variable is not set" in out, out
