"""Shadow scoring: a challenger model scored beside production, into its own dataset.

``clvml score --model CHAMPION --shadow CHALLENGER --as-of D`` scores the production model first, with
every guarantee of :func:`clvml.scoring.job.score`, and then the challenger into
``scoring.shadow_out`` (default ``<output.dir>/shadow_scores``), partitioned ``as_of=D/`` exactly like
the production scores, through the same job (atomic publish, lock, drift stop, shrink guard, manifest).
The two datasets are compared on matured partitions by :mod:`clvml.monitoring.challenger`.

Rules (each tested in ``tests/test_challenger.py``):

- **Production first, and never touched by the shadow.** The shadow run starts only once the production
  partition is published; it writes below its own root (which may neither be the production root nor
  lie inside it, nor contain it) and holds its own lock. Its failure (drift stop, shrink, an unknown or
  incompatible challenger, a full disk) leaves the production partition as written and ends in
  :class:`~clvml.errors.ShadowScoringError` (exit 23), whose message names the shadow run's own error.
- **A failed production run skips the shadow.** Its error (and exit code) is the production one; a
  shadow partition without the production partition of the same as_of could not be compared anyway.
- **Shadow only.** ``--shadow-only`` scores the challenger alone, e.g. to backfill past as_ofs that
  production already holds, so that the comparison can start on partitions that have matured.
- The data are read and validated once and used by both runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clvml.config import Config
from clvml.data.dataset import Dataset
from clvml.errors import ClvmlError, ConfigError, ShadowScoringError
from clvml.scoring.job import ScoreResult, score

Progress = Callable[[str], None]


def production_root(cfg: Config, out: Path | None = None) -> Path:
    """The Parquet root of the production scores (``--out``, ``scoring.out``, else
    ``<output.dir>/scores``)."""
    return Path(out or cfg.scoring.out or Path(cfg.output.dir) / "scores")


def shadow_root(cfg: Config, shadow_out: Path | None = None) -> Path:
    """The Parquet root of the shadow scores (``--shadow-out``, ``scoring.shadow_out``, else
    ``<output.dir>/shadow_scores``)."""
    return Path(shadow_out or cfg.scoring.shadow_out or Path(cfg.output.dir) / "shadow_scores")


def check_roots(production: Path, shadow: Path) -> None:
    """The shadow root may not be the production root, lie inside it or contain it (ConfigError, exit 2):
    a reader of either dataset would pick up the other's partitions."""
    p, s = production.absolute().resolve(), shadow.absolute().resolve()
    if p == s or p in s.parents or s in p.parents:
        raise ConfigError([f"the shadow scores root {shadow} and the production scores root {production} "
                           "overlap (the same folder, or one inside the other): a reader of either would "
                           "read the other's partitions. Set scoring.shadow_out (or --shadow-out) to a "
                           "separate folder, e.g. <output.dir>/shadow_scores"])


@dataclass
class ShadowRun:
    """What ``score --shadow`` wrote: the production result (None with ``shadow_only``) and the
    shadow result."""

    production: ScoreResult | None
    shadow: ScoreResult


def score_with_shadow(cfg: Config, model: str | None, shadow: str, as_of: dt.date, *,
                      out: Path | None = None, database: str | None = None, table: str | None = None,
                      shadow_out: Path | None = None, shadow_only: bool = False, ds: Dataset | None = None,
                      allow_shrink: bool | None = None, progress: Progress = lambda _: None) -> ShadowRun:
    """Score ``model`` into production and ``shadow`` into the shadow dataset (see the module docstring).

    Parameters
    ----------
    cfg
        Config: data, ``scoring`` (also ``scoring.shadow_out``) and the tracking store.
    model
        The production (champion) model URI; ignored (may be None) with ``shadow_only``.
    shadow
        The challenger model URI: bundle folder, ``runs:/<run>/model`` or ``models:/<name>@<alias>``.
    as_of
        Prediction date of both runs.
    out, database, table
        The production target, as in :func:`clvml.scoring.job.score`.
    shadow_out
        Override ``scoring.shadow_out``.
    shadow_only
        Score the challenger only; production outputs are not read or written.
    ds, allow_shrink, progress
        As in :func:`clvml.scoring.job.score` (``allow_shrink`` applies to both runs).

    Raises
    ------
    ShadowScoringError
        The production partition was written but the shadow run failed (exit 23); ``.production``
        holds the production result and ``.cause`` the shadow run's error.
    ConfigError
        No production model without ``shadow_only``; the same URI for both; overlapping roots.
    """
    if not shadow_only and not model:
        raise ConfigError(["--model is required unless --shadow-only is given (the production model "
                           "is scored first, then the --shadow challenger)"])
    if not shadow_only and model == shadow:
        raise ConfigError([f"--shadow {shadow} is the production --model itself: a challenger must be "
                           "another model (e.g. --model models:/<name>@champion --shadow "
                           "models:/<name>@candidate)"])
    sroot = shadow_root(cfg, shadow_out)
    if not (database or cfg.scoring.database):
        check_roots(production_root(cfg, out), sroot)
    if ds is None:
        from clvml.data.loading import load_data

        ds = load_data(cfg, progress)
    prod = None
    if not shadow_only:
        progress(f"production: scoring {model}")
        prod = score(cfg, model, as_of, out=out, database=database, table=table, ds=ds,
                     allow_shrink=allow_shrink, progress=progress)
    progress(f"shadow: scoring the challenger {shadow} into {sroot}")
    if shadow_only:
        return ShadowRun(None, score(cfg, shadow, as_of, out=sroot, ds=ds, allow_shrink=allow_shrink,
                                     progress=lambda m: progress(f"shadow: {m}")))
    try:
        res = score(cfg, shadow, as_of, out=sroot, ds=ds, allow_shrink=allow_shrink,
                    progress=lambda m: progress(f"shadow: {m}"))
    except Exception as exc:  # noqa: BLE001 - whatever it is, production stands and is said to
        code = exc.exit_code if isinstance(exc, ClvmlError) else 1
        what = str(exc) if isinstance(exc, ClvmlError) else f"{type(exc).__name__}: {exc}"
        raise ShadowScoringError(
            f"the production scores were written ({prod.manifest['rows_out']:,} rows -> {prod.target}), "
            f"but the shadow run of {shadow} failed (its exit code alone would be {code}): {what}",
            production=prod, cause=exc) from exc
    return ShadowRun(prod, res)
