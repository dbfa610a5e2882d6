"""Backtest, baselines, plots and the HTML report."""

import datetime as dt

import mlflow
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from clvml.cli import app
from clvml.config import load_config
from clvml.data.dataset import load_dataset
from clvml.errors import ClvmlError
from clvml.evaluation.backtest import last_horizon_spend, recency_baseline, train_mask
from clvml.evaluation.plots import calibration_table, decile_table, gain_curve
from tests.conftest import tx
from tests.test_demo import write_config


def test_train_mask_embargoes_overlapping_horizons():
    f = pd.DataFrame({"cutoff": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"])})
    # origin 2024-04-01, 31-day horizon: 2024-03-01 + 31 days = 2024-04-01 ends exactly at the origin
    assert train_mask(f, dt.date(2024, 4, 1), 31).tolist() == [True, True, True, False]
    # 32 days: the 2024-03-01 horizon overlaps the origin's period, so it is left out
    assert train_mask(f, dt.date(2024, 4, 1), 32).tolist() == [True, True, False, False]


def test_last_horizon_spend_counts_only_purchases_in_the_last_horizon():
    t = tx([("a", "2024-01-01", 10.0), ("a", "2024-03-02", 5.0), ("a", "2024-03-31 23:59", 7.0),
            ("a", "2024-04-01", 100.0),  # at the origin: after
            ("b", "2024-03-10", -4.0), ("b", "2024-03-01 23:00", 3.0)])
    ds = load_dataset(frames={"transactions": t})
    got = last_horizon_spend(ds, pd.Series(["a", "b", "c"]), dt.date(2024, 4, 1), 31)
    # window [2024-03-01, 2024-04-01): a 5 + 7, b 3 (the refund is not spend), c nothing
    assert got.tolist() == [12.0, 3.0, 0.0]


def test_recency_baseline_is_an_increasing_calibrated_map():
    train = pd.DataFrame({"tx_recency_days": [1, 2, 10, 20, 40, 80], "tx_tenure_days": [100] * 6,
                          "churn": [0, 0, 0, 1, 1, 1]})
    test = pd.DataFrame({"tx_recency_days": [0, 15, 1000, np.nan], "tx_tenure_days": [5, 5, 5, 30]})
    p = recency_baseline(train, test)
    assert p[0] == 0.0 and p[2] == 1.0 and 0.0 <= p[1] <= 1.0
    assert p[3] == 1.0  # no purchase (refunds only): tenure 30 stands in for recency


def test_plot_tables():
    t = calibration_table([0, 0, 1, 1], [0.05, 0.08, 0.92, 0.5])
    assert t.loc[0].tolist() == pytest.approx([0.065, 0.0, 2])
    assert t.loc[9].observed == 1.0 and t.loc[5].predicted == 0.5
    x, y = gain_curve([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
    assert x.tolist() == [0, 0.25, 0.5, 0.75, 1] and y.tolist() == [0, 0.5, 0.5, 1, 1]
    d = decile_table(np.arange(20, dtype=float), np.arange(20, dtype=float))
    assert d.loc[1].tolist() == [18.5, 18.5] and d.loc[10].tolist() == [0.5, 0.5]


BT = {"cutoffs": {"start": "2023-04-01", "every_days": 45}, "labels": {"horizon_days": 60},
      "backtest": {"last": 2}}


@pytest.fixture(scope="module")
def backtest_run(tmp_path_factory):
    from clvml.jobs.backtest import run_backtest

    tmp = tmp_path_factory.mktemp("bt")
    cfg = load_config(write_config(tmp, **BT))
    return tmp, cfg, run_backtest(cfg)


def test_backtest_scores_every_model_on_the_same_customers(backtest_run):
    tmp, cfg, r = backtest_run
    pred, met = r.result.predictions, r.result.metrics
    origins = sorted(pred.origin.dt.date.unique())
    assert origins == [dt.date(2024, 2, 10), dt.date(2024, 3, 26)]
    # the latest cut-off with K·H = 4 x 60 days of data after it
    assert sorted(r.result.clv_predictions.origin.dt.date.unique()) == [dt.date(2023, 9, 28)]
    for col in ("churn_lightgbm", "churn_btyd", "churn_pareto_nbd", "churn_mbgnbd", "churn_simple",
                "value_lightgbm", "value_btyd", "value_pareto_nbd", "value_mbgnbd", "value_simple",
                "clv_lightgbm"):
        assert pred[col].notna().all(), col
    assert not pred.duplicated(["origin", "customer_id"]).any()
    scored = met[met.task.isin(["churn", "value"])]
    assert set(scored.origin.dt.date) == {dt.date(2024, 2, 10), dt.date(2024, 3, 26)}
    assert set(scored.model) == {"lightgbm", "btyd", "pareto_nbd", "mbgnbd", "simple"}
    assert len(scored) == 2 * 5 * (7 + 8)  # origins x models x (churn + value metrics)
    s = r.result.summary()
    assert list(s.columns) == ["oracle", "lightgbm", "lightgbm_geometric", "btyd", "pareto_nbd", "mbgnbd",
                               "simple"]
    # on held-out horizons the LightGBM models rank better than the simple baselines
    assert s.loc[("churn", "roc_auc"), "lightgbm"] > s.loc[("churn", "roc_auc"), "simple"]
    assert s.loc[("value", "normalized_gini"), "lightgbm"] > s.loc[("value", "normalized_gini"), "simple"]
    # realised labels are the ones of the training set at that cut-off
    assert pred.churn.isin([0, 1]).all() and (pred.value >= 0).all()


def test_backtest_scores_clv_against_the_realised_margin_of_k_periods(backtest_run):
    from clvml.data.loading import load_data

    tmp, cfg, r = backtest_run
    pred, met = r.result.clv_predictions, r.result.metrics
    o = pd.Timestamp("2023-09-28")
    at = pred[pred.origin == o]
    assert len(at) == len(pred) and at["realised_k"].notna().all()
    assert "realised_k" not in r.result.predictions
    # the realised value: margin x purchases (positive amounts) in [origin, origin + 240 days)
    t = load_data(cfg).tables["transactions"].to_pandas()
    t["ts"] = pd.to_datetime(t["ts"]).dt.tz_localize(None) if pd.to_datetime(t["ts"]).dt.tz is None \
        else pd.to_datetime(t["ts"]).dt.tz_convert(None)
    w = t[(t.ts >= o) & (t.ts < o + pd.Timedelta(days=240)) & (t.amount > 0)]
    want = w.groupby("customer_id")["amount"].sum().reindex(at.customer_id).fillna(0.0).to_numpy()
    np.testing.assert_allclose(at["realised_k"].to_numpy(), cfg.clv.margin * want, rtol=1e-9)
    clv = met[met.task == "clv"]
    assert set(clv.origin) == {o}
    assert set(clv.model) == {"oracle", "lightgbm", "lightgbm_geometric", "btyd", "pareto_nbd", "mbgnbd",
                              "simple"}
    s = r.result.summary().loc["clv"]
    # the truth ranks best; the geometric survival undervalues: the BTYD-shaped CLV is far closer
    assert s.loc["normalized_gini", "oracle"] > s.loc["normalized_gini"].drop("oracle").max()
    assert abs(s.loc["total_error_pct", "lightgbm"]) < abs(s.loc["total_error_pct", "lightgbm_geometric"])
    assert s.loc["total_error_pct", "lightgbm_geometric"] < -15
    assert (s.loc["capture_top20"] <= s.loc["best_top20"] + 1e-12).all()
    # value intervals: calibrated on the first origin, scored on the second
    iv = met[met.task == "value_interval"].set_index("metric")["value"]
    assert set(met[met.task == "value_interval"].origin.dt.date) == {dt.date(2024, 3, 26)}
    assert 0.6 < iv["coverage"] < 0.95 and iv["coverage"] + iv["below"] + iv["above"] == pytest.approx(1)
    late = r.result.predictions[r.result.predictions.origin == pd.Timestamp("2024-03-26")]
    assert (late.value_lightgbm_lo <= late.value_lightgbm_hi).all()


def test_backtest_report_and_mlflow_run(backtest_run):
    tmp, cfg, r = backtest_run
    html = r.report["report"].read_text()
    assert html.count("data:image/png;base64,") == 6 and "BG/NBD + Gamma-Gamma" in html
    # the report is self-contained and every embedded plot decodes to a real image
    import base64
    import io
    from html.parser import HTMLParser

    import matplotlib.image

    class Imgs(HTMLParser):
        srcs: list = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.srcs.append(dict(attrs)["src"])

    parser = Imgs()
    parser.feed(html)
    assert len(parser.srcs) == 6 and all(s.startswith("data:image/png;base64,") for s in parser.srcs)
    for src in parser.srcs:
        img = matplotlib.image.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert img.shape[0] > 200 and img.shape[1] > 300 and img.std() > 0.05  # drawn, not blank
    assert "2024-02-10" in html and "normalized_gini" in html
    for name in ("roc", "precision_recall", "calibration", "cumulative_gain", "value_deciles",
                 "clv_distribution"):
        assert r.report[f"plot_{name}"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = pd.read_csv(r.report["metrics"])
    assert len(metrics) == len(r.result.metrics)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp / 'out' / 'mlflow.db'}")
    run = client.get_run(r.run_id)
    assert run.data.tags["clvml.job"] == "backtest"
    m = run.data.metrics
    assert m["backtest_churn_roc_auc"] == pytest.approx(r.result.summary().loc[("churn", "roc_auc"), "lightgbm"])
    assert "backtest_btyd_value_normalized_gini" in m and "backtest_simple_churn_roc_auc" in m
    hist = client.get_metric_history(r.run_id, "backtest_churn_origin_roc_auc")
    assert [h.step for h in hist] == [0, 1]
    arts = {a.path for a in client.list_artifacts(r.run_id, "evaluation")}
    assert {"evaluation/report.html", "evaluation/metrics.csv", "evaluation/plots"} <= arts


def test_backtest_report_opens_cleanly_in_chromium(backtest_run, chromium, tmp_path):
    from tests.browser import assert_opens_cleanly

    _, _, r = backtest_run
    check = assert_opens_cleanly(chromium, r.report["report"], tmp_path / "backtest_report.png", min_images=6)
    # two plots side by side in the 1280 px window (the page is 1100 px wide at most)
    assert len({i["left"] for i in check.images}) == 2


def test_backtest_origin_must_be_a_labelled_cutoff(backtest_run):
    from clvml.data.loading import load_data
    from clvml.evaluation.backtest import evaluate_origin
    from clvml.modeling.training import make_training_set

    tmp, cfg, r = backtest_run
    ds = load_data(cfg)
    ts = make_training_set(ds, cfg)
    with pytest.raises(ClvmlError, match="not a labelled cut-off"):
        evaluate_origin(ts, cfg, ds, dt.date(2024, 2, 11))
    with pytest.raises(ClvmlError, match="need more than cutoffs.validation"):
        evaluate_origin(ts, cfg, ds, dt.date(2023, 6, 30))


def test_cli_backtest_prints_the_comparison(tmp_path):
    path = write_config(tmp_path, **{**BT, "backtest": {"origins": ["2024-03-26"]},
                                     "tracking": {"enabled": False}})
    res = CliRunner().invoke(app, ["backtest", "-c", str(path)])
    assert res.exit_code == 0, res.output
    assert "lightgbm" in res.output and "btyd" in res.output and "roc_auc" in res.output
    assert "capture_top20" in res.output and "pareto_nbd" in res.output
    assert (tmp_path / "out" / "backtest" / "report.html").exists()


def test_tune_is_seeded_prunes_logs_child_runs_and_writes_a_trainable_config(tmp_path):
    from clvml.jobs.tune import tune

    over = {**BT, "tune": {"n_trials": 5, "origins": 2, "space": {
        "churn.learning_rate": {"low": 0.05, "high": 0.3, "log": True},
        "churn.num_leaves": {"low": 4, "high": 63, "log": True},
        "value.min_child_samples": {"low": 10, "high": 200}}}}  # the config's own values are inside
    cfg = load_config(write_config(tmp_path, **over))
    r = tune(cfg)
    assert r.trials == 5 and set(r.best_params) == set(over["tune"]["space"])
    assert 0.5 < r.best_value < 1
    # trial 0 is the config's own parameters, so tuning matches or improves on them
    assert r.default_value is not None and r.best_value >= r.default_value
    tuned = load_config(r.config_path)  # `clvml train -c` reads exactly this
    assert tuned.model.churn.learning_rate == pytest.approx(r.best_params["churn.learning_rate"])
    assert tuned.model.churn.num_leaves == r.best_params["churn.num_leaves"]
    assert isinstance(tuned.model.value.min_child_samples, int)
    assert tuned.data == cfg.data and tuned.cutoffs == cfg.cutoffs
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    parent = client.get_run(r.run_id)
    assert parent.data.metrics["best_objective"] == pytest.approx(r.best_value)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{r.run_id}'")
    assert len(children) == 5
    assert sum(c.data.tags["pruned"] == "True" for c in children) == r.pruned
    # seeded: a second study on the same data and config picks the same parameters
    again = tune(cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"enabled": False})}))
    assert again.best_params == r.best_params and again.best_value == r.best_value


