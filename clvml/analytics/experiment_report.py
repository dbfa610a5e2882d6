"""``clvml experiment …`` jobs: evaluate an A/B test of an incentive, and fit an uplift model that
decides who receives the next one. Each writes tables, plots and a JSON summary into one folder."""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvml.analytics.experiments import Outcomes, evaluate_experiment, experiment_outcomes
from clvml.analytics.uplift import UpliftModel, qini_coefficient, qini_curve, targeting_list
from clvml.config import Config
from clvml.data.dataset import Dataset
from clvml.errors import ConfigError, DataSourceError
from clvml.features import build_features, to_pandas
from clvml.io import atomic_write_json, atomic_write_parquet, atomic_write_text
from clvml.plotting import CSS, axes, save_figure

Progress = Callable[[str], None]


def assignments_path(cfg: Config, given: Path | None = None) -> Path:
    """``given``, else ``experiments.assignments``, else the synthetic world's campaign assignments."""
    path = given or cfg.experiments.assignments
    if path is None and cfg.data.synthetic is not None and cfg.data.synthetic.campaigns:
        path = Path(cfg.data.synthetic.path) / "assignments.parquet"
    if path is None:
        raise ConfigError(["no assignment table: pass --assignments or set experiments.assignments"])
    return Path(path)


def read_assignments(path: Path) -> pd.DataFrame:
    """Read an assignment table from Parquet or CSV."""
    if not path.exists():
        raise DataSourceError(f"assignment table {path} does not exist")
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise DataSourceError(f"assignment table {path}: use .parquet or .csv")


def add_segments(outcomes: Outcomes, ds: Dataset, scores: Path | None, by: list[str]) -> Outcomes:
    """Join the ``by`` columns the assignment table does not have: from the customers table (profile
    columns such as membership_tier), else from a scores partition (``clvml score`` output, e.g.
    value_tier). Customers without a profile row or a score get "unknown"/"unscored", counted."""
    need = [c for c in by if c not in outcomes.table.columns]
    if need and "customers" in ds.tables:
        prof = [c for c in need if c in ds["customers"].columns]
        if prof:
            p = ds["customers"].select("customer_id", *prof).to_pandas()
            t = outcomes.table.merge(p, on="customer_id", how="left", indicator=True)
            unknown = int((t.pop("_merge") == "left_only").sum())
            t[prof] = t[prof].astype(object).where(t[prof].notna(), "unknown")
            outcomes = Outcomes(t, {**outcomes.excluded, "no_profile (kept as 'unknown')": unknown})
            need = [c for c in need if c not in prof]
    if not need:
        return outcomes
    if scores is None:
        raise ConfigError([f"segment column(s) {need} are neither in the assignment table nor in the "
                           "customers table: add them, or pass --scores with a scores partition that "
                           "has them (e.g. value_tier)"])
    s = pd.read_parquet(scores)
    missing = [c for c in need if c not in s.columns]
    if missing:
        raise ConfigError([f"segment column(s) {missing} are neither in the assignments nor in {scores}"])
    s = s[["customer_id", *need]].drop_duplicates("customer_id")
    t = outcomes.table.merge(s, on="customer_id", how="left", indicator=True)
    unscored = int((t.pop("_merge") == "left_only").sum())
    t[need] = t[need].astype(object).where(t[need].notna(), "unscored")
    return Outcomes(t, {**outcomes.excluded, "not_in_scores (kept as 'unscored')": unscored})


METRIC_TEXT = {"repurchased": "share who bought", "purchases": "purchase days per customer",
               "spend": "spend per customer"}
"""What each outcome metric measures, as the forest plots and the HTML report name it."""


