"""Champion against challenger on matured score partitions.

Production scores (``scoring.out``, default ``<output.dir>/scores``) are written by the champion; the
shadow scores (``scoring.shadow_out``, default ``<output.dir>/shadow_scores``) by a challenger through
``clvml score --shadow``. For every ``as_of=D`` present in **both** datasets whose horizon ``[D, D + H)``
is covered by the data (it ends on or before the last observed day, :func:`clvml.data.cutoffs.data_end`),
:func:`compare_champion_challenger` builds the realised outcomes with the training label builder
(:func:`clvml.labels.build_labels`, the config's ``labels.churn_definition``), keeps the customers
present in both partitions and in the outcomes, and computes every churn and value metric of
:mod:`clvml.evaluation.metrics` for both models. ``H`` is the horizon the scoring models were trained
with (recorded in each partition's manifest; the config's ``labels.horizon_days`` for partitions
written before it was recorded); partitions whose two models have different horizons are refused.

The decision (``promote`` section of the config) is taken on the runs scored by one challenger: the
one that wrote the most recently written shadow partition, unless one is named. A run is counted when
it matured, both models differ, and the metric is defined (a churn metric needs both outcomes in the
run). With fewer than ``promote.min_runs`` counted runs the outcome is ``insufficient``; otherwise
``promote`` when the improvement (challenger minus champion, sign turned so that positive is better)
exceeds ``promote.min_improvement`` on average (``rule: mean``) or in every run (``rule: every``), else
``keep``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clvml.config import PROMOTE_METRICS, Config
from clvml.data.dataset import Dataset
from clvml.errors import DataSourceError, ModelIncompatibleError, NoShadowRunsError
from clvml.evaluation.metrics import churn_metrics, value_metrics
from clvml.scoring.job import DATA, MANIFEST
from clvml.scoring.shadow import check_roots, production_root, shadow_root

Progress = Callable[[str], None]
_PARTITION = re.compile(r"^as_of=(\d{4}-\d{2}-\d{2})$")
#: score columns the comparison reads from each partition
NEEDED = ("customer_id", "churn_probability", "expected_value")


@dataclass
class Comparison:
    """Champion against challenger.

    ``table``: tidy, one row per as_of × role (champion/challenger) × metric, with the model that wrote
    the partition and the customers compared. ``runs``: one row per as_of in both datasets, with its
    status (``matured``, ``not_matured``, ``same_model``, ``other_challenger``, ``undefined``), the
    configured metric for both models and the improvement. ``decision``: the outcome and its evidence.
    """

    table: pd.DataFrame
    runs: pd.DataFrame
    decision: dict[str, Any] = field(default_factory=dict)


def partitions(root: Path) -> dict[dt.date, Path]:
    """The ``as_of=YYYY-MM-DD`` partitions under ``root`` that hold a data file, by date."""
    out: dict[dt.date, Path] = {}
    if not root.is_dir():
        return out
    for p in root.iterdir():
        m = _PARTITION.match(p.name)
        if m and p.is_dir() and (p / DATA).is_file():
            try:
                out[dt.date.fromisoformat(m.group(1))] = p
            except ValueError:
                continue
    return dict(sorted(out.items()))


def _manifest(partition: Path) -> dict[str, Any]:
    try:
        return json.loads((partition / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _model(partition: Path, horizon: int) -> dict[str, Any]:
    m = _manifest(partition).get("model") or {}
    return {"model_version": m.get("version"), "registry_version": m.get("registry_version"),
            "run_id": m.get("run_id"), "uri": m.get("uri"), "horizon_days": int(m.get("horizon_days") or horizon),
            "written": (partition / MANIFEST).stat().st_mtime if (partition / MANIFEST).exists() else 0.0}


def _scores(partition: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    path = partition / DATA
    try:
        names = pq.read_schema(path).names
    except Exception as exc:  # noqa: BLE001 - a damaged file: named, with the error
        raise DataSourceError(f"cannot read the score file {path}: {type(exc).__name__}: {exc}") from None
    missing = [c for c in NEEDED if c not in names]
    if missing:
        raise DataSourceError(f"the score file {path} has no column(s) {missing} (it holds {names[:8]}…): "
                              "it was not written by clvml score. Move it away or re-score that as_of")
    df = pd.read_parquet(path, columns=list(NEEDED))
    return df.assign(customer_id=df.customer_id.astype(str))


def _metrics(y: np.ndarray, p: np.ndarray, actual: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    out: dict[str, float] = {}
    if len(y) and 0 < y.sum() < len(y):
        out.update({f"churn_{k}": v for k, v in churn_metrics(y, p).items()})
    if len(actual):
        vm = value_metrics(actual, pred) if actual.sum() > 0 else {"mae": float(np.abs(actual - pred).mean())}
        out.update({f"value_{k}": v for k, v in vm.items()})
    return {k: float(v) for k, v in out.items() if k in PROMOTE_METRICS}


def compare_champion_challenger(cfg: Config, ds: Dataset | None = None, *, challenger_version: str | None = None,
                                challenger_run_id: str | None = None, production: Path | None = None,
                                shadow: Path | None = None, progress: Progress = lambda _: None) -> Comparison:
    """Compare the production (champion) and shadow (challenger) scores on matured partitions.

    Parameters
    ----------
    cfg
        Config: data (the realised outcomes come from it), ``labels``, ``scoring.out`` /
        ``scoring.shadow_out`` and the ``promote`` rule.
    ds
        Already loaded data (default: read and validate the config's sources).
    challenger_version, challenger_run_id
        Decide on the shadow partitions written by this registry version or MLflow run (default: the
        model of the most recently written shadow partition).
    production, shadow
        Override the two Parquet roots.

    Returns
    -------
    Comparison
        The tidy metric table, one row per common as_of, and the decision (module docstring).

    Raises
    ------
    NoShadowRunsError
        No as_of is in both datasets (exit 20).
    DataSourceError
        A score file that clvml did not write (exit 3).
    ModelIncompatibleError
        The two models of an as_of were trained for different horizons (exit 5).
    """
    if cfg.scoring.database and production is None:
        from clvml.errors import ConfigError

        raise ConfigError(["the champion/challenger comparison reads Parquet score partitions, but this "
                           f"config writes production scores to the database {cfg.scoring.database}; "
                           "score production into Parquet (scoring.out) to compare it with the shadow scores"])
    proot, sroot = production or production_root(cfg), shadow or shadow_root(cfg)
    check_roots(proot, sroot)
    prod, shad = partitions(proot), partitions(sroot)
    common = sorted(set(prod) & set(shad))
    if not common:
        def held(parts: dict[dt.date, Path]) -> str:
            return f"{len(parts)} partition(s) ({', '.join(map(str, list(parts)[-3:]))})" if parts else "none"
        raise NoShadowRunsError(
            f"no as_of is scored both in production ({proot}: {held(prod)}) and in the shadow dataset "
            f"({sroot}: {held(shad)}). Score the challenger beside production with `clvml score --model "
            "CHAMPION --shadow CHALLENGER --as-of D`, or backfill past as_ofs with `--shadow-only`")
    if ds is None:
        from clvml.data.loading import load_data

        ds = load_data(cfg, progress)
    from clvml.data.cutoffs import data_end

    last = data_end(ds)
    horizon = cfg.labels.horizon_days
    models = {d: (_model(prod[d], horizon), _model(shad[d], horizon)) for d in common}
    for d, (c, s) in models.items():
        if c["horizon_days"] != s["horizon_days"]:
            raise ModelIncompatibleError(
                f"as_of {d}: the production model ({c['uri']}) predicts {c['horizon_days']} days ahead and the "
                f"shadow model ({s['uri']}) {s['horizon_days']} days: they cannot be judged on the same "
                "outcomes. Train the challenger with the champion's labels.horizon_days")
    if challenger_version is None and challenger_run_id is None:
        newest = max(common, key=lambda d: (models[d][1]["written"], d))
        chosen = models[newest][1]
        key = ("model_version", chosen["model_version"])
    else:
        chosen, key = None, None

    def is_challenger(s: dict[str, Any]) -> bool:
        if key is not None:
            return s[key[0]] == key[1]
        return ((challenger_version is not None and str(s["registry_version"]) == str(challenger_version))
                or (challenger_run_id is not None and s["run_id"] == challenger_run_id))

    matured = [d for d in common if d + dt.timedelta(days=models[d][0]["horizon_days"] - 1) <= last]
    labels: dict[dt.date, pd.DataFrame] = {}
    by_h: dict[int, list[dt.date]] = {}
    for d in matured:
        by_h.setdefault(models[d][0]["horizon_days"], []).append(d)
    target = cfg.labels.value_target
    from clvml.labels import build_labels

    for h, days in by_h.items():
        progress(f"realised outcomes over {h} days for {len(days)} matured as_of(s)")
        lab = build_labels(ds.tables, days, horizon_days=h, churn_definition=cfg.labels.churn_definition,
                           cancellation_event=cfg.labels.cancellation_event, data_end=last).to_pandas()
        if target not in lab.columns:
            raise DataSourceError(f"labels.value_target is {target!r} but the transactions have no {target} "
                                  "column; map it in data.tables.transactions.columns or use spend")
        lab = lab.assign(customer_id=lab.customer_id.astype(str), cutoff=pd.to_datetime(lab.cutoff).dt.date)
        for d, g in lab.groupby("cutoff"):
            labels[d] = g[["customer_id", "churn", target]]

    metric, higher = cfg.promote.metric, PROMOTE_METRICS[cfg.promote.metric]
    rows, runs = [], []
    for d in common:
        c, s = models[d]
        run: dict[str, Any] = {"as_of": d, "champion": c["model_version"], "champion_registry_version":
                               c["registry_version"], "challenger": s["model_version"],
                               "challenger_registry_version": s["registry_version"],
                               "horizon_days": c["horizon_days"], "customers": 0,
                               "champion_value": math.nan, "challenger_value": math.nan,
                               "improvement": math.nan}
        end = d + dt.timedelta(days=c["horizon_days"] - 1)
        if d not in labels:
            run["status"] = "not_matured"
            run["note"] = f"horizon ends {end}, data end {last}"
            runs.append(run)
            continue
        a, b = _scores(prod[d]), _scores(shad[d])
        lab = labels[d]
        both = a.merge(b, on="customer_id", suffixes=("_champion", "_challenger")).merge(lab, on="customer_id")
        both = both.sort_values("customer_id", kind="mergesort")
        run.update(customers=len(both), production_only=int((~a.customer_id.isin(b.customer_id)).sum()),
                   shadow_only=int((~b.customer_id.isin(a.customer_id)).sum()),
                   without_outcome=int((~a.customer_id.isin(lab.customer_id)).sum()))
        y = both["churn"].to_numpy(int)
        actual = both[target].to_numpy(float)
        values = {}
        for role in ("champion", "challenger"):
            m = _metrics(y, both[f"churn_probability_{role}"].to_numpy(float), actual,
                         both[f"expected_value_{role}"].to_numpy(float))
            values[role] = m
            info = c if role == "champion" else s
            rows += [{"as_of": d, "role": role, "model_version": info["model_version"],
                      "registry_version": info["registry_version"], "metric": k, "value": v,
                      "customers": len(both)} for k, v in sorted(m.items())]
        cv, sv = values["champion"].get(metric, math.nan), values["challenger"].get(metric, math.nan)
        run.update(champion_value=cv, challenger_value=sv, improvement=(sv - cv) if higher else (cv - sv))
        if c["model_version"] == s["model_version"]:
            run["status"], run["note"] = "same_model", "both partitions were scored by the same model"
        elif not is_challenger(s):
            run["status"], run["note"] = "other_challenger", "scored by another challenger than the one judged"
        elif not (math.isfinite(cv) and math.isfinite(sv)):
            run["status"], run["note"] = "undefined", f"{metric} is undefined on this run (a single outcome?)"
        else:
            run["status"], run["note"] = "matured", ""
        runs.append(run)
    cols = ["as_of", "role", "model_version", "registry_version", "metric", "value", "customers"]
    table = pd.DataFrame(rows, columns=cols)
    runs_df = pd.DataFrame(runs)
    if chosen is None:
        hits = [models[d][1] for d in common if is_challenger(models[d][1])]
        chosen = hits[-1] if hits else {"model_version": None, "registry_version": challenger_version,
                                        "run_id": challenger_run_id, "uri": None}
    decision = _decide(cfg, runs_df, chosen, last)
    return Comparison(table, runs_df, decision)


def _decide(cfg: Config, runs: pd.DataFrame, challenger: dict[str, Any], last: dt.date) -> dict[str, Any]:
    p = cfg.promote
    counted = runs[runs.status == "matured"] if len(runs) else runs
    imp = [float(x) for x in counted.improvement] if len(counted) else []
    out: dict[str, Any] = {
        "metric": p.metric, "higher_is_better": PROMOTE_METRICS[p.metric], "rule": p.rule,
        "min_runs": p.min_runs, "min_improvement": p.min_improvement, "data_end": str(last),
        "challenger": {k: challenger.get(k) for k in ("model_version", "registry_version", "run_id", "uri")},
        "champions": sorted({str(v) for v in counted.champion}) if len(counted) else [],
        "runs": len(imp), "as_ofs": [str(d) for d in counted.as_of] if len(counted) else [],
        "improvements": [round(x, 6) for x in imp],
        "mean_improvement": round(float(np.mean(imp)), 6) if imp else None,
        "champion_mean": round(float(counted.champion_value.mean()), 6) if imp else None,
        "challenger_mean": round(float(counted.challenger_value.mean()), 6) if imp else None,
    }
    if len(imp) < p.min_runs:
        waiting = int((runs.status == "not_matured").sum()) if len(runs) else 0
        out["outcome"] = "insufficient"
        out["reason"] = (f"{len(imp)} matured run(s) of this challenger against the champion, "
                         f"promote.min_runs is {p.min_runs} ({waiting} more as_of(s) scored by both "
                         "have not matured yet)")
        return out
    wins = (np.mean(imp) > p.min_improvement) if p.rule == "mean" else all(x > p.min_improvement for x in imp)
    out["outcome"] = "promote" if wins else "keep"
    how = "on average" if p.rule == "mean" else "in every run"
    out["reason"] = (f"{p.metric}: challenger {out['challenger_mean']:.4f} vs champion {out['champion_mean']:.4f} "
                     f"over {len(imp)} matured run(s); improvement {out['mean_improvement']:+.4f} on average "
                     f"({', '.join(f'{x:+.4f}' for x in imp)}); it must exceed {p.min_improvement:g} {how}")
    return out
