"""Fair benchmark of clvml's transaction features against hand-written Polars and pandas.

The competitors (``bench/competitors.py``) compute exactly the columns of
``build_features(tables, cutoffs, families=["transactions"])`` (checked by tests/test_competitors.py).
For each size (transactions in the ``bench/world.py`` Parquet world, built once and cached) and each
number of monthly cut-offs, every implementation runs in a fresh subprocess, interleaved
(clvml, clvml-raw, polars, pandas, clvml, clvml-raw, …), ``--repeats`` times. A run's time is the wall
time inside the child from before the Parquet read to the finished in-memory result (clvml: Arrow
table; Polars: DataFrame; pandas: DataFrame); its memory is the child's own peak RSS. The child's
interpreter start and imports are measured separately (``process_s``), and so is the child's CPU time
(``cpu_s_total``, user + system of all its threads, imports included: less sensitive than wall time to
other load on a shared machine).

Implementations:

* ``clvml``: ``load_dataset`` (the supported path: read, validate, materialise in DuckDB) then
  ``to_arrow(build_features(..., families=["transactions"]), ordered=False)`` (the default plan; for it
  the same as ``.to_pyarrow()``; the incremental plan's finished table comes back without an engine pass).
* ``clvml-raw``: the same ``build_features`` on ``con.read_parquet`` of the files, no validation
  (the world is already canonical): the like-for-like comparison with the competitors, which validate
  nothing; with the cross-join plan (``plan="cross_join"``, the only plan before the incremental one).
* ``clvml-inc``: ``clvml-raw`` with the incremental plan (``plan="incremental"``: running totals in
  NumPy, ``clvml/features/incremental.py``), the same bits.
* ``clvml-inc-b16``: ``clvml-inc`` in 16 customer batches (ranges of ``customer_id``, as
  ``clvml.write_features`` splits them) of the transactions read once into a DuckDB table (as
  ``load_dataset`` materialises them; the read is in the time), each
  ``to_arrow(build_features(...), ordered=False)``, concatenated in memory: the same rows, with the
  working memory of a sixteenth of the customers and DuckDB's ``memory_limit`` at 2 GB (at 10M × 6 the
  one-query runs need more than the 8 GiB a process may take on the shared machine).
* ``polars``: ``pl.scan_parquet`` → ``polars_transaction_features`` (lazy, streaming engine).
* ``pandas``: ``pd.read_parquet`` (the needed columns) → ``pandas_transaction_features``.

    python bench/fair_features.py --transactions 1000000 --cutoffs 1 6 24 --repeats 3

``--baseline DIR`` also runs every clvml implementation listed with the clvml code of another checkout
(``DIR`` first on the child's ``PYTHONPATH``), interleaved with this one's, named ``IMPL@base``: before/after
figures taken under the same load.

Cut-offs: the last N month starts up to 2025-01-01 (the world covers 2023-01-01..2024-12-31).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMPLS = ("clvml", "clvml-raw", "clvml-inc", "clvml-inc-b16", "polars", "pandas")
PLANS = {"clvml": None, "clvml-raw": "cross_join", "clvml-inc": "incremental", "clvml-inc-b16": "incremental"}
COLUMNS = ["customer_id", "ts", "amount", "quantity", "category", "channel", "discount", "margin"]


def monthly_cutoffs(n: int, last: dt.date = dt.date(2025, 1, 1)) -> list[dt.date]:
    out = []
    y, m = last.year, last.month
    for _ in range(n):
        out.append(dt.date(y, m, 1))
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    return sorted(out)


def run_one(impl: str, world: Path, n_cut: int, windows: list[int]) -> dict:
    """One measurement, in this (fresh) process."""
    cuts = monthly_cutoffs(n_cut)
    files = str(world / "transactions" / "*.parquet")
    if impl in PLANS:
        from clvml.config import DataConfig, TableSource
        from clvml.data.dataset import load_dataset
        from clvml.engine import connect
        from clvml.features import build_features

        try:
            from clvml.features import to_arrow
        except ImportError:  # a --baseline checkout from before to_arrow: the engine's export
            def to_arrow(expr, ordered=False):  # noqa: ANN001, ANN202, ARG001
                return expr.to_pyarrow()

        t0 = time.perf_counter()
        con = connect()
        if impl == "clvml":
            cfg = DataConfig(tables={"transactions": TableSource(path=world / "transactions", format="parquet")})
            tables = load_dataset(cfg, con=con).tables
        elif impl == "clvml-inc-b16":  # read once into DuckDB (as load_dataset does), then batch over the table
            con.raw_sql("SET memory_limit = '2GB'")  # DuckDB keeps freed buffers up to its limit (80 % of RAM)
            tables = {"transactions": con.create_table("transactions", con.read_parquet(files), temp=True)}
        else:
            tables = {"transactions": con.read_parquet(files)}
        read_s = time.perf_counter() - t0
        if impl == "clvml-inc-b16":
            import pyarrow as pa

            from clvml.features.writer import _range_bounds

            tx = tables["transactions"]
            bounds = _range_bounds(tx, 16)
            parts = []
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
                part = tx if lo is None else tx.filter(tx.customer_id >= lo)
                part = part if hi is None else part.filter(part.customer_id < hi)
                parts.append(to_arrow(build_features({"transactions": part}, cuts, windows=windows,
                                                 families=["transactions"], plan=PLANS[impl]), ordered=False))
            out = pa.concat_tables(parts)
            del parts
        else:
            out = to_arrow(build_features(tables, cuts, windows=windows, families=["transactions"],
                                          plan=PLANS[impl]), ordered=False)
        rows, cols = out.num_rows, out.num_columns
    elif impl == "polars":
        import polars as pl
        from competitors import polars_transaction_features

        t0 = time.perf_counter()
        out = polars_transaction_features(pl.scan_parquet(files), cuts, windows)
        read_s = None  # lazy: the scan is part of the query
        rows, cols = out.height, out.width
    elif impl == "pandas":
        import pandas as pd
        from competitors import pandas_transaction_features

        t0 = time.perf_counter()
        df = pd.read_parquet(world / "transactions", columns=COLUMNS)
        read_s = time.perf_counter() - t0
        out = pandas_transaction_features(df, cuts, windows)
        rows, cols = out.shape
    else:
        raise ValueError(impl)
    secs = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"impl": impl, "rows": rows, "columns": cols, "seconds": round(secs, 3),
            "cpu_s_total": round(ru.ru_utime + ru.ru_stime, 2),
            "read_s": None if read_s is None else round(read_s, 3),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)}


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    import duckdb
    import pandas
    versions = f"duckdb {duckdb.__version__}, pandas {pandas.__version__}"
    try:
        import polars
        versions += f", polars {polars.__version__}"
    except ImportError:
        pass
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GiB RAM, Python {platform.python_version()}, "
            f"{versions}")


def table(results: list[dict], impls: list[str]) -> str:
    lines = ["| transactions | cut-offs | rows | implementation | wall runs (s) | wall median (s) | vs fastest | "
             "CPU-s runs | CPU-s median | vs least CPU | peak RSS (GiB, median) | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["transactions"], r["cutoffs"]) for r in results})
    for n, k in keys:
        med = {}
        for impl in impls:
            rs = [r for r in results if (r["transactions"], r["cutoffs"], r["impl"]) == (n, k, impl)]
            if rs:
                med[impl] = (statistics.median(r["seconds"] for r in rs),
                             statistics.median(r["cpu_s_total"] for r in rs),
                             statistics.median(r["peak_rss_gib"] for r in rs), rs)
        fastest = min(m[0] for m in med.values())
        least = min(m[1] for m in med.values())
        for impl, (s, cpu, rss, rs) in med.items():
            runs = ", ".join(f"{r['seconds']:.1f}" for r in rs)
            cpus = ", ".join(f"{r['cpu_s_total']:.1f}" for r in rs)
            loads = ", ".join(f"{r['load']:.1f}" for r in rs if "load" in r)
            lines.append(f"| {n:,} | {k} | {rs[0]['rows']:,} | {impl} | {runs} | {s:.2f} | {s / fastest:.2f}× | "
                         f"{cpus} | {cpu:.2f} | {cpu / least:.2f}× | {rss:.2f} | {loads} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transactions", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--cutoffs", type=int, nargs="+", default=[1, 6, 24])
    ap.add_argument("--windows", type=int, nargs="+", default=[30, 90, 180, 365])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    ap.add_argument("--out", type=Path, default=HERE / "out", help="world cache and raw results")
    ap.add_argument("--baseline", type=Path, help="a checkout whose clvml runs as IMPL@base, interleaved")
    ap.add_argument("--run", nargs=3, metavar=("IMPL", "WORLD", "CUTOFFS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        sys.path.insert(0, str(HERE))
        impl, world, n_cut = args.run
        print(json.dumps(run_one(impl, Path(world), int(n_cut), args.windows)))
        return

    sys.path.insert(0, str(HERE))
    from world import build_world

    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print(f"# {stamp} {platform.node()}: {machine()}", flush=True)
    raw = args.out / f"fair-features-{stamp.replace(':', '')}.jsonl"
    raw.parent.mkdir(parents=True, exist_ok=True)
    results = []
    impls = list(args.impls)
    if args.baseline:
        impls = [v for impl in impls for v in ([impl, f"{impl}@base"] if impl in PLANS else [impl])]
    for n in args.transactions:
        world = build_world(n, args.out)
        for k in args.cutoffs:
            for rep in range(args.repeats):
                for impl in impls:  # interleaved: A B C A B C ...
                    env = dict(os.environ)
                    if impl.endswith("@base"):
                        env["PYTHONPATH"] = os.pathsep.join([str(args.baseline.resolve()),
                                                             *filter(None, [env.get("PYTHONPATH")])])
                    cmd = [sys.executable, __file__, "--run", impl.removesuffix("@base"), str(world), str(k),
                           "--windows", *map(str, args.windows)]
                    t0 = time.perf_counter()
                    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
                    if res.returncode != 0:
                        print(res.stderr[-3000:], file=sys.stderr)
                        raise SystemExit(f"{impl} failed at {n} × {k}")
                    r = json.loads(res.stdout.strip().splitlines()[-1])
                    r |= {"impl": impl, "load": round(os.getloadavg()[0], 2), "transactions": n, "cutoffs": k,
                          "repeat": rep, "process_s": round(time.perf_counter() - t0, 3)}
                    results.append(r)
                    with raw.open("a") as f:
                        f.write(json.dumps(r) + "\n")
                    print(json.dumps(r), flush=True)
            rows = {r["rows"] for r in results if (r["transactions"], r["cutoffs"]) == (n, k)}
            if len(rows) != 1:
                raise SystemExit(f"implementations disagree on the row count at {n} × {k}: {rows}")
    print()
    print(table(results, impls))
    print(f"\nraw results: {raw}")


if __name__ == "__main__":
    main()
