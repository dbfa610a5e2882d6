"""Benchmark: point-in-time feature building on the synthetic world (all four histories).

Prints wall time, events per second and peak RSS for each size. Usage:

    .venv/bin/python bench/features.py --customers 20000 100000 --cutoffs 6

Record results in bench/RESULTS.md with the date and machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import resource
import time

import pandas as pd

from clvml.data.dataset import load_dataset
from clvml.data.synthetic import simulate
from clvml.features import build_features


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def run(n: int, n_cutoffs: int, windows: list[int]) -> dict:
    world = simulate(n, "2023-01-01", "2024-12-31", cutoffs=[], seed=1)
    events = sum(len(getattr(world, t)) for t in ("transactions", "activity", "social", "after_sales"))
    ds = load_dataset(frames=world.tables())
    cuts = [dt.date(2024, 12, 1) - dt.timedelta(days=30 * i) for i in range(n_cutoffs)]
    t0 = time.perf_counter()
    feats = build_features(ds.tables, cuts, windows=windows).to_pyarrow()
    secs = time.perf_counter() - t0
    return {"customers": n, "transactions": len(world.transactions), "events": events,
            "cutoffs": n_cutoffs, "rows": feats.num_rows, "features": feats.num_columns - 2,
            "seconds": round(secs, 2), "events_per_s": int(events / secs),
            "peak_rss_gib": round(peak_rss_gib(), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, nargs="+", default=[20_000])
    ap.add_argument("--cutoffs", type=int, default=6)
    ap.add_argument("--windows", type=int, nargs="+", default=[30, 90, 180, 365])
    args = ap.parse_args()
    print(f"# {dt.date.today()} {platform.node()} {platform.processor() or platform.machine()} "
          f"python {platform.python_version()}")
    rows = [run(n, args.cutoffs, args.windows) for n in args.customers]
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
