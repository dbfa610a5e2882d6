"""Benchmark: ``clvml monitor`` on 12 monthly score partitions of 1M customers each over a 10M-row
transaction history (issue 30, item 8: target ≤ 60 s and ≤ 4 GiB peak RSS on 2 cores).

The inputs are generated, not scored (scoring 12M rows with a model would take far longer than the
monitor and is benchmarked by ``bench/scoring.py``):

* **Transactions** (``bench/out/monitor/data/transactions/part-*.parquet``): a vectorised generator
  (numpy, seeded): 1.5M customers whose first purchase is spread over 2021-01-01 .. 2024-11-30; each
  buys at its own rate (gamma-distributed across customers) until it drops out (exponential lifetime);
  amounts are lognormal. About 10M rows up to 2025-06-30, written in ten files.
* **Score partitions** (``bench/out/monitor/scores/as_of=2024-MM-01/``), in the format ``clvml score``
  writes: one ``part-0000.parquet`` (zstd, the 37 columns of a bundle with segments and top-3 reason
  codes, in their order and Arrow types) and a ``_manifest.json`` naming the model folder. For each
  as_of, 1M customers drawn among those with a purchase before it; the churn probability and expected
  value are noisy functions of the generator's truth (so the metrics are not degenerate).
* **The model folder** holds only ``clvml_meta.json`` (model version, label settings, backtest figures):
  that is all the monitor reads of a bundle.

The monitor then runs in a fresh process (``clvml monitor`` through :func:`clvml.monitoring.monitor`,
``monitoring.report`` on: the Parquet dataset, KPIs, cohorts, plots and HTML), measured for wall time,
CPU time (user + sys, the figure comparable on a shared machine) and peak RSS (``ru_maxrss``).

    .venv/bin/python bench/monitor.py            # generate once (cached), then 3 timed runs
    .venv/bin/python bench/monitor.py --runs 5
    .venv/bin/python bench/monitor.py --out /tmp/monbench --runs 0   # generate only, elsewhere
    /usr/bin/time -v .venv/bin/python bench/monitor.py --out /tmp/monbench --once   # one run, this process

Record results in bench/RESULTS.md (section "Monitoring") with the date, machine and load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

OUT = Path("bench/out/monitor")
CUSTOMERS = 1_500_000
SCORED = 1_000_000
TX_TARGET = 10_000_000
FIRST = np.datetime64("2021-01-01")
LAST_FIRST_PURCHASE = np.datetime64("2024-11-30")
END = np.datetime64("2025-06-30")  # data end: every 90-day horizon of 2024's as_ofs has matured
AS_OFS = [dt.date(2024, m, 1) for m in range(1, 13)]
VERSION = "bench-monitor-0001"
HORIZON = 90
#: the score columns of a bundle with segments and top-3 reason codes, in the order clvml score writes
#: them (see clvml/scoring/bundle.py ModelBundle.predict)
TEXT, FLOAT, INT8 = pa.large_string(), pa.float64(), pa.int8()
REASONS = ["tx_recency_days", "tx_spend_90d", "tx_spend_std_90d", "tx_tenure_days", "tx_ipt_last_rel",
           "tx_spend_mean_all", "tx_spend_max_all", "tx_orders_30d"]


def _ids(idx: np.ndarray) -> pa.Array:
    """Customer ids ``C0000001`` … as Arrow strings (vectorised)."""
    import pyarrow.compute as pc

    digits = pc.utf8_lpad(pc.cast(pa.array(idx + 1, pa.int64()), pa.string()), width=7, padding="0")
    return pc.binary_join_element_wise("C", digits, "").cast(TEXT)


def _truth(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = CUSTOMERS
    span = (LAST_FIRST_PURCHASE - FIRST).astype(int)
    first = FIRST + rng.integers(0, span, n).astype("timedelta64[D]")
    life = rng.exponential(500.0, n)  # days until the customer drops out
    rate = rng.gamma(0.9, 1.0, n)  # relative purchase rate
    return {"first": first, "life": life, "rate": rate}


def generate_transactions(folder: Path, truth: dict[str, np.ndarray], rng: np.random.Generator) -> int:
    """About ``TX_TARGET`` transactions: the first purchase, then repeat purchases uniformly over each
    customer's observed lifetime at its rate (scaled to hit the target). Returns the row count."""
    first, life, rate = truth["first"], truth["life"], truth["rate"]
    window = np.minimum(life, (END - first).astype(float))  # active days within the data
    scale = (TX_TARGET - CUSTOMERS) / float((rate * window).sum())
    repeats = rng.poisson(rate * window * scale)
    n = CUSTOMERS + int(repeats.sum())
    cust = np.concatenate([np.arange(CUSTOMERS), np.repeat(np.arange(CUSTOMERS), repeats)])
    offset = np.concatenate([np.zeros(CUSTOMERS), rng.random(n - CUSTOMERS) * np.repeat(window, repeats)])
    secs = (offset * 86400).astype("int64") + rng.integers(8 * 3600, 20 * 3600, n)
    ts = first[cust].astype("datetime64[s]") + secs.astype("timedelta64[s]")
    amount = np.round(np.exp(rng.normal(3.2, 0.7, n)), 2)
    order = np.lexsort((ts, cust))
    folder.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(np.array_split(order, 10)):
        table = pa.table({"customer_id": _ids(cust[part]), "ts": pa.array(ts[part], pa.timestamp("us")),
                          "amount": pa.array(amount[part], FLOAT)})
        pq.write_table(table, folder / f"part-{k:03d}.parquet", compression="zstd")
    return n


