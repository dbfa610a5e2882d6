"""The ``clvml`` command line: a thin layer over the public API.

Exit codes: 0 success; 1 unexpected clvml error; 2 invalid configuration; 3 invalid input data;
4 drift stop; 5 model incompatible; 6 output not writable; 7 lock held by another run; 8 the engine
cannot start; 9 model not found; 10 monitoring alert; 11 a database input cannot be reached;
20-22 clvml promote did not move the alias; 23 production scores written but the shadow run failed
(see ``clvml.errors.EXIT_CODES``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from clvml.console import error, progress, say, say_parts
from clvml.errors import ClvmlError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Churn and customer-lifetime-value modelling.")
features_app = typer.Typer(no_args_is_help=True, help="The feature catalog.")
app.add_typer(features_app, name="features")
report_app = typer.Typer(no_args_is_help=True, help="Reports for analysts.")
app.add_typer(report_app, name="report")
experiment_app = typer.Typer(no_args_is_help=True, help="Retention-incentive experiments and uplift.")
app.add_typer(experiment_app, name="experiment")
_progress = progress  # every line verbatim; JSON lines when stderr is not a terminal (clvml.console)


def _run(fn):
    try:
        return fn()
    except ClvmlError as exc:
        error(exc)
        raise typer.Exit(exc.exit_code) from None
    except Exception as exc:  # out of memory anywhere (features, training, scoring): exit 8, a hint
        from clvml.engine import engine_error
        from clvml.errors import EngineError

        err = engine_error(exc, "the engine")
        if not isinstance(err, EngineError):
            raise
        error(err)
        raise typer.Exit(err.exit_code) from None


def _config(path: Path | None, engine: str | None = None, strict: bool = False):
    from clvml.config import load_config

    if path is None:
        from clvml.datasets import demo_config_path

        path = demo_config_path()
    cfg = load_config(path)
    if engine is not None:
        from pydantic import ValidationError

        from clvml.errors import ConfigError

        try:
            cfg.engine.backend = engine
        except ValidationError:
            raise ConfigError([f"--engine: {engine!r} is not an engine (duckdb, spark); it sets "
                               "engine.backend"], str(path)) from None
    cfg.data.strict = cfg.data.strict or strict
    return cfg


def _day(value: str | None, option: str = "--as-of"):
    """A calendar date written YYYY-MM-DD (ISO week dates, ordinal dates and 20250101 are refused:
    Python's ``date.fromisoformat`` would read ``2025-W01-1`` as 2024-12-30)."""
    import datetime as dt
    import re

    from clvml.errors import ConfigError

    if value is None:
        return None
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError([f"{option}: {value!r} is not a date written YYYY-MM-DD (e.g. 2025-01-01)"]) from None


ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Refuse any row a drop policy would drop "
                                         "(exit 3) instead of dropping and counting it.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Rebuild the features even if the feature "
                                         "cache (output.dir/cache) holds them for the same inputs.")]
EngineOpt = Annotated[str | None, typer.Option("--engine", help="duckdb or spark: overrides "
                                               "engine.backend of the config.")]


@app.command()
def demo(config: ConfigOpt = None, n_customers: Annotated[int | None, typer.Option(
        help="Override the synthetic world size.")] = None) -> None:
    """Run the whole pipeline on a synthetic world and print a summary."""
    def go():
        from clvml.jobs.demo import demo as run_demo

        cfg = _config(config)
        if n_customers is not None and cfg.data.synthetic is not None:
            cfg.data.synthetic.n_customers = n_customers
        r = run_demo(cfg, _progress())
        o = r["oracle"] or {}
        say("")
        say_parts(("clvml demo", "bold"), f" — held-out cut-off {r['test_cutoff']}")
        nan = float("nan")
        say(f"  churn ROC AUC  {r['churn_auc']:.3f}   (oracle {o.get('oracle_auc', nan):.3f}, "
                      f"observable {o.get('observable_auc', nan):.3f}, "
                      f"BG/NBD {r['btyd_churn_auc']:.3f})   calibration error {r['churn_ece']:.3f}")
        say(f"  value Gini     {r['value_gini']:.3f}   (oracle {o.get('oracle_gini', nan):.3f}, "
                      f"observable {o.get('observable_gini', nan):.3f}, "
                      f"BG/NBD+GG {r['btyd_value_gini']:.3f})")
        say(f"  scores         {r['scored_customers']:,} customers -> {r['scores_path']}")
        say(f"  model          {r['model_path']}")
        say(f"  MLflow run     {r['run_id']} at {r['tracking_uri']}")
        say(f"  took {r['seconds']:.0f}s")
    _run(go)


