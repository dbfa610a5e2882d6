"""The scheduled scoring job: features as of a date → churn, value, CLV, segments, reasons → output.

Guarantees (each tested):

- **Atomic and idempotent.** A run writes its parts to a temporary folder; only when every chunk has
  been scored and the drift check passed is the folder renamed onto ``<out>/as_of=YYYY-MM-DD`` (or
  inserted into the database table in one transaction that first deletes that as_of). A crash leaves
  the previous output untouched; re-running the same inputs gives byte-identical Parquet files.
- **One writer per as_of.** A lock file serialises concurrent runs of the same as_of.
- **Bounded memory.** Customers are scored in hash-partitioned chunks of ``scoring.chunk_customers``.
- **Drift stop.** The population stability index of every feature and score against the training
  snapshot is computed; above ``scoring.drift_stop`` the run fails with exit code 4 and writes nothing.
- **Manifest.** ``_manifest.json`` beside the Parquet files (or a row of ``<table>_manifests``):
  rows in and out, customers skipped and why, model URI and version, data range, runtime, drift.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clvml._version import __version__
from clvml.config import Config
from clvml.data.dataset import Dataset
from clvml.errors import DriftError, LockError, ModelIncompatibleError
from clvml.features.builder import feature_specs
from clvml.features.query import day_of
from clvml.features.writer import FeatureBatches
from clvml.io import OutputError, atomic_write_json, replace_dir, staging_dir
from clvml.scoring.bundle import SCORE_COLUMNS, ModelBundle, load_bundle
from clvml.scoring.drift import add_counts

Progress = Callable[[str], None]


@dataclass
class ScoreResult:
    """What a scoring run wrote."""

    target: str  # partition folder or database table
    manifest: dict[str, Any]


def resolve_model(cfg: Config, uri: str) -> tuple[ModelBundle, dict[str, Any]]:
    """Load a bundle from a folder, ``runs:/…`` or ``models:/name@alias`` (using the config's tracking
    store) and describe where it came from."""
    info: dict[str, Any] = {"uri": uri}
    if "://" in uri or uri.startswith(("runs:/", "models:/")):
        from clvml.tracking import using_tracking

        with using_tracking(cfg) as tracking:
            bundle = load_bundle(uri)
            info["tracking_uri"] = tracking
            if uri.startswith("models:/"):
                info["registry_version"] = _registry_version(uri)
    else:
        bundle = load_bundle(Path(uri).resolve())
    info.update(name=bundle.name, version=bundle.model_version, clvml_version=bundle.clvml_version,
                trained_cutoffs=[str(c) for c in bundle.trained_cutoffs])
    return bundle, info


def _registry_version(uri: str) -> str | None:
    from mlflow import MlflowClient

    ref = uri.removeprefix("models:/")
    client = MlflowClient()
    if "@" in ref:
        name, alias = ref.split("@", 1)
        return str(client.get_model_version_by_alias(name, alias).version)
    parts = ref.split("/")
    return parts[1] if len(parts) > 1 else None


def check_schema(bundle: ModelBundle, ds: Dataset) -> None:
    """Fail before any work if these tables cannot produce the features the model was trained on."""
    have = {s.name for s in feature_specs(ds.tables, bundle.windows, bundle.families)}
    if bundle.btyd_features:
        have |= {s.name for s in bundle.specs if s.family == "btyd"}
    missing = [s for s in bundle.specs if s.name not in have]
    if not missing:
        return
    by_source: dict[str, list[str]] = {}
    for s in missing:
        by_source.setdefault(s.source, []).append(s.name)
    detail = "; ".join(
        f"{src}: {len(names)} feature(s) such as {', '.join(names[:3])}"
        + ("" if src in ds.tables else f" (the {src} table is not configured)")
        for src, names in by_source.items())
    raise ModelIncompatibleError(
        f"the data cannot produce {len(missing)} of the {len(bundle.specs)} features the model was "
        f"trained on ({detail}). Configure the same tables and columns as in training, or retrain on "
        f"this data")


@contextmanager
def output_lock(path: Path, timeout_s: float) -> Iterator[None]:
    """Exclusive lock on ``path`` (a lock file); waits up to ``timeout_s`` then raises LockError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with open(path, "a+") as fh:  # closing releases the lock; the file stays (removing it would race)
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "unknown"
                    raise LockError(f"another scoring run holds {path} ({holder}); wait for it to "
                                    "finish, or raise scoring.lock_timeout_s") from None
                time.sleep(0.2)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}\n")
        fh.flush()
        yield


