"""User-defined point-in-time features: registration rules, exact values, config entries, the catalog,
the feature cache key, and a model trained with one that refuses to score without it."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import clvml
from clvml.cli import app
from clvml.config import load_config
from clvml.data.dataset import load_dataset
from clvml.errors import ConfigError, FeatureDefinitionError, ModelIncompatibleError
from clvml.features import build_features, catalog, feature_specs, to_pandas
from clvml.features.catalog_doc import catalog_markdown
from clvml.features.custom import CUSTOM, register_from_config, unregister_feature
from tests import custom_feature_defs as defs
from tests.conftest import tx

CUT = dt.date(2024, 2, 10)


@pytest.fixture
def registry():
    """The custom registry as it was before the test (every test registers its own features)."""
    before = dict(CUSTOM)
    CUSTOM.clear()
    yield CUSTOM
    CUSTOM.clear()
    CUSTOM.update(before)


def _features(frames, cutoffs=(CUT,), windows=(30, 90)):
    ds = load_dataset(frames=frames)
    return to_pandas(build_features(ds.tables, cutoffs, windows=windows, families=["transactions"]))


TX = tx([("a", "2024-01-01 10:00", 10.0), ("a", "2024-01-11", 60.0), ("a", "2024-01-31 23:59", 70.0),
         ("a", "2024-02-05", -5.0), ("a", "2024-02-10 00:00", 500.0),  # at the cut-off: never seen
         ("b", "2024-01-02", 80.0), ("b", "2024-02-09 23:59", 5.0)])


def test_custom_features_exact_values_catalog_and_reason_text(registry):
    clvml.register_feature(defs.big_orders, name="big_orders_{w}", windows=True,
                           description="Orders of 50 or more {span}.",
                           say=clvml.Say("{value} big {order|orders} {span}", zero="no big order {span}"))

    @clvml.register_feature(name="days_since_refund", description="Days since the last refund.", fill=None,
                            unit="days", say=clvml.Say("last refund {value} ago", kind="days",
                                                       missing="no refund yet"))
    def since_refund(history, at):
        return defs.days_since_refund(history, at)

    @clvml.register_feature(name="buy_days_{w}", windows=[7], description="Days with an order {span}.",
                            say="{value} purchase {day|days} {span}")
    def buy_days(history, at):  # a per-customer table
        return history.group_by(at.keys).aggregate(n=history.day.nunique())

    f = _features({"transactions": TX}, cutoffs=(CUT, dt.date(2024, 1, 20))).set_index(["cutoff", "customer_id"])
    a, b = f.loc[(pd.Timestamp(CUT), "a")], f.loc[(pd.Timestamp(CUT), "b")]
    # a: 60 on 01-11 is 30 days before the cut-off (in the 30-day window), 70 on 01-31; 500 at the cut-off
    assert (a.big_orders_30d, a.big_orders_90d, a.big_orders_all) == (2, 2, 2)
    assert (b.big_orders_30d, b.big_orders_all) == (0, 1)
    assert a.days_since_refund == 5 and pd.isna(b.days_since_refund)  # fill=None keeps "no refund" null
    assert (a.buy_days_7d, a.buy_days_all, b.buy_days_7d, b.buy_days_all) == (1, 4, 1, 2)
    early = f.loc[(pd.Timestamp("2024-01-20"), "a")]
    assert (early.big_orders_all, early.buy_days_all) == (1, 2)
    assert f.big_orders_all.dtype == "float64"

    names = ["big_orders_30d", "big_orders_90d", "big_orders_all", "days_since_refund", "buy_days_7d",
             "buy_days_all"]
    ds = load_dataset(frames={"transactions": TX})
    specs = feature_specs(ds.tables, (30, 90), ["transactions"])
    assert [s.name for s in specs if s.family == "custom"] == names
    by = {s.name: s for s in catalog((30, 90))}
    assert by["big_orders_30d"].description == "Orders of 50 or more in the last 30 days."
    assert by["big_orders_30d"].explain(1) == "1 big order in the last 30 days"
    assert by["big_orders_all"].explain(0) == "no big order over all history"
    assert by["days_since_refund"].explain(5) == "last refund 5 days ago"
    assert by["days_since_refund"].explain(None) == "no refund yet"
    md = catalog_markdown((30, 90))
    assert "## custom (registered in this process" in md and "(source: `transactions`)" in md
    assert "| `buy_days_7d` | 7 d | count | numeric, float64 | Days with an order in the last 7 days." in md
    assert "| `tx_orders_30d` |" in md  # the built-in catalog is still there


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "tx_gift_orders"}, "collides with clvml's own columns"),
    ({"name": "churn"}, "collides with clvml's own columns"),
    ({"name": "btyd_x"}, "collides"),
    ({"name": "Gift-Orders"}, "lowercase snake_case"),
    ({"name": "gift_{w}"}, "'{w}' in the name needs windows=True"),
    ({"windows": True}, "a windowed feature needs '{w}' in its name"),
    ({"name": "g_{w}", "windows": [0, 30]}, "positive day counts"),
    ({"table": "customers"}, "not an event table; use one of transactions, activity"),
    ({"description": " "}, "a description is required"),
])
def test_definition_rules_name_what_is_wrong(registry, kwargs, message):
    args = {"name": "gift_orders", "description": "Gift orders.", "say": "{value} gift orders",
            "table": "transactions"} | kwargs
    with pytest.raises(FeatureDefinitionError, match=re.escape(message)) as e:
        clvml.register_feature(defs.big_orders, **args)
    assert repr(args["name"]) in str(e.value) and not registry
    assert FeatureDefinitionError.exit_code == 2


def test_another_function_cannot_take_a_registered_name(registry):
    clvml.register_feature(defs.big_orders, name="gift", description="d", say="s")
    clvml.register_feature(defs.big_orders, name="gift", description="d2", say="s")  # same function: redefined
    assert registry["gift"].description == "d2"
    with pytest.raises(FeatureDefinitionError, match="already registered by tests.custom_feature_defs:big_orders"):
        clvml.register_feature(defs.days_since_refund, name="gift", description="d", say="s")
    unregister_feature("gift")
    clvml.register_feature(defs.days_since_refund, name="gift", description="d", say="s")


@pytest.mark.parametrize(("fn", "message"), [
    (lambda h, at: h.quantity.sum(), "has no attribute 'quantity'.*The history table has the columns "
                                     "customer_id, ts, amount, day, cutoff_day, cutoff"),
    (lambda h, at: h.amount * 2, r"returned a column \(.*\), not one value per customer"),
    (lambda h, at: h.customer_id.max(), "returned a string value; custom features are numeric"),
    (lambda h, at: h.select("customer_id", "cutoff_day", "amount"),
     r"returned 2 \(customer, cut-off\) pair\(s\) with more than one row \(e.g. customer_id a\)"),
    (lambda h, at: h.group_by("customer_id").aggregate(n=h.count()), "needs customer_id, cutoff_day"),
    (lambda h, at: 3, "returned int; return an Ibis reduction"),
])
def test_a_function_that_misbehaves_gets_a_clear_error(registry, fn, message):
    clvml.register_feature(fn, name="broken", description="d", say="s")
    with pytest.raises(FeatureDefinitionError, match=message) as e:
        _features({"transactions": TX})
    assert "custom feature 'broken'" in str(e.value)


def test_config_entries_register_and_are_validated(registry, tmp_path):
    entry = {"function": "tests.custom_feature_defs:big_orders", "name": "big_orders_{w}", "windows": [30],
             "description": "Orders of 50 or more {span}.", "say": "{value} big {order|orders} {span}"}
    path = tmp_path / "c.yaml"
    base = {"data": {"tables": {"transactions": {"path": "tx.parquet"}}}, "cutoffs": {"start": "2024-01-01"}}

    def config(*entries):
        path.write_text(yaml.safe_dump(base | {"features": {"custom": list(entries)}}))
        return load_config(path)

    cfg = config(entry)
    assert register_from_config(cfg.features.custom) == ["big_orders_{w}"]
    assert registry["big_orders_{w}"].function is defs.big_orders
    with pytest.raises(ConfigError) as e:
        config(entry, {"function": "tests.no_such_module:f"}, {"function": "tests.custom_feature_defs:nope"},
               {"function": "not a path"}, {"function": "tests.custom_feature_defs:big_orders", "name": "x"})
    text = str(e.value)
    assert "features.custom.1.function" in text and "cannot import module 'tests.no_such_module'" in text
    assert "features.custom.2.function" in text and "has no attribute 'nope'" in text
    assert "features.custom.3.function" in text and "is not 'package.module:function'" in text
    assert "features.custom.4" in text and "missing: description, say" in text
    # an undecorated function needs its name and texts in the entry
    with pytest.raises(FeatureDefinitionError, match=r"features.custom\[0\]: tests.custom_feature_defs:"
                                                     "days_since_refund is not decorated"):
        register_from_config(config({"function": "tests.custom_feature_defs:days_since_refund"}).features.custom)
    # a rule broken by an entry names the entry
    with pytest.raises(FeatureDefinitionError, match=r"features.custom\[0\]: custom feature 'tx_x'"):
        register_from_config(config(entry | {"name": "tx_x", "windows": False}).features.custom)


def test_features_cli_lists_config_custom_features(registry, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"tables": {"transactions": {"path": "tx.parquet"}}}, "cutoffs": {"start": "2024-01-01"},
        "features": {"windows": [30], "custom": [{
            "function": "tests.custom_feature_defs:session_days", "name": "session_days_{w}", "windows": True,
            "table": "activity", "description": "Days with a session {span}.",
            "say": "{value} session {day|days} {span}"}]}}))
    r = CliRunner().invoke(app, ["features", "list", "-c", str(path)])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("session_days_")]
    assert [ln.split()[:3] for ln in lines] == [["session_days_30d", "activity", "30d"],
                                               ["session_days_all", "activity", "all"]]
    r = CliRunner().invoke(app, ["features", "list", "--markdown", "-c", str(path)])
    assert "| `session_days_30d` | 30 d | count | numeric, float64 | Days with a session in the last 30 days. |" in r.output


def test_cache_key_holds_the_function_source(registry, small_world, tmp_path, monkeypatch):
    from clvml.modeling.training import training_features

    small_world.write(tmp_path / "w")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"tables": {"transactions": {"path": str(tmp_path / "w" / "transactions.parquet")}}},
        "cutoffs": {"start": "2024-03-01"}, "output": {"dir": str(tmp_path / "out")},
        "features": {"windows": [30], "families": ["transactions"], "custom": [
            {"function": "tests.custom_feature_defs:big_orders", "name": "big_orders",
             "description": "d", "say": "{value}"}]}}))
    cfg = load_config(path)
    ds = load_dataset(cfg.data)
    said: list[str] = []
    cuts = [dt.date(2024, 3, 1)]
    first = training_features(ds, cfg, cuts, said.append)
    assert "big_orders" in first and first.big_orders.sum() > 0
    assert training_features(ds, cfg, cuts, said.append).equals(first) and "feature cache hit" in said[-1]
    # the same name, another body: another key, so the cache cannot serve the old values
    monkeypatch.setattr(defs, "big_orders", _changed_big_orders)
    _changed_big_orders.__module__, _changed_big_orders.__qualname__ = defs.__name__, "big_orders"
    said.clear()
    again = training_features(ds, cfg, cuts, said.append)
    assert "cache miss (changed since the last entry: custom_features)" in said[0]
    assert (again.big_orders >= first.big_orders).all() and again.big_orders.sum() > first.big_orders.sum()


def _changed_big_orders(history, at):
    return history.amount.count(where=history.amount >= 20)


@pytest.fixture(scope="module")
def custom_model(tmp_path_factory):
    """A small model trained with a custom feature (registered from the config)."""
    from clvml.jobs.train import train
    from tests.test_demo import write_config

    tmp = tmp_path_factory.mktemp("custom-model")
    before = dict(CUSTOM)
    data = {"synthetic": {"n_customers": 600, "start": "2023-01-01", "end": "2024-06-30", "seed": 5,
                          "path": "world"}}
    fast = {"learning_rate": 0.3, "n_estimators": 30, "min_child_samples": 50, "early_stopping_rounds": 10}
    path = write_config(tmp, name="cf", data=data, tracking={"enabled": False}, model={"churn": fast, "value": fast},
                        cutoffs={"start": "2023-06-01", "every_days": 91}, features={"windows": [90], "families": ["transactions", "activity"],
                                                  "cache": False, "custom": [
        {"function": "tests.custom_feature_defs:session_days", "name": "session_days_{w}", "windows": True,
         "table": "activity", "description": "Days with a session {span}.",
         "say": "{value} session {day|days} {span}"}]})
    cfg = load_config(path)
    result = train(cfg)
    CUSTOM.clear()
    CUSTOM.update(before)
    return tmp, path, result


def test_a_model_with_a_custom_feature_scores_only_where_it_is_registered(registry, custom_model):
    from clvml.scoring.bundle import load_bundle
    from clvml.scoring.job import score

    tmp, path, result = custom_model
    bundle = load_bundle(result.model_path)
    assert [r["name"] for r in bundle.custom_features] == ["session_days_{w}"]
    assert bundle.custom_features[0]["function"] == "tests.custom_feature_defs:session_days"
    assert {"session_days_90d", "session_days_all"} <= set(bundle.feature_columns)
    assert {"session_days_90d", "session_days_all"} <= set(bundle.reference.bins)  # the drift reference
    as_of = dt.date(2024, 7, 1)
    cfg = load_config(path)
    without = cfg.model_copy(deep=True)
    without.features.custom = []
    with pytest.raises(ModelIncompatibleError) as e:  # nothing registers the function in this "process"
        score(without, str(result.model_path), as_of, out=tmp / "s0")
    msg = str(e.value)
    assert "custom feature 'session_days_{w}' (function tests.custom_feature_defs:session_days, table activity) " \
           "is not registered in this process: import tests.custom_feature_defs before scoring" in msg
    assert "features.custom" in msg and not (tmp / "s0").exists()
    # the config registers it: scores, with the feature among the reason codes' candidates
    r = score(cfg, str(result.model_path), as_of, out=tmp / "s1")
    scores = pd.read_parquet(r.target)
    assert len(scores) > 400 and scores.churn_probability.between(0, 1).all()
    # a different function under the same name is refused, naming what changed
    CUSTOM.clear()
    clvml.register_feature(_changed_big_orders, name="session_days_{w}", windows=True, table="activity",
                           description="d", say="s")
    with pytest.raises(ModelIncompatibleError, match=r"'session_days_\{w\}' differs from the one the model was "
                                                     "trained with \\(source_hash"):
        score(without, str(result.model_path), as_of, out=tmp / "s2")


def test_docs_example_runs(registry, tmp_path, monkeypatch):
    """The Python example of docs/custom-features.md runs as written."""
    text = (Path(__file__).parents[1] / "docs" / "custom-features.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "docs_example"}
    exec(compile(code, "docs/custom-features.md", "exec"), ns)  # noqa: S102 - our own documentation
    feats = ns["feats"]
    assert {"electronics_orders_90d", "electronics_orders_all", "days_since_refund"} <= set(feats.columns)
    assert feats.electronics_orders_all.sum() > 0 and feats.days_since_refund.notna().any()
