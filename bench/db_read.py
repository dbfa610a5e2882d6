"""Reading a 1M-row transactions table from PostgreSQL (issue 28.1): how long the pull into DuckDB takes,
and the whole read + validation against the same rows from Parquet.

Starts its own PostgreSQL server on 127.0.0.1 (Debian's binaries, as the tests do), writes ``N`` rows
(7 columns, 100,000 customers, 2 years) with COPY, then times, ``REPEATS`` times each, interleaved:

- ``pull``: :func:`clvml.data.database.read_database` — projection, streamed Arrow batches, DuckDB table;
- ``load_dataset postgres``: read + map + validate + count, the table from PostgreSQL;
- ``load_dataset parquet``: the same, the table from a Parquet file of the same rows.

Wall time and this process's CPU time (all threads; the PostgreSQL server's own CPU is not included)
are printed: on a shared machine the CPU time is the steadier figure.

Usage: ``python bench/db_read.py [N] [REPEATS]`` (default 1,000,000 rows, 3 repeats).
"""

from __future__ import annotations

import io
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clvml.config import DataConfig, TableSource  # noqa: E402
from clvml.data.database import read_database  # noqa: E402
from clvml.data.dataset import load_dataset  # noqa: E402
from clvml.engine import connect  # noqa: E402
from tests.pgserver import pg_server  # noqa: E402


def frame(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = np.datetime64("2023-01-01T00:00:00", "us")
    return pd.DataFrame({
        "customer_id": pd.Series(rng.integers(0, 100_000, n)).map("c{:06d}".format),
        "ts": start + rng.integers(0, 730 * 86_400, n).astype("timedelta64[s]"),
        "amount": np.round(rng.gamma(2.0, 30.0, n), 2),
        "order_id": [f"o{i:08d}" for i in range(n)],
        "quantity": rng.integers(1, 6, n),
        "category": rng.choice(["books", "games", "garden", "home", "toys"], n),
        "channel": rng.choice(["web", "app", "store"], n),
    })


def main(n: int = 1_000_000, repeats: int = 3) -> None:
    df = frame(n)
    tmp = Path(tempfile.mkdtemp(prefix="clvml-dbbench-"))
    try:
        run(df, tmp, n, repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(df: pd.DataFrame, tmp: Path, n: int, repeats: int) -> None:
    df.to_parquet(tmp / "transactions.parquet", index=False)
    with pg_server() as pg:
        pg.connect().execute("CREATE DATABASE shop")
        with pg.connect("shop") as c:
            c.execute("CREATE TABLE transactions (customer_id text, ts timestamp, amount float8, order_id text, "
                      "quantity bigint, category text, channel text)")
            t = time.perf_counter()
            buf = io.StringIO()
            df.to_csv(buf, index=False, header=False)
            with c.cursor().copy("COPY transactions FROM STDIN (FORMAT csv)") as cp:
                cp.write(buf.getvalue())
            c.execute("ANALYZE transactions")
            print(f"COPY of {n:,} rows into PostgreSQL: {time.perf_counter() - t:.1f}s")
        url = pg.url("shop")
        src = TableSource(url=url, table="transactions")
        pg_cfg = DataConfig.model_validate({"tables": {"transactions": {"url": url, "table": "transactions"}}})
        pq_cfg = DataConfig.model_validate({"tables": {"transactions": {"path": str(tmp / "transactions.parquet")}}})
        steps = ("pull", "load_dataset postgres", "load_dataset parquet")
        times: dict[str, list[float]] = {s: [] for s in steps}
        cpu: dict[str, list[float]] = {s: [] for s in steps}  # this process's CPU (all its threads)
        for i in range(repeats):
            con = connect()
            t, c0 = time.perf_counter(), time.process_time()
            table = read_database(con, "transactions", src, f"pulled_{i}")
            times["pull"].append(time.perf_counter() - t)
            cpu["pull"].append(time.process_time() - c0)
            assert int(table.count().to_pyarrow().as_py()) == n
            con.disconnect()
            for name, cfg in (("load_dataset postgres", pg_cfg), ("load_dataset parquet", pq_cfg)):
                t, c0 = time.perf_counter(), time.process_time()
                ds = load_dataset(cfg, con=connect())
                times[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c0)
                assert ds.report.rows_out["transactions"] == n
                ds.con.disconnect()
    print(f"\n{n:,} rows x 7 columns, {repeats} repeats, interleaved; {platform.node()} "
          f"nproc={os.cpu_count()} load average {os.getloadavg()[0]:.1f} at the end; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("| step | wall median s | wall runs (s) | rows/s (wall median) | CPU of this process, median s |\n"
          "|---|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.2f} | {', '.join(f'{x:.2f}' for x in ts)} | {n / med:,.0f} | "
              f"{statistics.median(cpu[name]):.2f} |")
    print(f"max RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