def _pick(rng: np.random.Generator, choices: list[str], n: int, p: list[float] | None = None) -> pa.Array:
    codes = rng.choice(len(choices), n, p=p).astype("int32")
    return pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(choices, TEXT)).cast(TEXT)


def score_partition(folder: Path, as_of: dt.date, truth: dict[str, np.ndarray], model_dir: Path,
                    rng: np.random.Generator) -> None:
    """One partition ``as_of=D`` as clvml score writes it: ``part-0000.parquet`` and ``_manifest.json``."""
    day = np.datetime64(as_of)
    known = np.flatnonzero(truth["first"] < day)
    who = np.sort(rng.choice(known, SCORED, replace=False))
    age = (day - truth["first"][who]).astype(float)
    alive = truth["life"][who] > age
    rate = truth["rate"][who]
    logit = 1.2 - 2.2 * alive - 0.6 * np.log(rate + 0.05) + rng.normal(0, 1.0, SCORED)
    p = 1 / (1 + np.exp(-logit))
    purchases = np.maximum(0.0, (1 - p) * rate * HORIZON * 0.018 * np.exp(rng.normal(0, 0.4, SCORED)))
    value = purchases * 30.0
    clv = value * 2.6
    n = SCORED
    cols: dict[str, pa.Array] = {
        "customer_id": _ids(who),
        "churn_probability": pa.array(p, FLOAT),
        "risk_band": pa.array(np.where(p > 0.7, "high", np.where(p > 0.4, "medium", "low")), TEXT),
        "expected_purchases": pa.array(purchases, FLOAT),
        "expected_value": pa.array(value, FLOAT),
        "expected_value_lo": pa.array(value * 0.2, FLOAT), "expected_value_hi": pa.array(value * 2.5, FLOAT),
        "clv": pa.array(clv, FLOAT), "clv_lo": pa.array(clv * 0.2, FLOAT), "clv_hi": pa.array(clv * 2.5, FLOAT),
        "value_tier": _pick(rng, ["high", "potential", "general", "low"], n, [0.05, 0.15, 0.4, 0.4]),
        "lifecycle_stage": _pick(rng, ["new", "active", "returning", "dormant", "churned"], n),
        "rfm_r": pa.array(rng.integers(1, 6, n), INT8), "rfm_f": pa.array(rng.integers(1, 6, n), INT8),
        "rfm_m": pa.array(rng.integers(1, 6, n), INT8),
        "rfm_code": _pick(rng, [f"{r}{f}{m}" for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)], n),
        "rfm_segment": _pick(rng, ["loyal", "lost", "at_risk", "hibernating", "about_to_sleep", "promising"], n),
        "recommended_action": _pick(rng, ["no_action", "reactivation_email", "nurture_offer", "vip_care"], n),
    }
    for task in ("churn", "value"):
        for k in (1, 2, 3):
            cols[f"{task}_reason_{k}"] = _pick(rng, REASONS, n)
            cols[f"{task}_reason_{k}_shap"] = pa.array(rng.normal(0, 0.1, n), FLOAT)
            cols[f"{task}_reason_{k}_text"] = _pick(rng, [f"reason text {i}" for i in range(40)], n)
    cols["model_version"] = pa.array(np.full(n, VERSION), TEXT)
    part = folder / f"as_of={as_of}"
    part.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), part / "part-0000.parquet", compression="zstd")
    manifest = {"as_of": str(as_of), "rows_out": n, "chunks": 1,
                "model": {"uri": str(model_dir.resolve()), "version": VERSION, "name": "bench",
                          "horizon_days": HORIZON, "run_id": None},
                "drift": {"checked": True, "top": {"churn_probability": 0.02, "tx_recency_days": 0.03}}}
    (part / "_manifest.json").write_text(json.dumps(manifest, indent=1))