@app.command()
def simulate(out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the Parquet files.")],
             n_customers: int = 20_000, start: str = "2023-01-01", end: str = "2024-12-31",
             seed: int = 7, horizon_days: int = 90) -> None:
    """Generate a synthetic world (all tables + ground truth) as Parquet."""
    def go():
        from clvml.datasets.synthetic import simulate as sim

        w = sim(n_customers, start, end, seed=seed, horizon_days=horizon_days)
        w.write(out)
        for name, df in {**w.tables(), "truth": w.truth}.items():
            say(f"  {name:<13} {len(df):>10,} rows")
        say(f"wrote {out} in {w.params['seconds']}s")
    _run(go)


@app.command()
def validate(config: Annotated[Path, typer.Argument(help="YAML config file.")],
             engine: EngineOpt = None, strict: StrictOpt = False) -> None:
    """Check a config and the data it points to, without training."""
    def go():
        from clvml.data.loading import load_data

        cfg = _config(config, engine, strict)
        ds = load_data(cfg, _progress(), log_findings=False)
        for p in ds.report.problems:
            say("  " + p.format())
        for name, n in ds.report.rows_out.items():
            say(f"  {name:<13} {ds.report.rows_in.get(name, n):>10,} rows in, {n:>10,} kept")
            if name in ds.report.line_items:  # grain: line
                li = ds.report.line_items[name]
                say(f"  {'':<13} {n:>10,} lines -> {li['orders']:>10,} orders ({li['purchase_orders']:,} "
                    f"purchases, {li['refund_orders']:,} refunds; see the findings above)")
        say("config and data are valid", style="green")
    _run(go)


@app.command()
def train(config: ConfigOpt = None, engine: EngineOpt = None, no_cache: NoCacheOpt = False,
          strict: StrictOpt = False) -> None:
    """Train the churn and value models, export the bundle and log the run to MLflow."""
    def go():
        import signal

        from clvml.jobs.train import return_freed_memory
        from clvml.jobs.train import train as run_train

        return_freed_memory()  # process-wide allocator settings: this process is clvml's own
        # SIGTERM (cron/Airflow timeouts) unwinds like Ctrl-C: the MLflow run ends FAILED, the registry
        # alias is rolled back and the staged bundle removed; the previous bundle stays in place
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        cfg = _config(config, engine, strict)
        cfg.features.cache = cfg.features.cache and not no_cache
        r = run_train(cfg, progress=_progress())
        held = {k: r.summary[k] for k in ("test_cutoff", "evaluation", "churn", "value")}
        for task in ("churn", "value"):  # 4 significant digits: what a metric can tell
            held[task] = {m: float(f"{v:.4g}") for m, v in held[task].items()}
        say(json.dumps(held, indent=2, default=str))
        say(f"model exported to {r.model_path}; {_run_note(r.run_id)}")
        say(f"evaluation report: {r.report['report']}")
    _run(go)


def _run_note(run_id: str | None) -> str:
    """Where the run is tracked: its MLflow run, or that tracking is off (``tracking.enabled: false``)."""
    return f"MLflow run {run_id}" if run_id else "MLflow tracking off (tracking.enabled: false)"


@app.command()
def backtest(config: ConfigOpt = None, engine: EngineOpt = None, no_cache: NoCacheOpt = False,
             strict: StrictOpt = False) -> None:
    """Rolling-origin backtest: LightGBM beside the BTYD and simple baselines, CLV against realised
    value, interval coverage, HTML report."""
    def go():
        from clvml.jobs.backtest import run_backtest

        cfg = _config(config, engine, strict)
        cfg.features.cache = cfg.features.cache and not no_cache
        r = run_backtest(cfg, progress=_progress())
        s = r.result.summary()
        keep = [("churn", "roc_auc"), ("churn", "pr_auc"), ("churn", "brier"), ("churn", "ece"),
                ("churn", "lift_top10"), ("value", "mae"), ("value", "normalized_gini"),
                ("value", "spearman"), ("value", "decile_mape"), ("value", "total_error_pct"),
                ("clv", "mae"), ("clv", "normalized_gini"), ("clv", "capture_top1"), ("clv", "capture_top5"),
                ("clv", "capture_top20"), ("clv", "total_error_pct"), ("value_interval", "coverage"),
                ("clv_interval", "coverage")]
        print(s.loc[[k for k in keep if k in s.index]].round(4).to_string())
        say(f"report: {r.report['report']}; {_run_note(r.run_id)}")
    _run(go)


