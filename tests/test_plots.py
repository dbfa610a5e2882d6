"""The plots a reader looks at, checked on the real matplotlib figures: axis ranges, legends, labels
and that no two pieces of text sit on top of each other once the figure is drawn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clvml.analytics.experiment_report import plot_effects
from clvml.analytics.experiments import evaluate_experiment
from clvml.analytics.repurchase_report import plot_churn, plot_repurchase, plot_surveys
from clvml.explain.drivers import BIAS, _numeric, beeswarm_figure, contributions, dependence_figure
from clvml.modeling import ChurnModel
from clvml.plotting import axes
from tests.test_models import FAST, data


def _drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _shown_xticklabels(ax):
    """The x tick labels drawn inside the view (a locator may place ticks beyond the limits)."""
    lo, hi = sorted(ax.get_xlim())
    return [t for t in ax.get_xticklabels() if t.get_text() and lo <= t.get_position()[0] <= hi]


def _overlapping(texts, renderer) -> list[tuple[str, str]]:
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    return [(a, c) for i, (a, b) in enumerate(boxes) for c, d in boxes[i + 1:] if b.overlaps(d)]


def _months(n: int, start: str = "2021-01") -> pd.Series:
    return pd.Series(pd.period_range(start, periods=n, freq="M").astype(str))


def test_the_overlap_check_sees_overlapping_labels():
    fig, ax = axes("forty month labels, unrotated", width=6)
    ax.plot(_months(40), np.arange(40))  # the old way: one string label per month
    renderer = _drawn(fig)
    assert len(_overlapping(_shown_xticklabels(ax), renderer)) > 10


def test_churn_rate_starts_at_zero_with_readable_dates():
    rates = 0.33 + 0.08 * np.abs(np.sin(np.arange(40)))  # the 0.33-0.41 of issue 27
    df = pd.DataFrame({"cutoff": pd.date_range("2021-01-01", periods=40, freq="MS").astype(str),
                       "churn_rate": rates})
    fig = plot_churn(df)
    ax = fig.axes[0]
    renderer = _drawn(fig)
    lo, hi = ax.get_ylim()
    assert lo == 0 and rates.max() < hi <= 1
    labels = _shown_xticklabels(ax)
    assert 3 <= len(labels) <= 9 and not _overlapping(labels, renderer)
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "0%"
    assert ax.get_xlabel() == "cut-off (Jan 2021 – Apr 2024)"  # the years a concise "May" leaves out


def test_repurchase_rate_months_do_not_overlap():
    df = pd.DataFrame({"month": _months(44), "returning_rate": np.linspace(0, 0.9, 44),
                       "repeat_rate": np.full(44, 0.3)})
    fig = plot_repurchase(df)
    renderer = _drawn(fig)
    assert not _overlapping(_shown_xticklabels(fig.axes[0]), renderer)
    assert fig.axes[0].get_ylim()[0] == 0 and fig.axes[0].get_legend() is not None
    assert fig.axes[0].get_xlabel() == "month (Jan 2021 – Aug 2024)"


def test_surveys_plot_has_one_legend_for_both_axes():
    df = pd.DataFrame({"month": _months(36), "nps": np.linspace(-30, 10, 36),
                       "mean_satisfaction": np.linspace(3.2, 3.8, 36)})
    fig = plot_surveys(df)
    renderer = _drawn(fig)
    left, right = fig.axes
    legends = [a.get_legend() for a in fig.axes if a.get_legend() is not None]
    assert len(legends) == 1
    entries = {t.get_text(): h.get_color() for t, h in zip(legends[0].get_texts(), legends[0].legend_handles,
                                                          strict=True)}
    assert entries == {"NPS (left axis)": left.get_lines()[0].get_color(),
                       "mean satisfaction (right axis)": right.get_lines()[0].get_color()}
    assert "NPS" in left.get_ylabel() and "satisfaction" in right.get_ylabel()
    assert left.yaxis.label.get_color() == left.get_lines()[0].get_color()
    # the legend sits above the plot: it hides no point and does not run into the title
    box = legends[0].get_window_extent(renderer)
    assert box.y0 >= left.get_window_extent(renderer).y1 - 1
    assert not box.overlaps(left.title.get_window_extent(renderer))
    assert not _overlapping(_shown_xticklabels(left), renderer)


@pytest.fixture(scope="module")
def effects():
    rng = np.random.default_rng(0)
    n = 600
    t = pd.DataFrame({"customer_id": np.arange(n).astype(str), "campaign_id": "c1",
                      "group": np.where(np.arange(n) % 2, "treatment", "control"),
                      "tier": rng.choice(["basic", "gold"], n)})
    treated = t["group"] == "treatment"
    t["repurchased"] = (rng.random(n) < np.where(treated, 0.4, 0.3)).astype(int)
    t["purchases"] = t["repurchased"] * rng.integers(1, 4, n)
    t["spend"] = t["purchases"] * rng.gamma(2.0, 20.0, n)
    return evaluate_experiment(t, by="tier", alpha=0.1)


def test_forest_plot_says_what_the_difference_is_and_the_ci_level(effects):
    fig = plot_effects(effects, "repurchased", alpha=0.1, window_days=30)
    ax = fig.axes[0]
    xl = ax.get_xlabel()
    assert "difference in share who bought within 30 days" in xl and "treatment − control" in xl
    assert "percentage points" in xl and "90% confidence interval" in xl
    # the bars are the intervals of the table, one per row (overall, then each tier)
    e = effects[effects["metric"] == "repurchased"].iloc[::-1]
    segs = ax.collections[0].get_segments()
    np.testing.assert_allclose([s[:, 0] for s in segs], e[["ci_low", "ci_high"]].to_numpy())
    assert [t.get_text() for t in ax.get_yticklabels()] == ["tier=gold", "tier=basic", "all"]
    renderer = _drawn(fig)
    ticks = _shown_xticklabels(ax)
    assert not _overlapping(ticks, renderer)
    assert all(t.get_text() == "0" or t.get_text()[0] in "+-" for t in ticks)  # signed points
    spend = plot_effects(effects, "spend", alpha=0.05).axes[0].get_xlabel()
    assert "spend per customer" in spend and "95% confidence interval" in spend
    assert "percentage points" not in spend and "days" not in spend


@pytest.fixture(scope="module")
def shap_values():
    X, y, _ = data(n=1500)
    X = X.assign(closed=(X["noise"] > 1.2).astype(float))
    y = np.where(X["closed"] == 1, 1, y)
    model = ChurnModel(calibration="none", **FAST).fit(X, y)
    return X, contributions(model, X)


def test_dependence_of_a_binary_feature_is_one_box_per_value(shap_values):
    X, c = shap_values
    x = X["closed"].where(X.index % 50 != 0)  # some missing values: a level of their own
    fig = dependence_figure(x, c["closed"], "churn")
    ax = fig.axes[0]
    n = x.value_counts()
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        f"0\n(n={n[0.0]:,})", f"1\n(n={n[1.0]:,})", f"missing\n(n={x.isna().sum():,})"]
    assert ax.get_xlim() == (-0.6, 2.6) and "one box per value" in ax.get_xlabel()
    xs = np.concatenate([pc.get_offsets()[:, 0] for pc in ax.collections])
    assert len(xs) == len(x)
    assert np.abs(xs - np.round(xs)).max() <= 0.18  # jittered around its level, nothing in between
    levels = np.round(xs).astype(int)
    assert np.bincount(levels).tolist() == [n[0.0], n[1.0], x.isna().sum()]
    # the boxes are the real distributions: the closed accounts' median SHAP value is the higher one
    medians = [ln.get_ydata()[0] for ln in ax.lines if ln.get_gid() == "median"]
    assert medians[1] > medians[0]
    np.testing.assert_allclose(medians[1], np.median(c["closed"][x == 1]))
    renderer = _drawn(fig)
    assert not _overlapping(ax.get_xticklabels(), renderer)


def test_dependence_of_categorical_and_continuous_features(shap_values):
    X, c = shap_values
    tier = X["tier"].astype("category")
    ax = dependence_figure(tier, c["tier"], "churn").axes[0]
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == list(tier.cat.categories)
    ax = dependence_figure(X["x"], c["x"], "churn").axes[0]
    assert len(ax.collections) == 1 and ax.get_xlabel() == "x"  # a plain scatter of the values
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 0], X["x"])


def test_beeswarm_title_sits_above_the_colour_bar(shap_values):
    X, c = shap_values
    X, vals = X.head(300), c.drop(columns=BIAS).head(300)
    fig = beeswarm_figure(vals, _numeric(X)[vals.columns], "churn")
    main, bar = fig.axes[:2]
    assert bar.get_ylabel() == "Feature value"  # SHAP's colour bar
    renderer = _drawn(fig)
    assert fig._suptitle is None and main.get_title() == "churn: SHAP summary (raw score space)"
    top_of_bar = bar.get_tightbbox(renderer).y1  # with its "High" label
    assert main.title.get_window_extent(renderer).y0 >= top_of_bar
    # the old figure-wide title shared its row with the colour bar's "High" label
    old = fig.suptitle("churn: SHAP summary (raw score space)")
    _drawn(fig)
    assert old.get_window_extent(renderer).y0 < top_of_bar
