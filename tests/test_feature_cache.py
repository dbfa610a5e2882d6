"""The feature cache (issue 26.3): hits are logged, misses say why, and a changed input is never served
stale, even when it keeps its size and modification time."""

from __future__ import annotations

import datetime as dt
import json
import os

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from clvml.cli import app
from clvml.config import load_config
from clvml.data.loading import load_data
from clvml.features.cache import cache_key, cached_frame
from clvml.modeling.training import make_training_set, training_features

TABLES = ("customers", "activity", "social", "after_sales")


def test_cached_frame_hit_miss_and_reasons(tmp_path):
    said: list[str] = []
    frame = pd.DataFrame({"a": [1.5, 2.0], "t": pd.to_datetime(["2024-01-01", "2024-02-01"]).astype("datetime64[s]")})
    out = cached_frame(tmp_path, {"data": 1, "inputs": {"tx": {"f.csv": "x"}}}, lambda: frame, said.append)
    assert said == ["feature cache miss (no cached features yet); building features"]
    again = cached_frame(tmp_path, {"data": 1, "inputs": {"tx": {"f.csv": "x"}}}, lambda: 1 / 0, said.append)
    pd.testing.assert_frame_equal(again, frame, check_exact=True)  # same values, same dtypes
    assert said[-1].startswith("feature cache hit:") and "(2 rows)" in said[-1]
    cached_frame(tmp_path, {"data": 1, "inputs": {"tx": {"f.csv": "y"}}}, lambda: frame, said.append)
    assert said[-1] == ("feature cache miss (changed since the last entry: input tx (f.csv)); building features")
    cached_frame(tmp_path, {"data": 2, "inputs": {"tx": {"f.csv": "y"}}}, lambda: frame, said.append)
    assert said[-1] == "feature cache miss (changed since the last entry: data); building features"
    assert out is frame


def test_a_damaged_entry_is_rebuilt_and_old_entries_are_pruned(tmp_path):
    said: list[str] = []
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    cached_frame(tmp_path, {"k": 0}, lambda: frame, said.append)
    meta = tmp_path / f"features-{cache_key({'k': 0})}.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "rows": 99}))
    got = cached_frame(tmp_path, {"k": 0}, lambda: frame, said.append)
    assert "is damaged (rows 3 != 99); rebuilding" in said[-2] and len(got) == 3
    for k in range(1, 6):
        cached_frame(tmp_path, {"k": k}, lambda: frame, said.append, keep=3)
    assert len(list(tmp_path.glob("features-*.parquet"))) == len(list(tmp_path.glob("features-*.json"))) == 3


