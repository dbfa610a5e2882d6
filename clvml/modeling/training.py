"""Training set over stacked cut-offs and the fit of the churn and value models.

* Cut-offs come from the config grid; rows whose horizon is not complete by the end of the data are
  excluded from targets (counted in ``TrainingSet.excluded``) — the newest cut-offs can only be scored.
* Validation is time-ordered: the latest ``cutoffs.validation`` complete cut-offs are held out for early
  stopping and calibration, then the models are refit on all rows with the chosen number of rounds.
* Held-out sets are embargoed: rows whose label horizon overlaps the held-out period are left out of
  the training side (they would leak it), exactly as in production, where the newest labels end at
  the training date.
* Out-of-sample evaluation (an untouched latest cut-off, or a rolling-origin backtest) lives in
  :mod:`clvml.evaluation.backtest`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clvml.config import Config
from clvml.console import count
from clvml.data.cutoffs import cutoff_grid, data_end
from clvml.data.dataset import Dataset
from clvml.errors import ClvmlError
from clvml.features import build_features, feature_specs, to_pandas
from clvml.features.builder import arrow_to_pandas
from clvml.features.custom import identities, register_from_config, registered
from clvml.features.registry import FeatureSpec, Say
from clvml.labels import build_labels
from clvml.modeling.btyd import BTYD_FEATURES, BTYDModel, btyd_features
from clvml.modeling.churn import ChurnModel
from clvml.modeling.value import ValueModel

KEYS = ["customer_id", "cutoff"]


@dataclass
class TrainingSet:
    """Features joined to labels, with complete horizons only."""

    frame: pd.DataFrame
    feature_columns: list[str]
    specs: list[FeatureSpec]
    cutoffs: list[dt.date]
    excluded: dict[str, int] = field(default_factory=dict)

    @property
    def X(self) -> pd.DataFrame:
        return self.frame[self.feature_columns]


BTYD_SPECS = [
    FeatureSpec(name, "btyd", "transactions", None, description, unit, "numeric", "always defined", say.text,
                say=say)
    for name, description, unit, say in (
        ("btyd_p_alive", "BG/NBD probability that the customer is still alive.", "probability",
         Say("BG/NBD gives a {value} chance of still being active", missing="no BG/NBD estimate",
             kind="share")),
        ("btyd_p_no_purchase", "BG/NBD probability of no purchase over the label horizon.", "probability",
         Say("BG/NBD gives a {value} chance of no purchase in the horizon", missing="no BG/NBD estimate",
             kind="share")),
        ("btyd_expected_purchases", "BG/NBD expected purchase days over the label horizon.", "purchases",
         Say("BG/NBD expects {value} {purchase|purchases} in the horizon",
             zero="BG/NBD expects no purchases in the horizon", missing="no BG/NBD estimate")),
        ("btyd_expected_spend", "BG/NBD x Gamma-Gamma expected spend over the label horizon.", "currency",
         Say("BG/NBD expects {value} of spend in the horizon", zero="BG/NBD expects no spend in the horizon",
             missing="no BG/NBD estimate", kind="money")),
    )
]
assert [s.name for s in BTYD_SPECS] == list(BTYD_FEATURES)


def transactions_frame(ds: Dataset, before: dt.date) -> pd.DataFrame:
    """``customer_id, ts, amount`` of the transactions strictly before ``before`` (for BTYD)."""
    t = ds.tables["transactions"]
    t = t.filter(t.ts < pd.Timestamp(before).to_pydatetime()).select("customer_id", "ts", "amount")
    df = t.to_pandas()
    df["ts"] = pd.to_datetime(df["ts"], utc=True).dt.tz_localize(None)
    return df


def btyd_table(ds: Dataset, cutoffs: list[dt.date], horizon_days: int) -> pd.DataFrame:
    """BG/NBD + Gamma-Gamma features per (customer, cut-off), each cut-off's models fitted on
    purchases strictly before it."""
    b = btyd_features(transactions_frame(ds, max(cutoffs)), cutoffs, horizon_days)
    b["cutoff"] = pd.to_datetime(b["cutoff"])
    return b


def merge_btyd(feats: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``feats`` with the :func:`btyd_table` columns of its (customer, cut-off) rows appended."""
    out = feats.merge(table, on=KEYS, how="left", validate="one_to_one")
    # customers with only refund rows before the cut-off have no purchase to fit on
    return out.fillna({"btyd_p_alive": 0.0, "btyd_p_no_purchase": 1.0, "btyd_expected_purchases": 0.0,
                       "btyd_expected_spend": 0.0})


