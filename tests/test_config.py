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


def _laughs(levels: int = 9) -> str:
    """A 'billion laughs' flow mapping (9**9 strings once expanded): ``levels`` anchors, each a list of 9
    aliases to the previous one."""
    items = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    items += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "{" + ", ".join(items) + "}"


DEMO_HEAD = "data:\n  tables:\n    transactions: {path: tx.parquet}\ncutoffs: {start: 2024-01-01}\n"


def _refused(tmp_path, text):
    import time

    f = tmp_path / "c.yaml"
    f.write_text(text)
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    seconds = time.perf_counter() - t0
    assert seconds < 10, seconds  # measured: well under 1 s each (the bombs took 87 s / > 5 GB before)
    assert exc.value.exit_code == 2
    return exc.value.problems


def test_duplicate_keys_are_refused_naming_the_lines(tmp_path):
    assert _refused(tmp_path, DEMO_HEAD + "seed: 1\nseed: 2\n") == [
        "line 6: duplicate key 'seed' (already set at line 5); each key may appear once in a mapping — YAML "
        "would silently keep the last one. Remove one of them"]
    flow = ("data:\n  tables:\n    transactions: {path: tx.parquet}\n  policies: {duplicates: error, "
            "duplicates: drop}\ncutoffs: {start: 2024-01-01}\n")
    assert _refused(tmp_path, flow) == [
        "line 4: duplicate key 'duplicates' (already set earlier on the same line); each key may appear once "
        "in a mapping — YAML would silently keep the last one. Remove one of them"]


def test_merge_keys_and_small_aliases_still_work(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(DEMO_HEAD + "model:\n  churn:\n    params: &p {max_depth: 4, min_data_in_bin: 5}\n"
                 "  value:\n    params:\n      <<: *p\n      max_depth: 6\n")
    cfg = load_config(f)
    assert cfg.model.churn.params == {"max_depth": 4, "min_data_in_bin": 5}
    assert cfg.model.value.params == {"max_depth": 6, "min_data_in_bin": 5}


@pytest.mark.parametrize("where", ["seed", "params"])
def test_billion_laughs_is_refused_at_once(tmp_path, where):
    use = f"seed: {_laughs()}\n" if where == "seed" else f"model:\n  churn:\n    params: {_laughs()}\n"
    problems = _refused(tmp_path, DEMO_HEAD + use)
    assert problems == [
        f"line {5 if where == 'seed' else 7}: this value holds more than 100,000 values once its aliases (*name) are expanded; a clvml "
        "config has a few hundred — aliases that repeat collections many times over (a 'billion laughs' "
        "document) are refused"]


def test_deep_nesting_and_self_reference_are_refused(tmp_path):
    assert _refused(tmp_path, DEMO_HEAD + "seed: " + "[" * 20_000 + "]" * 20_000 + "\n") == [
        "line 5: nested more than 100 levels deep; a clvml config needs a handful of levels"]
    block = "".join("  " * i + f"k{i}:\n" for i in range(150))
    assert _refused(tmp_path, block) == [
        "line 100: nested more than 100 levels deep; a clvml config needs a handful of levels"]
    assert _refused(tmp_path, DEMO_HEAD + "seed: &a [1, *a]\n") == [
        "line 5: an alias refers to the collection that contains it (an endless value)"]


def test_a_model_without_the_transaction_features_is_refused_up_front():
    # it used to build every feature and then fail in the backtest with a raw ValueError (exit 1)
    with pytest.raises(ConfigError) as exc:
        parse_config({**BASE, "features": {"families": ["profile", "activity"]}})
    msg = str(exc.value)
    assert "1 problem(s)" in msg
    assert "(top level): features.families must include transactions" in msg
    assert "got [profile, activity]" in msg and "(got {" not in msg
