"""CPU time, peak RSS and a hash of ``make_training_set`` on a config, for one feature plan.

    python bench/training_set.py configs/demo.yaml --plan incremental
    python bench/training_set.py configs/demo.yaml --plan cross_join

Run from the folder the config's relative paths refer to (the demo: its world in ``data/demo``, generated
on first use). The feature cache is off. Prints one JSON line; equal hashes mean equal training frames.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import time

import pandas as pd

from clvml.config import load_config
from clvml.data.loading import load_data
from clvml.modeling.training import make_training_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--plan", default="auto", choices=["auto", "cross_join", "incremental"])
    args = ap.parse_args()
    cfg = load_config(args.config)
    cfg = cfg.model_copy(update={"features": cfg.features.model_copy(update={"plan": args.plan, "cache": False})})
    ds = load_data(cfg)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    ts = make_training_set(ds, cfg)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    digest = hashlib.sha256(pd.util.hash_pandas_object(ts.frame, index=False).to_numpy().tobytes()).hexdigest()
    print(json.dumps({"plan": args.plan, "rows": len(ts.frame), "columns": ts.frame.shape[1],
                      "wall_s": round(time.perf_counter() - t0, 1),
                      "cpu_s": round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 1),
                      "max_rss_gb": round(r1.ru_maxrss * 1024 / 1e9, 2), "frame_sha256": digest[:16]}))


if __name__ == "__main__":
    main()