@pytest.fixture
def file_world(small_world, tmp_path):
    """The small world on disk, transactions as CSV (so a same-size edit is easy), and its config."""
    data = tmp_path / "data"
    small_world.write(data)
    tx = pd.read_parquet(data / "transactions.parquet")
    tx["ts"] = pd.to_datetime(tx["ts"]).dt.strftime("%Y-%m-%dT%H:%M:%S")
    tx.to_csv(data / "transactions.csv", index=False, float_format="%.2f")
    (data / "transactions.parquet").unlink()
    cfg = {
        "name": "cached", "data": {"tables": {"transactions": {"path": "data/transactions.csv"},
                                              **{t: {"path": f"data/{t}.parquet"} for t in TABLES}}},
        "cutoffs": {"start": "2023-06-01", "every_days": 61}, "labels": {"horizon_days": 60},
        "output": {"dir": "out", "model_dir": "models"}, "tracking": {"enabled": False},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, data / "transactions.csv"


def test_a_changed_input_is_never_served_stale(file_world):
    path, csv = file_world
    cfg = load_config(path)
    cuts = [dt.date(2024, 3, 1), dt.date(2024, 6, 1)]
    said: list[str] = []
    first = training_features(load_data(cfg), cfg, cuts, said.append)
    second = training_features(load_data(cfg), cfg, cuts, said.append)
    assert said[0].startswith("feature cache miss (no cached features yet)")
    assert said[1].startswith("feature cache hit:")
    pd.testing.assert_frame_equal(first, second, check_exact=True)

    # change one amount by a cent: same size, and the modification time put back
    st = csv.stat()
    text = csv.read_text()
    lines = text.splitlines()
    cols = lines[0].split(",")
    ts, amount = cols.index("ts"), cols.index("amount")
    row = next(i for i, line in enumerate(lines[1:], 1)
               if line.split(",")[ts] < "2024-02" and line.split(",")[amount][-1] in "012345678")
    cells = lines[row].split(",")
    cells[amount] = cells[amount][:-1] + str(int(cells[amount][-1]) + 1)  # one cent more, same length
    lines[row] = ",".join(cells)
    csv.write_text("\n".join(lines) + ("\n" if text.endswith("\n") else ""))
    os.utime(csv, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert csv.stat().st_size == st.st_size and csv.stat().st_mtime_ns == st.st_mtime_ns
    third = training_features(load_data(cfg), cfg, cuts, said.append)
    assert said[2] == ("feature cache miss (changed since the last entry: input transactions "
                       "(transactions.csv)); building features")
    assert not first.equals(third)  # the new amount reached the features

    cfg.features.cache = False
    training_features(load_data(cfg), cfg, cuts, said.append)
    assert said[3].startswith("feature cache off")


def test_in_memory_data_is_never_cached(small_world, file_world):
    from clvml.data.dataset import load_dataset

    path, _ = file_world
    cfg = load_config(path)
    ds = load_dataset(frames={"transactions": small_world.transactions})
    said: list[str] = []
    make_training_set(ds, cfg, [dt.date(2024, 3, 1)], said.append)
    assert said == ["feature cache not used: a table was not read from files (in memory or a database)"]
    assert not (cfg.output.dir / "cache").exists()


def test_the_cli_reports_hits_and_no_cache_forces_a_rebuild(file_world):
    path, _ = file_world
    raw = yaml.safe_load(path.read_text())  # one origin, small models: the cache's messages are the point
    fast = {"n_estimators": 20, "learning_rate": 0.3, "early_stopping_rounds": 5}
    raw.update(backtest={"last": 1, "clv_last": 0}, model={"churn": fast, "value": fast})
    path.write_text(yaml.safe_dump(raw))
    runs = [CliRunner().invoke(app, ["backtest", "-c", str(path), *extra]) for extra in ([], [], ["--no-cache"])]
    assert [r.exit_code for r in runs] == [0, 0, 0], runs[0].output
    outs = [" ".join(r.output.split()) for r in runs]
    assert "feature cache miss (no cached features yet)" in outs[0]
    assert "feature cache hit:" in outs[1]
    assert "feature cache off" in outs[2]


def test_cutoffs_built_in_several_queries_give_identical_features(file_world):
    """Building a training set's features a few cut-offs per query (to bound memory) changes nothing."""
    path, _ = file_world
    cfg = load_config(path)
    cfg.features.cache = False
    ds = load_data(cfg)
    cuts = [dt.date(2023, 11, 1) + dt.timedelta(days=45 * i) for i in range(5)]
    frames = []
    for per_query in (16, 2, 1):
        cfg.features.cutoffs_per_query = per_query
        frames.append(training_features(ds, cfg, list(reversed(cuts))))
    assert len(frames[0]) > 0 and frames[0]["cutoff"].nunique() == 5
    for other in frames[1:]:
        pd.testing.assert_frame_equal(frames[0], other, check_exact=True)


def test_an_entry_with_other_column_types_is_never_served(file_world, monkeypatch):
    """An entry written by a build that stored the columns otherwise (counts as float64, as clvml did before
    they were float32) misses, saying so, and the table is rebuilt with today's types."""
    from clvml.features import registry

    path, _ = file_world
    cfg = load_config(path)
    cuts = [dt.date(2024, 3, 1)]
    said: list[str] = []
    monkeypatch.setattr(registry, "storage", lambda f: "string" if f.dtype == "categorical" else "float64")
    old = training_features(load_data(cfg), cfg, cuts, said.append)
    monkeypatch.undo()
    new = training_features(load_data(cfg), cfg, cuts, said.append)
    assert said[1] == "feature cache miss (changed since the last entry: columns); building features"
    assert old.tx_orders_all.dtype == "float64" and new.tx_orders_all.dtype == "float32"
    assert (old.tx_orders_all == new.tx_orders_all).all()
    assert training_features(load_data(cfg), cfg, cuts, said.append).equals(new)
    assert said[2].startswith("feature cache hit:")
