"""The scheduled scoring job: features as of a date → churn, value, CLV, segments, reasons → output.

Guarantees (each tested; docs/guide/scoring.md says what a reader gets):

- **Atomic and idempotent.** A run scores into a staging folder in the work folder beside the Parquet
  root (``.<root>.clvml-work``), writes the chunks into one data file and, only when every chunk has
  been scored and the drift and shrink checks passed, puts it in place: a new partition folder is
  renamed into ``<out>/as_of=YYYY-MM-DD``; an existing one has its data file replaced by one atomic
  rename (the replaced file stays linked in the work folder for ``scoring.keep_replaced_s``). Database
  targets: one transaction that first deletes that as_of. A crash leaves the previous output untouched;
  re-running the same inputs gives a byte-identical Parquet file. Every write is read back.
- **Targets.** ``--database`` must be a DuckDB file (new, or with DuckDB's header) or a URL (else
  ConfigError, exit 2); an unwritable place is OutputError (exit 6) naming it.
- **One writer per as_of.** A lock file serialises concurrent runs of the same as_of; staging folders
  carry owner locks, so a run removes only the staging folders of dead runs.
- **Bounded memory.** Customers are scored in hash-partitioned chunks of ``scoring.chunk_customers``.
- **Drift stop.** The population stability index of every feature and score against the training
  snapshot is computed; above ``scoring.drift_stop`` the run fails with exit code 4 and writes nothing.
  Features that grow with the calendar by construction (registry ``calendar=True``: tenure, days since
  sign-up) move whenever the scoring date differs from the training one: their PSI is reported
  (manifest ``drift.calendar``) but never stops the run. A skipped check is a warning, in the manifest.
- **Shrink guard.** Empty scores, or more than ``scoring.max_shrink`` fewer rows than the as_of's
  previous output or the training population, are refused (exit 3) unless ``--allow-shrink``.
- **Manifest.** ``_manifest.json`` beside the Parquet file (or a row of ``<table>_manifests``):
  rows in and out, customers skipped and why, model URI and version, data range, runtime, drift.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from clvml._version import __version__
from clvml.allocator import trim_freed_memory
from clvml.config import Config
from clvml.config.database import expand_env, ibis_url, redact_url, scrub
from clvml.console import count
from clvml.data.dataset import Dataset
from clvml.engine import engine_error, sql_identifier
from clvml.errors import ConfigError, DriftError, LockError, ModelIncompatibleError, ShrinkError
from clvml.features.builder import feature_specs
from clvml.features.custom import register_from_config, require
from clvml.features.query import day_of
from clvml.features.registry import calendar_columns
from clvml.features.writer import FeatureBatches
from clvml.io import OutputError, atomic_write_json, output_error, remove_dead_staging, staging_dir, swap_dir
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
            info["run_id"] = _run_of(uri)
    else:
        from clvml.tracking import _bundle_run_id

        bundle = load_bundle(Path(uri).resolve())
        info["run_id"] = _bundle_run_id(Path(uri).resolve())
    info.update(name=bundle.name, version=bundle.model_version, clvml_version=bundle.clvml_version,
                trained_cutoffs=[str(c) for c in bundle.trained_cutoffs], horizon_days=bundle.horizon_days)
    return bundle, info


def _run_of(uri: str) -> str | None:
    """The MLflow run that logged the model of a ``runs:/`` or ``models:/`` URI (None if unknown)."""
    if uri.startswith("runs:/"):
        return uri.removeprefix("runs:/").split("/", 1)[0] or None
    if not uri.startswith("models:/"):
        return None
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    ref = uri.removeprefix("models:/")
    client = MlflowClient()
    try:
        if "@" in ref:
            mv = client.get_model_version_by_alias(*ref.split("@", 1))
        else:
            name, _, version = ref.partition("/")
            mv = client.get_model_version(name, version) if version.isdigit() else None
    except MlflowException:
        return None
    return getattr(mv, "run_id", None) or None


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
    custom = require(getattr(bundle, "custom_features", []))  # registered here, unchanged since training
    have = {s.name for s in feature_specs(ds.tables, bundle.windows, bundle.families, custom)}
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
    deadline = time.monotonic() + timeout_s
    if path.is_dir():
        raise OutputError(f"the lock file {path} is a folder; remove it (no run writes into it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+")  # noqa: SIM115 - closed below; closing releases the lock
    except OSError as exc:
        raise output_error(path, exc, "create the lock file") from None
    with fh:  # the file stays (removing it would race)
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
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} since {dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}\n")
            fh.flush()
        except OSError as exc:
            raise output_error(path, exc, "write the lock file") from None
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


#: bytes a chunk holds per feature value beyond DuckDB's own memory (its feature frame and the next
#: chunk's, the Arrow result being converted, the model matrix, the SHAP matrices of both models, the
#: reason-code work arrays: measured ~10 float64 copies at 125k customers x 153 features; rounded up)
CHUNK_BYTES_PER_VALUE = 12 * 8
#: the process before any chunk: interpreter, libraries (Numba's compiler and the reason codes' compiled
#: kernels ~0.12 GiB of it), the loaded bundle
BASE_BYTES = 640 * 2**20
#: never less for DuckDB: below this its feature queries spill their own working memory
MIN_DUCKDB_BYTES = 2**30
_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def size_bytes(size: str) -> int:
    """Bytes of a size as DuckDB reads it: ``4GB`` (10^9), ``4GiB`` (2^30), ``1500MB``."""
    num, unit = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)\s*", size).groups()
    return int(float(num) * _UNITS[unit])


def duckdb_memory_limit(cfg: Config, features: int, loading: bool = False) -> str | None:
    """DuckDB's ``memory_limit`` for a scoring run that keeps the process near ``scoring.memory_budget``:
    the budget minus the chunks' own memory (``chunk_customers`` x ``features`` values x
    :data:`CHUNK_BYTES_PER_VALUE`) and :data:`BASE_BYTES`, at least :data:`MIN_DUCKDB_BYTES`; None when
    the engine is not DuckDB, when ``engine.duckdb.memory_limit`` is set (it wins) or the budget is null.

    DuckDB keeps the validated tables in memory up to its limit and spills the rest to its
    ``temp_directory``; its feature queries work within the same limit. ``loading``: the limit while
    the tables are read and validated, before any chunk exists: the budget minus :data:`BASE_BYTES`
    only (validating under the chunks' limit spilled its sorts: 1M customers, 26.6M events read in
    13.7-13.8 s and 25.9-26.5 CPU-s with 0.39 GiB spilled, against 12.0-12.5 s and 22.8-24.0 CPU-s with
    0.08 GiB spilled; bench/RESULTS.md, session 19)."""
    sc, eng = cfg.scoring, cfg.engine
    if eng.backend != "duckdb" or eng.duckdb.memory_limit is not None or sc.memory_budget is None:
        return None
    chunk = 0 if loading else sc.chunk_customers * max(features, 1) * CHUNK_BYTES_PER_VALUE
    limit = max(size_bytes(sc.memory_budget) - chunk - BASE_BYTES, MIN_DUCKDB_BYTES)
    return f"{limit // 2**20}MiB"


def with_memory_limit(cfg: Config, features: int, progress: Progress = lambda _: None) -> Config:
    """``cfg`` with DuckDB's ``memory_limit`` set to :func:`duckdb_memory_limit` while loading (said in
    ``progress``), or ``cfg`` itself when that is None. The copy shares every section but the engine
    settings. Lower it to the chunks' limit with :func:`limit_for_chunks` once the tables are loaded."""
    limit = duckdb_memory_limit(cfg, features, loading=True)
    if limit is None:
        return cfg
    engine = cfg.engine.model_copy(deep=True)
    engine.duckdb.memory_limit = limit
    progress(f"DuckDB memory_limit {limit} while reading (scoring.memory_budget {cfg.scoring.memory_budget} "
             f"less the process), then {duckdb_memory_limit(cfg, features)} (less the memory of chunks of "
             f"{cfg.scoring.chunk_customers:,} customers x {features} features; engine.duckdb.memory_limit "
             "sets it instead)")
    return cfg.model_copy(update={"engine": engine})


