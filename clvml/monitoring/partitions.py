"""The stored score partitions ``<scores root>/as_of=YYYY-MM-DD/`` written by ``clvml score``."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from clvml.config import Config
from clvml.errors import ConfigError, DataSourceError

#: columns every score partition must hold (and their Arrow type family)
REQUIRED = {"customer_id": "text", "churn_probability": "number", "expected_value": "number", "clv": "number",
            "model_version": "text"}
#: segment columns reported on when the scores carry them
SEGMENTS = ("value_tier", "lifecycle_stage", "risk_band")
#: the folder of the monitoring outputs under the scores root; the leading underscore makes Hive-style
#: readers (pyarrow, pandas, DuckDB's hive_partitioning, Spark) skip it, so reading the root still gives
#: the scores alone
MONITORING_DIR = "_monitoring"
_FOLDER = re.compile(r"as_of=(\d{4}-\d{2}-\d{2})")


@dataclass
class Partition:
    """One stored partition: its date, folder, data files, manifest and the model versions that
    scored it. The scores themselves are read on demand (:meth:`read`), one partition at a time: twelve
    partitions of a million customers do not fit in memory together as pandas frames."""

    as_of: dt.date
    path: Path
    manifest: dict[str, Any] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    #: the columns monitoring reads (:data:`REQUIRED`, then the :data:`SEGMENTS` of the first file)
    columns: list[str] = field(default_factory=list)
    #: the model versions in ``model_version``, sorted (as text)
    versions: list[str] = field(default_factory=list)
    rows: int = 0

    def read(self, columns: list[str] | None = None) -> pa.Table:
        """The partition's scores as Arrow (default: :attr:`columns`), its files concatenated in
        name order; ``customer_id`` and ``model_version`` as text, a column absent from a file null."""
        want = list(columns or self.columns)
        tables = []
        for f in self.files:
            t = pq.read_table(f, columns=[c for c in want if c in pq.read_schema(f).names])
            for c in ("customer_id", "model_version"):
                if c in t.column_names:
                    t = t.set_column(t.column_names.index(c), c, _as_text(t[c]))
            tables.append(t)
        return pa.concat_tables(tables, promote_options="permissive").select(
            [c for c in want if any(c in t.column_names for t in tables)])

    @property
    def scores(self) -> pd.DataFrame:
        """The partition's :attr:`columns` as pandas (read again at each access: not kept)."""
        return self.read().to_pandas()


