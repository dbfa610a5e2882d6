"""Bad input on the real command line: a clear message and the documented exit code, never a traceback."""

from __future__ import annotations

import pytest

from tests.clirun import clvml

MINIMAL = "data:\n  tables:\n    transactions: {path: tx.csv}\ncutoffs: {start: 2024-01-01}\n"


def _config(tmp_path, text=MINIMAL):
    (tmp_path / "tx.csv").write_text("customer_id,ts,amount\nc1,2024-01-02,10\nc2,2024-01-03,12\n")
    (tmp_path / "c.yaml").write_text(text)
    return tmp_path / "c.yaml"


def test_spark_engine_without_pyspark_exits_8(tmp_path):
    # a real CLI process in which pyspark cannot be imported (as on an install without clvml[spark])
    proc = clvml("validate", str(_config(tmp_path)), "--engine", "spark",
                 prelude="import sys\nsys.modules['pyspark'] = None")
    assert proc.returncode == 8, proc.stderr
    assert "Traceback" not in proc.stderr and "ImportError" not in proc.stderr
    assert "error: engine: spark needs pyspark: pip install 'clvml[spark]'" in proc.stderr.splitlines()


def test_duplicate_yaml_key_exits_2_naming_the_line(tmp_path):
    text = MINIMAL.replace("cutoffs:", "  policies: {duplicates: error, duplicates: drop}\ncutoffs:")
    proc = clvml("validate", str(_config(tmp_path, text)))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: 1 problem(s) in {tmp_path / 'c.yaml'}:",
        "  - line 4: duplicate key 'duplicates' (already set earlier on the same line); each key may appear "
        "once in a mapping — YAML would silently keep the last one. Remove one of them"]


def _in_process(*args):
    """The same command in this process (typer's runner): for variants of a case already run as a
    real subprocess above."""
    from typer.testing import CliRunner

    from clvml.cli import app

    return CliRunner().invoke(app, list(args))


def _bundle_with_listing(tmp_path, listing):
    bundle = tmp_path / "model"
    bundle.mkdir(exist_ok=True)
    (bundle / "MLmodel").write_text("flavors: {}\n")
    (bundle / "clvml_checksums.json").write_text(listing)
    return bundle


def test_malformed_checksum_file_exits_5(tmp_path):
    bundle = _bundle_with_listing(tmp_path, '{"files": null}')
    proc = clvml("score", "-c", str(_config(tmp_path)), "--model", str(bundle), "--as-of", "2024-07-01",
                 "--out", str(tmp_path / "s"))
    assert proc.returncode == 5, proc.stderr
    assert "Traceback" not in proc.stderr and "TypeError" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f'error: model {bundle}: clvml_checksums.json is malformed (expected {{"files": {{"<path>": '
        '"<sha256>", …}}, found {"files": null}); not loaded, because loading runs pickled code. Re-export '
        "it with `clvml train`, or copy it again from its source")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("listing, found", [("[]", "malformed"), ('{"files": {"MLmodel": 3}}', "malformed"),
                                            ('{"files": {}}', "malformed"), ('"x"', "malformed"),
                                            ("not json", "not JSON")])
def test_every_malformed_checksum_file_exits_5(tmp_path, listing, found):
    bundle = _bundle_with_listing(tmp_path, listing)
    res = _in_process("score", "-c", str(_config(tmp_path)), "--model", str(bundle), "--as-of", "2024-07-01",
                      "--out", str(tmp_path / "s"))
    assert res.exit_code == 5, res.output
    assert f"error: model {bundle}: clvml_checksums.json is {found} (" in res.output


def test_iso_week_date_is_refused(tmp_path):
    proc = clvml("score", "-c", str(_config(tmp_path)), "--model", str(tmp_path / "m"), "--as-of", "2025-W01-1")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "error: 1 problem(s):", "  - --as-of: '2025-W01-1' is not a date written YYYY-MM-DD (e.g. 2025-01-01)"]


@pytest.mark.parametrize("command", [["score", "--model", "m"], ["report", "analytics"],
                                     ["experiment", "uplift"], ["experiment", "power"]])
@pytest.mark.parametrize("value", ["2025-001", "20250101", "2025-1-1", "2025-02-30", "yesterday"])
def test_as_of_must_be_yyyy_mm_dd_everywhere(tmp_path, command, value):
    res = _in_process(*command, "-c", str(_config(tmp_path)), "--as-of", value)
    assert res.exit_code == 2, res.output
    assert f"  - --as-of: {value!r} is not a date written YYYY-MM-DD (e.g. 2025-01-01)" in res.output.splitlines()


def _registry(tmp_path):
    """A real MLflow registry (SQLite) with model 'shop', version 1 under the alias 'champion', and a
    config using it."""
    import mlflow

    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    src = tmp_path / "src"
    src.mkdir()
    (src / "MLmodel").write_text("flavors: {}\n")
    client = mlflow.MlflowClient(tracking_uri=db, registry_uri=db)
    client.create_registered_model("shop")
    v = client.create_model_version("shop", source=str(src))
    client.set_registered_model_alias("shop", "champion", v.version)
    return _config(tmp_path, MINIMAL + f"tracking: {{uri: '{db}'}}\n")


def test_missing_alias_exits_9_listing_the_aliases(tmp_path):
    cfg = _registry(tmp_path)
    proc = clvml("score", "-c", str(cfg), "--model", "models:/shop@production", "--as-of", "2024-07-01",
                 "--out", str(tmp_path / "s"), MLFLOW_ENABLE_ASYNC_LOGGING="false")
    assert proc.returncode == 9, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "error: model models:/shop@production not found: Registered model alias production not found; model "
        "shop has the aliases champion (version 1); its versions: 1. Give a bundle folder exported by `clvml "
        "train` (models/<name>), runs:/<run_id>/model or models:/<name>@<alias>")


@pytest.mark.parametrize("uri, says", [
    ("models:/nope@production", "Registered Model with name=nope not found; registered models: shop."),
    ("models:/shop/7", "Model Version (name=shop, version=7) not found; model shop has the aliases champion "
                       "(version 1); its versions: 1."),
    ("runs:/0123456789abcdef/model", "Run with id=0123456789abcdef not found."),
])
def test_models_that_do_not_exist_exit_9(tmp_path, uri, says):
    cfg = _registry(tmp_path)
    res = _in_process("score", "-c", str(cfg), "--model", uri, "--as-of", "2024-07-01")
    assert res.exit_code == 9, res.output
    assert f"error: model {uri} not found: {says} Give a bundle folder" in res.output


def test_missing_bundle_folder_exits_9(tmp_path):
    res = _in_process("score", "-c", str(_config(tmp_path)), "--model", str(tmp_path / "models" / "shop"),
                      "--as-of", "2024-07-01")
    assert res.exit_code == 9, res.output
    assert f"error: model {tmp_path / 'models' / 'shop'} does not exist. Give a bundle folder" in res.output


def test_s3_model_without_boto3_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "botocore", None)  # as on an install without boto3
    monkeypatch.setitem(sys.modules, "boto3", None)
    res = _in_process("score", "-c", str(_config(tmp_path)), "--model", "s3://bucket/models/shop",
                      "--as-of", "2024-07-01")
    assert res.exit_code == 5, res.output
    assert ("error: cannot load model s3://bucket/models/shop: reading s3:// needs the Python package boto3, "
            "which is not installed: pip install boto3") in res.output
