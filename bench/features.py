"""Benchmark: point-in-time feature building on the synthetic world (all four histories).

For each size (transactions; plus 3 other events per transaction) it prints, from a fresh process so
peak memory is that run's own: validation+load time, feature-build wall time (all families, 4 windows +
all history, 6 monthly cut-offs stacked), events per second and peak RSS. Then, on a smaller slice, it
compares the same transaction features computed by clvml, by the plain pandas reference
(``clvml.features.reference``) and by featuretools DFS (if ``.venv-ft`` exists: ``make bench-venv-ft``).

    .venv/bin/python bench/features.py --transactions 1000000 10000000

Record results in bench/RESULTS.md with the date and machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from world import build_world  # noqa: E402

from clvml.config import DataConfig, TableSource  # noqa: E402
from clvml.data.dataset import load_dataset  # noqa: E402
from clvml.engine import connect  # noqa: E402
from clvml.features import build_features, write_features  # noqa: E402
from clvml.features.reference import reference_features  # noqa: E402
from clvml.features.writer import ROWS_PER_BATCH, FeatureBatches  # noqa: E402

CUTOFFS = [dt.date(2024, m, 1) for m in range(7, 13)]
TABLES = ("customers", "transactions", "activity", "social", "after_sales")


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def measure(path: Path, windows: list[int], memory_limit: str | None, batches: int | None,
            plan: str | None = None, to: str = "parquet") -> dict:
    con = connect(memory_limit=memory_limit, temp_directory=str(path.parent / "spill"))
    cfg = DataConfig(tables={t: TableSource(path=path / t, format="parquet") for t in TABLES})
    t0 = time.perf_counter()
    ds = load_dataset(cfg, con=con)
    load_s = time.perf_counter() - t0
    events = {t: ds.tables[t].count().execute() for t in TABLES[1:]}
    c0, t0 = _cpu(), time.perf_counter()
    table_gib = None
    if to in ("memory", "table"):  # every batch built to an in-memory Arrow table: released after counting
        # it ("memory"), or all kept as one training table ("table": the batches concatenated, not copied)
        # default: as many batches as write_features makes
        n_batches = batches or max(1, math.ceil(ds.tables["transactions"].customer_id.nunique().execute()
                                                * len(CUTOFFS) / ROWS_PER_BATCH))
        rows = columns = 0
        kept = []
        with FeatureBatches(ds.tables, CUTOFFS, windows=windows, batches=n_batches, plan=plan) as fb:
            for b in range(n_batches):
                t = fb.arrow(b)
                rows, columns = rows + t.num_rows, t.num_columns
                if to == "table":
                    kept.append(t)
                del t
        if to == "table":
            import pyarrow as pa

            table = pa.concat_tables(kept)
            del kept
            table_gib = round(table.nbytes / 2**30, 2)
    else:
        # written to Parquet in customer batches, as a user would at this size: the stacked table itself
        # is ~1.2e9 values at 10M transactions and does not fit the memory target in one piece
        res = write_features(ds.tables, CUTOFFS, path.parent / f"features-{path.name}", windows=windows,
                             batches=batches, plan=plan)
        rows, columns, n_batches = res.rows, res.columns, res.batches
    secs = time.perf_counter() - t0
    total = sum(events.values())
    return {"transactions": events["transactions"], "other_events": total - events["transactions"],
            "to": to, "rows": rows, "features": columns - 2, "batches": n_batches,
            "features_cpu_s": round(_cpu() - c0, 1),
            "load_s": round(load_s, 1),
            "features_s": round(secs, 1), "events_per_s": int(total / secs),
            "peak_rss_gib": round(peak_rss_gib(), 2), "table_gib": table_gib, "plan": plan or "default",
            "cpu_s_total": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 1)}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def breakdown(path: Path, windows: list[int], plan: str | None) -> dict:
    """CPU-s and wall-s of each family's part alone (executed to an in-memory Arrow table), then of the whole
    build to an in-memory Arrow table, in one process (the families share the loaded tables)."""
    from clvml.features import activity, after_sales, profile, social, transactions
    from clvml.features.builder import as_cutoffs, cutoff_table
    from clvml.features.query import day_of

    con = connect(temp_directory=str(path.parent / "spill"))
    cfg = DataConfig(tables={t: TableSource(path=path / t, format="parquet") for t in TABLES})
    c0, t0 = _cpu(), time.perf_counter()
    ds = load_dataset(cfg, con=con)
    out: dict = {"load": (round(_cpu() - c0, 1), round(time.perf_counter() - t0, 1))}
    tab = ds.tables
    cuts = cutoff_table(as_cutoffs(CUTOFFS))
    tx = tab["transactions"]
    first = tx.group_by("customer_id").aggregate(_first=day_of(tx.ts).min())
    spine = first.cross_join(cuts).filter(first._first < cuts.cutoff_day).select("customer_id", "cutoff_day")
    parts = {
        "transactions": lambda: transactions.build(tx, cuts, windows, plan),
        "activity": lambda: activity.build(tab["activity"], cuts, windows, plan),
        "social": lambda: social.build(tab["social"], cuts, windows, plan),
        "after_sales": lambda: after_sales.build(tab["after_sales"], cuts, windows, plan),
        "profile": lambda: profile.build(tab["customers"], spine),
    }
    for name, make in parts.items():
        c0, t0 = _cpu(), time.perf_counter()
        res = make().to_pyarrow()
        out[name] = (round(_cpu() - c0, 1), round(time.perf_counter() - t0, 1), res.num_rows, res.num_columns)
        del res
    c0, t0 = _cpu(), time.perf_counter()
    res = build_features(tab, CUTOFFS, windows=windows, plan=plan).to_pyarrow()
    out["full_build_to_arrow"] = (round(_cpu() - c0, 1), round(time.perf_counter() - t0, 1), res.num_rows,
                                  res.num_columns, round(res.nbytes / 2**30, 2))
    out["peak_rss_gib"] = round(peak_rss_gib(), 2)
    return out


def compare(path: Path, n_tx: int, windows: list[int], ft_python: Path) -> dict:
    """clvml vs pandas reference vs featuretools on the transaction features of ~n_tx transactions."""
    tx = pd.read_parquet(path / "transactions")
    ids = tx.customer_id.drop_duplicates().iloc[: int(n_tx / 6.4)]
    tx = tx[tx.customer_id.isin(ids)].reset_index(drop=True)
    sub = path.parent / f"compare-{n_tx}.parquet"
    tx.to_parquet(sub)
    out = {"transactions": len(tx)}
    ds = load_dataset(frames={"transactions": tx})
    t0 = time.perf_counter()
    build_features(ds.tables, CUTOFFS, windows=windows, families=["transactions"]).to_pyarrow()
    out["clvml_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    reference_features({"transactions": tx}, CUTOFFS, windows)
    out["pandas_s"] = round(time.perf_counter() - t0, 2)
    if ft_python.exists():
        res = subprocess.run([str(ft_python), str(Path(__file__).parent / "featuretools_dfs.py"), str(sub),
                              ",".join(map(str, CUTOFFS)), ",".join(map(str, windows))],
                             capture_output=True, text=True, check=True)
        out["featuretools_s"] = json.loads(res.stdout.strip().splitlines()[-1])["seconds"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--transactions", type=int, nargs="*", default=[1_000_000])
    ap.add_argument("--windows", type=int, nargs="+", default=[30, 90, 180, 365])
    ap.add_argument("--compare-transactions", type=int, default=100_000)
    ap.add_argument("--featuretools-python", type=Path, default=Path(".venv-ft/bin/python"))
    ap.add_argument("--memory-limit", default=None, help="DuckDB memory_limit, e.g. 6GB")
    ap.add_argument("--batches", type=int, default=None, help="customer batches (default: automatic)")
    ap.add_argument("--plan", default=None, choices=["auto", "cross_join", "incremental"],
                    help="features plan (default: clvml's default, auto)")
    ap.add_argument("--to", default="parquet", choices=["parquet", "memory", "table"],
                    help="write the features to Parquet (write_features), build each batch to an in-memory "
                         "Arrow table (FeatureBatches.arrow) released once counted (memory), or keep them all "
                         "as one in-memory training table (table)")
    ap.add_argument("--breakdown", action="store_true",
                    help="CPU/wall of each family alone and of the whole build to memory (one process)")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.windows, args.memory_limit, args.batches, args.plan, args.to)))
        return
    if args.breakdown:
        for n in args.transactions:
            print(json.dumps({"transactions": n, "plan": args.plan or "default",
                              **breakdown(build_world(n), args.windows, args.plan)}), flush=True)
        return
    print(f"# {dt.date.today()} {platform.node()} {platform.machine()} python {platform.python_version()}")
    rows = []
    for n in args.transactions:
        path = build_world(n)
        cmd = [sys.executable, __file__, "--measure", str(path), "--windows", *map(str, args.windows)]
        if args.memory_limit:
            cmd += ["--memory-limit", args.memory_limit]
        if args.batches:
            cmd += ["--batches", str(args.batches)]
        if args.plan:
            cmd += ["--plan", args.plan]
        cmd += ["--to", args.to]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if rows:
        print(pd.DataFrame(rows).to_string(index=False))
    if args.compare_transactions:
        cmp = compare(build_world(1_000_000), args.compare_transactions, args.windows, args.featuretools_python)
        print("same transaction features:", json.dumps(cmp))


if __name__ == "__main__":
    main()
