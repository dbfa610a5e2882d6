"""Rolling-origin backtest: LightGBM beside the BTYD (BG/NBD, Pareto/NBD, MBG/NBD) and simple baselines.

For every origin (a labelled cut-off), the models are trained only on earlier cut-offs whose label
horizon ends by the origin (an embargo: no training label overlaps the period being predicted),
predict the customers present at the origin, and are scored against the realised horizon. Every model
is scored on exactly the same customers:

* ``lightgbm``: the configured churn and value models;
* ``btyd`` (BG/NBD), ``pareto_nbd``, ``mbgnbd``: the purchase model's P(no purchase in the horizon) and
  its expected purchases × Gamma-Gamma (expected spend), fitted on the purchases before the origin;
* ``simple``: churn from recency alone (an isotonic map from days since the last purchase to the churn
  rate, fitted on the training rows, so it is a calibrated probability) and, for value, the customer's
  spend over the last horizon before the origin.

**CLV (task ``clv``)**, at the CLV origins: cut-offs with ``K·H`` days of data after them (``K`` =
``clv.periods``). Each model's CLV over the K periods, undiscounted and without cost (so it is
comparable), against the realised margin over the same ``K·H`` days (``clv.margin`` × the value target
summed over the window: ``realised_k``), scored by :func:`clvml.evaluation.clv_eval.clv_metrics`:

* ``lightgbm``: the configured construction (``clv.survival``, default ``btyd``: LightGBM's
  first-period spend carried with each customer's BTYD dynamics, the purchase model fitted before the
  origin); ``lightgbm_geometric``: the former ``(1 − p)^(k−1)`` survival, for comparison;
* ``btyd``, ``pareto_nbd``, ``mbgnbd``: each model's own expected residual spend over the K periods
  (:meth:`~clvml.modeling.btyd.BTYDModel.clv`);
* ``simple``: K × the spend of the last horizon before the origin;
* ``oracle``: the synthetic world's truth (expected spend over the K periods given the hidden state),
  when a ``truth`` table with ``expected_spend_long`` is given.

**Intervals** (tasks ``value_interval``, ``clv_interval``): LightGBM's ``clv.interval`` intervals
(split-conformal, :mod:`clvml.modeling.intervals`) calibrated at each origin on the previous origin's
predictions and outcomes, and their coverage at the origin (see :func:`interval_evaluation`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from clvml.config import Config
from clvml.data.cutoffs import clv_window_days
from clvml.data.dataset import Dataset
from clvml.errors import ClvmlError
from clvml.evaluation.clv_eval import clv_metrics, interval_metrics
from clvml.evaluation.metrics import churn_metrics, value_metrics
from clvml.modeling.btyd import BTYDModel
from clvml.modeling.clv import CLVShape, clv, formula_params
from clvml.modeling.intervals import ConformalIntervals
from clvml.modeling.training import (
    TrainingSet,
    fit_models,
    transactions_frame,
    value_target,
)

#: BTYD baselines: backtest name -> purchase model
BTYD_BASELINES = {"btyd": "bgnbd", "pareto_nbd": "pareto_nbd", "mbgnbd": "mbgnbd"}
MODELS = ("oracle", "lightgbm", "lightgbm_geometric", *BTYD_BASELINES, "simple")


@dataclass
class BacktestResult:
    """Per-customer predictions and metrics of every origin.

    ``predictions`` has one row per (churn/value origin, customer): the realised ``churn`` and ``value``
    and each model's ``churn_<model>``, ``value_<model>`` and (LightGBM) ``clv_lightgbm`` (the configured
    CLV, as scored). ``clv_predictions`` has one row per (CLV origin, customer): the same plus the
    realised ``realised_k`` and each model's undiscounted ``clvk_<model>``. Interval bounds, where
    scored, are ``<column>_lo`` / ``_hi``. ``metrics`` is long: origin, task (churn, value, clv,
    value_interval, clv_interval), model, metric, value.
    """

    predictions: pd.DataFrame
    metrics: pd.DataFrame
    models: dict[dt.date, Any] = field(default_factory=dict)
    clv_predictions: pd.DataFrame = field(default_factory=pd.DataFrame)

    def summary(self) -> pd.DataFrame:
        """Mean of each metric over the origins: rows (task, metric), one column per model."""
        s = self.metrics.pivot_table(index=["task", "metric"], columns="model", values="value",
                                     aggfunc="mean")
        return s[[m for m in MODELS if m in s.columns]]


def realised_window(ds: Dataset, customers: pd.Series, origin: dt.date, days: int, cfg: Config) -> np.ndarray:
    """Each customer's realised value over ``[origin, origin + days)``: the value target (positive
    amounts, or the margin column when ``labels.value_target`` is margin) times ``clv.margin``, as in
    the CLV formula."""
    o = pd.Timestamp(origin)
    t = ds.tables["transactions"]
    end = (o + pd.Timedelta(days=days)).to_pydatetime()
    col = "margin" if cfg.labels.value_target == "margin" else "amount"
    t = t.filter((t.ts >= o.to_pydatetime()) & (t.ts < end))
    if col == "amount":
        t = t.filter(t.amount > 0)
    df = t.select("customer_id", value=t[col]).to_pandas()
    got = df.groupby("customer_id")["value"].sum()
    if col == "margin":
        got = got.clip(lower=0.0)
    return cfg.clv.margin * got.reindex(customers.astype(str).to_numpy()).fillna(0.0).to_numpy(float)


def train_mask(frame: pd.DataFrame, origin: dt.date, horizon_days: int) -> np.ndarray:
    """Rows usable to predict at ``origin``: earlier cut-offs whose horizon ends by the origin."""
    o = pd.Timestamp(origin)
    return ((frame["cutoff"] < o) & (frame["cutoff"] + pd.Timedelta(days=horizon_days) <= o)).to_numpy()


def last_horizon_spend(ds: Dataset, customers: pd.Series, origin: dt.date, horizon_days: int) -> np.ndarray:
    """Each customer's gross spend (positive amounts) over ``[origin - horizon, origin)``."""
    tx = transactions_frame(ds, origin)
    start = pd.Timestamp(origin) - pd.Timedelta(days=horizon_days)
    recent = tx[(tx["ts"] >= start) & (tx["amount"] > 0)]
    spend = recent.groupby("customer_id")["amount"].sum()
    return spend.reindex(customers.to_numpy()).fillna(0.0).to_numpy(float)


