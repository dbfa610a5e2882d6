"""Benchmark: the scoring job end to end (features, both models, CLV, segments, top-3 reason codes,
drift check, Parquet output) on the synthetic world, at several customer-base sizes.

The model is trained once on the demo world (``configs/demo.yaml``, tracking off) and cached in
``bench/out/score-model``. The scored worlds are the first k 100k-customer chunks of the cached
``bench/out/world-10000000`` (built by ``bench/world.py`` if missing): all four histories plus
profiles. Each size runs in a fresh process, so its peak RSS is its own.

    .venv/bin/python bench/scoring.py --customers 100000 500000 1000000

Record results in bench/RESULTS.md with the date and machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from out_of_core import replicate  # noqa: E402
from world import CHUNK, build_world  # noqa: E402

from clvml.config import load_config, parse_config  # noqa: E402

OUT = Path("bench/out")
TABLES = ("customers", "transactions", "activity", "social", "after_sales")
AS_OF = dt.date(2025, 1, 1)


def model_path() -> Path:
    path = OUT / "score-model" / "demo"
    if not (path / "MLmodel").exists():
        from clvml.jobs.train import train

        cfg = load_config("configs/demo.yaml")
        cfg.tracking.enabled = False
        cfg.output.model_dir = (OUT / "score-model").resolve()
        cfg.output.dir = (OUT / "score-model-out").resolve()
        train(cfg)
    return path


def world(customers: int) -> Path:
    """A folder per table holding links to the first ``customers / 100k`` chunks of the 10M world
    (1.56M customers); larger sizes take the first customers of the 100M world of
    ``bench/out_of_core.py`` (ten copies of it under new ids)."""
    src = build_world(10_000_000)
    k = customers // CHUNK
    path = OUT / f"score-world-{customers}"
    if k > len(list((src / "transactions").glob("part-*.parquet"))):
        return _first_customers(replicate(src, 10, OUT), customers, path)
    for t in TABLES:
        (path / t).mkdir(parents=True, exist_ok=True)
        for i in range(k):
            link = path / t / f"part-{i:03d}.parquet"
            if not link.exists():
                link.symlink_to((src / t / f"part-{i:03d}.parquet").resolve())
    return path


def _first_customers(src: Path, customers: int, path: Path) -> Path:
    """The first ``customers`` customers (in id order) of the world at ``src``, as Parquet."""
    if (path / "_SUCCESS").exists():
        return path
    import duckdb

    con = duckdb.connect()
    ids = f"read_parquet('{src}/customers/*.parquet')"
    bound = con.execute(f"SELECT customer_id FROM {ids} ORDER BY customer_id LIMIT 1 OFFSET {customers}"
                        ).fetchone()[0]
    for t in TABLES:
        (path / t).mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY (SELECT * FROM read_parquet('{src}/{t}/*.parquet') WHERE customer_id < "
                    f"'{bound}' ORDER BY customer_id) TO '{path / t / 'part-000.parquet'}' "
                    "(FORMAT parquet, COMPRESSION zstd)")
    (path / "_SUCCESS").write_text("ok\n")
    return path


def measure(path: Path, chunk: int, memory_limit: str | None = None, memory_budget: str | None = None,
            plan: str | None = None) -> dict:
    # (DuckDB spills into bench/out/spill-scoring, whether limited here or by scoring.memory_budget)
    engine = {"duckdb": {"memory_limit": memory_limit, "temp_directory": str(OUT / "spill-scoring")}}
    cfg = parse_config({"name": "bench", "engine": engine,
                        "data": {"tables": {t: {"path": str(path / t), "format": "parquet"}
                                            for t in TABLES}},
                        "cutoffs": {"start": "2024-01-01"}, "tracking": {"enabled": False},
                        "scoring": {**({"chunk_customers": chunk} if chunk else {}), "drift_stop": None,
                                    # (a key unknown before scoring.memory_budget existed: only when given)
                                    **({"memory_budget": None if memory_budget == "none" else memory_budget}
                                       if memory_budget else {})},
                        **({"features": {"plan": plan}} if plan else {}),
                        "output": {"dir": str(path.parent / f"scores-{path.name}")}})
    marks: list[tuple[float, str]] = []
    t0 = time.perf_counter()

    def progress(msg: str) -> None:
        marks.append((round(time.perf_counter() - t0, 1), msg))

    from clvml.scoring.job import score

    r = score(cfg, str(model_path().resolve()), AS_OF, progress=progress)
    total = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)  # CPU: the comparable figure when the machine is shared
    load = next(t for t, m in marks if m.startswith("scoring "))
    return {"customers": r.manifest["rows_out"], "chunks": r.manifest["chunks"],
            "events": sum(r.manifest["rows_kept"].values()), "load_validate_s": load,
            "score_s": round(total - load, 1), "total_s": round(total, 1),
            "customers_per_s": int(r.manifest["rows_out"] / total),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 1), "load_end": round(os.getloadavg()[0], 1),
            "score_psi": r.manifest["drift"]["scores"]}


def _config(path: Path, memory_limit: str | None = None):
    engine = {"duckdb": {"memory_limit": memory_limit, "temp_directory": str(OUT / "spill-scoring")}} \
        if memory_limit else "duckdb"
    return parse_config({"name": "bench", "engine": engine, "tracking": {"enabled": False},
                         "data": {"tables": {t: {"path": str(path / t), "format": "parquet"} for t in TABLES}},
                         "cutoffs": {"start": "2024-01-01"}})


def _rss_gib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024**2


def load_only(path: Path, memory_limit: str | None) -> dict:
    """Read + validate alone: CPU, peak and final RSS, what DuckDB holds in memory and on disk."""
    from clvml.data.loading import load_data

    c0 = time.process_time()
    ds = load_data(_config(path, memory_limit))
    mem = ds.con.raw_sql("SELECT sum(memory_usage_bytes), sum(temporary_storage_bytes) FROM duckdb_memory()"
                         ).fetchone()
    return {"memory_limit": memory_limit, "cpu_s": round(time.process_time() - c0, 1),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
            "rss_after_gib": round(_rss_gib(), 2), "duckdb_memory_gib": round(mem[0] / 2**30, 2),
            "duckdb_spilled_gib": round(mem[1] / 2**30, 2), "load": round(os.getloadavg()[0], 1)}


def predict_chunk(path: Path) -> dict:
    """``bundle.predict`` (the model part of a chunk) on the first 100k-customer chunk's features,
    twice (the first call also parses the trees): CPU of each call."""
    from clvml.data.loading import load_data
    from clvml.features.writer import FeatureBatches
    from clvml.scoring.bundle import load_bundle

    ds = load_data(_config(path))
    b = load_bundle(model_path().resolve())
    chunks = max(1, len(list((path / "customers").glob("*.parquet"))))  # 100k customers each
    with FeatureBatches(ds.tables, [AS_OF], windows=b.windows, families=b.families, batches=chunks,
                        custom=b.custom_names) as fb:
        feats = fb.pandas(0)
    cpu = []
    for _ in range(2):
        c0 = time.process_time()
        b.predict(feats)
        cpu.append(round(time.process_time() - c0, 2))
    return {"customers": len(feats), "predict_cpu_s": cpu, "load": round(os.getloadavg()[0], 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, nargs="+", default=[100_000, 500_000, 1_000_000])
    ap.add_argument("--chunk", type=int, default=0, help="scoring.chunk_customers (default: the config's)")
    ap.add_argument("--memory-limit", default=None, help="engine.duckdb.memory_limit, e.g. 6GB")
    ap.add_argument("--memory-budget", default=None,
                    help="scoring.memory_budget, e.g. 3GiB, or none (default: the config's, 4GiB)")
    ap.add_argument("--plan", default=None, choices=["auto", "cross_join", "incremental"],
                    help="features.plan (default: the config's, auto)")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--load-only", type=Path, metavar="WORLD", help="read + validate this world only")
    ap.add_argument("--predict-chunk", type=Path, metavar="WORLD", help="bundle.predict on its first chunk")
    args = ap.parse_args()
    if args.load_only:
        print(json.dumps(load_only(args.load_only, args.memory_limit)))
        return
    if args.predict_chunk:
        print(json.dumps(predict_chunk(args.predict_chunk)))
        return
    if args.measure:
        print(json.dumps({**measure(args.measure, args.chunk, args.memory_limit, args.memory_budget, args.plan),
                          "plan": args.plan or "auto"}))
        return
    print(f"# {dt.date.today()} {platform.node()} {platform.machine()} python {platform.python_version()}")
    model_path()
    for n in args.customers:
        # a production install has compiled bytecode; this VM sets PYTHONDONTWRITEBYTECODE, which
        # would add ~3 s of compiling imports to every run
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cmd = [sys.executable, __file__, "--measure", str(world(n)), "--chunk", str(args.chunk)]
        if args.memory_limit:
            cmd += ["--memory-limit", args.memory_limit]
        if args.memory_budget:
            cmd += ["--memory-budget", args.memory_budget]
        if args.plan:
            cmd += ["--plan", args.plan]
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if res.returncode:
            sys.exit(res.stderr[-3000:])
        print(res.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