@app.command()
def tune(config: ConfigOpt = None, n_trials: Annotated[int | None, typer.Option(
        help="Override tune.n_trials.")] = None, no_cache: NoCacheOpt = False) -> None:
    """Optuna study on time-ordered validation cut-offs; writes the tuned config for `clvml train`."""
    def go():
        from clvml.jobs.tune import tune as run_tune

        cfg = _config(config)
        cfg.features.cache = cfg.features.cache and not no_cache
        if n_trials is not None:
            cfg.tune.n_trials = n_trials
        r = run_tune(cfg, progress=_progress())
        base = "" if r.default_value is None else f" (the config's own parameters: {r.default_value:.4f})"
        say(f"best {cfg.tune.objective} {r.best_value:.4f}{base} after {r.trials} trials "
                      f"({r.pruned} pruned): {json.dumps(r.best_params)}")
        say(f"tuned config: {r.config_path} (train with `clvml train -c {r.config_path}`); "
                      f"{_run_note(r.run_id)}")
    _run(go)


@app.command()
def score(
    as_of: Annotated[str, typer.Option("--as-of", help="Prediction date YYYY-MM-DD: events strictly "
                                       "before it are used.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Bundle folder, runs:/<id>/model or "
                                              "models:/<name>@<alias> (required unless --shadow-only).")]
    = None,
    config: ConfigOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Parquet root (partition as_of=DATE is "
                                             "replaced).")] = None,
    table: Annotated[str | None, typer.Option("--table", help="Write to this table of the DuckDB "
                                              "database given by --database / scoring.database.")] = None,
    database: Annotated[str | None, typer.Option("--database", help="DuckDB database file, or an Ibis "
                                                 "URL (sqlite:///…, postgres://…).")] = None,
    engine: EngineOpt = None,
    strict: StrictOpt = False,
    allow_shrink: Annotated[bool, typer.Option("--allow-shrink", help="Write the scores even when they are "
                                               "empty or more than scoring.max_shrink smaller than the "
                                               "as_of's previous output or the training population.")]
    = False,
    shadow: Annotated[str | None, typer.Option("--shadow", help="Also score this challenger model into the "
                                               "shadow dataset (scoring.shadow_out), after production.")]
    = None,
    shadow_only: Annotated[bool, typer.Option("--shadow-only", help="Score only the --shadow challenger "
                                              "(e.g. backfill past as_ofs); production is not touched.")]
    = False,
    shadow_out: Annotated[Path | None, typer.Option("--shadow-out", help="Parquet root of the shadow "
                                                    "scores (overrides scoring.shadow_out).")] = None,
) -> None:
    """Score every customer as of a date: churn, value, CLV, segments, actions, reason codes.

    Exit codes: 0 ok, 2 bad config (also a --database that is not a DuckDB file), 3 bad input data
    (also: scores empty or shrunk beyond scoring.max_shrink), 4 drift stop, 5 model incompatible or
    unreadable, 6 output not writable, 7 another run holds the lock, 8 the engine cannot start,
    9 model not found, 11 a database input cannot be reached, 23 production written but the --shadow
    run failed.
    """
    def go():
        from clvml.errors import ConfigError
        from clvml.scoring.job import score as run_score

        day = _day(as_of)
        cfg = _config(config, engine, strict)
        if table and not (database or cfg.scoring.database):
            raise ConfigError(["--table needs --database (or scoring.database in the config)"])
        if (shadow_only or shadow_out) and not shadow:
            raise ConfigError(["--shadow-only and --shadow-out need --shadow MODEL_URI (the challenger)"])
        if shadow_only and (out or database or table):
            raise ConfigError(["--shadow-only writes the shadow dataset only: --out, --database and --table "
                               "(production targets) cannot be given with it"])
        allow = True if allow_shrink else None
        if shadow:
            from clvml.errors import ShadowScoringError
            from clvml.scoring.shadow import score_with_shadow

            try:
                r = score_with_shadow(cfg, model, shadow, day, out=out, database=database, table=table,
                                      shadow_out=shadow_out, shadow_only=shadow_only, allow_shrink=allow,
                                      progress=_progress())
            except ShadowScoringError as exc:
                _said(exc.production)
                raise
            if r.production is not None:
                _said(r.production)
            _said(r.shadow, "shadow: ")
            return
        if not model:
            raise ConfigError(["--model is required (or give --shadow URI --shadow-only)"])
        _said(run_score(cfg, model, day, out=out, database=database, table=table, allow_shrink=allow,
                        progress=_progress()))
    _run(go)


