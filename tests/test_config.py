from pathlib import Path

import pytest

from clvml.config import load_config, parse_config
from clvml.errors import ConfigError

BASE = {"data": {"tables": {"transactions": {"path": "tx.parquet"}}}, "cutoffs": {"start": "2024-01-01"}}


def test_demo_config_is_valid():
    cfg = load_config(Path(__file__).parents[1] / "configs" / "demo.yaml")
    assert cfg.name == "demo"
    assert cfg.labels.horizon_days == 90
    assert cfg.data.synthetic.path.is_absolute()


def test_misspelled_keys_are_all_reported_with_path_and_suggestion():
    raw = {**BASE, "labels": {"horizon_dayz": 90}, "modle": {}, "features": {"windows": [30, -1]}}
    with pytest.raises(ConfigError) as exc:
        parse_config(raw)
    msg = str(exc.value)
    assert "3 problem(s)" in msg
    assert "labels.horizon_dayz: unknown key; did you mean 'horizon_days'?" in msg
    assert "modle: unknown key; did you mean 'model'?" in msg
    assert "features.windows" in msg


def test_nested_table_keys_are_checked():
    raw = {"data": {"tables": {"transactions": {"path": "x.csv", "colums": {}}}},
           "cutoffs": {"start": "2024-01-01"}}
    with pytest.raises(ConfigError, match=r"data.tables.transactions.colums: unknown key; did you mean 'columns'"):
        parse_config(raw)


def test_unknown_table_and_missing_transactions():
    with pytest.raises(ConfigError) as exc:
        parse_config({"data": {"tables": {"transaction": {"path": "x"}}}, "cutoffs": {"start": "2024-01-01"}})
    msg = str(exc.value)
    assert "did you mean 'transactions'" in msg


def test_column_names_must_be_identifiers():
    raw = {"data": {"tables": {"transactions": {"path": "x", "columns": {"amount": "x; DROP TABLE y"}}}},
           "cutoffs": {"start": "2024-01-01"}}
    with pytest.raises(ConfigError, match="not a plain identifier"):
        parse_config(raw)


def test_relative_paths_resolve_against_config_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "c.yaml"
    f.write_text("data:\n  tables:\n    transactions:\n      path: ../tx.parquet\ncutoffs:\n  start: 2024-01-01\n")
    cfg = load_config(f)
    assert cfg.data.tables["transactions"].path == (tmp_path / "tx.parquet").resolve()


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_offset_value_form_needs_the_btyd_features():
    raw = {"data": {"tables": {"transactions": {"path": "x"}}}, "cutoffs": {"start": "2024-01-01"},
           "model": {"value": {"form": "offset"}}}
    with pytest.raises(ConfigError, match=r"model.value.form: offset .* set model.btyd_features: true"):
        parse_config(raw)
    raw["model"]["btyd_features"] = True
    assert parse_config(raw).model.value.form == "offset"
