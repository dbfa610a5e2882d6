"""Diagnostic (not a speed benchmark): CLV against realised value, and interval coverage (issue 25).

Two data sets:

* **synthetic**: the demo's world (same simulator settings and seed, 20,000 customers) over three
  years (2022-01-01..2024-12-31) instead of two, so that a CLV origin has K·H = 4 × 90 days of data
  after it *and* an earlier CLV origin whose own 360-day window ends before it: the CLV intervals are
  calibrated there, strictly on the past, exactly as ``clvml train`` calibrates them for scoring.
  Expected-value intervals likewise: calibrated at an origin 90 days before the one scored. The oracle
  row is the simulator's expected spend over the 360 days given the hidden state.
* **cdnow**: :func:`clvml.evaluation.cdnow.clv_on_cdnow` (calibration to 1997-09-30, CLV over
  3 × 13 weeks against the 39-week holdout).

* **cli**: ``clvml train`` + ``clvml score`` on a transactions-only export of the CDNOW calibration
  period with configs/cdnow.yaml and variants of it (issue 25 item 3), against the same holdout.

* **bootstrap**: the sampling uncertainty of the CDNOW comparison: ``configs/cdnow.yaml`` through the CLI
  once, then the 2,357 customers resampled with replacement (2,000 draws): the spread of each metric's
  difference clvml − BG/NBD + GG and how often clvml wins it, and the per-quarter totals.

Usage: ``python bench/clv.py [synthetic|cdnow|cli|bootstrap|both]`` (synthetic about 15 minutes on 2
cores; cdnow includes cli).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

pd.set_option("display.width", 250)
pd.set_option("display.max_columns", 30)

ROOT = Path(__file__).resolve().parents[1]


def synthetic(folder: Path) -> None:
    from clvml.config import load_config
    from clvml.data.loading import load_data
    from clvml.evaluation.backtest import backtest
    from clvml.jobs.backtest import synthetic_truth
    from clvml.modeling.training import make_training_set

    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    start = dt.date(2022, 4, 1)
    grid = [start + dt.timedelta(days=30 * i) for i in range(40)]
    clv_o = [min(grid, key=lambda c: abs((c - dt.date(2023, 1, 6)).days))]
    clv_o.append(clv_o[0] + dt.timedelta(days=360))  # calibrated on the first, strictly before
    labelled = [c for c in grid if c + dt.timedelta(days=90) <= dt.date(2025, 1, 1)]
    value_o = [labelled[-4], labelled[-1]]  # 90 days apart
    demo.update({
        "data": {"synthetic": {**demo["data"]["synthetic"], "start": "2022-01-01",
                               "path": str(folder / "world")}},
        "cutoffs": {**demo["cutoffs"], "start": str(start)},
        "backtest": {"origins": [str(o) for o in value_o], "clv_origins": [str(o) for o in clv_o]},
        "tracking": {"enabled": False}, "output": {"dir": str(folder / "out"), "model_dir": str(folder / "m")},
    })
    path = folder / "clv.yaml"
    path.write_text(yaml.safe_dump(demo))
    cfg = load_config(path)
    t0 = time.perf_counter()
    ds = load_data(cfg, print)
    ts = make_training_set(ds, cfg)
    print(f"world + features: {time.perf_counter() - t0:.0f} s; value origins {value_o}, CLV origins {clv_o}")
    r = backtest(ts, cfg, ds, value_o, print, clv_origins=clv_o, truth=synthetic_truth(cfg))
    print(f"total {time.perf_counter() - t0:.0f} s")
    m = r.metrics
    for task in ("clv", "value", "churn", "clv_interval", "value_interval"):
        for o, g in m[m.task == task].groupby("origin"):
            print(f"\n== {task} at {pd.Timestamp(o).date()}")
            print(g.pivot_table(index="metric", columns="model", values="value").round(4).to_string())
    r.predictions.to_parquet(folder / "predictions.parquet")
    r.clv_predictions.to_parquet(folder / "clv_predictions.parquet")
    for o, g in r.clv_predictions.groupby("origin"):
        real = g["realised_k"].to_numpy(float)
        paired_bootstrap(f"synthetic CLV at {pd.Timestamp(o).date()}: clvml (clvk_lightgbm) vs BG/NBD + GG",
                         real, g["clvk_lightgbm"].to_numpy(float), g["clvk_btyd"].to_numpy(float))


def cdnow() -> None:
    from clvml.evaluation.cdnow import clv_on_cdnow, intervals_on_cdnow

    for refit in (False, True):
        t0 = time.perf_counter()
        r = clv_on_cdnow(refit_embargoed=refit)
        print(f"\n== CDNOW CLV over 3 x 13 weeks from 1997-10-01, refit_embargoed={refit} "
              f"({time.perf_counter() - t0:.0f} s)")
        print(r.T.round(4).to_string())
    print("\n== CDNOW intervals")
    print(intervals_on_cdnow().T.to_string())


#: the CLI variants measured on CDNOW: (name, config overrides of configs/cdnow.yaml)
CLI_VARIANTS = [
    ("configs/cdnow.yaml", {}),
    ("without model.refit_embargoed", {"model.refit_embargoed": False}),
    ("without model.auto_select (hurdle, no BTYD features)", {"model.auto_select": False}),
    ("learning_rate 0.03", {"model.churn.learning_rate": 0.03, "model.value.learning_rate": 0.03}),
    ("cut-offs every 3 days", {"cutoffs.every_days": 3}),
    ("cut-offs every 14 days", {"cutoffs.every_days": 14}),
    ("cut-offs every 14 days, 1 validation cut-off", {"cutoffs.every_days": 14, "cutoffs.validation": 1}),
    ("max_bin 63", {"model.churn.params": {"max_bin": 63}, "model.value.params": {"max_bin": 63}}),
]


def cdnow_cli(folder: Path) -> None:
    """``clvml train`` + ``clvml score`` on the CDNOW calibration export (configs/cdnow.yaml and
    variants), CLV as of 1997-10-01 against the 39-week holdout, beside BG/NBD + Gamma-Gamma's CLV."""
    import resource
    import warnings

    from typer.testing import CliRunner

    from clvml.cli import app
    from clvml.datasets import load_cdnow_sample
    from clvml.evaluation.clv_eval import clv_metrics
    from clvml.modeling.btyd import BTYDModel

    tx = load_cdnow_sample()
    hold = tx[(tx.ts >= "1997-10-01") & (tx.ts < "1998-07-01")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg = BTYDModel().fit(tx[tx.ts < "1997-10-01"], pd.Timestamp("1997-10-01"))
    bg_clv = bg.clv(periods=3, period_days=91, discount_rate=0.0, margin=1.0)
    rows = {}
    for k, (name, over) in enumerate(CLI_VARIANTS):
        d = folder / f"cli{k}"
        d.mkdir(parents=True)
        tx[tx.ts < "1997-10-01"].drop(columns="cohort").to_csv(d / "cdnow_calibration.csv", index=False)
        cfg = yaml.safe_load((ROOT / "configs" / "cdnow.yaml").read_text())
        for key, value in over.items():
            node, *path = cfg, *key.split(".")
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
        (d / "c.yaml").write_text(yaml.safe_dump(cfg))
        c0, t0 = time.process_time(), time.perf_counter()
        res = CliRunner().invoke(app, ["train", "-c", str(d / "c.yaml")])
        assert res.exit_code == 0, res.output
        res = CliRunner().invoke(app, ["score", "-c", str(d / "c.yaml"), "-m", str(d / "models" / "cdnow"),
                                       "--as-of", "1997-10-01", "--out", str(d / "scores")])
        assert res.exit_code == 0, res.output
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        s = pd.read_parquet(d / "scores")
        ids = s["customer_id"].astype(str)
        real = hold.groupby("customer_id")["amount"].sum().reindex(ids).fillna(0.0).to_numpy()
        rows[name] = {**clv_metrics(real, s["clv"]), "cpu_s": cpu, "wall_s": wall, "load": os.getloadavg()[0]}
        print(f"{name}: {cpu:.1f} s CPU, {wall:.1f} s wall", flush=True)
    rows["BG/NBD + Gamma-Gamma"] = clv_metrics(real, bg_clv.reindex(ids).fillna(0.0).to_numpy())
    cols = ["mae", "normalized_gini", "spearman", "capture_top1", "capture_top5", "capture_top20",
            "total_error_pct", "cpu_s", "wall_s", "load"]
    print("\n== CDNOW through the CLI (train + score), CLV over 3 x 13 weeks from 1997-10-01")
    print(pd.DataFrame(rows).T[cols].round(4).to_string())
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def bootstrap(folder: Path, draws: int = 2000, seed: int = 0) -> None:
    """How much of the CDNOW comparison is sampling noise: the customers resampled with replacement."""
    import warnings

    from typer.testing import CliRunner

    from clvml.cli import app
    from clvml.datasets import load_cdnow_sample
    from clvml.modeling.btyd import BTYDModel

    tx = load_cdnow_sample()
    tx[tx.ts < "1997-10-01"].drop(columns="cohort").to_csv(folder / "cdnow_calibration.csv", index=False)
    (folder / "c.yaml").write_text((ROOT / "configs" / "cdnow.yaml").read_text())
    for args in (["train", "-c", str(folder / "c.yaml")],
                 ["score", "-c", str(folder / "c.yaml"), "-m", str(folder / "models" / "cdnow"),
                  "--as-of", "1997-10-01", "--out", str(folder / "scores")]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
    s = pd.read_parquet(folder / "scores")
    ids = s["customer_id"].astype(str)
    hold = tx[(tx.ts >= "1997-10-01") & (tx.ts < "1998-07-01")]
    real = hold.groupby("customer_id")["amount"].sum().reindex(ids).fillna(0.0).to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg = BTYDModel().fit(tx[tx.ts < "1997-10-01"], pd.Timestamp("1997-10-01"))
    theirs = bg.clv(periods=3, period_days=91, discount_rate=0.0, margin=1.0).reindex(ids).fillna(0.0).to_numpy()
    paired_bootstrap("CDNOW, configs/cdnow.yaml through the CLI vs BG/NBD + GG", real,
                     s["clv"].to_numpy(float), theirs, draws, seed)
    # the level per 13-week quarter: where the total's shortfall comes from
    q = []
    for k in range(3):
        lo, hi = pd.Timestamp("1997-10-01") + pd.Timedelta(days=91 * k), pd.Timestamp("1997-10-01") + pd.Timedelta(
            days=91 * (k + 1))
        w = tx[(tx.ts >= lo) & (tx.ts < hi) & (tx.amount > 0)]
        q.append({"quarter": f"{lo.date()}..{(hi - pd.Timedelta(days=1)).date()}",
                  "realised": float(w.amount.sum())})
    print(pd.DataFrame(q).to_string(index=False))


def paired_bootstrap(title: str, real, ours, theirs, draws: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The customers resampled with replacement ``draws`` times: clvml's CLV metrics minus the baseline's
    (signed so that > 0 means clvml is better), their 95 % intervals, and the proposed bar of issue 25
    (Gini significantly better; MAE and every tier capture not significantly worse; a smaller total
    error magnitude). Printed and returned."""
    import numpy as np

    from clvml.evaluation.clv_eval import clv_metrics

    better = {"mae": -1, "normalized_gini": 1, "capture_top1": 1, "capture_top5": 1, "capture_top20": 1}
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(draws):
        i = rng.integers(0, len(real), len(real))
        a, b = clv_metrics(real[i], ours[i]), clv_metrics(real[i], theirs[i])
        rows.append({**{f"d_{m}": sign * (a[m] - b[m]) for m, sign in better.items()},
                     "ours_total": a["total_error_pct"], "theirs_total": b["total_error_pct"],
                     "ours_top1": a["capture_top1"], "theirs_top1": b["capture_top1"]})
    d = pd.DataFrame(rows)
    full_a, full_b = clv_metrics(real, ours), clv_metrics(real, theirs)
    print(f"\n== {title}; {draws} bootstrap draws of the {len(real):,} customers (differences signed so "
          "that > 0 means clvml is better)")
    out = []
    for m in better:
        col = d[f"d_{m}"]
        out.append({"metric": m, "clvml": full_a[m], "BG/NBD + GG": full_b[m],
                    "difference (clvml better > 0)": better[m] * (full_a[m] - full_b[m]),
                    "lo": col.quantile(0.025), "hi": col.quantile(0.975),
                    "share of draws clvml better": (col > 0).mean()})
    for who, col in (("clvml", "ours_total"), ("BG/NBD + GG", "theirs_total")):
        out.append({"metric": f"total error % ({who})", who: d[col].median(),
                    "lo": d[col].quantile(0.025), "hi": d[col].quantile(0.975),
                    "share of draws clvml better": (d[col].abs() <= 10).mean()})
    table = pd.DataFrame(out)
    print(table.to_string(index=False))
    wins = (d[[f"d_{m}" for m in better]] > 0).all(axis=1) & (d["ours_total"].abs() <= 10)
    print(f"draws where clvml wins all five and its total is within +-10 %: {wins.mean():.3f}")
    print(f"top 1 % = {int(np.ceil(0.01 * len(real)))} customers; sd of the top-1 % capture over draws: "
          f"clvml {d['ours_top1'].std():.4f}, BG/NBD {d['theirs_top1'].std():.4f}")
    gini = table.set_index("metric").loc["normalized_gini", "lo"] > 0
    not_worse = all(table.set_index("metric").loc[m, "hi"] > 0 for m in better if m != "normalized_gini")
    smaller = abs(full_a["total_error_pct"]) < abs(full_b["total_error_pct"])
    print(f"proposed bar: Gini significantly better {gini}; MAE and tier captures not significantly worse "
          f"{not_worse}; smaller total error magnitude {smaller} "
          f"({full_a['total_error_pct']:+.2f} % vs {full_b['total_error_pct']:+.2f} %)")
    return table


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "both"
    print(f"{platform.node()} {os.cpu_count()} cores, {dt.datetime.now():%Y-%m-%d %H:%M}")
    if what in ("synthetic", "both"):
        with tempfile.TemporaryDirectory() as d:
            synthetic(Path(os.environ.get("CLV_BENCH_DIR", d)))
    if what in ("cdnow", "both"):
        cdnow()
    if what == "bootstrap":
        with tempfile.TemporaryDirectory() as d:
            bootstrap(Path(d))
    if what in ("cdnow", "cli", "both"):
        with tempfile.TemporaryDirectory() as d:
            cdnow_cli(Path(d))