def _said(r, prefix: str = "") -> None:
    m = r.manifest
    say(f"{prefix}{m['rows_out']:,} customers scored as of {m['as_of']} -> {r.target} "
        f"(model {m['model']['version']}, {m['seconds']:.0f}s); drift (PSI) of the scores "
        f"{m['drift'].get('scores')}")


@app.command()
def promote(
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Promote even if the challenger does not win "
                                        "(recorded on the MLflow run and the model version).")] = False,
    version: Annotated[str | None, typer.Option("--version", help="The challenger's registry version "
                                                "(default: the model of the newest shadow partition).")]
    = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="Move the alias back to the previous "
                                           "champion.")] = False,
) -> None:
    """Move the production alias (promote.alias) to the challenger when it wins on matured partitions.

    Exit codes: 0 moved (or already there), 2 bad config, 3 bad data or score files, 9 unknown model or
    nothing to roll back to, 20 no shadow partitions, 21 fewer matured runs than promote.min_runs,
    22 the challenger does not win (alias unchanged).
    """
    def go():
        from clvml.jobs import promote as job

        cfg = _config(config)
        if rollback:
            if force or version:
                from clvml.errors import ConfigError

                raise ConfigError(["--rollback takes no --force or --version"])
            r = job.rollback(cfg, progress=_progress())
            say(f"alias {r.alias!r} moved back from version {r.from_version} to {r.to_version} "
                f"(MLflow run {r.run_id})")
            return
        r = job.promote(cfg, force=force, version=version, progress=_progress())
        if r.comparison is not None and len(r.comparison.runs):
            cols = ["as_of", "status", "customers", "champion_value", "challenger_value", "improvement"]
            print(r.comparison.runs[cols].round(4).to_string(index=False))
        if r.decision:
            say(f"decision: {r.decision['outcome']} — {r.decision['reason']}")
        if r.moved:
            say(f"alias {r.alias!r} moved from {r.from_version or 'nothing'} to version {r.to_version}"
                f"{' (forced)' if r.forced else ''}; evidence in MLflow run {r.run_id}")
        else:
            say(f"version {r.to_version} already holds the alias {r.alias!r}; nothing moved")
    _run(go)


@app.command()
def monitor(config: ConfigOpt = None, scores: Annotated[Path | None, typer.Option(
        "--scores", help="Scores root holding the as_of=DATE partitions (default scoring.out).")] = None,
            engine: EngineOpt = None) -> None:
    """Judge every stored score partition against what its customers then did; retention KPIs, alerts
    and a retraining recommendation in <scores root>/_monitoring.

    Exit codes: 0 ok, 2 bad config, 3 no partitions / another schema / data no longer covering a
    partition, 10 a monitoring threshold was crossed (outputs and recommendation written).
    """
    def go():
        from clvml.errors import MonitorAlert
        from clvml.monitoring import monitor as run_monitor
        from clvml.monitoring import summary_table

        cfg = _config(config, engine)
        r = run_monitor(cfg, scores=scores, progress=_progress())
        say(summary_table(r), stderr=False)
        for note in r.notes:
            say(f"note: {note}")
        say(f"monitoring: {r.out} (report {r.out / 'report.html'}); {r.recommendation['summary']}")
        if r.alerts:
            raise MonitorAlert(f"{len(r.alerts)} monitoring alert(s):\n  " + "\n  ".join(a.message for a in r.alerts)
                               + f"\nRetraining recommended: {r.out / 'recommendation.json'}")
    _run(go)