def _as_text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """A text column as ``large_string`` (what ``astype(str)`` gives on its values)."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    return col if pa.types.is_large_string(col.type) else col.cast(pa.large_string())


def scores_root(cfg: Config, scores: Path | None = None) -> Path:
    """The Parquet root the scoring job writes to: ``scores``, else ``scoring.out``, else
    ``<output.dir>/scores``. A config scoring into a database is refused (ConfigError, exit 2)."""
    if scores is None and cfg.scoring.database:
        raise ConfigError([f"scoring.database is set ({cfg.scoring.database}): clvml monitor reads the Parquet "
                           "partitions of scoring.out; score to Parquet, or give the partitions' root with "
                           "--scores"])
    return Path(scores or cfg.scoring.out or Path(cfg.output.dir) / "scores")


def _kind(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return "text"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    return str(t)


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith((".", "_")))


def read_partitions(root: Path, since: dt.date | None = None) -> tuple[list[Partition], list[str]]:
    """Every partition under ``root`` (oldest first), checked, and notes on what was skipped. The
    scores are not kept: :meth:`Partition.read` reads them when they are judged.

    Raises
    ------
    DataSourceError
        (exit 3) when there is no partition at all, or when partitions hold score files of another
        schema (a required column missing or of another type): every such partition is named with
        what it lacks.
    """
    folders = sorted((dt.date.fromisoformat(m.group(1)), p) for p in (root.iterdir() if root.is_dir() else [])
                     if p.is_dir() and (m := _FOLDER.fullmatch(p.name)))
    fix = (f"Score first (clvml score --model MODEL --as-of DATE -c CONFIG writes {root}/as_of=DATE/), or "
           "point clvml monitor at the scores root with --scores / scoring.out")
    if not folders:
        what = "does not exist" if not root.exists() else "holds no as_of=YYYY-MM-DD partition"
        raise DataSourceError(f"no score partitions to monitor: {root} {what}. {fix}")
    notes: list[str] = []
    if since is not None:
        dropped = [d for d, _ in folders if d < since]
        folders = [(d, p) for d, p in folders if d >= since]
        if dropped:
            notes.append(f"{len(dropped)} partition(s) before monitoring.since={since} ignored")
        if not folders:
            raise DataSourceError(f"no score partitions to monitor under {root} from monitoring.since={since} "
                                  f"on (the latest is as_of={dropped[-1]}). Lower monitoring.since, or {fix[0].lower()}"
                                  f"{fix[1:]}")
    out, bad = [], []
    for day, folder in folders:
        files = _data_files(folder)
        if not files:
            notes.append(f"as_of={day}: no data file (an empty scoring run?); skipped")
            continue
        problems = []
        for f in files:
            try:
                schema = pq.read_schema(f)
            except (OSError, pa.ArrowException) as exc:
                problems.append(f"{f.name} is not a readable Parquet file ({str(exc).splitlines()[0]})")
                continue
            missing = [c for c in REQUIRED if c not in schema.names]
            wrong = [f"{c} is {schema.field(c).type}, not {k}" for c, k in REQUIRED.items()
                     if c in schema.names and _kind(schema.field(c).type) != k]
            if missing:
                problems.append(f"{f.name} lacks {', '.join(missing)}")
            if wrong:
                problems.append(f"{f.name}: {'; '.join(wrong)}")
        if problems:
            bad.append(f"{folder}: {'; '.join(problems)}")
            continue
        cols = list(REQUIRED) + [c for c in SEGMENTS if c in pq.read_schema(files[0]).names]
        part = Partition(day, folder, {}, files, cols)
        # the checks on the required columns only, in Arrow (never the whole partition in pandas)
        scores = part.read(list(REQUIRED))
        ids = scores["customer_id"]
        dup = len(ids) - pc.count_distinct(ids, mode="all").as_py()
        nulls = {}
        for c in REQUIRED:
            n = scores[c].null_count
            if pa.types.is_floating(scores[c].type):
                n += pc.sum(pc.is_nan(scores[c])).as_py() or 0
            if n:
                nulls[c] = n
        if dup or nulls:
            said = []
            if dup:
                first = ids.to_pandas().loc[lambda s: s.duplicated()].head(1).tolist()
                said = [f"{dup:,} duplicated customer_id(s), e.g. {first[0]!r}"]
            bad.append(f"{folder}: " + "; ".join(said + [f"{n:,} null {c}" for c, n in nulls.items()]))
            continue
        part.versions = sorted(str(v) for v in pc.unique(scores["model_version"]).to_pylist())
        part.rows = scores.num_rows
        del scores, ids
        manifest: dict[str, Any] = {}
        with_manifest = folder / "_manifest.json"
        if with_manifest.is_file():
            try:
                manifest = json.loads(with_manifest.read_text())
            except (OSError, ValueError):
                notes.append(f"as_of={day}: unreadable _manifest.json (model source and drift unknown)")
        part.manifest = manifest if isinstance(manifest, dict) else {}
        out.append(part)
    if bad:
        raise DataSourceError(
            f"{len(bad)} score partition(s) hold files of another schema than clvml score writes (required: "
            f"{', '.join(f'{c} ({k})' for c, k in REQUIRED.items())}, no nulls, one row per customer):\n  "
            + "\n  ".join(bad)
            + "\nRe-score these dates with clvml score, move them out of the scores root, or skip them with "
            "monitoring.since")
    if not out:
        raise DataSourceError(f"no score partition under {root} holds scores ({'; '.join(notes)}). {fix}")
    return out, notes