def plot_effects(effects: pd.DataFrame, metric: str, alpha: float = 0.05, window_days: int | None = None):
    """Forest plot of one metric: the effect (treatment − control) with its ``1 - alpha`` interval,
    overall and per segment. The effect on ``repurchased`` is a difference of shares, shown in
    percentage points."""
    from matplotlib.ticker import FuncFormatter

    e = effects[(effects["metric"] == metric) & effects["effect"].notna()].iloc[::-1]
    labels = [("all" if b == "all" else f"{b}={s}") + f" ({c})" if len(effects["campaign_id"].unique()) > 1
              else ("all" if b == "all" else f"{b}={s}")
              for b, s, c in zip(e["segment_by"], e["segment"], e["campaign_id"], strict=True)]
    what = METRIC_TEXT.get(metric, metric)
    within = f" within {window_days} days" if window_days else ""
    unit = ", percentage points" if metric == "repurchased" else ""
    fig, ax = axes(f"Effect on {metric} (treatment − control)",
                   xlabel=f"difference in {what}{within}{unit}: treatment − control\n"
                          f"(dot: estimate, bar: {100 * (1 - alpha):g}% confidence interval)",
                   width=7, height=3.5)
    if metric == "repurchased":
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:+.0f}" if v else "0"))
    y = np.arange(len(e))
    ax.errorbar(e["effect"], y, xerr=[e["effect"] - e["ci_low"], e["ci_high"] - e["effect"]], fmt="o",
                capsize=3)
    ax.axvline(0, color="grey", lw=1)
    ax.set_yticks(y, labels)
    fig.set_figheight(max(2.5, 0.35 * len(e) + 1.4))
    return fig


def _cell(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "–" if np.isnan(v) else f"{v:,.4g}"
    return html.escape(str(v))


def _table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>"
                   for r in df.itertuples(index=False))
    return f"<div class='wide'><table><tr>{head}</tr>{rows}</table></div>"


def _effects_table(effects: pd.DataFrame, level: str) -> pd.DataFrame:
    """The effects as a reader scans them: the interval in one column, the lift in percent."""
    e = effects
    out = pd.DataFrame({"campaign": e["campaign_id"], "segment": [
        "all" if b == "all" else f"{b}={s}" for b, s in zip(e["segment_by"], e["segment"], strict=True)],
        "metric": e["metric"], "n (treatment / control)": [
            f"{t:,} / {c:,}" for t, c in zip(e["n_treatment"], e["n_control"], strict=True)],
        "control mean": e["mean_control"], "treatment mean": e["mean_treatment"], "effect": e["effect"],
        f"{level} CI": ["–" if np.isnan(lo) else f"[{lo:,.3g}, {hi:,.3g}]"
                        for lo, hi in zip(e["ci_low"], e["ci_high"], strict=True)],
        "relative lift": ["–" if np.isnan(v) else f"{100 * v:+.1f}%" for v in e["relative_lift"]],
        "p-value": e["p_value"], "p (Holm)": e["p_value_holm"], "note": e["note"].fillna("")})
    if not out["note"].any():
        out = out.drop(columns="note")
    return out.drop(columns="campaign") if e["campaign_id"].nunique() == 1 else out


def render_html(title: str, summary: dict[str, Any], effects: pd.DataFrame, plots: dict[str, Path]) -> str:
    """The experiment report as one self-contained HTML page (plots embedded as base64 PNG)."""
    level = f"{100 * (1 - summary['alpha']):g}%"
    meta = {"assignments": summary["assignments"], "outcome window (days)": summary["window_days"],
            "customers": f"{summary['customers']:,}",
            "per group": ", ".join(f"{g}: {n:,}" for g, n in summary["by_group"].items()),
            "excluded": ", ".join(f"{k}: {v:,}" for k, v in summary["excluded"].items()) or "none",
            "confidence level": level}
    info = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>" for k, v in meta.items())
    table = _effects_table(effects, level)
    overall = table[(effects["segment_by"] == "all").to_numpy()].drop(columns=["segment", "p (Holm)", "note"],
                                                                      errors="ignore")
    imgs = "".join(
        f"<figure><img alt='{html.escape(n)}' src='data:image/png;base64,"
        f"{base64.b64encode(Path(p).read_bytes()).decode()}'><figcaption>{html.escape(n)}</figcaption></figure>"
        for n, p in plots.items())
    defs = "".join(f"<dt>{html.escape(m)}</dt><dd>{html.escape(t)} in the {summary['window_days']} days after "
                   f"assignment</dd>" for m, t in METRIC_TEXT.items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><dl>{info}</dl>"
            f"<h2>Overall effect</h2><p>Effect = mean of the treatment group − mean of the control group, "
            f"with its {level} confidence interval; relative lift = effect / control mean.</p>"
            f"<dl>{defs}</dl>{_table(overall)}"
            f"<h2>By segment</h2><div class='plots'>{imgs}</div>"
            f"<p>Segment p-values are also given Holm-adjusted across segments (p (Holm)); a segment "
            f"with too few customers in an arm has no interval (see note). Every column of every row is "
            f"in effects.csv.</p>{_table(table)}"
            f"</body></html>")


