"""Out-of-core benchmark: the DuckDB engine on a history larger than its memory limit.

The 10M-transaction benchmark world (``bench/world.py``) is replicated ``--copies`` times under new
customer ids (``R<k>-<id>``) into on-disk Parquet, giving 100M transactions and the matching activity,
social and after-sales events by default. The data is then read, validated and turned into features
for one cut-off (as a scoring run would) with DuckDB capped at ``--memory-limit`` and spilling to
``--spill``; wall time, peak RSS of the process and the largest size of the spill folder are printed as
JSON.

Replicating keeps generation to a minute instead of hours of simulation; every customer's history is
a real simulated history, and features depend on one customer's history only, so the work per
customer is what a 100M-transaction world of distinct customers would cost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import sys
import threading
import time
from pathlib import Path

import duckdb

from clvml.config import EngineConfig
from clvml.data.dataset import load_dataset
from clvml.engine import connect_engine
from clvml.features import write_features

sys.path.insert(0, str(Path(__file__).resolve().parent))

from world import build_world  # noqa: E402

TABLES = ("transactions", "customers", "activity", "social", "after_sales")
CUTOFF = dt.date(2024, 12, 1)


def replicate(src: Path, copies: int, out: Path) -> Path:
    """``copies`` copies of the world at ``src`` with distinct customer ids, as Parquet folders."""
    path = out / f"{src.name}-x{copies}"
    if (path / "_SUCCESS").exists():
        return path
    con = duckdb.connect()
    for name in TABLES:
        (path / name).mkdir(parents=True, exist_ok=True)
        for k in range(copies):
            target = path / name / f"part-{k:03d}.parquet"
            con.execute(f"COPY (SELECT * REPLACE ('R{k}-' || customer_id AS customer_id) "
                        f"FROM read_parquet('{src / name}/*.parquet') ORDER BY customer_id) "
                        f"TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
        print(f"{name}: {copies} copies", flush=True)
    (path / "_SUCCESS").write_text("ok\n")
    return path


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def measure(world: Path, memory_limit: str, spill: Path, threads: int | None) -> dict:
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    peak_spill, done = [0], threading.Event()

    def watch() -> None:
        while not done.wait(1.0):
            peak_spill[0] = max(peak_spill[0], _du(spill))

    threading.Thread(target=watch, daemon=True).start()
    engine = EngineConfig.model_validate({"backend": "duckdb", "duckdb": {
        "memory_limit": memory_limit, "temp_directory": str(spill), "threads": threads}})
    con = connect_engine(engine)
    from clvml.config import DataConfig, TableSource

    cfg = DataConfig(tables={t: TableSource(path=world / t, format="parquet") for t in TABLES})
    t0 = time.perf_counter()
    ds = load_dataset(cfg, con=con)
    load_s = time.perf_counter() - t0
    print(f"loaded and validated in {load_s:.0f}s: {ds.report.rows_out}", flush=True)
    t1 = time.perf_counter()
    res = write_features(ds.tables, [CUTOFF], world.parent / f"features-{world.name}")
    feat_s = time.perf_counter() - t1
    done.set()
    events = sum(ds.report.rows_out.get(t, 0) for t in TABLES if t != "customers")
    return {
        "date": dt.date.today().isoformat(), "machine": f"{os.cpu_count()} cores",
        "memory_limit": memory_limit, "threads": threads,
        "transactions": ds.report.rows_out["transactions"], "events": events,
        "customers": ds.report.rows_out.get("customers"), "feature_rows": res.rows,
        "features": res.columns - 2, "batches": res.batches,
        "load_validate_s": round(load_s, 1), "features_s": round(feat_s, 1),
        "total_s": round(load_s + feat_s, 1), "events_per_s": int(events / (load_s + feat_s)),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "peak_spill_gib": round(peak_spill[0] / 1024**3, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base-transactions", type=int, default=10_000_000)
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--memory-limit", default="4GB")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--spill", type=Path, default=Path("bench/out/spill"))
    args = ap.parse_args()
    out = Path("bench/out")
    world = replicate(build_world(args.base_transactions, out), args.copies, out)
    print(json.dumps(measure(world, args.memory_limit, args.spill, args.threads)), flush=True)


if __name__ == "__main__":
    main()
