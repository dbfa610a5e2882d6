"""The Spark engine: PySpark in local mode (``local[2]``) runs the same feature expressions and the same
scoring as DuckDB, and must give the same values."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from clvml.cli import app
from clvml.config import DataConfig, EngineConfig, load_config
from clvml.data.dataset import load_dataset
from clvml.data.loading import load_data
from clvml.data.validation import java_pattern
from clvml.datasets.synthetic import simulate
from clvml.engine import connect_engine, java_version, spark_session
from clvml.errors import ConfigError, EngineError
from clvml.features import build_features, to_pandas
from clvml.jobs.train import train
from clvml.scoring.job import score
from tests.test_demo import write_config

pytest.importorskip("pyspark")
pytestmark = pytest.mark.skipif(java_version() is None or java_version() < 17,
                                reason="Spark needs Java 17")

SPARK = {"backend": "spark", "spark": {"master": "local[2]", "conf": {
    "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4",
    "spark.driver.memory": "2g"}}}
CUTS = [dt.date(2024, 3, 1), dt.date(2024, 6, 1)]


@pytest.fixture(scope="module")
def spark():
    con = connect_engine(EngineConfig.model_validate(SPARK))
    yield con
    con._session.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    path = tmp_path_factory.mktemp("spark-world")
    w = simulate(400, "2023-01-01", "2024-06-30", seed=3)
    w.write(path)
    # one table as CSV text with a custom timestamp format: Spark reads text, validation converts it
    tx = w.transactions.copy()
    tx["when"] = tx.pop("ts").dt.strftime("%d/%m/%Y %H:%M:%S")
    tx.to_csv(path / "tx.csv", index=False)
    return path


def _data_config(world: Path) -> DataConfig:
    tables = {k: {"path": str(world / f"{k}.parquet")} for k in ("customers", "activity", "social",
                                                                  "after_sales")}
    tables["transactions"] = {"path": str(world / "tx.csv"), "columns": {"ts": "when"},
                              "timestamp_format": "%d/%m/%Y %H:%M:%S"}
    return DataConfig.model_validate({"tables": tables})


@pytest.fixture(scope="module")
def loaded(spark, world):
    """The world loaded on DuckDB and on Spark (once: loading on Spark is the slow part)."""
    return load_dataset(_data_config(world)), load_dataset(_data_config(world), con=spark)


def test_every_feature_on_spark_equals_duckdb(loaded):
    duck, sds = loaded
    assert sds.con.name == "pyspark" and sds.report.rows_out == duck.report.rows_out
    assert sds.report.rows_in["transactions"] > 1000
    ref = to_pandas(build_features(duck.tables, CUTS))
    got = to_pandas(build_features(sds.tables, CUTS))
    assert list(got.columns) == list(ref.columns) and len(got) == len(ref) > 500
    for col in ref.columns:  # every column, with its type
        assert got[col].dtype == ref[col].dtype, col
        pd.testing.assert_series_equal(got[col], ref[col], rtol=1e-9, obj=col)


def test_validation_problems_are_the_same_on_spark(spark, tmp_path):
    tx = pd.DataFrame({"customer_id": ["a", "a", "b", None, "c"],
                       "ts": ["2024-01-02", "2024-01-05", "bad", "2024-01-03", "2024-01-04"],
                       "amount": [10.0, float("inf"), 5.0, 3.0, 4.0]})
    tx.to_parquet(tmp_path / "tx.parquet")
    cfg = DataConfig.model_validate({"tables": {"transactions": {"path": str(tmp_path / "tx.parquet")}},
                                     "policies": {"null_keys": "drop"}})
    from clvml.errors import DataValidationError

    reports = []
    for con in (None, spark):
        with pytest.raises(DataValidationError) as err:
            load_dataset(cfg, con=con)
        reports.append(err.value.report)
    def key(r):
        return sorted((p.table, p.column, p.check, p.n_rows, p.action, str(p.examples)) for p in r.problems)

    assert key(reports[0]) == key(reports[1])
    assert ("transactions", "amount", "nonfinite_amount", 1, "stopped") in [k[:5] for k in key(reports[1])]
    assert reports[0].dropped == reports[1].dropped == {"transactions": {"null_id": 1, "bad_ts": 1}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("spark-scoring")
    cfg_path = write_config(tmp, name="shop")
    cfg = load_config(cfg_path)
    return cfg_path, train(cfg, load_data(cfg)).model_path


def test_scores_on_spark_equal_the_single_machine_job(spark, trained, tmp_path):
    cfg_path, model = trained
    as_of = dt.date(2024, 7, 1)
    one = score(load_config(cfg_path), str(model), as_of, out=tmp_path / "duckdb")
    cfg = load_config(cfg_path)
    cfg.engine = EngineConfig.model_validate(SPARK)
    many = score(cfg, str(model), as_of, out=tmp_path / "spark")
    a = pd.read_parquet(one.target).sort_values("customer_id").reset_index(drop=True)
    b = pd.read_parquet(many.target).sort_values("customer_id").reset_index(drop=True)
    assert list(b.columns) == list(a.columns) and len(b) == len(a) > 1000
    pd.testing.assert_frame_equal(b, a, rtol=1e-12)
    m = many.manifest
    assert m["rows_out"] == len(a) and m["customers"] == one.manifest["customers"]
    assert m["drift"]["scores"] == one.manifest["drift"]["scores"]
    parts = sorted(p.name for p in Path(many.target).iterdir())
    assert parts[0] == "_manifest.json" and all(p.startswith("part-") for p in parts[1:])
    assert set(m["files"]) == set(parts[1:])
    for part in parts[1:]:  # each file sorted by customer, as the single-machine job writes them
        ids = pd.read_parquet(Path(many.target) / part).customer_id
        assert ids.is_monotonic_increasing


def test_spark_reads_the_scores_root_as_one_dataset(spark, trained, tmp_path):
    cfg_path, model = trained
    root = tmp_path / "scores"
    counts = {}
    for day in (dt.date(2024, 6, 1), dt.date(2024, 7, 1), dt.date(2024, 7, 1)):  # a replaced file aside
        counts[day] = score(load_config(cfg_path), str(model), day, out=root).manifest["rows_out"]
    df = spark._session.read.parquet(str(root))
    assert dict(df.dtypes)["as_of"] == "date" and "customer_id" in df.columns
    got = {r["as_of"]: r["count"] for r in df.groupBy("as_of").count().collect()}
    assert got == counts and df.select("customer_id", "as_of").distinct().count() == sum(counts.values())


def test_training_on_spark_gives_the_same_model(spark, trained, tmp_path):
    cfg_path, model = trained
    cfg = load_config(cfg_path)
    cfg.engine = EngineConfig.model_validate(SPARK)
    cfg.output.model_dir, cfg.output.dir = tmp_path / "models", tmp_path / "out"
    cfg.tracking.enabled = False
    ds = load_data(cfg)
    assert ds.con.name == "pyspark"
    from clvml.scoring.bundle import load_bundle

    # features, labels and the BG/NBD baseline computed by Spark; the same trees, to the last bit
    assert train(cfg, ds).bundle.model_version == load_bundle(model).model_version


def test_engine_option_and_shorthand(trained, tmp_path):
    cfg_path, _ = trained
    raw = cfg_path.read_text() + "engine: spark\n"
    (tmp_path / "c.yaml").write_text(raw)
    assert load_config(tmp_path / "c.yaml").engine.backend == "spark"
    (tmp_path / "bad.yaml").write_text(cfg_path.read_text() + "engine: {backend: flink}\n")
    with pytest.raises(ConfigError, match="engine.backend"):
        load_config(tmp_path / "bad.yaml")
    res = CliRunner().invoke(app, ["validate", str(cfg_path), "--engine", "flink"])
    assert res.exit_code == 2 and "engine" in res.output


def test_spark_without_java_17_says_so(tmp_path, monkeypatch):
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text('#!/bin/sh\necho \'openjdk version "11.0.22" 2024-01-16\' >&2\n')
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    assert java_version() == 11
    with pytest.raises(EngineError, match="needs Java 17 or newer and found Java 11") as err:
        spark_session(EngineConfig.model_validate("spark"))
    assert err.value.exit_code == 8
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert java_version() is None
    with pytest.raises(EngineError, match="no Java was found"):
        spark_session(EngineConfig.model_validate("spark"))
    java.write_text('#!/bin/sh\necho \'java version "1.8.0_402"\' >&2\n')
    assert java_version(str(java)) == 8


def test_strptime_formats_become_spark_patterns():
    assert java_pattern("%Y%m%d") == "yyyyMMdd"
    assert java_pattern("%d/%m/%Y %H:%M:%S") == "dd'/'MM'/'yyyy' 'HH':'mm':'ss"
    assert java_pattern("%Y-%m-%dT%H:%M:%S.%f") == "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'SSSSSS"
    assert java_pattern("at %H o'clock") == "'at 'HH' o''clock'"
    with pytest.raises(ValueError, match="%U"):
        java_pattern("%Y week %U")


def test_custom_features_on_spark_equal_duckdb(loaded):
    """A custom feature is one Ibis expression: Spark runs it and gives DuckDB's values (the custom
    part alone: the built-in families are compared above)."""
    from clvml.features.builder import cutoff_table
    from clvml.features.custom import CustomFeature, build_custom
    from clvml.features.registry import Say
    from tests import custom_feature_defs as defs

    feats = [CustomFeature("big_orders_{w}", defs.big_orders, "transactions", "d", Say("{value}"), (90,)),
             CustomFeature("session_days", defs.session_days, "activity", "d", Say("{value}"))]

    def run(ds):
        cuts = cutoff_table(CUTS)
        out = None
        for f in feats:
            for part in build_custom(f, ds.tables[f.table], cuts, [90]):
                got = part.to_pandas()
                out = got if out is None else out.merge(got, on=["customer_id", "cutoff_day"], how="outer")
        return out.sort_values(["cutoff_day", "customer_id"], ignore_index=True)

    ref, got = run(loaded[0]), run(loaded[1])
    assert list(got.columns) == ["customer_id", "cutoff_day", "big_orders_90d", "big_orders_all", "session_days"]
    assert len(got) == len(ref) > 300 and ref.big_orders_all.sum() > 0 and ref.session_days.sum() > 0
    pd.testing.assert_frame_equal(got, ref, check_dtype=False)