def build(out: Path = OUT) -> Path:
    """The cached inputs under ``out`` (generated when missing) and the config that monitors them."""
    if (out / "_SUCCESS").exists():
        return out / "monitor.yaml"
    t0 = time.perf_counter()
    rng = np.random.default_rng(30)
    truth = _truth(rng)
    rows = generate_transactions(out / "data" / "transactions", truth, rng)
    print(f"{rows:,} transactions in {time.perf_counter() - t0:.1f} s", flush=True)
    model_dir = out / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    meta = {"name": "bench", "model_version": VERSION, "run_id": None,
            "labels": {"horizon_days": HORIZON, "churn_definition": "no_purchase", "value_target": "spend",
                       "cancellation_event": "account_closed"},
            "clv": {"periods": 4, "margin": 0.3},
            "backtest": {"test_cutoff": "2023-10-01", "churn": {"roc_auc": 0.78, "pr_auc": 0.8, "ece": 0.03},
                         "value": {"mae": 40.0, "normalized_gini": 0.55, "total_error_pct": -4.0}}}
    (model_dir / "clvml_meta.json").write_text(json.dumps(meta, indent=1))
    for day in AS_OFS:
        score_partition(out / "scores", day, truth, model_dir, rng)
        print(f"as_of={day}: {SCORED:,} scores ({time.perf_counter() - t0:.1f} s)", flush=True)
    cfg = {"name": "bench", "data": {"tables": {"transactions": {"path": "data/transactions"}}},
           "cutoffs": {"start": "2023-01-01"},
           "labels": {"horizon_days": HORIZON}, "clv": {"periods": 4, "margin": 0.3},
           "output": {"dir": "out"}, "scoring": {"out": "scores"}, "tracking": {"enabled": False},
           "monitoring": {"report": True}}
    import yaml

    (out / "monitor.yaml").write_text(yaml.safe_dump(cfg))
    (out / "_SUCCESS").write_text("ok\n")
    return out / "monitor.yaml"


def run_once(config: Path) -> dict:
    """One monitor run in this process: wall, CPU and peak RSS."""
    from clvml.config import load_config
    from clvml.monitoring import monitor

    cfg = load_config(config)
    w0, c0 = time.perf_counter(), time.process_time()
    steps: list[tuple[float, str]] = []
    result = monitor(cfg, progress=lambda m: steps.append((round(time.perf_counter() - w0, 1), m)))
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_s": round(time.perf_counter() - w0, 2), "cpu_s": round(time.process_time() - c0, 2),
            "peak_rss_mib": round(ru.ru_maxrss / 1024), "metric_rows": len(result.metrics),
            "alerts": len(result.alerts), "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT, help="where the inputs are generated (once) and read from")
    ap.add_argument("--once", action="store_true", help="one run in this process, its figures as JSON")
    args = ap.parse_args()
    config = build(args.out)
    if args.once:
        print(json.dumps(run_once(config)))
        return
    results = []
    for k in range(args.runs):
        load = os.getloadavg()[0]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
        out = subprocess.run([sys.executable, __file__, "--once", "--out", str(args.out)], capture_output=True,
                             text=True, env=env, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        r["load_before"] = round(load, 2)
        results.append(r)
        print(f"run {k + 1}: wall {r['wall_s']} s, CPU {r['cpu_s']} s, peak RSS {r['peak_rss_mib']} MiB, "
              f"load {load:.2f}", flush=True)
        for t, m in r["steps"]:
            print(f"    {t:6.1f} s  {m}")
    if not results:
        return
    med = {k: float(np.median([r[k] for r in results])) for k in ("wall_s", "cpu_s", "peak_rss_mib")}
    print(json.dumps({"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                      "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                      "python": platform.python_version(), "median": med, "runs": len(results)}))


if __name__ == "__main__":
    main()
