"""Repurchase analytics on hand-built tables with exact expected outputs, and the HTML report."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from clvml.analytics import repurchase as analytics
from clvml.analytics.repurchase_report import write_analytics_report
from clvml.data.dataset import load_dataset
from tests.conftest import tx


@pytest.fixture(scope="module")
def shop():
    return load_dataset(frames={
        "transactions": tx([("a", "2024-01-05", 10), ("a", "2024-01-20", 20), ("a", "2024-03-02", 5),
                            ("a", "2024-03-10", -5), ("b", "2024-01-10", 10), ("b", "2024-02-15", 10),
                            ("c", "2024-02-01", 30), ("c", "2024-02-01 15:00", 10), ("d", "2024-03-05", 10)]),
        "after_sales": pd.DataFrame({
            "customer_id": ["a", "b", "a"], "ts": pd.to_datetime(["2024-01-07", "2024-01-20", "2024-02-03"]),
            "event_type": ["survey"] * 3, "satisfaction": [5.0, 3.0, 4.0], "nps": [10.0, 6.0, 9.0]}),
    }).tables


def test_repurchase_rate_by_month(shop):
    r = analytics.repurchase_rate(shop["transactions"])
    assert r.month.tolist() == ["2024-01", "2024-02", "2024-03"]
    assert r.buyers.tolist() == [2, 2, 2]  # c's two orders on one day are one purchase day
    assert r.repeat_buyers.tolist() == [1, 0, 0] and r.returning_buyers.tolist() == [0, 1, 1]
    assert r.repeat_rate.tolist() == [0.5, 0, 0] and r.returning_rate.tolist() == [0, 0.5, 0.5]


def test_cohort_retention_matrix(shop):
    r = analytics.cohort_retention(shop["transactions"])
    # observed months in which nobody of a cohort bought are 0; months not yet observed are NaN
    assert r.fillna(-1).values.tolist() == [
        ["2024-01", 0, 2, 2, 1.0], ["2024-01", 1, 2, 1, 0.5], ["2024-01", 2, 2, 1, 0.5],
        ["2024-02", 0, 1, 1, 1.0], ["2024-02", 1, 1, 0, 0.0], ["2024-02", 2, 1, -1, -1],
        ["2024-03", 0, 1, 1, 1.0], ["2024-03", 1, 1, -1, -1], ["2024-03", 2, 1, -1, -1]]
    # observed until the end of April: March's cohort had an observed month without a purchase
    later = analytics.cohort_retention(shop["transactions"], before=dt.date(2024, 5, 1)).set_index(
        ["cohort", "months_since"])
    assert later.loc[("2024-03", 1), "retention"] == 0.0 and np.isnan(later.loc[("2024-03", 2), "retention"])
    assert later.loc[("2024-01", 3), "active"] == 0
    # point in time: before March, the March purchases do not exist
    assert analytics.cohort_retention(shop["transactions"], before=dt.date(2024, 3, 1)).months_since.max() == 1


def test_repurchase_cycle_overall_and_by_segment(shop):
    r = analytics.repurchase_cycle(shop["transactions"]).iloc[0]
    assert (r.gaps, r.mean_days, r.p25_days, r.median_days, r.p75_days) == (3, 31, 25.5, 36, 39)
    seg = pd.DataFrame({"customer_id": ["a", "b"], "tier": ["high", "low"]})
    by = analytics.repurchase_cycle(shop["transactions"], seg).set_index("tier")
    assert by.loc["high", "gaps"] == 2 and by.loc["high", "median_days"] == 28.5 and by.loc["low", "median_days"] == 36


def test_second_purchase_curve_respects_censoring(shop):
    c = analytics.second_purchase_curve(shop["transactions"], max_days=90, before=dt.date(2024, 4, 1))
    c = c.set_index("days")
    # first purchases observed for 87 (a), 82 (b), 60 (c) and 27 (d) days; a rebought after 15, b after 36
    assert c.loc[15].tolist() == [4, 1, 0.25]
    assert c.loc[30].tolist() == [3, 1, pytest.approx(1 / 3)]  # d observed 27 days only: not eligible
    assert c.loc[36].tolist() == [3, 2, pytest.approx(2 / 3)]
    assert c.loc[61].tolist() == [2, 2, 1.0]
    assert c.loc[90, "eligible"] == 0 and np.isnan(c.loc[90, "rate"])


def test_churn_rate_over_time():
    t = load_dataset(frames={"transactions": tx([("x", "2024-01-01", 1), ("x", "2024-02-10", 1),
                                                 ("y", "2024-01-15", 1), ("z", "2024-02-20", 1),
                                                 ("z", "2024-03-20", 1)])}).tables["transactions"]
    r = analytics.churn_rate_over_time(t, horizon_days=30, before=dt.date(2024, 4, 1))
    assert r.values.tolist() == [[dt.date(2024, 2, 1), 1, 1, 1.0], [dt.date(2024, 3, 1), 2, 1, 0.5]]


def test_survey_summary(shop):
    s = analytics.survey_summary(shop["after_sales"])
    assert s.month.tolist() == ["2024-01", "2024-02"]
    assert s.surveys.tolist() == [2, 1] and s.mean_satisfaction.tolist() == [4.0, 4.0]
    assert s.promoters.tolist() == [1, 1] and s.detractors.tolist() == [1, 0] and s.nps.tolist() == [0.0, 100.0]


@pytest.fixture(scope="module")
def analytics_report(small_world, tmp_path_factory):
    ds = load_dataset(frames=small_world.tables())
    return write_analytics_report(ds, tmp_path_factory.mktemp("analytics"), horizon_days=90,
                                  before=dt.date(2024, 7, 1))


def test_analytics_report_writes_every_table_plot_and_one_page(analytics_report):
    import base64
    import re

    out = analytics_report
    names = ["repurchase_rate", "cohort_retention", "repurchase_cycle", "second_purchase", "churn_rate", "surveys"]
    for n in names:
        assert len(pd.read_csv(out[n])) > 0 and out[f"plot_{n}"].stat().st_size > 1000
    page = out["report"].read_text()
    imgs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(imgs) == 6 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in imgs)
    churn = pd.read_csv(out["churn_rate"])
    assert churn.churn_rate.between(0, 1).all() and pd.to_datetime(churn.cutoff).max() <= pd.Timestamp("2024-04-02")


def test_analytics_report_opens_cleanly_in_chromium(analytics_report, chromium, tmp_path):
    from tests.browser import assert_opens_cleanly

    check = assert_opens_cleanly(chromium, analytics_report["report"], tmp_path / "analytics_report.png",
                                 min_images=6)
    assert {i["alt"] for i in check.images} == {"repurchase_rate", "cohort_retention", "repurchase_cycle",
                                                "second_purchase", "churn_rate", "surveys"}


def test_cli_report_analytics(small_world, tmp_path):
    from typer.testing import CliRunner

    from clvml.cli import app

    small_world.write(tmp_path / "w")
    tables = {n: {"path": f"w/{n}.parquet"} for n in ("transactions", "after_sales")}
    (tmp_path / "c.yaml").write_text(
        f"data:\n  tables: {tables}\ncutoffs:\n  start: 2024-01-01\noutput:\n  dir: out\n")
    res = CliRunner().invoke(app, ["report", "analytics", "-c", str(tmp_path / "c.yaml"), "--as-of", "2024-07-01"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "analytics" / "analytics.html").exists()
    assert "analytics report" in res.output