def evaluate(cfg: Config, ds: Dataset, *, assignments: Path | None = None, scores: Path | None = None,
             out: Path | None = None, progress: Progress = lambda _: None) -> dict[str, Any]:
    """Outcomes and effects of an A/B test; writes ``outcomes.parquet``, ``effects.csv``,
    ``plots/effect_<metric>.png``, ``summary.json`` and the self-contained ``report.html`` into ``out``."""
    ex = cfg.experiments
    path = assignments_path(cfg, assignments)
    out = Path(out or Path(cfg.output.dir) / "experiments")
    progress(f"outcomes of {path} over {ex.window_days}-day windows")
    oc = experiment_outcomes(read_assignments(path), ds["transactions"], window_days=ex.window_days,
                             control=ex.control)
    oc = add_segments(oc, ds, scores, ex.by)
    effects = evaluate_experiment(oc, by=ex.by, control=ex.control, alpha=ex.alpha)
    files = {"outcomes": atomic_write_parquet(oc.table, out / "outcomes.parquet"),
             "effects": atomic_write_text(effects.to_csv(index=False), out / "effects.csv")}
    for metric in effects["metric"].unique():
        files[f"plot_{metric}"] = save_figure(plot_effects(effects, metric, ex.alpha, ex.window_days),
                                              out / "plots" / f"effect_{metric}.png")
    overall = effects[effects["segment_by"] == "all"].set_index(["campaign_id", "metric"])
    summary = {"assignments": str(path), "window_days": ex.window_days, "alpha": ex.alpha,
               **oc.summary(),
               "overall": {f"{c}/{m}": {k: _num(r[k]) for k in ("effect", "ci_low", "ci_high", "p_value",
                                                                  "mean_control", "mean_treatment")}
                           for (c, m), r in overall.iterrows()}}
    summary["incremental_totals"] = incremental_totals(effects, ex.cost)
    files["summary"] = atomic_write_json(summary, out / "summary.json")
    plots = {m: files[f"plot_{m}"] for m in effects["metric"].unique()}
    files["report"] = atomic_write_text(render_html(f"clvml experiment: {cfg.name}", summary, effects, plots),
                                        out / "report.html")
    return {"effects": effects, "summary": summary, "files": files}


def incremental_totals(effects: pd.DataFrame, cost: float = 0.0) -> dict[str, dict[str, float | None]]:
    """What the treated group gained in total (effect × treated customers, with the interval) and,
    with a contact ``cost``, incremental spend net of what contacting them cost."""
    out = {}
    for _, r in effects[effects["segment_by"] == "all"].iterrows():
        n = r["n_treatment"]
        tot = {k: _num(r[k] * n) for k in ("effect", "ci_low", "ci_high")}
        if r["metric"] == "spend":
            tot["contact_cost"] = float(cost * n)
            tot["net_of_cost"] = _num(r["effect"] * n - cost * n)
        out[f"{r['campaign_id']}/{r['metric']}"] = tot
    return out


def _num(v: Any) -> float | None:
    return None if pd.isna(v) else float(v)


def holdout_mask(customer_id: pd.Series, share: float) -> np.ndarray:
    """Deterministic customer-level holdout: a hash of the id, independent of row order."""
    h = pd.util.hash_array(customer_id.astype(str).to_numpy(), categorize=False)
    return (h % 10_000) < int(round(share * 10_000))


