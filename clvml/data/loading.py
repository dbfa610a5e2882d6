"""Config → validated tables: generate (or reuse) the configured synthetic world, then read and validate
every configured table on the configured engine."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from clvml.config import Config, TableSource
from clvml.data.contracts import SCHEMAS
from clvml.data.cutoffs import clv_origins, cutoff_grid
from clvml.data.dataset import Dataset, load_dataset
from clvml.data.validation import ValidationReport
from clvml.errors import ClvmlError, DataValidationError

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """A progress callback that says nothing."""


def synthetic_cutoffs(cfg: Config) -> list[dt.date]:
    """Cut-offs for the synthetic ground truth: the training grid plus the scoring date."""
    syn = cfg.data.synthetic
    grid = cutoff_grid(cfg, syn.end)
    return sorted(set(grid) | {syn.end + dt.timedelta(days=1)})


def synthetic_long_cutoffs(cfg: Config) -> list[dt.date]:
    """Cut-offs for the long-horizon truth (the oracle CLV): the CLV origins the backtest will use."""
    syn = cfg.data.synthetic
    grid = cutoff_grid(cfg, syn.end)
    h = dt.timedelta(days=cfg.labels.horizon_days)
    labelled = [c for c in grid if c + h <= syn.end + dt.timedelta(days=1)]
    try:
        return clv_origins(cfg, labelled, syn.end)
    except ClvmlError:  # misconfigured clv_origins: the backtest says so
        return []


def _world_matches(path: Path, cutoffs: list[dt.date], end: dt.date, campaigns: bool = False,
                   long: tuple[list[dt.date], int] = ([], 0)) -> bool:
    """A world written earlier is reused only if its truth covers every cut-off the config needs
    (cut-offs after the last simulated day have no truth) and it has the configured campaigns."""
    truth = path / "truth.parquet"
    if not (path / "transactions.parquet").exists() or not truth.exists():
        return False
    if campaigns and not (path / "assignments.parquet").exists():
        return False
    if "p_purchase_observable" not in pq.read_schema(truth).names:  # written before that truth
        return False
    have = set(pd.to_datetime(pd.read_parquet(truth, columns=["cutoff"])["cutoff"]).dt.date)
    if not {c for c in cutoffs if c <= end} <= have:
        return False
    if long[0]:
        if "expected_spend_long" not in pq.read_schema(truth).names:
            return False
        t = pd.read_parquet(truth, columns=["cutoff", "expected_spend_long", "long_horizon_days"])
        t = t[t["expected_spend_long"].notna()]
        if set(long[0]) - set(pd.to_datetime(t["cutoff"]).dt.date) or (t["long_horizon_days"] != long[1]).any():
            return False
    return True


def load_data(cfg: Config, progress: Progress = quiet, *, log_findings: bool = True) -> Dataset:
    """Generate the synthetic world when configured (reusing it if already written), then read and
    validate every configured table. Every finding the run goes on with (rows dropped or kept by a
    policy, warnings) is one ``progress`` line unless ``log_findings`` is false (``validate`` prints
    the full report instead); ``data.strict`` refuses any dropped row."""
    data = cfg.data
    if data.synthetic is not None:
        syn = data.synthetic
        path = Path(syn.path)
        long = (synthetic_long_cutoffs(cfg), cfg.clv.periods * cfg.labels.horizon_days)
        if not _world_matches(path, synthetic_cutoffs(cfg), syn.end, bool(syn.campaigns), long):
            from clvml.datasets.synthetic import Campaign, simulate

            progress(f"generating a synthetic world of {syn.n_customers:,} customers")
            world = simulate(syn.n_customers, syn.start, syn.end, cutoffs=synthetic_cutoffs(cfg),
                             horizon_days=cfg.labels.horizon_days, seed=syn.seed,
                             long_truth=long[0], long_horizon_days=long[1],
                             campaigns=[Campaign(**c.model_dump()) for c in syn.campaigns])
            world.write(path)
        if data.observed_until is None:  # the simulator observes every day up to its end
            data.observed_until = syn.end
        for name in SCHEMAS:
            if name not in data.tables:
                data.tables[name] = TableSource(path=path / f"{name}.parquet")
    from clvml.engine import connect_engine

    progress(f"reading and validating input tables ({cfg.engine.backend})")
    ds = load_dataset(data, con=connect_engine(cfg.engine), progress=progress)
    report_findings(ds.report, progress if log_findings else quiet, strict=data.strict)
    return ds


def report_findings(report: ValidationReport, progress: Progress, *, strict: bool = False) -> None:
    """One log line per finding a run went on with — rows dropped or kept by a policy, warnings such
    as a stale export — naming table, column, reason, rows and examples, in the terminal and in the
    JSON log alike (a scheduled job's log must say what it dropped, not only its manifest).

    With ``strict`` any dropped row stops the run: the findings become errors (exit 3).
    """
    for p in report.problems:
        if p.action == "stopped":
            continue
        where = f"{p.table}.{p.column}" if p.column else p.table
        rows = f"{p.n_rows:,} row(s) " if p.n_rows >= 0 else ""
        what = {"dropped": "dropped by policy", "kept": "kept by policy",
                "aggregated": "grouped into orders"}.get(p.action, p.action)
        ex = f"; e.g. {p.examples[0]}" if p.examples else ""
        progress(f"{p.severity}: {where}: {p.message} — {rows}{what}{ex}")
    dropped = [p for p in report.problems if p.action == "dropped"]
    if strict and dropped:
        for p in dropped:
            p.severity, p.action = "error", "stopped"
            p.fix = f"{p.fix} (--strict / data.strict: true refuses every dropped row)"
        raise DataValidationError(report)