def population(ds: Dataset, as_of: dt.date) -> dict[str, int]:
    """Customers scored as of the date and those skipped, by reason."""
    tx = ds.tables["transactions"]
    cut = (as_of - dt.date(1970, 1, 1)).days
    first = tx.group_by("customer_id").aggregate(first=day_of(tx.ts).min())
    row = first.aggregate(scored=(first["first"] < cut).sum(),
                          not_yet=(first["first"] >= cut).sum()).to_pyarrow().to_pylist()[0]
    out = {"scored": int(row["scored"] or 0),
           "skipped_first_transaction_on_or_after_as_of": int(row["not_yet"] or 0)}
    if "customers" in ds.tables:
        c = ds.tables["customers"]
        out["skipped_profile_without_transactions"] = int(
            c.anti_join(first, "customer_id").count().to_pyarrow().as_py())
    return out


def _remove_stale(parent: Path, as_of: dt.date) -> int:
    """Remove temporary folders left by killed runs of this as_of (safe: we hold its lock)."""
    if not parent.is_dir():
        return 0
    stale = [p for p in parent.glob(f".as_of={as_of}.*.tmp") if p.is_dir()]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return len(stale)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prefetched(make: Callable[[int], Any], n: int) -> Iterator[Any]:
    """``make(0) … make(n - 1)`` in order, each computed in a background thread while the caller works
    on the previous one (features of the next chunk run in DuckDB, which releases the GIL, while the
    models score this one). At most one result waits; an error in ``make`` is raised here."""
    if n <= 1:
        yield from (make(i) for i in range(n))
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="clvml-features") as pool:
        nxt = pool.submit(make, 0)
        for i in range(n):
            cur = nxt.result()
            if i + 1 < n:
                nxt = pool.submit(make, i + 1)
            try:
                yield cur
            except GeneratorExit:
                nxt.cancel()
                raise
            del cur


def score_chunks(bundle: ModelBundle, ds: Dataset, as_of: dt.date, folder: Path, chunks: int,
                 progress: Progress) -> tuple[int, dict[str, Any] | None]:
    """Score every customer batch into ``folder/part-NNNN.parquet``; return rows written and the drift
    counts summed over the batches."""
    btyd = None
    if bundle.btyd_features:  # population-level models: fitted once on everyone, merged per chunk
        from clvml.modeling.training import btyd_table

        btyd = btyd_table(ds, [as_of], bundle.horizon_days)
    rows, counts = 0, None
    with FeatureBatches(ds.tables, [as_of], windows=bundle.windows, families=bundle.families,
                        batches=chunks) as batches:
        for b, feats in enumerate(prefetched(batches.pandas, chunks)):
            if btyd is not None:
                from clvml.modeling.training import merge_btyd

                feats = merge_btyd(feats, btyd)
            if feats.empty:
                continue
            scores = bundle.predict(feats)
            if bundle.reference is not None:
                snap = pd.concat([feats[bundle.feature_columns].reset_index(drop=True),
                                  scores[SCORE_COLUMNS]], axis=1)
                counts = add_counts(counts, bundle.reference.counts(snap))
            scores = scores.sort_values("customer_id", kind="mergesort").reset_index(drop=True)
            pq.write_table(pa.Table.from_pandas(scores, preserve_index=False),
                           folder / f"part-{b:04d}.parquet", compression="zstd")
            rows += len(scores)
            progress(f"chunk {b + 1}/{chunks}: {len(scores):,} customers scored ({rows:,} so far)")
    return rows, counts


def drift_summary(bundle: ModelBundle, counts: dict[str, Any] | None, cfg: Config) -> dict[str, Any]:
    """PSI per column against the training snapshot, the warnings, and whether to stop."""
    sc = cfg.scoring
    if bundle.reference is None or counts is None:
        return {"checked": False}
    psi = bundle.reference.psi(counts).dropna()
    judged = psi if sc.drift_columns == "all" else psi[psi.index.isin(SCORE_COLUMNS)]
    return {
        "checked": True,
        "warn_threshold": sc.drift_warn, "stop_threshold": sc.drift_stop,
        "scores": {c: round(float(psi[c]), 4) for c in SCORE_COLUMNS if c in psi},
        "max_feature_psi": round(float(psi.drop(SCORE_COLUMNS, errors="ignore").max()), 4)
        if len(psi) > len(SCORE_COLUMNS) else None,
        "warnings": {c: round(float(v), 4) for c, v in psi[psi > sc.drift_warn].items()},
        "stop": bool(sc.drift_stop is not None and (judged > sc.drift_stop).any()),
        "top": {c: round(float(v), 4) for c, v in psi.head(10).items()},
    }


