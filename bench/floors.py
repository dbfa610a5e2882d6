"""Benchmark: lower bounds of the feature build on this machine, measured on DuckDB directly.

Two costs that any DuckDB plan of the stacked feature table pays, whatever its shape:

* **output**: the finished table (one row per customer and cut-off, 155 columns) written as Parquet
  with each codec by DuckDB and by pyarrow, exported to Arrow (and written as Arrow IPC), and sorted;
* **aggregation**: the transaction days crossed with the 6 cut-offs, grouped per (customer, cut-off),
  with 0, 8 and 40 sums (8 metrics × 4 windows + all history), and the alternative shapes that were
  proposed for it: FILTER clauses, integer customer keys, two-stage "window bucket" sums and
  cumulative sums differenced with ASOF joins at the window boundaries.

Figures are for the 1M-transaction world; the 10M world is ten times the rows. Each shape is run
``--repeat`` times (interleaved) and every time is printed, because this VM's speed varies.

    .venv/bin/python bench/features.py --transactions 1000000 --compare-transactions 0  # once
    .venv/bin/python bench/floors.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.feather as feather
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from world import build_world  # noqa: E402

CUTOFF_DAYS = [(dt.date(2024, m, 1) - dt.date(1970, 1, 1)).days for m in range(7, 13)]
METRICS = ["orders", "spend", "ss", "refunds", "refund_amount", "discount", "margin", "purch"]
WINDOWS = [30, 90, 180, 365]
DAILY = """CREATE TABLE d AS SELECT customer_id, (ts::DATE - DATE '1970-01-01')::BIGINT AS day,
  count(*) FILTER (WHERE amount > 0)::DOUBLE AS orders,
  coalesce(sum(round(amount * 1e6)) FILTER (WHERE amount > 0), 0) AS spend,
  coalesce(sum(round(amount * amount * 1e4)) FILTER (WHERE amount > 0), 0) AS ss,
  count(*) FILTER (WHERE amount < 0)::DOUBLE AS refunds,
  coalesce(sum(round(-amount * 1e6)) FILTER (WHERE amount < 0), 0) AS refund_amount,
  coalesce(sum(round(discount * 1e6)) FILTER (WHERE amount > 0), 0) AS discount,
  coalesce(sum(round(margin * 1e6)), 0) AS margin,
  (count(*) FILTER (WHERE amount > 0) > 0)::DOUBLE AS purch
FROM tx GROUP BY ALL"""
JOINED = "(SELECT * FROM {d} CROSS JOIN cuts WHERE day < cutoff_day)"


def cross(metrics: list[str], windows: list[int], key: str = "customer_id", d: str = "d") -> str:
    """The builder's shape: 0/1 window indicators multiplied into plain sums."""
    inds = "".join(f", (day >= cutoff_day - {w})::DOUBLE AS i{w}" for w in WINDOWS)
    aggs = ["count(*) AS n", *(f"sum({m} * i{w}) AS {m}_{w}" for m in metrics for w in windows),
            *(f"sum({m}) AS {m}_all" for m in metrics)]
    return (f"SELECT {key}, cutoff_day, {', '.join(aggs)} FROM (SELECT *{inds} FROM "
            f"{JOINED.format(d=d)}) GROUP BY ALL")


def filtered() -> str:
    aggs = ["count(*) AS n", *(f"sum({m}) FILTER (WHERE day >= cutoff_day - {w}) AS {m}_{w}"
                               for m in METRICS for w in WINDOWS),
            *(f"sum({m}) AS {m}_all" for m in METRICS)]
    return f"SELECT customer_id, cutoff_day, {', '.join(aggs)} FROM {JOINED.format(d='d')} GROUP BY ALL"


def buckets() -> str:
    """Sum per (customer, cut-off, narrowest window) first, then cumulate the buckets."""
    b = "CASE " + " ".join(f"WHEN day >= cutoff_day - {w} THEN {i}" for i, w in enumerate(WINDOWS))
    first = (f"SELECT customer_id, cutoff_day, {b} ELSE {len(WINDOWS)} END AS b, "
             + ", ".join(f"sum({m}) AS {m}" for m in METRICS) + f" FROM {JOINED.format(d='d')} GROUP BY ALL")
    aggs = [*(f"sum({m} * (b <= {i})::DOUBLE) AS {m}_{w}" for m in METRICS for i, w in enumerate(WINDOWS)),
            *(f"sum({m}) AS {m}_all" for m in METRICS)]
    return f"SELECT customer_id, cutoff_day, {', '.join(aggs)} FROM ({first}) GROUP BY ALL"