def recency_baseline(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """P(churn) from days since the last purchase alone: isotonic (increasing) fit on ``train``."""
    def rec(f: pd.DataFrame) -> np.ndarray:  # refund-only customers have no purchase: use tenure
        return f["tx_recency_days"].fillna(f["tx_tenure_days"]).to_numpy(float)

    iso = IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=0.0, y_max=1.0)
    iso.fit(rec(train), train["churn"].astype(float).to_numpy())
    return iso.predict(rec(test))


def btyd_baselines(ds: Dataset, customers: pd.Series, origin: dt.date, horizon_days: int,
                   clv_kwargs: dict | None = None) -> dict[str, pd.DataFrame]:
    """Each BTYD baseline fitted on purchases before ``origin``: ``p_no_purchase``, ``expected_spend`` and
    (with ``clv_kwargs``: periods, period_days, margin) ``clv`` (undiscounted), in the order of
    ``customers`` (customers with no purchase to fit: 1, 0, 0)."""
    tx = transactions_frame(ds, origin)
    out = {}
    for name, model in BTYD_BASELINES.items():
        m = BTYDModel(model=model).fit(tx, origin)
        pred = m.predict(horizon_days)
        if clv_kwargs is not None:
            pred["clv"] = m.clv(discount_rate=0.0, **clv_kwargs)
        pred = pred.reindex(customers.to_numpy())
        out[name] = pred.fillna({"p_no_purchase": 1.0, "expected_spend": 0.0, "clv": 0.0})
    return out


