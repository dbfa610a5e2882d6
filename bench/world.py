"""Benchmark data: a synthetic world of a given number of transactions, written as Parquet folders.

The world is simulated in chunks of customers (each chunk its own seed and id prefix, so memory stays
bounded) and cached under ``bench/out/world-<tx>``. The simulator produces about 7 activity events per
transaction; the issue's benchmark mix is 3 other events per transaction, so activity rows are
subsampled (a seeded, documented fraction; social and after-sales are kept whole).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from clvml.datasets.synthetic import simulate
from clvml.io import atomic_write_parquet

TX_PER_CUSTOMER = 6.4  # measured on the default 2023-01-01..2024-12-31 world
CHUNK = 100_000
OTHER_PER_TX = 3.0


def build_world(n_tx: int, out: Path = Path("bench/out")) -> Path:
    """Return the folder of a cached world with about ``n_tx`` transactions (built if missing)."""
    path = out / f"world-{n_tx}"
    if (path / "_SUCCESS").exists():
        return path
    customers = int(n_tx / TX_PER_CUSTOMER)
    chunks = [min(CHUNK, customers - i) for i in range(0, customers, CHUNK)]
    for k, n in enumerate(chunks):
        w = simulate(n, "2023-01-01", "2024-12-31", cutoffs=[], seed=1000 + k, truth_paths=1)
        tables = w.tables()
        n_tx_chunk = len(tables["transactions"])
        keep = OTHER_PER_TX * n_tx_chunk - len(tables["social"]) - len(tables["after_sales"])
        act = tables["activity"]
        rng = np.random.default_rng(k)
        tables["activity"] = act[rng.random(len(act)) < max(keep, 0) / len(act)]
        for name, df in tables.items():
            df = df.copy()
            df["customer_id"] = f"K{k:03d}-" + df["customer_id"].astype(str)
            atomic_write_parquet(df, path / name / f"part-{k:03d}.parquet")
        print(f"chunk {k + 1}/{len(chunks)}: {n} customers, {n_tx_chunk} transactions", flush=True)
    (path / "_SUCCESS").write_text("ok\n")
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("transactions", type=int)
    print(build_world(ap.parse_args().transactions))
