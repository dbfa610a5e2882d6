"""Uplift: Qini measures on hand-built rankings, the targeting list, the estimator contract, and the
synthetic world's campaign with a known heterogeneous effect (effects covered, uplift beats random)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from clvml.analytics.uplift import UpliftModel, qini_coefficient, qini_curve, targeting_list
from clvml.config import parse_config
from clvml.datasets.synthetic import Campaign, simulate
from clvml.errors import ConfigError

Y = np.array([1, 0, 1, 0, 0, 1, 0, 0])
W = np.array([1, 1, 1, 1, 0, 0, 0, 0])


def test_qini_curve_exact():
    c = qini_curve(Y, W, np.array([8, 7, 6, 5, 4, 3, 2, 1]))  # all treated first
    # top 4 are treated: 2 responders, no controls yet -> qini = Y_t; then controls (1 responder of 4)
    assert c["qini"].tolist() == [0, 1, 1, 2, 2, 2 - 0 * 4 / 1, 2 - 1 * 4 / 2, 2 - 1 * 4 / 3, 2 - 1 * 4 / 4]
    assert c["random"].iloc[-1] == c["qini"].iloc[-1] == 1.0
    assert c["fraction"].tolist() == [i / 8 for i in range(9)]


def test_qini_coefficient_perfect_random_and_reversed():
    best = np.where(W == 1, Y, -Y)
    assert qini_coefficient(Y, W, best) == pytest.approx(1.0)
    assert qini_coefficient(Y, W, -best) < 0
    rng = np.random.default_rng(0)
    n = 20_000
    w = rng.random(n) < 0.5
    x = rng.random(n)
    y = (rng.random(n) < 0.2 + 0.2 * x * w).astype(float)  # effect grows with x
    # outcomes are noisy, so even the true ranking is far from the perfect (outcome-sorted) one
    assert qini_coefficient(y, w, x) > 0.05
    assert abs(qini_coefficient(y, w, np.random.default_rng(99).random(n))) < 0.02
    assert qini_coefficient(y, w, x, normalize=False) > 0


def test_targeting_list_rules():
    ids = ["d", "a", "b", "c", "e"]
    u = np.array([0.10, 0.30, 0.30, 0.02, -0.05])
    tl = targeting_list(ids, u, value=10.0, cost=0.5)
    assert tl["customer_id"].tolist() == ["a", "b", "d", "c", "e"]  # ties by id
    assert tl["rank"].tolist() == [1, 2, 3, 4, 5]
    assert tl["net_value"].tolist() == pytest.approx([2.5, 2.5, 0.5, -0.3, -1.0])
    assert tl["target"].tolist() == [True, True, True, False, False]
    assert targeting_list(ids, u, value=10.0, cost=0.5, budget=1.0)["target"].sum() == 2
    assert targeting_list(ids, u, value=10.0, max_fraction=0.2)["target"].sum() == 1
    per_customer = targeting_list(ids, u, value=np.array([1, 1, 1, 100, 1]), cost=0.5)
    assert per_customer["customer_id"].iloc[0] == "c"
    with pytest.raises(ConfigError, match="5 customers but 4"):
        targeting_list(ids, u[:4])


def test_estimator_contract():
    m = UpliftModel(num_leaves=3, n_estimators=5)
    assert clone(m).get_params() == m.get_params()
    with pytest.raises(NotFittedError):
        m.predict(pd.DataFrame({"x": [1.0]}))
    X = pd.DataFrame({"x": np.arange(100.0)})
    with pytest.raises(ConfigError, match="only 50 treated"):
        m.fit(X, np.arange(100) % 2, np.arange(100) % 3 == 0)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """A 20k-customer world with one randomised incentive on 2024-09-01 (30-day window)."""
    path = tmp_path_factory.mktemp("campaign")
    cfg = parse_config({
        "name": "campaign", "seed": 0,
        "data": {"synthetic": {"n_customers": 20_000, "start": "2023-01-01", "end": "2024-10-31",
                               "seed": 11, "path": str(path / "world"),
                               "campaigns": [{"date": "2024-09-01"}]}},
        "cutoffs": {"start": "2024-06-01", "every_days": 30},
        "experiments": {"by": ["membership_tier"]}, "output": {"dir": str(path / "out")},
    })
    from clvml.data.loading import load_data

    ds = load_data(cfg)
    world = path / "world"
    tier = pd.read_parquet(world / "customers.parquet")[["customer_id", "membership_tier"]]
    a = pd.read_parquet(world / "assignments.parquet").merge(tier, on="customer_id")
    a.to_parquet(path / "assignments_tier.parquet")
    truth = pd.read_parquet(world / "campaign_truth.parquet").merge(tier, on="customer_id")
    return cfg, ds, path, truth


def _purchase_days(w, before=None):
    t = w.transactions[w.transactions.amount > 0]
    d = t.assign(day=t.ts.dt.normalize())[["customer_id", "day"]]
    return d[d.day < before].reset_index(drop=True) if before else d.reset_index(drop=True)


def test_campaign_leaves_the_world_before_it_unchanged():
    plain = simulate(2000, "2023-01-01", "2023-12-31", cutoffs=[], seed=5)
    camp = simulate(2000, "2023-01-01", "2023-12-31", cutoffs=[], seed=5,
                    campaigns=[Campaign(date="2023-10-01")])
    # who bought on which day is drawn day by day: identical up to the campaign, different after
    pd.testing.assert_frame_equal(_purchase_days(camp, "2023-10-01"), _purchase_days(plain, "2023-10-01"))
    assert len(_purchase_days(camp)) > len(_purchase_days(plain))
    ct = camp.campaign_truth
    assert set(ct["group"]) == {"treatment", "control"}
    assert (ct["uplift_purchase"] >= -1e-12).all()  # a higher purchase rate never lowers P(purchase)
    lapsed = ct["days_since_last_purchase"] >= 60
    assert ct.loc[lapsed & ct.alive, "tau"].eq(2.0).sum() > 0 and ct.loc[~lapsed, "tau"].max() <= 0.3


@pytest.fixture(scope="module")
def evaluated(campaign):
    from clvml.analytics.experiment_report import evaluate

    cfg, ds, path, truth = campaign
    return evaluate(cfg, ds)  # the world's assignments; membership_tier joined from the customers table


def test_effects_cover_the_true_effect(campaign, evaluated):
    cfg, ds, path, truth = campaign
    r = evaluated
    e = r["effects"].set_index(["segment", "metric"])
    true = {("all", "repurchased"): truth["uplift_purchase"].mean(),
            ("all", "spend"): truth["uplift_spend"].mean()}
    for tier_, g in truth.groupby("membership_tier"):
        true[(tier_, "repurchased")] = g["uplift_purchase"].mean()
        true[(tier_, "spend")] = g["uplift_spend"].mean()
    for key, value in true.items():
        assert e.loc[key, "ci_low"] <= value <= e.loc[key, "ci_high"], (key, value)
    # the heterogeneity is visible: gold members (lift x 0.25) respond least
    rate = e.xs("repurchased", level="metric")["effect"]
    assert rate["gold"] < rate["basic"] and rate["gold"] < rate["silver"]
    tot = r["summary"]["incremental_totals"]["retention-1/spend"]
    spend_all = e.loc[("all", "spend")]
    assert tot["effect"] == pytest.approx(spend_all["effect"] * spend_all["n_treatment"])
    assert tot["net_of_cost"] == pytest.approx(tot["effect"] - cfg.experiments.cost * spend_all["n_treatment"])
    assert r["summary"]["excluded"] == {"window_incomplete": 0, "no_profile (kept as 'unknown')": 0}
    assert (path / "out" / "experiments" / "plots" / "effect_spend.png").stat().st_size > 5000
    assert len(pd.read_parquet(path / "out" / "experiments" / "outcomes.parquet")) == len(truth)


def test_experiment_report_opens_cleanly_in_chromium(evaluated, chromium, tmp_path):
    from tests.browser import assert_opens_cleanly

    html = evaluated["files"]["report"].read_text()
    assert "95% confidence interval" in html and "membership_tier" in html
    check = assert_opens_cleanly(chromium, evaluated["files"]["report"], tmp_path / "experiment_report.png",
                                 min_images=3)
    assert {i["alt"] for i in check.images} == {"repurchased", "purchases", "spend"}


def test_uplift_targeting_beats_random(campaign):
    from clvml.analytics.experiment_report import uplift

    cfg, ds, path, truth = campaign
    r = uplift(cfg, ds)
    tp = r["test_prediction"].merge(truth[["customer_id", "uplift_purchase"]], on="customer_id")
    oracle = qini_coefficient(tp["y"], tp["treated"], tp["uplift_purchase"])
    q = r["qini"]
    assert q["uplift_model"] > q["random_ranking"] + 0.03
    assert q["uplift_model"] >= 0.4 * oracle
    assert np.corrcoef(tp["uplift"], tp["uplift_purchase"])[0, 1] > 0.4
    tl = pd.read_parquet(path / "out" / "uplift" / "targeting.parquet")
    assert tl["rank"].tolist() == list(range(1, len(tl) + 1))
    assert tl["uplift"].is_monotonic_decreasing and tl["customer_id"].is_unique
    assert str(tl["as_of"].iloc[0].date()) == "2024-11-01" == r["summary"]["as_of"]


def test_cli_experiment_commands(campaign, tmp_path):
    import json

    import yaml
    from typer.testing import CliRunner

    from clvml.cli import app

    cfg, _, path, _ = campaign
    raw = {"name": "cli", "data": {"synthetic": {**cfg.data.synthetic.model_dump(mode="json")}},
           "cutoffs": {"start": "2024-06-01", "every_days": 30}, "output": {"dir": str(tmp_path)}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    run = CliRunner().invoke
    res = run(app, ["experiment", "evaluate", "-c", str(tmp_path / "c.yaml"), "--by", "membership_tier",
                    "-a", str(path / "assignments_tier.parquet"), "--window-days", "14"])
    assert res.exit_code == 0, res.output
    eff = pd.read_csv(tmp_path / "experiments" / "effects.csv")
    assert set(eff["segment"]) == {"all", "basic", "silver", "gold"} and len(eff) == 12
    assert f"report: {tmp_path / 'experiments' / 'report.html'}" in res.output.replace("\n", "")
    res = run(app, ["experiment", "evaluate", "-c", str(tmp_path / "c.yaml"), "--by", "value_tier"])
    assert res.exit_code == 2 and "--scores" in res.output
    res = run(app, ["experiment", "power", "--baseline", "0.1", "--effect", "0.02"])
    assert res.exit_code == 0 and json.loads(res.stdout)["n_control"] == 3841
    res = run(app, ["experiment", "power", "-c", str(tmp_path / "c.yaml"), "--as-of", "2024-09-01",
                    "--effect", "0.1", "--relative"])
    assert res.exit_code == 0, res.output
    assert 0.2 < json.loads(res.stdout.strip().splitlines()[-1])["baseline"] < 0.3