def asof() -> str:
    """Running sums per customer, looked up at the cut-off and at each window start."""
    cums = ", ".join(f"sum({m}) OVER w AS c_{m}" for m in METRICS)
    sel = ["sp.customer_id", "sp.cutoff_day", *(f"a.c_{m} AS {m}_all" for m in METRICS)]
    joins = ["ASOF LEFT JOIN c a ON sp.customer_id = a.customer_id AND sp.cutoff_day > a.day"]
    for w in WINDOWS:
        joins.append(f"ASOF LEFT JOIN c b{w} ON sp.customer_id = b{w}.customer_id "
                     f"AND sp.cutoff_day - {w} > b{w}.day")
        sel += [f"a.c_{m} - coalesce(b{w}.c_{m}, 0) AS {m}_{w}" for m in METRICS]
    return (f"WITH c AS (SELECT customer_id, day, {cums} FROM d WINDOW w AS (PARTITION BY customer_id "
            "ORDER BY day ROWS UNBOUNDED PRECEDING)), sp AS (SELECT f.customer_id, cutoff_day FROM "
            "(SELECT customer_id, min(day) AS f FROM d GROUP BY 1) f CROSS JOIN cuts WHERE f < cutoff_day) "
            f"SELECT {', '.join(sel)} FROM sp {' '.join(joins)}")


def timed(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    t0 = time.perf_counter()
    con.execute(sql)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", type=Path, default=None, help="world folder (default: the 1M world)")
    ap.add_argument("--features", type=Path, default=Path("bench/out/features-world-1000000"))
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    world = args.world or build_world(1_000_000)
    print(f"# {dt.date.today()} {platform.node()} {platform.machine()} {os.cpu_count()} cpus, "
          f"duckdb {duckdb.__version__}")
    con = duckdb.connect()
    con.execute("SET threads = 2")
    tmp = Path("bench/out/floors")
    tmp.mkdir(parents=True, exist_ok=True)

    if args.features.exists():
        con.execute(f"CREATE TABLE f AS SELECT * FROM read_parquet('{args.features}/*.parquet')")
        rows, cols = con.execute("SELECT count(*) FROM f").fetchone()[0], len(con.table("f").columns)
        print(f"output: {rows:,} rows x {cols} columns")
        for _ in range(args.repeat):
            for codec in ("zstd", "snappy", "uncompressed"):
                s = timed(con, f"COPY f TO '{tmp}/out.parquet' (FORMAT parquet, COMPRESSION {codec})")
                mib = (tmp / "out.parquet").stat().st_size / 2**20
                print(f"  duckdb parquet {codec:12} {s:6.2f} s  {mib:7.0f} MiB", flush=True)
            t0 = time.perf_counter()
            table = con.execute("SELECT * FROM f").to_arrow_table()
            print(f"  duckdb -> arrow            {time.perf_counter() - t0:6.2f} s")
            for codec in ("zstd", "snappy", "none"):
                t0 = time.perf_counter()
                pq.write_table(table, tmp / "out-pa.parquet", compression=codec)
                print(f"  pyarrow parquet {codec:11} {time.perf_counter() - t0:6.2f} s", flush=True)
            t0 = time.perf_counter()
            feather.write_feather(table, tmp / "out.arrow", compression="uncompressed")
            mib = (tmp / "out.arrow").stat().st_size / 2**20
            print(f"  arrow IPC, uncompressed     {time.perf_counter() - t0:6.2f} s  {mib:7.0f} MiB")
            del table
            s = timed(con, "CREATE OR REPLACE TABLE g AS SELECT * FROM f ORDER BY cutoff, customer_id")
            print(f"  sort by (cutoff, customer) {s:6.2f} s")
            print(f"  copy without sorting       {timed(con, 'CREATE OR REPLACE TABLE g AS SELECT * FROM f'):6.2f} s")
        con.execute("DROP TABLE IF EXISTS g; DROP TABLE f")
    else:
        print(f"output: skipped ({args.features} missing: run bench/features.py first)")

    con.execute(f"CREATE TABLE tx AS SELECT * FROM read_parquet('{world}/transactions/*.parquet') "
                "ORDER BY customer_id, ts")
    con.execute("CREATE TABLE cuts AS SELECT unnest(?::BIGINT[]) AS cutoff_day", [CUTOFF_DAYS])
    con.execute(DAILY)
    con.execute("CREATE TABLE dint AS SELECT dense_rank() OVER (ORDER BY customer_id) AS cid, "
                "* EXCLUDE (customer_id) FROM d")
    joined = con.execute(f"SELECT count(*) FROM {JOINED.format(d='d')}").fetchone()[0]
    days = con.execute("SELECT count(*) FROM d").fetchone()[0]
    print(f"aggregation: {days:,} customer-days of transactions, {joined:,} joined to later cut-offs")
    shapes = {
        "cross join, count only": cross([], []),
        "cross join, 8 sums (all history)": cross(METRICS, []),
        "cross join, 40 sums (the builder's shape)": cross(METRICS, WINDOWS),
        "same, integer customer keys": cross(METRICS, WINDOWS, key="cid", d="dint"),
        "FILTER clauses instead of indicators": filtered(),
        "two-stage window buckets": buckets(),
        "running sums + 5 ASOF joins": asof(),
    }
    for _ in range(args.repeat):
        for name, sql in shapes.items():
            print(f"  {name:42} {timed(con, f'CREATE OR REPLACE TABLE r AS {sql}'):6.2f} s", flush=True)


if __name__ == "__main__":
    main()