def test_backtest_report_says_what_each_task_is_averaged_over(backtest_run):
    tmp, cfg, r = backtest_run
    page = r.report["report"].read_text()
    # churn and value at two origins; CLV at its one origin: each heading says which
    assert "churn (mean over 2 origins, 2024-02-10 to 2024-03-26)" in page
    assert "clv (at 2023-09-28)" in page and "Per origin" in page
    assert "Metric definitions" in page and "Coverage: the share of customers" in page
    assert "What the models' predictions move with" not in page  # no SHAP without explanations


def test_training_set_is_the_features_joined_to_the_complete_labels(backtest_run):
    # make_training_set drops the incomplete horizons from the labels before its one merge (the frame
    # is copied once): the same rows, order, values and exclusion count as merging first
    from clvml.data.cutoffs import cutoff_grid, data_end
    from clvml.data.loading import load_data
    from clvml.labels import build_labels
    from clvml.modeling.training import KEYS, make_training_set, training_features

    _, cfg, _ = backtest_run
    ds = load_data(cfg)
    ts = make_training_set(ds, cfg)
    cuts = cutoff_grid(cfg, data_end(ds))
    lab = build_labels(ds.tables, cuts, horizon_days=cfg.labels.horizon_days, data_end=data_end(ds),
                       churn_definition=cfg.labels.churn_definition,
                       cancellation_event=cfg.labels.cancellation_event).to_pandas()
    lab["cutoff"] = pd.to_datetime(lab["cutoff"])
    merged = training_features(ds, cfg, cuts).merge(lab, on=KEYS, how="inner", validate="one_to_one")
    incomplete = ~merged["horizon_complete"]
    assert incomplete.sum() > 0 and ts.excluded == {"rows_with_incomplete_horizon": int(incomplete.sum())}
    pd.testing.assert_frame_equal(ts.frame, merged[~incomplete].reset_index(drop=True), check_exact=True)
