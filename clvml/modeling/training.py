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
from clvml.features import build_features, feature_specs, to_arrow, to_pandas
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
                                  families=cfg.features.families, plan=cfg.features.plan)
            if duck:  # Arrow batches, converted once at the end: no second copy of the frame
                parts.append(to_arrow(expr))
                schema = expr.schema()
            else:
                parts.append(to_pandas(expr))
            count(say, f"features of cut-offs {cuts[i]} … {cuts[min(i + step, len(cuts)) - 1]} built",
                  done=k, total=len(starts), step="feature batches", plain=False)
        if duck:
            import pyarrow as pa

            # the one reference to the concatenated batches is the argument: arrow_to_pandas releases each
            # Arrow column once converted (holding it here kept every column alive twice)
            parts[:] = [pa.concat_tables(parts)]
            feats = arrow_to_pandas(parts.pop(), schema)
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
             "btyd": cfg.labels.horizon_days if cfg.model.btyd_features else None,
             # the columns and their types as this clvml declares them (an entry of a build that stored
             # them otherwise, e.g. counts as float64 before they were float32, is never served)
             "columns": {s.name: s.storage for s in feature_specs(ds.tables, cfg.features.windows,
                                                                 cfg.features.families)}}
    custom = [f for f in registered() if f.table in ds.tables]
    if custom:  # a changed function (its source hash) or setting gives another key
        parts["custom_features"] = identities(custom)
    return cached_frame(Path(cfg.output.dir) / "cache", parts, build, say)