def features_at(cfg: Config, ds: Dataset, keys: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time features of ``keys`` (customer_id, cutoff): only events strictly before the
    cut-off. Customers with no purchase before their cut-off get missing features."""
    cuts = sorted(keys["cutoff"].dt.date.unique())
    f = to_pandas(build_features(ds.tables, cuts, windows=cfg.features.windows,
                                 families=cfg.features.families))
    return keys.merge(f, on=["customer_id", "cutoff"], how="left")


def plot_qini(curves: dict[str, pd.DataFrame], metric: str):
    fig, ax = axes("Qini curve (held-out customers)", xlabel="share of customers targeted",
                   ylabel=f"incremental {metric}", height=3.5)
    for name, c in curves.items():
        ax.plot(c["fraction"], c["qini"], label=name)
    any_c = next(iter(curves.values()))
    ax.plot(any_c["fraction"], any_c["random"], ls="--", color="grey", label="random")
    ax.legend()
    return fig


def uplift(cfg: Config, ds: Dataset, *, assignments: Path | None = None, as_of: dt.date | None = None,
           out: Path | None = None, progress: Progress = lambda _: None) -> dict[str, Any]:
    """Fit a T-learner uplift model on a past randomised campaign and rank today's customers.

    The model learns from features as of each customer's assignment date (events strictly before it)
    and the outcome over the window after it. Its Qini coefficient is measured on ``test_share`` of the
    customers held out by a hash of their id; the model is then refitted on every assigned customer and
    scores the population as of ``as_of`` (default: the day after the latest transaction).
    Writes ``qini.csv``, ``plots/qini.png``, ``targeting.parquet``/``.csv`` and ``summary.json``.
    """
    ex = cfg.experiments
    path = assignments_path(cfg, assignments)
    out = Path(out or Path(cfg.output.dir) / "uplift")
    oc = experiment_outcomes(read_assignments(path), ds["transactions"], window_days=ex.window_days,
                             control=ex.control)
    t = oc.table
    keys = pd.DataFrame({"customer_id": t["customer_id"],
                         "cutoff": t["assigned_ts"].dt.normalize().astype("datetime64[ns]")})
    progress(f"features of {len(t):,} assigned customers as of their assignment dates")
    X = features_at(cfg, ds, keys).drop(columns=["customer_id", "cutoff"])
    y = t[ex.uplift_metric].to_numpy(dtype=float)
    w = (t["group"] != ex.control).to_numpy()
    objective = "binary" if ex.uplift_metric == "repurchased" else "regression"
    test = holdout_mask(t["customer_id"], ex.test_share)
    progress(f"T-learner on {int((~test).sum()):,} customers, Qini on {int(test.sum()):,} held out")
    model = UpliftModel(objective=objective, random_state=cfg.seed).fit(X[~test], w[~test], y[~test])
    pred = model.predict(X[test])
    rand = np.random.default_rng(cfg.seed).random(int(test.sum()))
    curves = {"uplift model": qini_curve(y[test], w[test], pred)}
    qini = {"uplift_model": qini_coefficient(y[test], w[test], pred),
            "random_ranking": qini_coefficient(y[test], w[test], rand)}
    files = {"qini": atomic_write_text(curves["uplift model"].to_csv(index=False), out / "qini.csv"),
             "plot_qini": save_figure(plot_qini(curves, ex.uplift_metric), out / "plots" / "qini.png")}

    final = UpliftModel(objective=objective, random_state=cfg.seed).fit(X, w, y)
    if as_of is None:
        last = ds["transactions"].ts.max().to_pyarrow().as_py()
        as_of = (pd.Timestamp(last).normalize() + pd.Timedelta(days=1)).date()
    progress(f"ranking customers as of {as_of}")
    now = to_pandas(build_features(ds.tables, [as_of], windows=cfg.features.windows,
                                   families=cfg.features.families))
    u = final.predict(now.drop(columns=["customer_id", "cutoff"]))
    tl = targeting_list(now["customer_id"], u, value=ex.value, cost=ex.cost, budget=ex.budget)
    tl.insert(1, "as_of", pd.Timestamp(as_of))
    files["targeting"] = atomic_write_parquet(tl, out / "targeting.parquet")
    files["targeting_csv"] = atomic_write_text(tl.to_csv(index=False), out / "targeting.csv")
    summary = {"assignments": str(path), "metric": ex.uplift_metric, "window_days": ex.window_days,
               **oc.summary(), "train_customers": int((~test).sum()), "test_customers": int(test.sum()),
               "qini_coefficient": qini, "as_of": str(as_of), "ranked": len(tl),
               "targeted": int(tl["target"].sum()),
               "expected_incremental_value_of_targets": float(tl.loc[tl["target"], "incremental_value"].sum()),
               "value": ex.value, "cost": ex.cost, "budget": ex.budget}
    files["summary"] = atomic_write_json(summary, out / "summary.json")
    return {"model": final, "qini": qini, "targeting": tl, "summary": summary, "files": files,
            "test_prediction": pd.DataFrame({"customer_id": t["customer_id"][test].to_numpy(),
                                             "uplift": pred, "treated": w[test], "y": y[test]})}