def evaluate_origin(ts: TrainingSet, cfg: Config, ds: Dataset | None, origin: dt.date, *,
                    score: bool = True, clv_eval: bool = False, truth: pd.DataFrame | None = None,
                    fitted: tuple | None = None) -> tuple[pd.DataFrame, pd.DataFrame, tuple]:
    """Train on the rows before ``origin`` (embargoed), predict and score at ``origin``.

    Returns the predictions, the long metrics table and the fitted (churn, value) models. Without
    ``ds`` (the raw tables) only the LightGBM and recency rows are produced. ``score``: churn and value
    metrics; ``clv_eval``: the long-horizon CLV evaluation (needs ``ds`` and ``K·H`` days of data after
    the origin); ``truth``: the synthetic world's truth, for the oracle rows. ``fitted``: (churn, value)
    models to score instead of training new ones (the validation-only evaluation of ``clvml train``:
    ``origin`` is then one of the cut-offs their early stopping was chosen on).
    """
    frame, h = ts.frame, cfg.labels.horizon_days
    at = (frame["cutoff"] == pd.Timestamp(origin)).to_numpy()
    if not at.any():
        have = ", ".join(str(c) for c in ts.cutoffs)
        raise ClvmlError(f"backtest origin {origin} is not a labelled cut-off; labelled cut-offs: {have} "
                         "(backtest.origins must be cut-offs of the grid with a complete horizon)")
    mask = train_mask(frame, origin, h)
    if fitted is not None:
        churn, value = fitted
        if not mask.any():  # the recency baseline's rows: every earlier cut-off
            mask = (frame["cutoff"] < pd.Timestamp(origin)).to_numpy()
    elif len(frame.loc[mask, "cutoff"].unique()) <= cfg.cutoffs.validation:
        raise ClvmlError(
            f"backtest origin {origin}: only {len(frame.loc[mask, 'cutoff'].unique())} cut-off(s) have "
            f"a {h}-day horizon ending by it, need more than cutoffs.validation="
            f"{cfg.cutoffs.validation}: pick a later origin or start the cut-off grid earlier")
    else:
        churn, value = fit_models(ts, cfg, mask)
    test = frame[at].reset_index(drop=True)
    X = test[ts.feature_columns]
    p = churn.predict_proba(X)[:, 1]
    v = value.predict(X)
    c = cfg.clv
    shape = None
    if ds is not None and (c.survival == "btyd" or clv_eval):
        shape = CLVShape(periods=c.periods, period_days=h, model=c.btyd_model).fit(
            transactions_frame(ds, origin), origin)
    weights = shape.weights_from_features(test) if shape is not None else None
    configured = {**formula_params(c.model_dump()), "survival": c.survival if weights is not None else "geometric"}
    pred = pd.DataFrame({
        "origin": pd.Timestamp(origin), "customer_id": test["customer_id"],
        "churn": test["churn"].astype(int), "value": value_target(test, cfg),
        "churn_lightgbm": p, "value_lightgbm": v,
        "clv_lightgbm": clv(v, p, period_weights=weights, **configured),
    })
    if mask.any():
        pred["churn_simple"] = recency_baseline(frame.loc[mask, ["tx_recency_days", "tx_tenure_days", "churn"]], test)
    if ds is not None:
        kw = dict(periods=c.periods, period_days=h, margin=c.margin) if clv_eval else None
        base = btyd_baselines(ds, test["customer_id"], origin, h, kw)
        for name, b in base.items():
            pred[f"churn_{name}"] = b["p_no_purchase"].to_numpy()
            pred[f"value_{name}"] = b["expected_spend"].to_numpy()
        pred["value_simple"] = last_horizon_spend(ds, test["customer_id"], origin, h)
        if clv_eval:
            undiscounted = dict(periods=c.periods, margin=c.margin, discount_rate=0.0)
            pred["realised_k"] = realised_window(ds, test["customer_id"], origin, clv_window_days(cfg), cfg)
            pred["clvk_lightgbm"] = clv(v, survival="btyd", period_weights=weights, **undiscounted)
            pred["clvk_lightgbm_geometric"] = clv(v, p, survival="geometric", **undiscounted)
            for name, b in base.items():
                pred[f"clvk_{name}"] = b["clv"].to_numpy()
            pred["clvk_simple"] = c.margin * c.periods * pred["value_simple"]
            if truth is not None and "expected_spend_long" in truth:
                t = truth[pd.to_datetime(truth["cutoff"]) == pd.Timestamp(origin)]
                t = t.set_index(t["customer_id"].astype(str))["expected_spend_long"]
                oracle = t.reindex(test["customer_id"].astype(str).to_numpy()).to_numpy(float)
                if np.isfinite(oracle).all():
                    pred["clvk_oracle"] = c.margin * oracle
    rows = []
    tasks = ((("churn", churn_metrics), ("value", value_metrics)) if score else ()) + \
        ((("clv", clv_metrics),) if clv_eval and "realised_k" in pred else ())
    for task, fn in tasks:
        actual = pred["realised_k" if task == "clv" else task]
        for model in MODELS:
            col = f"{'clvk' if task == 'clv' else task}_{model}"
            if col in pred:
                for metric, val in fn(actual, pred[col]).items():
                    rows.append((pd.Timestamp(origin), task, model, metric, val))
    metrics = pd.DataFrame(rows, columns=["origin", "task", "model", "metric", "value"])
    return pred, metrics, (churn, value)


