"""A validated set of input tables on one Ibis backend: the entry point of every pipeline."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import pandas as pd

from clvml.config import DataConfig, Policies, TableSource
from clvml.console import count
from clvml.data.contracts import SCHEMAS
from clvml.data.database import describe
from clvml.data.fingerprint import source_fingerprints
from clvml.data.line_items import check_lines, to_orders
from clvml.data.readers import read_table
from clvml.data.validation import (
    Problem,
    ValidationReport,
    check_orphans,
    prepare_table,
    typed_table_name,
)
from clvml.engine import connect, engine_errors, materialize, release
from clvml.errors import DataSourceError, DataValidationError


@dataclass
class Dataset:
    """Clean, canonical tables (Ibis, materialised on ``con``) plus their validation report."""

    con: ibis.BaseBackend
    tables: dict[str, ibis.Table]
    report: ValidationReport
    as_of: dt.date | None = None
    lineage: dict[str, str] = field(default_factory=dict)
    observed_until: dt.date | None = None  # last day the data are known complete (None: last event)
    #: what the clean tables were built from (the data config and a fingerprint of every input file);
    #: None when a table came from memory or a database, so nothing built from it is cached
    inputs: dict[str, Any] | None = None

    def __getitem__(self, name: str) -> ibis.Table:
        return self.tables[name]

    def __contains__(self, name: str) -> bool:
        return name in self.tables

    def date_range(self) -> tuple[dt.datetime, dt.datetime]:
        t = self.tables["transactions"]
        row = t.aggregate(lo=t.ts.min(), hi=t.ts.max()).to_pyarrow().to_pylist()[0]
        return row["lo"], row["hi"]

    def summary(self) -> dict[str, Any]:
        """Rows, customers and date range per table, plus validation counts (for logs/MLflow)."""
        out: dict[str, Any] = {"tables": {}, "validation": self.report.summary()}
        for name, t in self.tables.items():
            aggs = {"rows": t.count(), "customers": t.customer_id.nunique()}
            if "ts" in t.columns:
                aggs.update(first=t.ts.min(), last=t.ts.max())
            row = t.aggregate(**aggs).to_pyarrow().to_pylist()[0]
            out["tables"][name] = {k: (v.isoformat() if isinstance(v, dt.datetime) else v)
                                   for k, v in row.items()}
        return out


def load_dataset(
    config: DataConfig | None = None,
    frames: Mapping[str, pd.DataFrame | ibis.Table] | None = None,
    *,
    con: ibis.BaseBackend | None = None,
    policies: Policies | None = None,
    as_of: dt.date | None = None,
    progress: Callable[..., None] | None = None,
) -> Dataset:
    """Read, map and validate the input tables; raise :class:`DataValidationError` listing every problem.

    Parameters
    ----------
    config
        ``data`` section of a config: sources, column mappings, policies and as-of date.
    frames
        In-memory tables by canonical table name (override ``config`` sources of the same name).
        Their columns are mapped with the config's ``columns`` for that table when one is given.
    con
        Backend to use; a new in-process DuckDB connection by default.
    progress
        Told when each table has been read and checked (with counts: :func:`clvml.console.count`).
    """
    if config is None:
        if not frames:
            raise DataSourceError("give a data config or in-memory frames")
        config = DataConfig.model_construct(tables={}, synthetic=None, as_of=None, policies=Policies())
    frames = dict(frames or {})
    con = con or connect()
    policies = policies or config.policies
    as_of = as_of or (config.as_of.date() if isinstance(config.as_of, dt.datetime) else config.as_of)
    if "transactions" not in frames and "transactions" not in config.tables:
        raise DataSourceError("no transactions table: it is the one required table")

    files = None if frames else source_fingerprints(config)
    report = ValidationReport()
    clean: dict[str, ibis.Table] = {}
    lineage: dict[str, str] = {}
    names = [n for n in SCHEMAS if n in frames or n in config.tables]
    for done, name in enumerate(names, 1):
        src: TableSource | None = config.tables.get(name)
        obj = frames.get(name, src)
        lineage[name] = (
            f"{type(obj).__name__} in memory" if name in frames
            else describe(name, src) if src.url else f"{src.format or ''} {src.path}"
        ).strip()
        # the source is read lazily: a damaged file or a full memory shows while it is converted
        what = f"table {name!r} ({lineage[name]})"
        with engine_errors(what):
            raw = read_table(con, name, obj)
            table = prepare_table(name, raw, src, policies, report, as_of, what)
        if table is not None:
            clean[name] = table
        if progress is not None:
            count(progress, f"read {what}", done=done, total=len(names), step="reading tables", plain=False)
    with engine_errors(f"checking tables {', '.join(repr(n) for n in clean)}"):
        if "customers" in clean:
            _check_unique_customers(clean["customers"], report)
        clean = check_orphans(clean, policies, report)
    lines = {n for n, t in clean.items() if (config.tables.get(n) or TableSource()).grain == "line"}
    for name in lines:
        with engine_errors(f"table {name!r} ({lineage[name]})"):
            check_lines(name, clean[name], config.tables[name], report)
    if not report.ok:
        raise DataValidationError(report)
    materialised = {}
    freed: list[str] = []  # converted copies to free once every table is stored: the orphan check makes one
    #                        table's rows depend on another's (transactions semi-joined to customers)
    for name, t in clean.items():
        what = f"table {name!r} ({lineage[name]})"
        with engine_errors(what):
            if name in lines:  # one row per order line: group the lines into orders, stored once
                report.rows_out[name] = int(t.count().to_pyarrow().as_py())  # lines kept
                t = to_orders(name, t, config.tables[name], report, f"orders_{name}_{id(report)}", what)
                freed.append(typed_table_name(name, report))
                materialised[name] = t
                continue
            if report.dropped.get(name):  # rows were filtered: store the rest, free the converted copy
                order = ["customer_id", "ts"] if "ts" in t.columns else ["customer_id"]
                t = materialize(con, f"clean_{name}_{id(report)}", t.order_by(order), what)
                freed.append(typed_table_name(name, report))
            # else: a projection of the converted table, already sorted by customer and time
            report.rows_out[name] = int(t.count().to_pyarrow().as_py())
        materialised[name] = t
    for table in freed:
        release(con, table)
    observed_until = getattr(config, "observed_until", None)
    _check_coverage(materialised["transactions"], as_of, observed_until,
                    getattr(config, "stale_after_days", 7), report)
    if not report.ok:
        raise DataValidationError(report)
    inputs = None
    if files is not None and _unchanged(files, config):
        inputs = {"data": config.model_dump(mode="json", exclude={"synthetic"}), "files": files}
    return Dataset(con, materialised, report, as_of, lineage, observed_until, inputs)


def _unchanged(files: dict[str, dict[str, Any]], config: DataConfig) -> bool:
    """The input files still have the size and modification time they had before they were read (a
    file rewritten meanwhile must not be cached under its old fingerprint)."""
    for name, entries in files.items():
        base = Path(config.tables[name].path)
        for rel, fp in entries.items():
            p = base / rel if base.is_dir() else base
            try:
                st = p.stat()
            except OSError:
                return False
            if (st.st_size, st.st_mtime_ns) != (fp["size"], fp["mtime_ns"]):
                return False
    return True


def _check_coverage(tx: ibis.Table, as_of: dt.date | None, observed_until: dt.date | None,
                    stale_after_days: int, report: ValidationReport) -> None:
    """Report a stale export (the last transaction long before ``as_of``) and an ``observed_until``
    that contradicts the data."""
    last = tx.aggregate(m=tx.ts.max()).to_pyarrow()["m"][0].as_py()
    if last is None:
        return
    last_day = last.date()
    if observed_until is not None and observed_until < last_day:
        report.problems.append(Problem(
            "transactions", "ts", "observed_until", -1,
            f"data.observed_until {observed_until} is before the last transaction day {last_day}",
            f"set data.observed_until to {last_day} or later (or remove it)"))
    if as_of is None or observed_until is not None:
        return
    gap = (as_of - last_day).days
    if gap > stale_after_days:
        report.problems.append(Problem(
            "transactions", "ts", "stale_export", -1,
            f"the last transaction is on {last_day}, {gap} days before data.as_of {as_of}: the data end "
            f"there, so labels use {last_day} as the end of observation (horizons past it are not "
            "labelled and the gap is never counted as churn)",
            f"re-export the data if it is stale; if nobody bought in those {gap} days for real, set "
            f"data.observed_until: {as_of}",
            severity="warning", action="kept"))


def _check_unique_customers(customers: ibis.Table, report: ValidationReport) -> None:
    dup = (customers.group_by("customer_id").aggregate(n=ibis._.count()).filter(ibis._.n > 1))
    n = int(dup.count().to_pyarrow().as_py())
    if n:
        ex = dup.order_by("customer_id").limit(3).to_pyarrow().to_pylist()
        report.problems.append(Problem(
            "customers", "customer_id", "duplicate_key", n,
            "customer ids with more than one profile row", "keep one row per customer_id",
            examples=[{"customer_id": r["customer_id"], "rows": r["n"]} for r in ex],
        ))
