"""CPU time, peak RSS and a hash of ``make_training_set`` on a config, for one feature plan; or, with
``--train``, of the whole ``clvml train`` job with its peak RSS per step and the boosters' hashes.

    python bench/training_set.py configs/demo.yaml --plan incremental
    python bench/training_set.py configs/demo.yaml --plan cross_join
    python bench/training_set.py configs/demo.yaml --train

Run from the folder the config's relative paths refer to (the demo: its world in ``data/demo``, generated
on first use). The feature cache and MLflow tracking are off. Prints one JSON line; equal hashes mean
equal training frames (``frame_sha256``) or equal trees (``boosters``: SHA-256 of each booster's
``model_to_string()``).

``--train``: ``VmRSS`` is sampled every 50 ms by a thread and attributed to the step whose progress
line came last: ``load`` (read + validate), ``feature queries`` (until the last feature batch is built),
``labels + merge`` (the rest of the training set), ``backtest`` (held-out cut-off and CLV origin),
``final fit`` and ``explain + report + export``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import threading
import time
from typing import Any

import pandas as pd

from clvml.config import load_config
from clvml.data.loading import load_data
from clvml.modeling.training import make_training_set

#: (progress line prefix, step it starts), in the order the train job reports them
STEPS = [("building point-in-time features", "feature queries"), ("training set:", "backtest"),
         ("fitting the final models", "final fit"), ("explaining the models", "explain + report + export")]


def rss_gb() -> float:
    """The process' resident set size now (``VmRSS``), in GB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) * 1024 / 1e9


class StepPeaks:
    """A progress callback that remembers the running step, and a thread sampling ``VmRSS`` every 50 ms
    into that step's peak."""

    def __init__(self) -> None:
        self.step = "load"
        self.peaks: dict[str, float] = {}
        self.batches_seen = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __call__(self, msg: str, **counts: Any) -> None:
        for prefix, step in STEPS:
            if msg.startswith(prefix):
                self.step = step
        if counts.get("step") == "feature batches":
            self.batches_seen = True
            if counts["done"] == counts["total"]:
                self._note()
                self.step = "labels + merge"

    counts = True  # clvml.console.count passes the batch counts

    def _note(self) -> None:
        rss = rss_gb()
        self.peaks[self.step] = max(self.peaks.get(self.step, 0.0), rss)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self._note()

    def __enter__(self) -> StepPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def booster_hashes(result: Any) -> dict[str, str]:
    """SHA-256 (first 16 hex digits) of ``model_to_string()`` of every fitted booster of the bundle."""
    out = {}
    churn, value = result.bundle.churn, result.bundle.value
    boosters = {"churn": churn.booster_, **{k: getattr(value, f"{k}_", None)
                                            for k in ("buy", "amount", "spend", "count")}}
    for name, est in boosters.items():
        if est is not None:
            text = est.booster_.model_to_string()
            out[name] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return out


def train(cfg: Any) -> dict[str, Any]:
    from clvml.jobs.train import return_freed_memory
    from clvml.jobs.train import train as train_job

    return_freed_memory()  # as the `clvml train` command does
    cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"enabled": False})})
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with StepPeaks() as peaks:
        result = train_job(cfg, progress=peaks)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    churn = result.summary["churn"]
    return {"mode": "train", "model_version": result.bundle.model_version, "boosters": booster_hashes(result),
            "auc": churn.get("roc_auc"), "rows": result.summary["training_rows"],
            "wall_s": round(time.perf_counter() - t0, 1),
            "cpu_s": round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 1),
            "peak_rss_gb": {k: round(v, 2) for k, v in peaks.peaks.items()},
            "max_rss_gb": round(r1.ru_maxrss * 1024 / 1e9, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config")
    ap.add_argument("--plan", default=None, choices=["auto", "cross_join", "incremental"],
                    help="features.plan (default: the config's)")
    ap.add_argument("--train", action="store_true", help="run the whole train job (tracking off)")
    ap.add_argument("--cutoffs-per-query", type=int, help="features.cutoffs_per_query (default: the config's)")
    ap.add_argument("--memory-limit", help="engine.duckdb.memory_limit, e.g. 600MB (default: the config's)")
    ap.add_argument("--threads", type=int, help="engine.duckdb.threads (default: the config's)")
    args = ap.parse_args()
    cfg = load_config(args.config)
    update: dict[str, Any] = {"cache": False}
    if args.plan:
        update["plan"] = args.plan
    if args.cutoffs_per_query:
        update["cutoffs_per_query"] = args.cutoffs_per_query
    duck = {k: v for k, v in (("memory_limit", args.memory_limit), ("threads", args.threads)) if v}
    engine = cfg.engine.model_copy(update={"duckdb": cfg.engine.duckdb.model_copy(update=duck)})
    cfg = cfg.model_copy(update={"features": cfg.features.model_copy(update=update), "engine": engine})
    if args.train:
        print(json.dumps({"plan": cfg.features.plan, **duck, **train(cfg)}))
        return
    ds = load_data(cfg)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with StepPeaks() as peaks:
        peaks.step = "feature queries"
        ts = make_training_set(ds, cfg, progress=peaks)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    digest = hashlib.sha256(pd.util.hash_pandas_object(ts.frame, index=False).to_numpy().tobytes()).hexdigest()
    print(json.dumps({"plan": cfg.features.plan, **duck, "cutoffs_per_query": cfg.features.cutoffs_per_query,
                      "rows": len(ts.frame), "columns": ts.frame.shape[1],
                      "wall_s": round(time.perf_counter() - t0, 1),
                      "cpu_s": round(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, 1),
                      "peak_rss_gb": {k: round(v, 2) for k, v in peaks.peaks.items()},
                      "max_rss_gb": round(r1.ru_maxrss * 1024 / 1e9, 2), "frame_sha256": digest[:16]}))


if __name__ == "__main__":
    main()
