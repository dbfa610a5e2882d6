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
    """One stored partition: its date, folder, scores (the columns monitoring reads) and manifest."""

    as_of: dt.date
    path: Path
    scores: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)


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
    """Every partition under ``root`` (oldest first) with its scores, and notes on what was skipped.

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
        scores = pd.concat([pq.read_table(f, columns=[c for c in cols if c in pq.read_schema(f).names]).to_pandas()
                            for f in files], ignore_index=True)
        scores["customer_id"] = scores["customer_id"].astype(str)
        dup = int(scores["customer_id"].duplicated().sum())
        nulls = {c: int(scores[c].isna().sum()) for c in REQUIRED if scores[c].isna().any()}
        if dup or nulls:
            first = scores.loc[scores["customer_id"].duplicated(), "customer_id"].head(1).tolist()
            said = [f"{dup:,} duplicated customer_id(s), e.g. {first[0]!r}"] if dup else []
            bad.append(f"{folder}: " + "; ".join(said + [f"{n:,} null {c}" for c, n in nulls.items()]))
            continue
        manifest: dict[str, Any] = {}
        with_manifest = folder / "_manifest.json"
        if with_manifest.is_file():
            try:
                manifest = json.loads(with_manifest.read_text())
            except (OSError, ValueError):
                notes.append(f"as_of={day}: unreadable _manifest.json (model source and drift unknown)")
        out.append(Partition(day, folder, scores, manifest if isinstance(manifest, dict) else {}))
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