def add_btyd_features(ds: Dataset, feats: pd.DataFrame, cutoffs: list[dt.date],
                      horizon_days: int) -> pd.DataFrame:
    """``feats`` with the BG/NBD + Gamma-Gamma features of each (customer, cut-off) appended."""
    return merge_btyd(feats, btyd_table(ds, cutoffs, horizon_days))


def training_features(ds: Dataset, cfg: Config, cutoffs: list[dt.date],
                      progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """The feature table of ``cutoffs`` (plus the BTYD features when configured), from the feature
    cache under ``output.dir/cache`` when an earlier run built it from the same inputs, settings and
    cut-offs (:mod:`clvml.features.cache`)."""
    say = progress or (lambda _: None)
    register_from_config(cfg.features.custom)

    def build() -> pd.DataFrame:
        step = cfg.features.cutoffs_per_query
        cuts = sorted(cutoffs)  # batches in date order: the same rows, in the same order, as one query
        starts = range(0, len(cuts), step)
        parts, schema = [], None
        duck = ds.con.name == "duckdb"
        for k, i in enumerate(starts, 1):
            expr = build_features(ds.tables, cuts[i:i + step], windows=cfg.features.windows,
                                  families=cfg.features.families)
            if duck:  # Arrow batches, converted once at the end: no second copy of the frame
                expr = expr.order_by(["cutoff", "customer_id"])
                parts.append(expr.to_pyarrow())
                schema = expr.schema()
            else:
                parts.append(to_pandas(expr))
            count(say, f"features of cut-offs {cuts[i]} … {cuts[min(i + step, len(cuts)) - 1]} built",
                  done=k, total=len(starts), step="feature batches", plain=False)
        if duck:
            import pyarrow as pa

            table = pa.concat_tables(parts)
            del parts
            feats = arrow_to_pandas(table, schema)
        else:
            feats = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
        if cfg.model.btyd_features:
            feats = add_btyd_features(ds, feats, cutoffs, cfg.labels.horizon_days)
        return feats

    if not cfg.features.cache:
        say("feature cache off (features.cache: false or --no-cache): building features")
        return build()
    if ds.inputs is None:
        say("feature cache not used: a table was not read from files (in memory or a database)")
        return build()
    from clvml._version import __version__
    from clvml.features.cache import cached_frame

    parts = {"clvml": __version__, "data": ds.inputs["data"], "inputs": ds.inputs["files"],
             "features": cfg.features.model_dump(mode="json", exclude={"cache", "cutoffs_per_query"}),
             "cutoffs": [str(c) for c in cutoffs],
             "btyd": cfg.labels.horizon_days if cfg.model.btyd_features else None}
    custom = [f for f in registered() if f.table in ds.tables]
    if custom:  # a changed function (its source hash) or setting gives another key
        parts["custom_features"] = identities(custom)
    return cached_frame(Path(cfg.output.dir) / "cache", parts, build, say)


def make_training_set(ds: Dataset, cfg: Config, cutoffs: list[dt.date] | None = None,
                      progress: Callable[[str], None] | None = None) -> TrainingSet:
    last = data_end(ds)
    cutoffs = cutoffs or cutoff_grid(cfg, last)
    feats = training_features(ds, cfg, cutoffs, progress)
    lab = build_labels(ds.tables, cutoffs, horizon_days=cfg.labels.horizon_days,
                       churn_definition=cfg.labels.churn_definition,
                       cancellation_event=cfg.labels.cancellation_event, data_end=last).to_pandas()
    lab["cutoff"] = pd.to_datetime(lab["cutoff"])
    # the labels of complete horizons only, then one merge: the frame is copied once (merging first
    # and dropping the incomplete rows after held three copies at once)
    complete = lab["horizon_complete"].to_numpy(bool)
    excluded = {"rows_with_incomplete_horizon": len(feats[KEYS].merge(lab.loc[~complete, KEYS], on=KEYS))}
    frame = feats.merge(lab[complete], on=KEYS, how="inner", validate="one_to_one")
    del feats
    if frame.empty:
        raise ClvmlError(
            f"no cut-off has a complete {cfg.labels.horizon_days}-day horizon before {last}: move "
            "cutoffs.start earlier or shorten labels.horizon_days")
    specs = feature_specs(ds.tables, cfg.features.windows, cfg.features.families)
    if cfg.model.btyd_features:
        specs = specs + BTYD_SPECS
    cols = [s.name for s in specs]
    used = sorted(frame["cutoff"].dt.date.unique())
    return TrainingSet(frame, cols, specs, used, excluded)


def split_by_cutoff(frame: pd.DataFrame, n_last: int, horizon_days: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (earlier, latest ``n_last`` cut-offs); never shuffles across time.

    With ``horizon_days``, "earlier" keeps only rows whose label horizon ends by the first held-out
    cut-off (``cutoff + horizon_days <= held-out cut-off``): an embargo, so no training label covers
    the held-out period (overlapping horizons would leak it and bias early stopping and evaluation).
    """
    cuts = np.sort(frame["cutoff"].unique())
    if len(cuts) <= n_last:
        raise ClvmlError(f"need more than {n_last} labelled cut-offs to hold out {n_last}; got "
                         f"{len(cuts)}: add cut-offs (cutoffs.start earlier / every_days smaller)")
    first_held = cuts[-n_last]
    held = (frame["cutoff"] >= first_held).to_numpy()
    ends = frame["cutoff"] + pd.Timedelta(days=horizon_days)
    earlier = (ends <= first_held).to_numpy() & ~held
    if not earlier.any():
        raise ClvmlError(f"no cut-off's {horizon_days}-day horizon ends before the held-out cut-off "
                         f"{pd.Timestamp(first_held).date()}: add earlier cut-offs (cutoffs.start)")
    return earlier, held


def value_target(frame: pd.DataFrame, cfg: Config) -> np.ndarray:
    if cfg.labels.value_target == "margin":
        if "margin" not in frame:
            raise ClvmlError("labels.value_target is margin but transactions have no margin column")
        return np.maximum(frame["margin"].to_numpy(float), 0.0)
    return frame["spend"].to_numpy(float)


def make_models(cfg: Config) -> tuple[ChurnModel, ValueModel]:
    common = lambda m: dict(  # noqa: E731
        n_estimators=m.n_estimators, learning_rate=m.learning_rate, num_leaves=m.num_leaves,
        min_child_samples=m.min_child_samples, subsample=m.subsample,
        colsample_bytree=m.colsample_bytree, reg_lambda=m.reg_lambda,
        early_stopping_rounds=m.early_stopping_rounds, random_state=cfg.seed, params=m.params)
    churn = ChurnModel(calibration=cfg.model.churn.calibration, **common(cfg.model.churn))
    value = ValueModel(form=cfg.model.value.form,
                       tweedie_variance_power=cfg.model.value.tweedie_variance_power,
                       **common(cfg.model.value))
    return churn, value


def fit_models(ts: TrainingSet, cfg: Config, mask: np.ndarray | None = None
               ) -> tuple[ChurnModel, ValueModel]:
    """Fit both models on the rows in ``mask`` (default all), validating on its latest cut-offs."""
    # the feature matrices are taken straight from ``ts.frame`` (one copy each of the training and
    # validation rows); the masked frame and the full matrix are never materialised
    rows = np.arange(len(ts.frame)) if mask is None else np.flatnonzero(mask)
    labels = [c for c in ("cutoff", "churn", "spend", "margin", "purchases") if c in ts.frame]
    frame = ts.frame[labels].take(rows).reset_index(drop=True)
    tr, va = split_by_cutoff(frame, cfg.cutoffs.validation, cfg.labels.horizon_days)
    cols = ts.frame.columns.get_indexer(ts.feature_columns)
    if (cols < 0).any():
        raise KeyError([c for c, i in zip(ts.feature_columns, cols, strict=True) if i < 0])
    X_tr, X_va = (ts.frame.iloc[rows[m], cols] for m in (tr, va))
    y_churn = frame["churn"].astype(int).to_numpy()
    y_val = value_target(frame, cfg)
    purchases = frame["purchases"].to_numpy(float)
    churn, value = make_models(cfg)
    churn.fit(X_tr, y_churn[tr], eval_set=(X_va, y_churn[va]))
    value.fit(X_tr, y_val[tr], purchases=purchases[tr], eval_set=(X_va, y_val[va], purchases[va]))
    return churn, value


def btyd_baseline(ds: Dataset, frame: pd.DataFrame, cutoff: dt.date, horizon_days: int) -> pd.DataFrame:
    """BG/NBD + Gamma-Gamma fitted on purchases before ``cutoff``: ``p_no_purchase`` and
    ``expected_spend`` for the customers of ``frame`` (customers with no purchase to fit: 1 and 0)."""
    model = BTYDModel().fit(transactions_frame(ds, cutoff), cutoff)
    pred = model.predict(horizon_days).reindex(frame["customer_id"])
    return pd.DataFrame({"p_no_purchase": pred["p_no_purchase"].fillna(1.0).to_numpy(),
                         "expected_spend": pred["expected_spend"].fillna(0.0).to_numpy()})