def join_labels(feats: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """``feats.merge(labels, on=KEYS, how="inner", validate="one_to_one")``, equal to the bit, without
    copying the feature columns when the matched rows are the first rows of ``feats`` in order (the
    training set: features sorted by cut-off, the incomplete horizons the latest cut-offs): the result
    then shares ``feats``' columns (copy-on-write) instead of holding a second copy of the matrix."""
    if set(feats.columns).intersection(labels.columns) != set(KEYS):  # suffixed names: pandas' merge
        return feats.merge(labels, on=KEYS, how="inner", validate="one_to_one")
    pos = feats[KEYS].assign(_left=np.arange(len(feats))).merge(
        labels[KEYS].assign(_right=np.arange(len(labels))), on=KEYS, how="inner", validate="one_to_one")
    left, right = pos["_left"].to_numpy(), pos["_right"].to_numpy()
    n = len(left)
    out = feats.iloc[:n] if np.array_equal(left, np.arange(n)) else feats.take(left)
    rest = labels.drop(columns=KEYS).take(right).reset_index(drop=True)
    return pd.concat([out.reset_index(drop=True), rest], axis=1)  # no copy of out's columns


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
    frame = join_labels(feats, lab[complete])
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


def fit_models(ts: TrainingSet, cfg: Config, mask: np.ndarray | None = None, keep_stages: bool = False,
               churn: ChurnModel | None = None) -> tuple[ChurnModel, ValueModel]:
    """Fit both models on the rows in ``mask`` (default all), validating on its latest cut-offs (with
    ``model.refit_embargoed``, the final refit adds the embargoed cut-offs in between).
    ``keep_stages``: the value model keeps its early-stopped boosters (``ValueModel.keep_stages``).
    ``churn``: an already fitted churn model for the same rows, features and settings (not refitted)."""
    # the feature matrices are taken straight from ``ts.frame`` (views of it: the training, embargoed and
    # validation rows are runs of consecutive rows of a frame sorted by cut-off); the masked frame and
    # the full matrix are never materialised
    rows = np.arange(len(ts.frame)) if mask is None else np.flatnonzero(mask)
    labels = [c for c in ("cutoff", "churn", "spend", "margin", "purchases") if c in ts.frame]
    frame = ts.frame[labels].take(rows).reset_index(drop=True)
    tr, va = split_by_cutoff(frame, cfg.cutoffs.validation, cfg.labels.horizon_days)
    cols = ts.frame.columns.get_indexer(ts.feature_columns)
    if (cols < 0).any():
        raise KeyError([c for c, i in zip(ts.feature_columns, cols, strict=True) if i < 0])
    X_tr, X_va = (take_rows(ts.frame, rows[m], cols) for m in (tr, va))
    y_churn = frame["churn"].astype(int).to_numpy()
    y_val = value_target(frame, cfg)
    purchases = frame["purchases"].to_numpy(float)
    new_churn, value = make_models(cfg)
    gap = ~tr & ~va if cfg.model.refit_embargoed else np.zeros(len(frame), bool)
    X_gap = take_rows(ts.frame, rows[gap], cols)
    if churn is None:
        churn = new_churn.fit(X_tr, y_churn[tr], eval_set=(X_va, y_churn[va]), refit_extra=(X_gap, y_churn[gap]))
    value.fit(X_tr, y_val[tr], purchases=purchases[tr],
              eval_set=(X_va, y_val[va], purchases[va]), refit_extra=(X_gap, y_val[gap], purchases[gap]),
              keep_stages=keep_stages)
    return churn, value


def take_rows(frame: pd.DataFrame, rows: np.ndarray, cols: np.ndarray) -> pd.DataFrame:
    """``frame.iloc[rows, cols]``: a view of ``frame`` (no copy, with copy-on-write) when ``rows`` are
    consecutive and the columns are not in one consolidated block, else a copy."""
    if len(rows) > 1 and rows[-1] - rows[0] + 1 == len(rows) and (np.diff(rows) == 1).all():
        return frame.iloc[rows[0]:rows[-1] + 1, cols]
    return frame.iloc[rows, cols]


def btyd_baseline(ds: Dataset, frame: pd.DataFrame, cutoff: dt.date, horizon_days: int) -> pd.DataFrame:
    """BG/NBD + Gamma-Gamma fitted on purchases before ``cutoff``: ``p_no_purchase`` and
    ``expected_spend`` for the customers of ``frame`` (customers with no purchase to fit: 1 and 0)."""
    model = BTYDModel().fit(transactions_frame(ds, cutoff), cutoff)
    pred = model.predict(horizon_days).reindex(frame["customer_id"])
    return pd.DataFrame({"p_no_purchase": pred["p_no_purchase"].fillna(1.0).to_numpy(),
                         "expected_spend": pred["expected_spend"].fillna(0.0).to_numpy()})


@dataclass
class Selection:
    """The outcome of :func:`select_models`: the chosen candidate's config, training set and fitted
    (churn, value) models, and every candidate's validation figures (``table``, one row each)."""

    cfg: Config
    ts: TrainingSet
    models: tuple[ChurnModel, ValueModel]
    chosen: str
    table: pd.DataFrame


def candidate(cfg: Config, ts: TrainingSet, btyd: bool, form: str) -> tuple[Config, TrainingSet]:
    """``cfg`` and ``ts`` with the BTYD features on or off and the value form ``form`` (``ts`` must hold
    the BTYD features)."""
    value = cfg.model.value.model_copy(update={"form": form})
    model = cfg.model.model_copy(update={"btyd_features": btyd, "value": value})
    specs = [s for s in ts.specs if btyd or s.name not in BTYD_FEATURES]
    return (cfg.model_copy(update={"model": model}),
            TrainingSet(ts.frame, [s.name for s in specs], specs, ts.cutoffs, ts.excluded))


def select_models(ts: TrainingSet, cfg: Config, progress: Callable[[str], None] | None = None) -> Selection:
    """Fit the configured models and the BTYD candidates on the same time-ordered split and keep the
    one whose expected value has the lowest squared error on the validation cut-offs, predicted by the
    early-stopped value models (trained on the training cut-offs only, before their refit adds the
    validation rows: the error is out of sample).

    Candidates: the configured models (without the BTYD features unless configured), the configured
    value form with the BG/NBD + Gamma-Gamma features, and the ``offset`` form (a multiplicative
    correction of BG/NBD + Gamma-Gamma's expected spend) with them. Squared error is the criterion
    because expected value is a mean (the error it minimises) and CLV sums it: it rewards both the level
    and getting the largest customers right. ``ts`` must hold the BTYD features.
    """
    say = progress or (lambda _: None)
    if not all(c in ts.frame for c in BTYD_FEATURES):
        raise ValueError("select_models needs a training set built with model.btyd_features")
    form = cfg.model.value.form
    options = [(cfg.model.btyd_features, form), (True, form), (True, "offset")]
    options = list(dict.fromkeys(options))
    _, va = split_by_cutoff(ts.frame, cfg.cutoffs.validation, cfg.labels.horizon_days)
    rows, fits = [], []
    churns: dict[bool, ChurnModel] = {}  # the churn model depends on the features only: one per BTYD choice
    for btyd, f in options:
        name = f"{f}{' + BTYD features' if btyd else ''}"
        c_cfg, c_ts = candidate(cfg, ts, btyd, f)
        churn, value = fit_models(c_ts, c_cfg, keep_stages=True, churn=churns.get(btyd))
        churns[btyd] = churn
        Xv = ts.frame.loc[va, c_ts.feature_columns]
        # the early-stopped boosters never trained on the validation rows (the refit did)
        y, v = value_target(ts.frame[va], cfg), value.predict_early_stopped(Xv)
        del value.stages_  # the chosen models are exactly those of a plain fit
        rows.append({"candidate": name, "btyd_features": btyd, "form": f,
                     "value_rmse": float(np.sqrt(np.mean((y - v) ** 2))), "value_mae": float(np.mean(np.abs(y - v))),
                     "value_total_error_pct": float(100 * (v.sum() / y.sum() - 1)) if y.sum() else float("nan")})
        fits.append((c_cfg, c_ts, (churn, value)))
        say(f"candidate {name}: validation RMSE of expected value {rows[-1]['value_rmse']:.4g}")
    table = pd.DataFrame(rows)
    best = int(table["value_rmse"].idxmin())
    table["chosen"] = table.index == best
    c_cfg, c_ts, models = fits[best]
    return Selection(c_cfg, c_ts, models, table.loc[best, "candidate"], table)