def score(cfg: Config, model: str, as_of: dt.date, *, out: Path | None = None, database: str | None = None,
          table: str | None = None, ds: Dataset | None = None,
          progress: Progress = lambda _: None) -> ScoreResult:
    """Score every customer as of ``as_of`` and write the result (see the module docstring).

    Parameters
    ----------
    cfg
        Config: data sources, ``scoring`` settings and the tracking store for ``runs:/``/``models:/``.
    model
        Bundle folder, ``runs:/<run>/model`` or ``models:/<name>@<alias>``.
    as_of
        Prediction date: only events strictly before it are used.
    out, database, table
        Override ``scoring.out`` (Parquet root) or ``scoring.database``/``scoring.table``.
    ds
        Already loaded data (default: read and validate the config's sources).
    """
    t0 = time.perf_counter()
    sc = cfg.scoring
    database = database or sc.database
    table = table or sc.table
    if table is not None:
        from clvml.config import _check_identifier

        try:
            _check_identifier(table, "table name")
        except ValueError as exc:
            raise OutputError(str(exc)) from None
    bundle, model_info = resolve_model(cfg, model)
    progress(f"model {model_info['version']} (clvml {model_info['clvml_version']}) from {model}")
    url = None
    if database:
        db_path = Path(database.removeprefix("duckdb://")) if database.startswith("duckdb://") or \
            "://" not in database else None
        if db_path is None:  # another Ibis backend: lock and stage locally
            url = database
            key = hashlib.sha256(f"{url}|{table}".encode()).hexdigest()[:16]
            db_path = Path(cfg.output.dir) / f"scores-{key}"
            db_path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = db_path.with_name(f".{db_path.name}.{table}.as_of={as_of}.lock")
        target = f"{_redact(url) if url else db_path}:{table}"
    else:
        root = Path(out or sc.out or Path(cfg.output.dir) / "scores")
        lock_path = root / f".as_of={as_of}.lock"
        target = str(root / f"as_of={as_of}")
    with output_lock(lock_path, sc.lock_timeout_s):
        if ds is None:
            from clvml.data.loading import load_data

            ds = load_data(cfg, progress)
        check_schema(bundle, ds)
        pop = population(ds, as_of)
        chunks = max(1, math.ceil(pop["scored"] / sc.chunk_customers))
        progress(f"scoring {pop['scored']:,} customers as of {as_of} in {chunks} chunk(s)")
        parent = Path(target).parent if not database else db_path.parent
        stale = _remove_stale(parent, as_of)
        with staging_dir(parent, f".as_of={as_of}.", target) as tmp:
            if ds.con.name == "pyspark":
                from clvml.scoring.spark import score_partitions

                rows, counts = score_partitions(bundle, ds, as_of, tmp, SCORE_COLUMNS, progress)
            else:
                rows, counts = score_chunks(bundle, ds, as_of, tmp, chunks, progress)
            drift = drift_summary(bundle, counts, cfg)
            for col, v in drift.get("warnings", {}).items():
                progress(f"drift warning: PSI {v:.3f} for {col}")
            lo, hi = ds.date_range()
            manifest = {
                "as_of": str(as_of), "target": target, "clvml_version": __version__, "model": model_info,
                "rows_in": dict(ds.report.rows_in), "rows_kept": dict(ds.report.rows_out),
                "rows_dropped": {t: d for t, d in ds.report.dropped.items() if d},
                "customers": pop, "rows_out": rows, "chunks": chunks,
                "stale_temp_folders_removed": stale,
                "data_range": {"first": str(lo), "last": str(hi)},
                "files": {p.name: {"rows": pq.ParquetFile(p).metadata.num_rows, "sha256": _sha256(p)}
                          for p in sorted(tmp.glob("part-*.parquet"))},
                "drift": drift,
                "seconds": round(time.perf_counter() - t0, 2),
            }
            if drift.get("stop"):
                worst = {c: v for c, v in drift["top"].items() if v > sc.drift_stop}
                raise DriftError(
                    f"drift above scoring.drift_stop={sc.drift_stop}: PSI {worst}; nothing was written. "
                    "Check the input data for a broken feed; if the change is real, retrain, or raise "
                    "scoring.drift_stop")
            atomic_write_json(manifest, tmp / "_manifest.json")
            if url:
                _write_ibis(url, table, tmp, as_of, manifest)
            elif database:
                _write_duckdb(db_path, table, tmp, as_of, manifest)
            else:
                replace_dir(tmp, Path(target))
    progress(f"wrote {rows:,} rows to {target} in {manifest['seconds']:.1f}s")
    return ScoreResult(target, manifest)