@report_app.command("analytics")
def report_analytics(config: ConfigOpt = None, as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Use only events before this date (default: all).")] = None,
                     out: Annotated[Path | None, typer.Option(help="Folder (default <output.dir>/analytics).")]
                     = None) -> None:
    """Repurchase rate, cohort retention, repurchase cycle, first-to-second purchase, churn rate over
    time and survey summaries: CSV + PNG + one HTML page."""
    def go():
        from clvml.analytics.repurchase_report import write_analytics_report
        from clvml.data.loading import load_data

        day = _day(as_of)
        cfg = _config(config)
        ds = load_data(cfg, _progress())
        r = write_analytics_report(ds, out or Path(cfg.output.dir) / "analytics",
                                   horizon_days=cfg.labels.horizon_days, before=day)
        say(f"analytics report: {r['report']}")
    _run(go)


AssignOpt = Annotated[Path | None, typer.Option(
    "--assignments", "-a", help="Assignment table (.parquet/.csv): customer_id, group, assigned_ts "
    "(default experiments.assignments, or the synthetic world's campaign).")]
WindowOpt = Annotated[int | None, typer.Option("--window-days", help="Outcome window (default "
                                               "experiments.window_days).")]


def _experiment_cfg(config, window_days, **over):
    cfg = _config(config)
    if window_days is not None:
        over["window_days"] = window_days
    from pydantic import ValidationError

    from clvml.config import ExperimentConfig, _format_errors
    from clvml.errors import ConfigError

    given = {k: v for k, v in over.items() if v is not None and v != []}
    try:  # options are validated like the YAML keys they override
        cfg.experiments = ExperimentConfig.model_validate({**cfg.experiments.model_dump(), **given})
    except ValidationError as exc:
        raise ConfigError([f"experiments.{e}" for e in _format_errors(exc)]) from None
    return cfg


@experiment_app.command("evaluate")
def experiment_evaluate(
    config: ConfigOpt = None, assignments: AssignOpt = None, window_days: WindowOpt = None,
    by: Annotated[list[str] | None, typer.Option("--by", help="Segment column (repeatable).")] = None,
    scores: Annotated[Path | None, typer.Option(help="Scores partition to take segment columns from "
                                                "(e.g. value_tier).")] = None,
    control: Annotated[str | None, typer.Option(help="Control group label.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder (default <output.dir>/experiments).")] = None,
) -> None:
    """Effect of an incentive on repurchase rate, purchases and spend, with confidence intervals,
    overall and per segment."""
    def go():
        from clvml.analytics.experiment_report import evaluate
        from clvml.data.loading import load_data

        cfg = _experiment_cfg(config, window_days, by=by, control=control)
        ds = load_data(cfg, _progress())
        r = evaluate(cfg, ds, assignments=assignments, scores=scores, out=out, progress=_progress())
        for _, e in r["effects"][r["effects"]["segment_by"] == "all"].iterrows():
            say(f"  {e['campaign_id']} {e['metric']:<12} effect {e['effect']:+.4f} "
                          f"[{e['ci_low']:+.4f}, {e['ci_high']:+.4f}]  p={e['p_value']:.3g}  "
                          f"(control {e['mean_control']:.4f}, n={e['n_treatment']:,}+{e['n_control']:,})")
        say(f"excluded: {r['summary']['excluded']}; effects: {r['files']['effects']}")
        say(f"report: {r['files']['report']}")
    _run(go)