def backtest(ts: TrainingSet, cfg: Config, ds: Dataset | None, origins: list[dt.date],
             progress=lambda _: None, *, clv_origins: list[dt.date] | None = None,
             truth: pd.DataFrame | None = None, fitted: tuple | None = None) -> BacktestResult:
    """Rolling-origin backtest over ``origins`` (churn and value) and ``clv_origins`` (the long-horizon
    CLV evaluation; see the module docstring). Models are fitted once per distinct origin, or
    ``fitted`` (churn, value) models are scored at every origin (see :func:`evaluate_origin`)."""
    clv_set = set(clv_origins or []) if ds is not None else set()
    preds, mets, models = [], [], {}
    for o in sorted(set(origins) | clv_set):
        what = " and its CLV over the next " + f"{clv_window_days(cfg)} days" if o in clv_set else ""
        progress(f"backtest origin {o}: training on earlier cut-offs, scoring its horizon{what}")
        p, m, mdl = evaluate_origin(ts, cfg, ds, o, score=o in set(origins), clv_eval=o in clv_set,
                                    truth=truth, fitted=fitted)
        preds.append(p)
        mets.append(m)
        models[o] = mdl
    pred = pd.concat(preds, ignore_index=True)
    ivals = interval_evaluation(pred, sorted(origins), sorted(clv_set), cfg.clv.interval)
    scored = pred.origin.isin([pd.Timestamp(o) for o in origins])
    long = pred.origin.isin([pd.Timestamp(o) for o in clv_set])
    def part(rows):  # without the columns of the other kind of origin
        return pred[rows].dropna(axis=1, how="all").reset_index(drop=True)

    return BacktestResult(part(scored), pd.concat([*mets, ivals], ignore_index=True), models, part(long))


@dataclass
class InSampleCalibration:
    """The CLV interval of a validation-mode ``clvml train`` (see :func:`in_sample_clv_calibration`)."""

    origin: dt.date
    periods: int
    intervals: ConformalIntervals
    n: int

    def note(self, cfg: Config) -> str:
        """The report's sentence on how the CLV interval was calibrated."""
        h = cfg.labels.horizon_days
        why = (f"the configured {cfg.clv.periods} x {h} days do not fit in the history"
               if self.periods < cfg.clv.periods else
               "no cut-off with that window after it has earlier cut-offs to train on")
        shorter = " come from a shorter window than the scores' and" if self.periods < cfg.clv.periods else ""
        return (f"calibrated at {self.origin} on the {self.periods} x {h} days realised after it "
                f"({self.n:,} customers; {why}), by models whose training saw those days: the ratios of "
                f"realised to predicted CLV{shorter} are in-sample, so the interval's coverage is only "
                "approximately nominal")


