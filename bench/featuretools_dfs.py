"""featuretools Deep Feature Synthesis on the benchmark transactions (run in its own venv).

featuretools 1.31 does not work with pandas 3, so it lives in ``.venv-ft`` (``make bench-venv-ft``,
pinned in ``bench/requirements-featuretools.lock``). Called by ``bench/features.py``; prints one JSON
line: seconds and output shape. Same point-in-time semantics as clvml: one cut-off time per customer and
cut-off, ``training_window`` per window, primitives count/sum/mean/max/std and time since first/last.
"""

from __future__ import annotations

import json
import sys
import time

import featuretools as ft
import pandas as pd


def main(tx_path: str, cutoffs: list[str], windows: list[int]) -> None:
    tx = pd.read_parquet(tx_path, columns=["customer_id", "ts", "amount"])
    tx = tx[tx.amount > 0].reset_index(drop=True)
    tx["tx_id"] = range(len(tx))
    tx["ts"] = tx["ts"].dt.tz_localize(None) if tx["ts"].dt.tz is not None else tx["ts"]
    t0 = time.perf_counter()
    es = ft.EntitySet("bench")
    es = es.add_dataframe(dataframe_name="tx", dataframe=tx, index="tx_id", time_index="ts")
    cust = pd.DataFrame({"customer_id": tx.customer_id.unique()})
    es = es.add_dataframe(dataframe_name="customers", dataframe=cust, index="customer_id")
    es = es.add_relationship("customers", "customer_id", "tx", "customer_id")
    times = pd.to_datetime(cutoffs)
    first = tx.groupby("customer_id").ts.min()
    ct = pd.DataFrame([(c, t) for t in times for c in first.index[first < t]], columns=["customer_id", "time"])
    cols = 0
    for w in [None, *windows]:
        fm, _ = ft.dfs(entityset=es, target_dataframe_name="customers", cutoff_time=ct, max_depth=1,
                       agg_primitives=["count", "sum", "mean", "max", "std"]
                       + (["time_since_last", "time_since_first"] if w is None else []),
                       trans_primitives=[], training_window=None if w is None else f"{w} days",
                       verbose=False)
        cols += fm.shape[1]
    secs = time.perf_counter() - t0
    print(json.dumps({"seconds": round(secs, 2), "rows": len(ct), "features": cols,
                      "transactions": len(tx)}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2].split(","), [int(w) for w in sys.argv[3].split(",")])