@experiment_app.command("power")
def experiment_power(
    baseline: Annotated[float | None, typer.Option(help="Control rate or mean (default: measured "
                                                   "from the history with -c and --as-of).")] = None,
    effect: Annotated[float, typer.Option(help="Smallest effect worth detecting.")] = 0.02,
    metric: Annotated[str, typer.Option(help="rate (repurchase) or mean (spend).")] = "rate",
    sd: Annotated[float | None, typer.Option(help="Outcome sd for metric=mean.")] = None,
    relative: Annotated[bool, typer.Option(help="effect is relative to the baseline.")] = False,
    alpha: float = 0.05, power: float = 0.8,
    ratio: Annotated[float, typer.Option(help="Treated per control customer.")] = 1.0,
    config: ConfigOpt = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Measure the baseline over the window "
                                              "before this date.")] = None,
    window_days: WindowOpt = None,
) -> None:
    """Customers needed per arm to detect an effect (baseline from the history when not given)."""
    def go():
        from clvml.analytics.experiments import baseline_from_history, sample_size
        from clvml.errors import ConfigError

        base, spread = baseline, sd
        day = _day(as_of)
        if base is None or (metric == "mean" and spread is None):
            if as_of is None:
                raise ConfigError(["give --baseline (and --sd for metric=mean), or -c and --as-of "
                                      "to measure them from the history"])
            from clvml.data.loading import load_data

            cfg = _experiment_cfg(config, window_days)
            h = baseline_from_history(load_data(cfg, _progress())["transactions"],
                                      as_of=day,
                                      window_days=cfg.experiments.window_days)
            say(f"history {h['window_start']}..{h['as_of']}: repurchase rate "
                          f"{h['repurchase_rate']:.4f}, spend mean {h['spend_mean']:.2f} sd "
                          f"{h['spend_sd']:.2f} ({h['customers']:,} customers)")
            if base is None:
                base = h["repurchase_rate"] if metric == "rate" else h["spend_mean"]
            spread = spread if spread is not None else h["spend_sd"]
        p = sample_size(baseline=base, effect=effect, metric=metric, sd=spread, alpha=alpha,
                        power=power, ratio=ratio, relative=relative)
        print(json.dumps({"metric": p.metric, "baseline": p.baseline, "effect": p.effect,
                          "alpha": p.alpha, "power": p.power, "ratio": p.ratio,
                          "n_control": p.n_control, "n_treatment": p.n_treatment, "total": p.total}))
    _run(go)


@experiment_app.command("uplift")
def experiment_uplift(
    config: ConfigOpt = None, assignments: AssignOpt = None, window_days: WindowOpt = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Rank customers as of this date "
                                              "(default: day after the latest transaction).")] = None,
    metric: Annotated[str | None, typer.Option(help="repurchased or spend.")] = None,
    value: Annotated[float | None, typer.Option(help="Worth of one unit of the metric.")] = None,
    cost: Annotated[float | None, typer.Option(help="Cost per contact.")] = None,
    budget: Annotated[float | None, typer.Option(help="Total contact budget.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder (default <output.dir>/uplift).")] = None,
) -> None:
    """Learn who responds to the incentive (T-learner uplift on LightGBM) from a past randomised
    campaign; report its Qini coefficient on held-out customers and write a targeting list."""
    def go():
        from clvml.analytics.experiment_report import uplift
        from clvml.data.loading import load_data

        day = _day(as_of)
        cfg = _experiment_cfg(config, window_days, uplift_metric=metric, value=value, cost=cost,
                              budget=budget)
        ds = load_data(cfg, _progress())
        r = uplift(cfg, ds, assignments=assignments, as_of=day, out=out, progress=_progress())
        s = r["summary"]
        say(f"Qini coefficient on {s['test_customers']:,} held-out customers: "
                      f"{s['qini_coefficient']['uplift_model']:.4f} (random ranking "
                      f"{s['qini_coefficient']['random_ranking']:.4f})")
        say(f"{s['targeted']:,} of {s['ranked']:,} customers targeted as of {s['as_of']}: "
                      f"{r['files']['targeting']}")
    _run(go)


@features_app.command("list")
def features_list(config: ConfigOpt = None,
                  markdown: Annotated[bool, typer.Option(help="Print as Markdown.")] = False) -> None:
    """List every feature the registry produces (name, source, window, unit, description)."""
    from clvml.features.builder import catalog
    from clvml.features.catalog_doc import catalog_markdown
    from clvml.features.custom import register_from_config

    windows = (30, 90, 180, 365)
    if config is not None:
        cfg = _config(config)
        windows = tuple(cfg.features.windows)
        _run(lambda: register_from_config(cfg.features.custom))
    if markdown:
        print(catalog_markdown(windows))
        return
    for s in catalog(windows):
        w = f"{s.window}d" if s.window else "all"
        print(f"{s.name:<34} {s.source:<12} {w:>5}  {s.unit:<10} {s.description}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