def in_sample_clv_calibration(ts: TrainingSet, cfg: Config, ds: Dataset, fitted: tuple, last_day: dt.date
                              ) -> InSampleCalibration | None:
    """The CLV interval when the history holds no CLV origin (``clvml train`` in validation mode, or a
    held-out test cut-off without ``clv.periods`` horizons of data after any trainable cut-off).

    At the latest labelled cut-off with the longest window of ``k ≤ clv.periods`` horizons of data
    after it, the models of ``fitted`` (trained on cut-offs up to the validation ones, so in-sample
    there) predict each customer's CLV over ``k`` periods (undiscounted, with the configured
    ``clv.survival``: the BTYD shape fitted before the cut-off) and over the configured ``K``; the
    split-conformal ratios realised / predicted over the ``k`` periods are binned by the ``K``-period
    CLV, so the bundle applies them to the CLV it scores. On the CDNOW sample (k = 2 of K = 3) the
    39-week interval covers 80.5 % of the holdout
    (nominal 80 %; bench/RESULTS.md). ``None`` without a buyer at any such cut-off.
    """
    h, big_k = cfg.labels.horizon_days, cfg.clv.periods
    end = pd.Timestamp(last_day) + pd.Timedelta(days=1)
    for k in range(big_k, 0, -1):
        fits = [c for c in ts.cutoffs if pd.Timestamp(c) + pd.Timedelta(days=k * h) <= end]
        if fits:
            origin = max(fits)
            break
    else:
        return None
    rows = ts.frame[ts.frame["cutoff"] == pd.Timestamp(origin)].reset_index(drop=True)
    if rows.empty:
        return None
    churn, value = fitted
    X = rows[ts.feature_columns]
    v = value.predict(X)
    undiscounted = dict(margin=cfg.clv.margin, discount_rate=0.0, survival=cfg.clv.survival)
    if cfg.clv.survival == "btyd":
        shape = CLVShape(periods=big_k, period_days=h, model=cfg.clv.btyd_model).fit(
            transactions_frame(ds, origin), origin)
        short = clv(v, periods=k, period_weights=shape.weights_from_features(rows, k), **undiscounted)
        full = clv(v, periods=big_k, period_weights=shape.weights_from_features(rows, big_k), **undiscounted)
    else:  # the geometric survival the bundle scores with
        p = churn.predict_proba(X)[:, 1]
        short, full = clv(v, p, periods=k, **undiscounted), clv(v, p, periods=big_k, **undiscounted)
    realised = realised_window(ds, rows["customer_id"], origin, k * h, cfg)
    ci = ConformalIntervals(coverage=cfg.clv.interval).fit(short, realised, bin_by=full)
    return InSampleCalibration(origin=origin, periods=k, intervals=ci, n=len(rows))


#: (task, realised column, predicted column) of the intervals scored by the backtest
INTERVAL_TARGETS = (("value_interval", "value", "value_lightgbm"), ("clv_interval", "realised_k", "clvk_lightgbm"))


def interval_evaluation(pred: pd.DataFrame, origins: list, clv_origins: list, coverage: float
                        ) -> pd.DataFrame:
    """Coverage of LightGBM's intervals on held-out time: at each origin after the first, intervals
    calibrated (:class:`~clvml.modeling.intervals.ConformalIntervals`) on the previous origin's
    predictions and realised values, scored by :func:`~clvml.evaluation.clv_eval.interval_metrics`.
    The bounds are added to ``pred`` as ``<predicted column>_lo`` / ``_hi``."""
    rows = []
    for (task, actual, col), ors in zip(INTERVAL_TARGETS, (origins, clv_origins), strict=True):
        if col not in pred:
            continue
        for prev, o in zip(ors, ors[1:], strict=False):
            cal = pred[pred.origin == pd.Timestamp(prev)]
            at = (pred.origin == pd.Timestamp(o)).to_numpy()
            ci = ConformalIntervals(coverage=coverage).fit(cal[col], cal[actual])
            lo, hi = ci.predict(pred.loc[at, col])
            pred.loc[at, f"{col}_lo"], pred.loc[at, f"{col}_hi"] = lo, hi
            for metric, val in interval_metrics(pred.loc[at, actual], lo, hi).items():
                rows.append((pd.Timestamp(o), task, "lightgbm", metric, val))
    return pd.DataFrame(rows, columns=["origin", "task", "model", "metric", "value"])
