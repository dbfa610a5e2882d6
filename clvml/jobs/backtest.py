"""``clvml backtest``: rolling-origin evaluation, report in ``output.dir/backtest``, MLflow run."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from clvml.config import Config
from clvml.data.cutoffs import clv_origins, data_end
from clvml.data.dataset import Dataset
from clvml.data.loading import Progress, load_data, quiet
from clvml.evaluation.backtest import BacktestResult, backtest
from clvml.evaluation.report import write_report
from clvml.jobs.train import _log_data, _log_evaluation
from clvml.modeling.training import make_training_set


def backtest_origins(cfg: Config, labelled: list[dt.date]) -> list[dt.date]:
    """The configured origins, else the latest ``backtest.last`` labelled cut-offs."""
    if cfg.backtest.origins:
        return sorted(set(cfg.backtest.origins))
    return labelled[-cfg.backtest.last:]


def synthetic_truth(cfg: Config):
    """The synthetic world's truth table when the config generates one (for the oracle rows)."""
    import pandas as pd

    syn = cfg.data.synthetic
    path = Path(syn.path) / "truth.parquet" if syn is not None else None
    return pd.read_parquet(path) if path is not None and path.is_file() else None


@dataclass
class BacktestRun:
    result: BacktestResult
    report: dict[str, Path]
    run_id: str | None


def run_backtest(cfg: Config, ds: Dataset | None = None, progress: Progress = quiet) -> BacktestRun:
    """``clvml backtest``: rolling-origin evaluation, report in ``output.dir/backtest``, MLflow run."""
    ds = ds or load_data(cfg, progress)
    progress("building point-in-time features and labels")
    ts = make_training_set(ds, cfg, progress=progress)
    origins = backtest_origins(cfg, ts.cutoffs)
    long = clv_origins(cfg, ts.cutoffs, data_end(ds))
    result = backtest(ts, cfg, ds, origins, progress, clv_origins=long, truth=synthetic_truth(cfg))
    report = write_report(result, Path(cfg.output.dir) / "backtest", f"clvml backtest: {cfg.name}",
                          {"origins": ", ".join(str(o) for o in origins),
                           "CLV origins": ", ".join(str(o) for o in long) or "none (too little data)",
                           "horizon (days)": cfg.labels.horizon_days, "rows": len(ts.frame),
                           "features": len(ts.feature_columns)})
    run_id = None
    if cfg.tracking.enabled:
        from clvml import tracking

        with tracking.start_run(cfg, run_name=f"backtest-{cfg.name}",
                                tags={"clvml.job": "backtest"}) as run:
            tracking.log_config(cfg)
            _log_data(ds, ts)
            _log_evaluation(result, report, "backtest_")
            run_id = run.info.run_id
    return BacktestRun(result, report, run_id)
