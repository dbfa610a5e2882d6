"""``clvml monitor``: stored score partitions judged against what customers then did.

A hand-built shop with exact expected figures for the per-partition computation, the KPIs and every
error case; then the synthetic world with a behaviour change from month four: a model trained before
it, six monthly partitions scored, and the monitor must see the decay on matured partitions only,
alert with exit code 10 and recommend retraining, byte-identically on a rerun.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from clvml.cli import app
from clvml.config import load_config
from clvml.errors import EXIT_CODES, DataSourceError, MonitorAlert
from clvml.monitoring import COLUMNS, monitor
from clvml.monitoring.metrics import clv_window_metrics, horizon_metrics

# ---------------------------------------------------------------------------------------------------------
# hand-built shop: exact figures
# ---------------------------------------------------------------------------------------------------------

TX = [("a", "2024-01-05", 10.0), ("a", "2024-02-10", 50.0),
      ("b", "2024-01-10", 20.0),
      ("c", "2024-01-20", 30.0), ("c", "2024-02-20", 10.0), ("c", "2024-02-25", 5.0),
      ("d", "2024-01-25", 5.0),
      ("e", "2024-02-05", 40.0),  # first purchase after the as_of: appears later, never scored
      ("f", "2024-03-20", 10.0)]  # the last day of the data
SCORES = pd.DataFrame({
    "customer_id": ["a", "b", "c", "d", "z"],  # z: scored, but absent from today's data
    "churn_probability": [0.2, 0.7, 0.4, 0.6, 0.5],
    "expected_value": [40.0, 5.0, 20.0, 10.0, 1.0],
    "clv": [60.0, 5.0, 30.0, 10.0, 1.0],
    "value_tier": ["high", "low", "high", "low", "low"],
    "model_version": "shop-m1",
})


def _write_scores(root: Path, as_of: str, frame: pd.DataFrame, manifest: dict | None = None) -> Path:
    folder = root / f"as_of={as_of}"
    folder.mkdir(parents=True)
    frame.to_parquet(folder / "part-0000.parquet", index=False)
    if manifest is not None:
        (folder / "_manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture()
def shop(tmp_path):
    """A config on the hand-built transactions, a bundle folder whose meta records the backtest's
    figures, and three partitions: 2024-01-10 and 2024-02-01 (matured: data to 2024-03-20, H = 30) and
    2024-03-01 (pending)."""
    tx = pd.DataFrame(TX, columns=["customer_id", "ts", "amount"]).assign(ts=lambda d: pd.to_datetime(d.ts))
    tx.to_parquet(tmp_path / "transactions.parquet", index=False)
    cfg = {"name": "shop", "data": {"tables": {"transactions": {"path": "transactions.parquet"}}},
           "cutoffs": {"start": "2024-01-01"}, "labels": {"horizon_days": 30},
           "clv": {"periods": 2, "margin": 0.5}, "output": {"dir": "out"},
           "monitoring": {"min_customers": 1, "ece_max": 0.5, "value_total_error_max": 50.0, "report": True},
           "experiments": {"assignments": "assignments.csv", "window_days": 30}}
    pd.DataFrame({"customer_id": ["a", "c", "b", "d", "a", "b"],
                  "campaign_id": ["winback"] * 4 + ["spring"] * 2,
                  "group": ["treatment", "treatment", "control", "control", "treatment", "control"],
                  "assigned_ts": ["2024-02-01"] * 4 + ["2024-03-01"] * 2}).to_csv(tmp_path / "assignments.csv",
                                                                                   index=False)
    (tmp_path / "shop.yaml").write_text(yaml.safe_dump(cfg))
    bundle = tmp_path / "models" / "shop"
    bundle.mkdir(parents=True)
    (bundle / "clvml_meta.json").write_text(json.dumps({
        "model_version": "shop-m1", "run_id": None,
        "labels": {"horizon_days": 30, "churn_definition": "no_purchase", "value_target": "spend",
                   "cancellation_event": "account_closed"},
        "clv": {"periods": 2, "margin": 0.5},
        "backtest": {"test_cutoff": "2023-12-01", "churn": {"roc_auc": 0.9, "ece": 0.04},
                     "value": {"total_error_pct": -3.0}}}))
    root = tmp_path / "out" / "scores"
    manifest = {"model": {"uri": str(bundle), "version": "shop-m1"},
                "drift": {"checked": True, "top": {"tx_spend_30d": 0.12, "clv": 0.05}}}
    _write_scores(root, "2024-01-10", SCORES.iloc[[0]], manifest)  # only a had bought before 2024-01-10
    _write_scores(root, "2024-02-01", SCORES, manifest)
    _write_scores(root, "2024-03-01", SCORES.iloc[:4], manifest)
    return tmp_path, load_config(tmp_path / "shop.yaml"), root


def _fig(metrics: pd.DataFrame, metric: str, as_of: str = "2024-02-01", seg_by: str = "all", seg: str = "all"):
    m = metrics[(metrics.as_of.astype(str) == as_of) & (metrics.segment_by == seg_by) & (metrics.segment == seg)
                & (metrics.metric == metric)]
    assert len(m) == 1, (metric, as_of, seg, m)
    return m.iloc[0]


def test_hand_built_metrics_are_exact():
    f = pd.DataFrame({"churn": [1, 1, 0, 0, 1, 0], "churn_probability": [0.9, 0.8, 0.3, 0.6, 0.4, 0.1],
                      "value": [0.0, 0.0, 50.0, 10.0, 0.0, 100.0],
                      "expected_value": [5.0, 5.0, 40.0, 20.0, 10.0, 60.0]})
    m = horizon_metrics(f)
    assert m["churn_roc_auc"] == pytest.approx(8 / 9)  # 8 of the 9 (churner, stayer) pairs ordered right
    assert m["churn_pr_auc"] == pytest.approx((1 + 1 + 3 / 4) / 3)
    assert m["churn_ece"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.6 + 0.6 + 0.1) / 6)  # one customer per bin
    assert m["predicted_churn_rate"] == pytest.approx(3.1 / 6) and m["observed_churn_rate"] == 0.5
    assert m["value_mae"] == pytest.approx(80 / 6)
    assert m["value_total_error_pct"] == pytest.approx(100 * (140 - 160) / 160)
    assert m["value_normalized_gini"] == pytest.approx(1.0)  # the predicted order is the realised order
    # tiers: top 1 % and 5 % are 1 customer (ceil), top 20 % is 2
    assert m["value_capture_top1"] == m["value_best_top1"] == pytest.approx(100 / 160)
    assert m["value_capture_top20"] == m["value_best_top20"] == pytest.approx(150 / 160)
    partial = clv_window_metrics(np.array([10.0, 0.0, 30.0]), np.array([20.0, 20.0, 20.0]), False, 45)
    assert partial == {"clv_realised_so_far": 40.0, "clv_predicted": 60.0, "clv_realised_share": pytest.approx(2 / 3),
                       "clv_days_observed": 45.0}
    complete = clv_window_metrics(np.array([10.0, 0.0, 30.0]), np.array([20.0, 5.0, 25.0]), True, 60)
    assert complete["clv_total_error_pct"] == pytest.approx(25.0) and "clv_realised_so_far" not in complete
    assert complete["clv_capture_top1"] == pytest.approx(30 / 40)


def test_partition_against_realised_outcomes_kpis_and_cohorts(shop):
    tmp, cfg, root = shop
    r = monitor(cfg)
    m = r.metrics
    assert list(m.columns) == COLUMNS
    # a, b, c, d matched; z scored but absent from the data; e appeared later and is not judged
    assert _fig(m, "scored_customers").value == 5 and _fig(m, "unmatched_customers").value == 1
    assert _fig(m, "customers").value == 4
    auc = _fig(m, "churn_roc_auc")  # churners b, d scored 0.7, 0.6 above stayers a, c (0.2, 0.4)
    assert (auc.value, auc.expected, auc.horizon) == (1.0, 0.9, "complete")
    assert _fig(m, "observed_churn_rate").value == 0.5
    assert _fig(m, "predicted_churn_rate").value == pytest.approx(1.9 / 4)
    assert _fig(m, "churn_ece").value == pytest.approx((0.2 + 0.3 + 0.4 + 0.4) / 4)
    assert _fig(m, "churn_ece").expected == 0.04
    assert _fig(m, "value_mae").value == pytest.approx(7.5)  # |40-50|, |5-0|, |20-15|, |10-0|
    err = _fig(m, "value_total_error_pct")
    assert err.value == pytest.approx(100 * (75 - 65) / 65) and err.expected == -3.0
    assert math.isnan(_fig(m, "value_mae").expected)  # the backtest recorded no MAE
    # per segment: the high tier (a, c) has no churner: no AUC, and never an expected figure
    high = _fig(m, "churn_roc_auc", seg_by="value_tier", seg="high")
    assert math.isnan(high.value) and math.isnan(high.expected) and high.customers == 2
    assert _fig(m, "observed_churn_rate", seg_by="value_tier", seg="low").value == 1.0
    # CLV over 2 x 30 days: data to 2024-03-20 cover 49 of the 60 days: partial, never complete figures
    clv = m[m.metric.str.startswith("clv_") & (m.as_of.astype(str) == "2024-02-01")]
    assert set(clv.horizon) == {"partial"} and not clv.metric.isin(["clv_mae", "clv_normalized_gini"]).any()
    assert _fig(m, "clv_realised_so_far").value == pytest.approx(0.5 * (50 + 15))  # margin x spend so far
    assert _fig(m, "clv_predicted").value == 105.0 and _fig(m, "clv_days_observed").value == 49
    assert _fig(m, "drift_psi_max").value == 0.12
    # 2024-01-10 + 60 days is covered: complete CLV figures (a realised 0.5 x 50 = 25 of the 60 predicted)
    early = m[m.metric.str.startswith("clv_") & (m.as_of.astype(str) == "2024-01-10") & (m.segment_by == "all")]
    assert set(early.horizon) == {"complete"} and "clv_realised_so_far" not in set(early.metric)
    assert _fig(m, "clv_total_error_pct", "2024-01-10").value == pytest.approx(100 * (60 - 25) / 25)
    # 2024-03-01 has not matured: counted, listed as pending, never judged
    assert r.pending == [{"as_of": "2024-03-01", "model_version": "shop-m1", "matures_when_data_reach": "2024-03-30"}]
    assert set(m[m.as_of.astype(str) == "2024-03-01"].metric) == {"scored_customers", "drift_psi_max"}
    # retention KPIs by month
    k = r.kpis.set_index("month")
    assert k.active_customers.tolist() == [4, 3, 1] and k.new_customers.tolist() == [4, 1, 1]
    assert k.returning_customers.tolist() == [0, 2, 0] and k.repeat_rate.tolist() == [0, 1 / 3, 0]
    assert np.isnan(k.churn_rate.iloc[0]) and k.churn_rate.iloc[1] == 0.5 and np.isnan(k.churn_rate.iloc[2])
    assert k.realised_margin.tolist() == [32.5, 52.5, 5.0] and k.complete.tolist() == [True, True, False]
    # cohorts: observed months without a buyer are 0, months not observed yet are empty
    c = r.cohorts.set_index(["cohort", "months_since"])["retention"]
    assert c[("2024-01", 1)] == 0.5 and c[("2024-01", 2)] == 0.0 and c[("2024-02", 1)] == 0.0
    assert np.isnan(c[("2024-02", 2)]) and np.isnan(c[("2024-03", 1)])
    # campaigns: winback (2024-02-01) treated a, c who both bought again; spring's window is not covered yet
    e = r.campaigns.set_index(["campaign_id", "segment_by", "segment", "metric"])
    win = e.loc[("winback", "all", "all", "repurchased")]
    assert (win.effect, win.n_treatment, win.n_control, win.scores_as_of) == (1.0, 2, 2, "2024-02-01")
    assert win.ci_low > 0 and e.loc[("winback", "all", "all", "spend")].effect == pytest.approx((50 + 15) / 2)
    assert e.loc[("winback", "value_tier", "high", "repurchased")].note == "fewer than 1 customers in an arm"
    assert "spring" not in r.campaigns.campaign_id.values
    assert "campaigns: 2 assignment(s) left out (window_incomplete)" in r.notes
    # no alert: AUC above the backtest's, ECE 0.325 < 0.5, value error +15 % < 50 %
    assert r.alerts == [] and r.recommendation["retrain"] is False
    assert r.recommendation["judged_partitions"] == ["2024-02-01"]
    out = root / "_monitoring"
    assert sorted(p.name for p in out.iterdir()) == ["campaigns.parquet", "cohorts.parquet", "kpis.parquet",
                                                     "metrics.parquet", "plots", "recommendation.json",
                                                     "report.html"]
    stored = pd.read_parquet(out / "metrics.parquet")
    assert len(stored) == len(m) and stored.as_of.map(type).eq(dt.date).all()
    # the scores root still reads as the scores alone (Hive readers skip _monitoring)
    assert len(pd.read_parquet(root)) == 10


def test_alert_exit_code_names_the_crossed_threshold(shop):
    tmp, cfg, root = shop
    text = (tmp / "shop.yaml").read_text().replace("ece_max: 0.5", "ece_max: 0.3").replace(
        "report: true", "report: false")
    (tmp / "shop.yaml").write_text(text)
    res = CliRunner().invoke(app, ["monitor", "-c", str(tmp / "shop.yaml")])
    assert res.exit_code == MonitorAlert.exit_code == 10 and 10 in EXIT_CODES, res.output
    assert "ECE) 0.325 above monitoring.ece_max 0.3" in res.output and "Traceback" not in res.output
    assert "2024-02-01  shop-m1" in res.output  # the terminal table
    assert not (root / "_monitoring" / "report.html").exists()  # monitoring.report: false
    rec = json.loads((root / "_monitoring" / "recommendation.json").read_text())
    assert rec["retrain"] is True and [a["check"] for a in rec["alerts"]] == ["ece_max"]
    assert {"metric": "churn_roc_auc", "value": 1.0, "expected": 0.9, "as_of": "2024-02-01",
            "model_version": "shop-m1"} in rec["evidence"]


def test_error_cases_have_clear_messages(shop, tmp_path):
    tmp, cfg, root = shop
    (tmp / "shop.yaml").write_text((tmp / "shop.yaml").read_text().replace("report: true", "report: false"))
    run = CliRunner()
    # no partitions at all
    res = run.invoke(app, ["monitor", "-c", str(tmp / "shop.yaml"), "--scores", str(tmp_path / "nothing")])
    assert res.exit_code == 3 and "no score partitions to monitor" in res.output and "clvml score" in res.output
    # only a partition whose horizon has not matured: said, exit 0, nothing judged
    young = tmp_path / "young"
    shutil.copytree(root / "as_of=2024-03-01", young / "as_of=2024-03-01")
    res = run.invoke(app, ["monitor", "-c", str(tmp / "shop.yaml"), "--scores", str(young)])
    assert res.exit_code == 0, res.output
    assert "no partition has matured yet" in res.output and "needs data up to 2024-03-30" in res.output
    # score files of another schema: named, with what they lack
    other = tmp_path / "other"
    _write_scores(other, "2024-02-01", pd.DataFrame({"customer_id": ["a"], "score": [0.3]}))
    _write_scores(other, "2024-03-01", SCORES.assign(churn_probability="high"))
    _write_scores(other, "2024-03-02", pd.concat([SCORES, SCORES.iloc[[1]].assign(clv=np.nan)]))
    res = run.invoke(app, ["monitor", "-c", str(tmp / "shop.yaml"), "--scores", str(other)])
    assert res.exit_code == 3 and "3 score partition(s) hold files of another schema" in res.output
    assert "1 duplicated customer_id(s), e.g. 'b'; 1 null clv" in res.output
    assert "lacks churn_probability, expected_value, clv, model_version" in res.output
    assert "churn_probability is large_string, not number" in res.output and "Traceback" not in res.output
    # data that no longer cover a partition: a later export whose history starts after the as_of
    late = pd.DataFrame(TX, columns=["customer_id", "ts", "amount"]).assign(ts=lambda d: pd.to_datetime(d.ts))
    late[late.ts >= "2024-02-15"].to_parquet(tmp / "transactions.parquet", index=False)
    res = run.invoke(app, ["monitor", "-c", str(tmp / "shop.yaml")])
    assert res.exit_code == 3, res.output
    assert ("no longer cover 2 score partition(s): as_of=2024-01-10 (the history starts on 2024-02-20), "
            "as_of=2024-02-01 (the history starts on 2024-02-20)") in res.output
    assert "monitoring.since" in res.output and "Traceback" not in res.output
    with pytest.raises(DataSourceError, match="no score partitions to monitor under .* from monitoring.since"):
        cfg.monitoring.since = dt.date(2024, 4, 1)
        monitor(cfg)


# ---------------------------------------------------------------------------------------------------------
# the synthetic world: a behaviour change from month four
# ---------------------------------------------------------------------------------------------------------

FAST = {"learning_rate": 0.2, "n_estimators": 40, "min_child_samples": 40, "early_stopping_rounds": 10}
TRAINED_UNTIL = pd.Timestamp("2024-01-01")
AS_OFS = [dt.date(2024, m, 1) for m in range(1, 7)]


@pytest.fixture(scope="module")
def decayed(tmp_path_factory):
    """A model trained on the world up to 2024-01-01, six monthly partitions scored 2024-01 .. 2024-06
    on the world whose customers buy less and drop out faster from 2024-04-01 (data to 2024-06-15)."""
    from clvml.datasets.synthetic import BehaviourChange, simulate
    from clvml.jobs.train import train
    from clvml.scoring.job import score

    tmp = tmp_path_factory.mktemp("monitor")
    world = simulate(500, "2023-01-01", "2024-06-15", cutoffs=[], seed=11, observable_truth=False,
                     behaviour_change=BehaviourChange("2024-04-01", rate_factor=0.35, hazard_factor=4.0))
    world.write(tmp / "full")
    (tmp / "train").mkdir()
    known = world.transactions[world.transactions.ts < TRAINED_UNTIL].customer_id.unique()
    for name, df in world.tables().items():
        df = df[df.customer_id.isin(known)] if name == "customers" else df[df.ts < TRAINED_UNTIL]
        df.to_parquet(tmp / "train" / f"{name}.parquet", index=False)

    def config(name: str, data: str) -> Path:
        c = {"name": "shop", "seed": 1,
             "data": {"tables": {t: {"path": f"{data}/{t}.parquet"} for t in world.TABLES}},
             "cutoffs": {"start": "2023-06-01", "every_days": 30}, "labels": {"horizon_days": 30},
             "features": {"windows": [30, 90], "families": ["transactions"]},
             # 12 x 30 days of CLV: no CLV origin in the year of training data (no long backtest)
             "model": {"churn": FAST, "value": FAST}, "clv": {"periods": 12, "survival": "geometric"},
             "scoring": {"drift_stop": None}, "tracking": {"enabled": False},
             "output": {"dir": "out", "model_dir": "models"},
             "monitoring": {"ece_max": 0.09, "value_total_error_max": 40.0}}
        (tmp / name).write_text(yaml.safe_dump(c))
        return tmp / name

    trained = train(load_config(config("train.yaml", "train")))
    prod = config("prod.yaml", "full")
    cfg = load_config(prod)
    from clvml.data.loading import load_data

    ds = load_data(cfg)
    for day in AS_OFS:
        score(cfg, str(trained.model_path), day, ds=ds)
    return tmp, prod, trained


def _bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_monitor_sees_the_decay_on_matured_partitions_only_and_recommends_retraining(decayed):
    tmp, prod, trained = decayed
    res = CliRunner().invoke(app, ["monitor", "-c", str(prod)])
    assert res.exit_code == 10, res.output
    out = tmp / "out" / "scores" / "_monitoring"
    m = pd.read_parquet(out / "metrics.parquet")
    overall = m[(m.segment_by == "all") & (m.horizon == "complete")]
    fig = overall.pivot(index="as_of", columns="metric", values="value")
    fig.index = fig.index.astype(str)
    # 2024-06-01 needs data to 2024-06-30: pending, no figures; the five others matured
    assert list(fig.index) == [str(d) for d in AS_OFS[:5]]
    assert "2024-06-01 " in res.output and "matures when the data reach 2024-06-30" in res.output
    before, after = fig.loc[["2024-01-01", "2024-02-01", "2024-03-01"]], fig.loc[["2024-04-01", "2024-05-01"]]
    # before the change the model holds; from month four customers churn more than it predicts
    assert (before.churn_ece <= 0.09).all() and (before.value_total_error_pct.abs() <= 40).all(), before
    assert (after.churn_ece > 0.09).all() and (after.value_total_error_pct > 100).all(), after
    assert (after.observed_churn_rate > after.predicted_churn_rate + 0.08).all()
    assert (before.observed_churn_rate - before.predicted_churn_rate).abs().max() < 0.06
    # the backtest's figures beside the realised ones, from the bundle's metadata
    meta = json.loads((trained.model_path / "clvml_meta.json").read_text())
    exp = overall[overall.metric == "churn_roc_auc"].expected.unique()
    assert exp.tolist() == [pytest.approx(meta["backtest"]["churn"]["roc_auc"])]
    # segments; CLV windows of 360 days are all partial: realised so far, never complete figures
    assert {"value_tier", "lifecycle_stage", "risk_band"} <= set(m.segment_by)
    clv = m[m.metric.str.startswith("clv_")]
    assert set(clv.horizon) == {"partial"} and "clv_mae" not in set(clv.metric)
    days = clv[(clv.metric == "clv_days_observed") & (clv.segment_by == "all")].set_index("as_of")["value"]
    assert days.tolist() == [(dt.date(2024, 6, 15) - d).days + 1 for d in AS_OFS[:5]]  # up to the data end
    assert (clv[(clv.metric == "clv_realised_share") & (clv.segment_by == "all")].value > 0).all()
    rec = json.loads((out / "recommendation.json").read_text())
    assert rec["retrain"] and rec["judged_partitions"] == ["2024-05-01"]
    assert {"ece_max", "value_total_error_max"} <= {a["check"] for a in rec["alerts"]}
    assert "monitoring.ece_max 0.09" in res.output and "Retraining recommended" in res.output
    page = (out / "report.html").read_text()
    assert page.count("<img") == 3 and "RETRAIN" in page and "Cohort retention" in page  # series, KPIs, cohorts
    first = _bytes(out)
    # a rerun on the same partitions and data: byte-identical outputs
    again = CliRunner().invoke(app, ["monitor", "-c", str(prod)])
    assert again.exit_code == 10 and _bytes(out) == first
    assert not list((tmp / "out" / "scores").glob("._monitoring*"))  # no staging folder left behind