def limit_for_chunks(ds: Dataset, cfg: Config, features: int) -> None:
    """Lower DuckDB's ``memory_limit`` of ``ds`` to the chunks' :func:`duckdb_memory_limit` (DuckDB
    spills what it holds above it to its ``temp_directory``); nothing when there is no budget."""
    limit = duckdb_memory_limit(cfg, features)
    if limit is None or ds.con.name != "duckdb":
        return
    try:
        ds.con.raw_sql(f"SET memory_limit = '{limit}'")
    except Exception as exc:  # DuckDB could not spill what it holds above the new limit
        err = engine_error(exc, "the validated tables (lowering DuckDB's memory limit for the chunks)")
        if err is None:
            raise
        raise err from exc


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


class ChunkWriter:
    """The chunks' scores, in order, into the partition's one data file ``folder/part-0000.parquet``:
    one Parquet writer kept open, one row group per chunk, so nothing is merged at the end.

    Each chunk is cast to the first chunk's schema. Where that cannot be (a column all null in the first
    chunk has no type yet; a later chunk's type does not cast), the chunks from there on are written as
    ``part-NNNN.parquet`` files beside it and :func:`_merge_parts` unifies the types and merges them, as
    for every chunk before this writer existed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.writer: pq.ParquetWriter | None = None
        self.streaming = True  # False once a chunk could not join the open file

    def write(self, table: pa.Table, b: int) -> None:
        """Add chunk ``b``'s scores."""
        if self.streaming and self.writer is None:
            if any(pa.types.is_null(f.type) for f in table.schema):
                self.streaming = False
            else:
                self.writer = pq.ParquetWriter(self.folder / DATA, table.schema, compression="zstd")
        if self.writer is not None:
            try:
                cast = table if table.schema.equals(self.writer.schema) else table.cast(self.writer.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
                self.close()
                self.streaming = False
            else:
                self.writer.write_table(cast)
                return
        pq.write_table(table, self.folder / f"part-{b:04d}.parquet", compression="zstd")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def score_chunks(bundle: ModelBundle, ds: Dataset, as_of: dt.date, folder: Path, chunks: int,
                 progress: Progress, plan: str | None = None) -> tuple[int, dict[str, Any] | None]:
    """Score every customer batch into ``folder`` (:class:`ChunkWriter`); return rows written and the drift
    counts summed over the batches (``plan``: ``features.plan``, the same features either way)."""
    btyd = None
    if bundle.btyd_features:  # population-level models: fitted once on everyone, merged per chunk
        from clvml.modeling.training import btyd_table

        btyd = btyd_table(ds, [as_of], bundle.horizon_days)
    rows, counts = 0, None
    # (unordered: each chunk's scores are sorted by customer below, so the query need not sort the features)
    with FeatureBatches(ds.tables, [as_of], windows=bundle.windows, families=bundle.families,
                        batches=chunks, custom=bundle.custom_names, plan=plan, ordered=False) as batches, \
            ChunkWriter(folder) as out:
        # the feature thread runs the engine's queries only; this thread turns each result into pandas
        for b, got in enumerate(prefetched(batches.fetch, chunks)):
            feats = batches.frame(got)
            del got
            if btyd is not None:
                from clvml.modeling.training import merge_btyd

                feats = merge_btyd(feats, btyd)
            if feats.empty:
                continue
            scores = bundle.predict(feats)
            if bundle.reference is not None:  # the columns of both frames, without copying them into one
                snap = {**{c: feats[c] for c in bundle.feature_columns}, **{c: scores[c] for c in SCORE_COLUMNS}}
                counts = add_counts(counts, bundle.reference.counts(snap))
                del snap
            del feats  # (before the next chunk's features arrive)
            scores = scores.sort_values("customer_id", kind="mergesort").reset_index(drop=True)
            scores = scores.drop(columns="as_of")  # carried by the folder name as_of=DATE (hive key)
            out.write(pa.Table.from_pandas(scores, preserve_index=False), b)
            n = len(scores)
            rows += n
            del scores
            trim_freed_memory()
            count(progress, f"chunk {b + 1}/{chunks}: {n:,} customers scored ({rows:,} so far)",
                  done=b + 1, total=chunks, step="scoring chunks")
    return rows, counts


def drift_summary(bundle: ModelBundle, counts: dict[str, Any] | None, cfg: Config) -> dict[str, Any]:
    """PSI per column against the training snapshot, the warnings, and whether to stop. When the check
    cannot run, ``checked`` is False and ``skipped`` says why."""
    sc = cfg.scoring
    if bundle.reference is None:
        return {"checked": False, "skipped": "the model has no training snapshot to compare with "
                "(exported without a drift reference)"}
    if counts is None:
        return {"checked": False, "skipped": "no customer was scored, so there is no distribution to "
                "compare"}
    psi = bundle.reference.psi(counts).dropna()
    judged = psi if sc.drift_columns == "all" else psi[psi.index.isin(SCORE_COLUMNS)]
    calendar = [c for c in calendar_columns(bundle.specs) if c in psi.index]
    judged = judged.drop(calendar, errors="ignore")  # grows with the calendar: reported, not judged
    stop = sc.drift_stop is not None and bool((judged > sc.drift_stop).any())
    return {
        "checked": True,
        "warn_threshold": sc.drift_warn, "stop_threshold": sc.drift_stop,
        "calendar": {c: round(float(psi[c]), 4) for c in calendar},
        "stopped_by": {c: round(float(v), 4) for c, v in judged[judged > sc.drift_stop].items()} if stop else {},
        "scores": {c: round(float(psi[c]), 4) for c in SCORE_COLUMNS if c in psi},
        "max_feature_psi": round(float(psi.drop(SCORE_COLUMNS, errors="ignore").max()), 4)
        if len(psi) > len(SCORE_COLUMNS) else None,
        "warnings": {c: round(float(v), 4) for c, v in psi[psi > sc.drift_warn].items()},
        "stop": stop,
        "top": {c: round(float(v), 4) for c, v in psi.head(10).items()},
    }


#: name suffixes of files that are data, never a DuckDB database (refused as --database targets)
DATA_SUFFIXES = {".parquet", ".pq", ".csv", ".tsv", ".txt", ".json", ".jsonl", ".ndjson", ".arrow",
                 ".feather", ".ipc", ".avro", ".orc", ".xlsx", ".xls", ".gz", ".zst", ".sqlite", ".db3"}
#: bytes 8..12 of every DuckDB database file
DUCKDB_MAGIC = b"DUCK"


@dataclass
class _Target:
    """Where a run writes: a Parquet partition, a DuckDB table, or a table behind an Ibis URL."""

    label: str  # for messages and the manifest (URL passwords masked)
    lock: Path  # the as_of lock file
    work: Path  # folder of the run's staging folders (and, for Parquet, of replaced partitions)
    partition: Path | None = None
    db_path: Path | None = None
    url: str | None = None
    table: str | None = None


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_folder(path: Path, what: str) -> None:
    """``path`` must be, or be creatable as, a folder: else OutputError (exit 6) naming it."""
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file, not a folder; give a folder (it is created if "
                          "missing). The file is left as it is")
    anc = _existing_ancestor(path)
    if not anc.is_dir():
        raise OutputError(f"{what} {path} cannot be created: {anc} is a file, not a folder. Give a path "
                          "below a folder")


def _duckdb_file(database: str) -> Path:
    """The DuckDB database file of ``--database``/``scoring.database``: an existing file must carry
    DuckDB's header; a new one may not be named like a data file. Anything else: ConfigError (exit 2)."""
    raw = database.removeprefix("duckdb://")
    fix = ("Scores go to a DuckDB database file (a new one, or one made by DuckDB) or to a database "
           "URL (sqlite:///…, postgres://…); to write Parquet files, use --out / scoring.out instead")
    if not raw or raw.startswith(":") or raw.startswith("md:"):
        raise ConfigError([f"--database / scoring.database {database!r} is not a database file: an "
                           f"in-memory or remote DuckDB would keep the scores nowhere. {fix}"])
    path = Path(raw)
    if path.is_dir():
        raise ConfigError([f"--database / scoring.database {path} is a folder, not a DuckDB database "
                           f"file. {fix}"])
    if path.exists():
        try:
            with open(path, "rb") as fh:
                head = fh.read(12)
        except OSError as exc:
            raise output_error(path, exc, "read the database") from None
        if head[8:12] != DUCKDB_MAGIC:
            kind = ("a Parquet file" if head[:4] == b"PAR1" else "an empty file" if not head
                    else "a SQLite database" if head.startswith(b"SQLite") else "not a DuckDB database")
            raise ConfigError([f"--database / scoring.database {path} exists and is {kind} (no DuckDB "
                               f"header): DuckDB would open it as a temporary view and the scores "
                               f"would be written nowhere. It is left unchanged. {fix}"])
    elif path.suffix.lower() in DATA_SUFFIXES:
        raise ConfigError([f"--database / scoring.database {path} is named like a data file "
                           f"({path.suffix}), not a DuckDB database (.duckdb). {fix}"])
    _check_folder(path.parent, "the folder of the database")
    return path


def _target(cfg: Config, as_of: dt.date, out: Path | None, database: str | None,
            table: str | None) -> _Target:
    if database:
        if database.startswith("duckdb://") or "://" not in database:
            db_path = _duckdb_file(database)
            return _Target(f"{db_path}:{table}", db_path.with_name(f".{db_path.name}.{table}.as_of={as_of}.lock"),
                           db_path.parent, db_path=db_path, table=table)
        try:  # a ${NAME} that is not set stops the run now, not after scoring
            expand_env(database, "scoring.database / --database")
        except ValueError as exc:
            raise ConfigError([str(exc)]) from None
        key = hashlib.sha256(f"{database}|{table}".encode()).hexdigest()[:16]
        local = Path(cfg.output.dir) / f"scores-{key}"  # lock and staging stay local
        _check_folder(local.parent, "the output folder")
        return _Target(f"{redact_url(database)}:{table}", local.with_name(f".{local.name}.{table}.as_of={as_of}.lock"),
                       local.parent, url=database, table=table)
    root = Path(out or cfg.scoring.out or Path(cfg.output.dir) / "scores")
    _check_folder(root, "the scores root --out / scoring.out")
    partition = root / f"as_of={as_of}"
    if partition.exists() and not partition.is_dir():
        raise OutputError(f"{partition} is a file, not a partition folder; move it away")
    work = root.absolute().parent / f".{root.absolute().name}.clvml-work"
    _check_folder(work, "the work folder")
    return _Target(str(partition), root / f".as_of={as_of}.lock", work, partition=partition)


def _previous_rows(tgt: _Target, as_of: dt.date) -> tuple[int | None, str | None]:
    """Rows the target holds for this as_of now (None: nothing yet), and why they could not be counted."""
    try:
        if tgt.partition is not None:
            if not tgt.partition.is_dir():
                return None, None
            return sum(pq.ParquetFile(p).metadata.num_rows for p in tgt.partition.glob("part-*.parquet")), None
        if tgt.db_path is not None:
            if not tgt.db_path.exists():
                return None, None
            import duckdb

            con = duckdb.connect(str(tgt.db_path), read_only=True)
            try:
                if not _exists(con, tgt.table):
                    return None, None
                ident = sql_identifier(tgt.table)
                return int(con.execute(f"SELECT count(*) FROM {ident} WHERE as_of = ?", [as_of]).fetchone()[0]), None
            finally:
                con.close()
        real = tgt.url
        con, real = _connect_url(tgt.url)
        try:
            if tgt.table not in con.list_tables():
                return None, None
            import sqlglot as sg

            q = sg.to_identifier(tgt.table, quoted=True).sql(con.name)
            return _count(con, f"SELECT count(*) FROM {q} WHERE as_of = '{as_of.isoformat()}'"), None
        finally:
            with contextlib.suppress(Exception):
                con.disconnect()
    except Exception as exc:  # noqa: BLE001 - unreadable previous output: said in a warning
        text = scrub(str(exc), real) if tgt.url else str(exc)
        return None, f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def check_shrink(rows: int, previous: int | None, trained: int | None, max_shrink: float, allow: bool,
                 as_of: dt.date, where: str) -> dict[str, Any]:
    """Refuse (ShrinkError, exit 3) an output that is empty or more than ``max_shrink`` smaller than
    the as_of's previous output or the model's training population, unless ``allow``."""
    info = {"rows": rows, "previous_rows": previous, "training_rows": trained, "max_shrink": max_shrink,
            "allowed": allow}
    against = [(n, what) for n, what in ((previous, f"the previous output of this as_of ({where})"),
                                         (trained, "the model's training population (customers at "
                                          "its latest training cut-off)")) if n]
    shrunk = [(n, what) for n, what in against if rows < (1 - max_shrink) * n or rows == 0]
    if not (rows == 0 or shrunk):
        return info
    info["shrunk"] = True
    if allow:
        return info
    vs = " and ".join(f"{n:,} rows in {what}" for n, what in (shrunk or against)) or "no earlier output"
    raise ShrinkError(
        f"as of {as_of} the run would write {rows:,} rows, against {vs}: "
        + ("an empty output" if rows == 0 else f"more than scoring.max_shrink={max_shrink:g} fewer")
        + ". Nothing was written. Check the input feed (empty or truncated transactions?) and --as-of "
        "(before all data?); if the drop is real, re-run with --allow-shrink (scoring.allow_shrink: true)")


REPLACED = ".replaced-"
#: the one data file of a Parquet partition (replaced by an atomic rename) and its manifest
DATA = "part-0000.parquet"
MANIFEST = "_manifest.json"


def remove_expired_replaced(work: Path, keep_s: float) -> int:
    """Remove the replaced partition files (or folders) kept in ``work`` for longer than ``keep_s``."""
    n = 0
    now = time.time()
    for p in sorted(work.glob(f".*{REPLACED}*")) if work.is_dir() else []:
        try:
            since = int(p.name.rsplit(REPLACED, 1)[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if now - since < keep_s:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        n += not p.exists()
    return n


def _aside(work: Path, partition: Path, suffix: str = "") -> Path:
    return work / f".{partition.name}{REPLACED}{int(time.time())}-{os.urandom(4).hex()}{suffix}"


def _publish(tmp: Path, partition: Path, work: Path) -> Path | None:
    """Put the finished data file (and manifest) of ``tmp`` in place; return where the replaced version
    was kept (None: there was none).

    A new partition is the staging folder renamed into place (it appears complete). An existing one
    keeps its folder: its single data file is replaced by one atomic rename, so a reader opening it gets
    the whole old or the whole new file, and a reader that has it open keeps reading the old one. The
    replaced file stays linked in the work folder for ``scoring.keep_replaced_s`` (also readable by its
    path there, e.g. on NFS, until a later run removes it). A partition of an older clvml (several part
    files) is swapped as a whole folder, once.
    """
    if not partition.is_dir():
        partition.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, partition)
        return None
    legacy = [p for p in partition.iterdir() if p.name != DATA and p.suffix == ".parquet"
              and not p.name.startswith((".", "_"))]
    if legacy:
        swap_dir(tmp, partition)
        aside = _aside(work, partition)
        os.rename(tmp, aside)
        return aside
    old, aside = partition / DATA, None
    if old.exists():
        aside = _aside(work, partition, ".parquet")
        try:
            os.link(old, aside)  # the replaced inode stays readable for the grace period
        except OSError:
            aside = None  # no hard links here: readers with the file open still finish on it
    new = tmp / DATA
    if new.exists():
        os.replace(new, old)
    elif old.exists():  # an (allowed) empty output: no data file
        os.unlink(old)
    return aside


def _merge_parts(folder: Path) -> dict[str, dict[str, Any]]:
    """Turn the chunks' ``part-NNNN.parquet`` files into the partition's one data file (row groups
    copied in order, types unified: a column that is all null in one chunk takes the others' type);
    nothing to do when :class:`ChunkWriter` wrote every chunk into that file.
    Returns the data file's name -> rows and SHA-256 (empty when nobody was scored)."""
    parts = sorted(folder.glob("part-*.parquet"))
    if not parts:
        return {}
    out = folder / DATA
    if parts != [out]:
        schema = pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")
        tmp = folder / f".{DATA}.merge"
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for p in parts:
                f = pq.ParquetFile(p)
                for g in range(f.num_row_groups):
                    writer.write_table(f.read_row_group(g).cast(schema))
        for p in parts:
            p.unlink()
        os.rename(tmp, out)
    with open(out, "rb") as fh:
        os.fsync(fh.fileno())
    return {DATA: {"rows": pq.ParquetFile(out).metadata.num_rows, "sha256": _sha256(out)}}


def _read_back(partition: Path, files: dict[str, dict[str, Any]]) -> tuple[int, str]:
    """Rows in the published partition, read from its files; (-1, why) when its data files are not the
    ones written."""
    names = {p.name for p in partition.glob("*.parquet") if not p.name.startswith((".", "_"))}
    if names != set(files):
        return -1, f"it holds the data files {sorted(names)}, not {sorted(files)}"
    for name, f in files.items():
        if _sha256(partition / name) != f["sha256"]:
            return -1, f"{name} differs from the file written"
    rows = sum(pq.ParquetFile(partition / n).metadata.num_rows for n in names)
    return rows, f"read back {rows:,} rows"


def score(cfg: Config, model: str, as_of: dt.date, *, out: Path | None = None, database: str | None = None,
          table: str | None = None, ds: Dataset | None = None, allow_shrink: bool | None = None,
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
    allow_shrink
        Override ``scoring.allow_shrink``: write even an empty output or one more than
        ``scoring.max_shrink`` smaller than the as_of's previous output or the training population.
    """
    t0 = time.perf_counter()
    sc = cfg.scoring
    allow = sc.allow_shrink if allow_shrink is None else allow_shrink
    database = database or sc.database
    table = table or sc.table
    if table is not None:
        from clvml.config import _check_identifier

        try:
            _check_identifier(table, "table name")
        except ValueError as exc:
            raise ConfigError([f"--table / scoring.table: {exc}"]) from None
    tgt = _target(cfg, as_of, out, database, table)
    bundle, model_info = resolve_model(cfg, model)
    register_from_config(cfg.features.custom)
    require(getattr(bundle, "custom_features", []))  # before any output: a missing function stops here
    progress(f"model {model_info['version']} (clvml {model_info['clvml_version']}) from {model}")
    target = tgt.label
    warnings: list[str] = []

    def warn(msg: str) -> None:
        warnings.append(msg)
        progress(f"warning: {msg}")

    with output_lock(tgt.lock, sc.lock_timeout_s):
        if ds is None:
            from clvml.data.loading import load_data

            ds = load_data(with_memory_limit(cfg, len(bundle.specs), progress), progress)
            limit_for_chunks(ds, cfg, len(bundle.specs))
        check_schema(bundle, ds)
        pop = population(ds, as_of)
        previous, unknown_previous = _previous_rows(tgt, as_of)
        if unknown_previous:
            warn(f"cannot count the rows {target} holds for {as_of} ({unknown_previous}); the shrink guard "
                 "compares with the model's training population only")
        trained = bundle.reference.rows if bundle.reference is not None else None
        check_shrink(pop["scored"], previous, trained, sc.max_shrink, allow, as_of, target)
        chunks = max(1, math.ceil(pop["scored"] / sc.chunk_customers))
        progress(f"scoring {pop['scored']:,} customers as of {as_of} in {chunks} chunk(s)")
        stale, unknown = remove_dead_staging(tgt.work, ".as_of=")
        for p in unknown:
            warn(f"kept {p}: a temporary folder without an owner lock (left by an older clvml?); "
                 "remove it by hand when no run is writing")
        expired = remove_expired_replaced(tgt.work, sc.keep_replaced_s) if tgt.partition else 0
        with staging_dir(tgt.work, f".as_of={as_of}.", target) as tmp:
            if ds.con.name == "pyspark":
                from clvml.scoring.spark import score_partitions

                rows, counts = score_partitions(bundle, ds, as_of, tmp, SCORE_COLUMNS, progress)
            else:
                rows, counts = score_chunks(bundle, ds, as_of, tmp, chunks, progress, plan=cfg.features.plan)
            files = _merge_parts(tmp)
            if sum(f["rows"] for f in files.values()) != rows:
                raise OutputError(f"scored {rows:,} customers but the files in {tmp} hold "
                                  f"{sum(f['rows'] for f in files.values()):,} rows; nothing was written")
            drift = drift_summary(bundle, counts, cfg)
            if not drift["checked"]:
                warn(f"drift check skipped: {drift['skipped']}")
            for col, v in drift.get("warnings", {}).items():
                cal = (" (grows with the calendar by construction: reported, never stops the run)"
                       if col in drift.get("calendar", {}) else "")
                progress(f"drift warning: PSI {v:.3f} for {col}{cal}")
            shrink = check_shrink(rows, previous, trained, sc.max_shrink, allow, as_of, target)
            if shrink.get("shrunk"):
                warn(f"{rows:,} rows written although fewer than allowed by scoring.max_shrink "
                     f"(previous {previous}, training population {trained}): --allow-shrink was given")
            lo, hi = ds.date_range()
            manifest = {
                "as_of": str(as_of), "target": target, "clvml_version": __version__, "model": model_info,
                "rows_in": dict(ds.report.rows_in), "rows_kept": dict(ds.report.rows_out),
                "rows_dropped": {t: d for t, d in ds.report.dropped.items() if d},
                **({"line_items": ds.report.line_items} if ds.report.line_items else {}),
                "customers": pop, "rows_out": rows, "chunks": chunks,
                "stale_temp_folders_removed": stale, "replaced_partitions_removed": expired,
                "data_range": {"first": str(lo), "last": str(hi)},
                "files": files, "shrink": shrink, "drift": drift, "warnings": warnings,
                "seconds": round(time.perf_counter() - t0, 2),
            }
            if drift.get("stop"):
                worst = dict(list(drift["stopped_by"].items())[:10])
                raise DriftError(
                    f"drift above scoring.drift_stop={sc.drift_stop}: PSI {worst}; nothing was written. "
                    "Check the input data for a broken feed; if the change is real, retrain, or raise "
                    "scoring.drift_stop")
            atomic_write_json(manifest, tmp / "_manifest.json")
            if tgt.url:
                _write_ibis(tgt.url, tgt.table, tmp, as_of, manifest)
            elif tgt.db_path is not None:
                _write_duckdb(tgt.db_path, tgt.table, tmp, as_of, manifest)
            else:
                _publish_checked(tmp, tgt.partition, tgt.work, files, rows)
    progress(f"wrote {rows:,} rows to {target} in {manifest['seconds']:.1f}s")
    return ScoreResult(target, manifest)


def _publish_checked(tmp: Path, partition: Path, work: Path, files: dict[str, dict[str, Any]],
                     rows: int) -> None:
    """Publish, read the data back from the partition, and put the previous version back when it
    differs; the manifest is replaced only after the data passed."""
    aside = _publish(tmp, partition, work)
    try:
        got, why = _read_back(partition, files)
    except Exception as exc:  # noqa: BLE001 - an unreadable result is a failed write
        got, why = -1, f"reading it back failed ({type(exc).__name__}: {exc})"
    if got == rows:
        if tmp.exists():  # the data file went in alone: now the manifest
            os.replace(tmp / MANIFEST, partition / MANIFEST)
        return
    if aside is not None and aside.is_dir():
        swap_dir(aside, partition)  # the previous folder back; the bad one leaves with the aside
        shutil.rmtree(aside, ignore_errors=True)
        kept = "the previous partition was put back"
    elif aside is not None:
        os.replace(aside, partition / DATA)
        kept = "the previous data file was put back"
    elif tmp.exists():
        (partition / DATA).unlink(missing_ok=True)
        kept = "the new data file was removed"
    else:
        shutil.rmtree(partition, ignore_errors=True)
        kept = "the partition was removed (there was none before)"
    raise OutputError(f"wrote {rows:,} rows to {partition} but {why}; {kept}. Check the file system")


def _count(con, sql: str) -> int:
    res = con.raw_sql(sql)
    try:
        return int(res.fetchone()[0])
    finally:
        if hasattr(res, "close"):
            res.close()


def _write_duckdb(db_path: Path, table: str, parts: Path, as_of: dt.date, manifest: dict) -> None:
    """Replace the as_of's rows of ``table`` (and its manifest row) in one transaction, check the row
    count inside it (rolled back when it differs) and again from a new connection after COMMIT."""
    import json

    import duckdb

    ident = sql_identifier(table)
    mident = sql_identifier(f"{table}_manifests")
    glob = str(parts / "part-*.parquet")
    has_rows = any(parts.glob("part-*.parquet"))
    rows = manifest["rows_out"]
    try:
        con = duckdb.connect(str(db_path))
    except duckdb.Error as exc:
        raise OutputError(f"cannot open DuckDB database {db_path}: {exc}") from None
    try:
        con.execute("BEGIN TRANSACTION")
        if has_rows:  # as_of is not in the Parquet parts (it is the partition key): added here
            con.execute(f"CREATE TABLE IF NOT EXISTS {ident} AS SELECT customer_id, ?::DATE AS as_of, "
                        "* EXCLUDE (customer_id) FROM read_parquet(?) LIMIT 0", [as_of, glob])
        con.execute(f"CREATE TABLE IF NOT EXISTS {mident} (as_of DATE, manifest JSON)")
        if has_rows or _exists(con, table):
            con.execute(f"DELETE FROM {ident} WHERE as_of = ?", [as_of])
        con.execute(f"DELETE FROM {mident} WHERE as_of = ?", [as_of])
        if has_rows:
            con.execute(f"INSERT INTO {ident} BY NAME SELECT ?::DATE AS as_of, * FROM read_parquet(?)",
                        [as_of, glob])
        con.execute(f"INSERT INTO {mident} VALUES (?, ?)", [as_of, json.dumps(manifest, default=str)])
        got = con.execute(f"SELECT count(*) FROM {ident} WHERE as_of = ?", [as_of]).fetchone()[0] \
            if _exists(con, table) else 0
        if got != rows:
            raise OutputError(f"table {table} in {db_path} would hold {got:,} rows for {as_of}, not the "
                              f"{rows:,} scored; rolled back, the table is unchanged")
        con.execute("COMMIT")
    except (duckdb.Error, OutputError) as exc:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"writing table {table} in {db_path} failed: {exc}; the table is unchanged "
                          "(if the columns differ from an earlier run, drop the table or use a new "
                          "scoring.table)") from None
    finally:
        con.close()
    try:  # read the count back as any reader would: a new connection to the file
        con = duckdb.connect(str(db_path), read_only=True)
        try:
            got = con.execute(f"SELECT count(*) FROM {ident} WHERE as_of = ?", [as_of]).fetchone()[0] \
                if _exists(con, table) else 0
        finally:
            con.close()
    except duckdb.Error as exc:
        raise OutputError(f"wrote table {table} in {db_path} but cannot read it back: {exc}") from None
    if got != rows:
        raise OutputError(f"wrote {rows:,} rows for {as_of} to table {table} in {db_path} but read back "
                          f"{got:,}; check the database")


def _connect_url(url: str):
    """``ibis.connect`` to the scores database ``url`` (``${NAME}`` expanded from the environment), and
    the expanded URL (to scrub its password from driver messages)."""
    import ibis

    try:
        real = ibis_url(expand_env(url, "scoring.database / --database"))
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    return ibis.connect(real), real


def _write_ibis(url: str, table: str, parts: Path, as_of: dt.date, manifest: dict) -> None:
    """Replace the as_of's rows of ``table`` (and its manifest row) in a database reached through Ibis
    (``ibis.connect(url)``, e.g. ``sqlite:///scores.db`` or ``postgres://…``).

    The rows are first loaded into staging tables; then one transaction deletes the as_of's old rows and
    copies the new ones in, so readers see the old or the new scores. The backend must run plain SQL
    (``raw_sql``) with BEGIN/COMMIT; tested with SQLite and PostgreSQL.
    """
    import json

    import sqlglot as sg

    real = url
    try:
        con, real = _connect_url(url)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - any driver error: report it as an output error
        raise OutputError(f"cannot connect to {redact_url(url)}: {scrub(str(exc), real)}") from None
    dialect = con.name
    files = sorted(parts.glob("part-*.parquet"))
    rows = pa.concat_tables([pq.read_table(p) for p in files]) if files else None
    if rows is not None:  # as_of is the partition key of the Parquet parts: a column in a table
        rows = rows.add_column(1, "as_of", pa.array([as_of] * rows.num_rows, pa.date32()))
    n = manifest["rows_out"]
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
                  f"INSERT INTO {q[mtable]} (as_of, manifest) SELECT as_of, manifest FROM {q[names['man']]}"]
        count = f"SELECT count(*) FROM {q[table]} WHERE as_of = {day}"
        has_table = table in existing or rows is not None
        try:
            for stmt in stmts:
                _run_sql(con, stmt)
            got = _count(con, count) if has_table else 0
            if got != n:
                raise OutputError(f"table {table} at {redact_url(url)} would hold {got:,} rows for {as_of}, "
                                  f"not the {n:,} scored; rolled back, its rows are unchanged")
            _run_sql(con, "COMMIT")
        except Exception:
            with contextlib.suppress(Exception):
                _run_sql(con, "ROLLBACK")
            raise
        got = _count(con, count) if has_table else 0  # read back after COMMIT
        if got != n:
            raise OutputError(f"wrote {n:,} rows for {as_of} to table {table} at {redact_url(url)} but read "
                              f"back {got:,}; check the database")
    except OutputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise OutputError(f"writing table {table} at {redact_url(url)} failed: {scrub(str(exc), real)}; its "
                          f"rows for {as_of} are unchanged (if the columns differ from an earlier run, drop the "
                          "table or use a new scoring.table)") from None
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