def _write_duckdb(db_path: Path, table: str, parts: Path, as_of: dt.date, manifest: dict) -> None:
    """Replace the as_of's rows of ``table`` (and its manifest row) in one transaction."""
    import json

    import duckdb

    ident = '"' + table.replace('"', '""') + '"'
    mident = '"' + f"{table}_manifests".replace('"', '""') + '"'
    glob = str(parts / "part-*.parquet")
    has_rows = any(parts.glob("part-*.parquet"))
    try:
        con = duckdb.connect(str(db_path))
    except duckdb.Error as exc:
        raise OutputError(f"cannot open DuckDB database {db_path}: {exc}") from None
    try:
        con.execute("BEGIN TRANSACTION")
        if has_rows:
            con.execute(f"CREATE TABLE IF NOT EXISTS {ident} AS SELECT * FROM read_parquet(?) LIMIT 0",
                        [glob])
        con.execute(f"CREATE TABLE IF NOT EXISTS {mident} (as_of DATE, manifest JSON)")
        if has_rows or _exists(con, table):
            con.execute(f"DELETE FROM {ident} WHERE as_of = ?", [as_of])
        con.execute(f"DELETE FROM {mident} WHERE as_of = ?", [as_of])
        if has_rows:
            con.execute(f"INSERT INTO {ident} BY NAME SELECT * FROM read_parquet(?)", [glob])
        con.execute(f"INSERT INTO {mident} VALUES (?, ?)", [as_of, json.dumps(manifest, default=str)])
        con.execute("COMMIT")
    except duckdb.Error as exc:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        raise OutputError(f"writing table {table} in {db_path} failed: {exc}; the table is unchanged "
                          "(if the columns differ from an earlier run, drop the table or use a new "
                          "scoring.table)") from None
    finally:
        con.close()


def _redact(url: str) -> str:
    """A connection URL without its password (for logs and manifests)."""
    import re

    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def _write_ibis(url: str, table: str, parts: Path, as_of: dt.date, manifest: dict) -> None:
    """Replace the as_of's rows of ``table`` (and its manifest row) in a database reached through Ibis
    (``ibis.connect(url)``, e.g. ``sqlite:///scores.db`` or ``postgres://…``).

    The rows are first loaded into staging tables; then one transaction deletes the as_of's old rows and
    copies the new ones in, so readers see the old or the new scores. The backend must run plain SQL
    (``raw_sql``) with BEGIN/COMMIT; tested with SQLite.
    """
    import json

    import ibis
    import sqlglot as sg

    try:
        con = ibis.connect(url)
    except Exception as exc:  # noqa: BLE001 - any driver error: report it as an output error
        raise OutputError(f"cannot connect to {_redact(url)}: {exc}") from None
    dialect = con.name
    files = sorted(parts.glob("part-*.parquet"))
    rows = pa.concat_tables([pq.read_table(p) for p in files]) if files else None
    uid = os.urandom(5).hex()
    names = {"rows": f"{table}__clvml_{uid}", "man": f"{table}_manifests__clvml_{uid}"}
    mtable = f"{table}_manifests"
    q = {n: sg.to_identifier(n, quoted=True).sql(dialect) for n in (table, mtable, *names.values())}
    day = f"'{as_of.isoformat()}'"  # a date, never user text
    man = pa.table({"as_of": pa.array([as_of], pa.date32()),
                    "manifest": [json.dumps(manifest, default=str)]})
    try:
        existing = set(con.list_tables())
        stmts = ["BEGIN"]
        if rows is not None:
            con.create_table(names["rows"], rows)
            if table not in existing:
                con.create_table(table, schema=con.table(names["rows"]).schema())
            cols = ", ".join(sg.to_identifier(c, quoted=True).sql(dialect) for c in rows.column_names)
        if table in existing or rows is not None:
            stmts.append(f"DELETE FROM {q[table]} WHERE as_of = {day}")
        if rows is not None:
            stmts.append(f"INSERT INTO {q[table]} ({cols}) SELECT {cols} FROM {q[names['rows']]}")
        con.create_table(names["man"], man)
        if mtable not in existing:
            con.create_table(mtable, schema=con.table(names["man"]).schema())
        stmts += [f"DELETE FROM {q[mtable]} WHERE as_of = {day}",
                  f"INSERT INTO {q[mtable]} (as_of, manifest) SELECT as_of, manifest FROM {q[names['man']]}",
                  "COMMIT"]
        try:
            for stmt in stmts:
                _run_sql(con, stmt)
        except Exception:
            with contextlib.suppress(Exception):
                _run_sql(con, "ROLLBACK")
            raise
    except OutputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise OutputError(f"writing table {table} at {_redact(url)} failed: {exc}; its rows for {as_of} "
                          "are unchanged (if the columns differ from an earlier run, drop the table or "
                          "use a new scoring.table)") from None
    finally:
        for n in names.values():
            with contextlib.suppress(Exception):
                con.drop_table(n, force=True)
        with contextlib.suppress(Exception):
            con.disconnect()


def _run_sql(con, stmt: str) -> None:
    res = con.raw_sql(stmt)
    if hasattr(res, "close"):
        res.close()


def _exists(con, table: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                            [table]).fetchone()[0])
