"""Rolling-origin backtest: LightGBM beside the BG/NBD + Gamma-Gamma and simple baselines.

For every origin (a labelled cut-off), the models are trained only on earlier cut-offs whose label
horizon ends by the origin (an embargo: no training label overlaps the period being predicted),
predict the customers present at the origin, and are scored against the realised horizon. Every model
is scored on exactly the same customers:

* ``lightgbm``: the configured churn and value models;
* ``btyd``: BG/NBD (P(no purchase in the horizon)) and BG/NBD × Gamma-Gamma (expected spend), fitted on
  the purchases before the origin;
* ``simple``: churn from recency alone (an isotonic map from days since the last purchase to the churn
  rate, fitted on the training rows, so it is a calibrated probability) and, for value, the customer's
  spend over the last horizon before the origin.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression

from clvml.config import Config
from clvml.data.dataset import Dataset
from clvml.errors import ClvmlError
from clvml.evaluation.metrics import churn_metrics, value_metrics
from clvml.modeling.clv import clv
from clvml.modeling.training import (
    TrainingSet,
    btyd_baseline,
    fit_models,
    transactions_frame,
    value_target,
)

MODELS = ("lightgbm", "btyd", "simple")


@dataclass
class BacktestResult:
    """Per-customer predictions and metrics of every origin.

    ``predictions`` has one row per (origin, customer): the realised ``churn`` and ``value`` and each
    model's ``churn_<model>``, ``value_<model>`` and (LightGBM) ``clv_lightgbm``. ``metrics`` is long:
    origin, task (churn/value), model, metric, value.
    """

    predictions: pd.DataFrame
    metrics: pd.DataFrame
    models: dict[dt.date, Any] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Mean of each metric over the origins: rows (task, metric), one column per model."""
        s = self.metrics.pivot_table(index=["task", "metric"], columns="model", values="value",
                                     aggfunc="mean")
        return s[[m for m in MODELS if m in s.columns]]


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


def evaluate_origin(ts: TrainingSet, cfg: Config, ds: Dataset | None, origin: dt.date
                    ) -> tuple[pd.DataFrame, pd.DataFrame, tuple]:
    """Train on the rows before ``origin`` (embargoed), predict and score at ``origin``.

    Returns the predictions, the long metrics table and the fitted (churn, value) models. Without
    ``ds`` (the raw tables) only the LightGBM and recency rows are produced.
    """
    frame, h = ts.frame, cfg.labels.horizon_days
    at = (frame["cutoff"] == pd.Timestamp(origin)).to_numpy()
    if not at.any():
        have = ", ".join(str(c) for c in ts.cutoffs)
        raise ClvmlError(f"backtest origin {origin} is not a labelled cut-off; labelled cut-offs: {have} "
                         "(backtest.origins must be cut-offs of the grid with a complete horizon)")
    mask = train_mask(frame, origin, h)
    if len(frame.loc[mask, "cutoff"].unique()) <= cfg.cutoffs.validation:
        raise ClvmlError(
            f"backtest origin {origin}: only {len(frame.loc[mask, 'cutoff'].unique())} cut-off(s) have "
            f"a {h}-day horizon ending by it, need more than cutoffs.validation="
            f"{cfg.cutoffs.validation}: pick a later origin or start the cut-off grid earlier")
    churn, value = fit_models(ts, cfg, mask)
    test = frame[at].reset_index(drop=True)
    X = test[ts.feature_columns]
    p = churn.predict_proba(X)[:, 1]
    v = value.predict(X)
    pred = pd.DataFrame({
        "origin": pd.Timestamp(origin), "customer_id": test["customer_id"],
        "churn": test["churn"].astype(int), "value": value_target(test, cfg),
        "churn_lightgbm": p, "value_lightgbm": v,
        "clv_lightgbm": clv(v, p, **cfg.clv.model_dump()),
        "churn_simple": recency_baseline(frame[mask], test),
    })
    if ds is not None:
        base = btyd_baseline(ds, test, origin, h)
        pred["churn_btyd"] = base["p_no_purchase"].to_numpy()
        pred["value_btyd"] = base["expected_spend"].to_numpy()
        pred["value_simple"] = last_horizon_spend(ds, test["customer_id"], origin, h)
    rows = []
    for task, fn in (("churn", churn_metrics), ("value", value_metrics)):
        for model in MODELS:
            col = f"{task}_{model}"
            if col in pred:
                for metric, val in fn(pred[task], pred[col]).items():
                    rows.append((pd.Timestamp(origin), task, model, metric, val))
    metrics = pd.DataFrame(rows, columns=["origin", "task", "model", "metric", "value"])
    return pred, metrics, (churn, value)


def backtest(ts: TrainingSet, cfg: Config, ds: Dataset | None, origins: list[dt.date],
             progress=lambda _: None) -> BacktestResult:
    """Rolling-origin backtest over ``origins`` (see the module docstring)."""
    preds, mets, models = [], [], {}
    for o in sorted(origins):
        progress(f"backtest origin {o}: training on earlier cut-offs, scoring its horizon")
        p, m, mdl = evaluate_origin(ts, cfg, ds, o)
        preds.append(p)
        mets.append(m)
        models[o] = mdl
    return BacktestResult(pd.concat(preds, ignore_index=True), pd.concat(mets, ignore_index=True),
                          models)
