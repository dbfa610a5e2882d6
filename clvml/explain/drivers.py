"""What drives churn and value: tree SHAP values and global and segment drivers (per-customer reason
codes are in :mod:`clvml.explain.reasons`).

Contributions are LightGBM's own ``pred_contrib`` (exact tree SHAP, computed in C++), memoised by
decision pattern (:mod:`clvml.explain.treeshap`: ~9× faster on the demo model, identical values);
:func:`check_against_shap` confirms they equal ``shap.TreeExplainer``'s. They are
additive in the model's raw score space:

* churn: the log-odds of the uncalibrated churn booster (calibration is a monotone map on top, so the
  drivers and their order are the same);
* value (``frequency`` form): log E[spend] = log E[purchases] + log E[order value], so the two
  boosters' contributions add up; ``tweedie``: log E[spend]; ``hurdle``: not additive in one space —
  its contributions are those of log E[spend | purchase] plus the logit of P(purchase), an
  approximation documented as such.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from clvml.features.registry import FeatureSpec
from clvml.modeling.churn import ChurnModel
from clvml.modeling.value import ValueModel

if TYPE_CHECKING:
    from clvml.modeling.raw_scores import RawScores

BIAS = "_base_value"


def _boosters(model: ChurnModel | ValueModel) -> list:
    """The fitted LightGBM models whose raw scores add up to the explained score."""
    if isinstance(model, ChurnModel):
        check_is_fitted(model, "booster_")
        return [model.booster_]
    check_is_fitted(model, "categories_")
    return {"frequency": [model.count_, model.amount_], "tweedie": [model.spend_],
            "offset": [model.spend_], "hurdle": [model.buy_, model.amount_]}[model.form]


def contributions(model: ChurnModel | ValueModel, X: pd.DataFrame, F: np.ndarray | None = None,
                  raw: RawScores | None = None) -> pd.DataFrame:
    """SHAP values per row and feature in the model's raw score space, plus the ``_base_value``
    column; each row sums to the raw score (see the module docstring). ``F``: ``model.matrix(X)`` when
    the caller already has it (the scoring job builds it once for predictions and explanations).

    ``raw``: a dict that receives each booster's raw scores of the rows, found on the way
    (:func:`~clvml.explain.treeshap.tree_shap_and_raw`), for the model's ``*_matrix`` predictions of the
    same ``F`` (:func:`~clvml.modeling.lgbm.predict_matrix`)."""
    from clvml.explain.treeshap import compile_booster, tree_shap_and_raw
    from clvml.modeling.lgbm import model_columns
    from clvml.modeling.raw_scores import RawScore

    if F is None:
        F = model.matrix(X)  # shared by the boosters (same training columns)
    columns = model_columns(model)
    total = None
    for b in _boosters(model):  # summed in place, in the order (and to the bit) of 0 + b1 + b2 + …
        booster = b.booster_ if hasattr(b, "booster_") else b
        phi, scores = tree_shap_and_raw(booster, None, F=F)
        if raw is not None and scores is not None:
            raw[b] = RawScore(scores, compile_booster(booster).objective)
        if total is None:
            total = np.add(phi, 0.0, out=phi)  # as 0 + phi: a -0.0 becomes 0.0
        else:
            total += phi
        del phi
    if total is None:  # (a model has at least one booster)
        total = np.zeros((F.shape[1], len(columns) + 1))
    if _has_offset(model):
        # the baseline the trees correct is itself a feature: its log is that feature's share
        total[:, columns.index(model.offset_column)] += model.offset_matrix(F)
    return pd.DataFrame(total, columns=[*columns, BIAS], index=X.index, copy=False)


def _has_offset(model: ChurnModel | ValueModel) -> bool:
    return isinstance(model, ValueModel) and model.form == "offset"


def raw_score(model: ChurnModel | ValueModel, X: pd.DataFrame) -> np.ndarray:
    """The raw (link-space) score the contributions add up to."""
    Xp = model._features(X)
    trees = sum(b.predict(Xp, raw_score=True) for b in _boosters(model))
    return trees + model._offset(X) if _has_offset(model) else trees


def check_against_shap(model: ChurnModel | ValueModel, X: pd.DataFrame) -> float:
    """Largest absolute difference between ``pred_contrib`` and ``shap.TreeExplainer`` values."""
    import shap

    ours = contributions(model, X).drop(columns=BIAS)
    if _has_offset(model):  # TreeExplainer sees the trees only
        ours[model.offset_column] -= model._offset(X)
    ours = ours.to_numpy()
    Xp = model._features(X)
    theirs = 0
    for b in _boosters(model):
        v = shap.TreeExplainer(b.booster_ if hasattr(b, "booster_") else b).shap_values(Xp)
        theirs = theirs + np.asarray(v[1] if isinstance(v, list) else v, dtype=float)
    return float(np.abs(ours - theirs).max())


def _numeric(X: pd.DataFrame) -> pd.DataFrame:
    """Features as floats (categories as their codes, missing as NaN) for plots and activity masks."""
    return X.apply(lambda c: c.cat.codes.where(c.notna()) if isinstance(c.dtype, pd.CategoricalDtype)
                   else pd.to_numeric(c, errors="coerce")).astype(float)


def global_importance(contrib: pd.DataFrame, specs: Sequence[FeatureSpec] | None = None,
                      X: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean |SHAP| per feature, largest first, with its family when ``specs`` are given.

    With ``X``, also ``active_share`` (rows where the feature is non-null and non-zero) and
    ``mean_abs_shap_when_active``: rare but strong drivers (an unresolved complaint, an account
    closure) move few customers, so their overall mean is small even when they dominate the risk of
    the customers they touch; this column ranks them by that effect.
    """
    imp = contrib.drop(columns=BIAS).abs().mean().sort_values(ascending=False)
    out = imp.rename("mean_abs_shap").to_frame()
    if specs is not None:
        fam = {s.name: s.family for s in specs}
        out["family"] = [fam.get(n, "other") for n in out.index]
    if X is not None:
        num = _numeric(X[list(out.index)])
        active = (num.notna() & (num != 0)).to_numpy()
        absc = contrib[list(out.index)].abs().to_numpy()
        n = active.sum(axis=0)
        out["active_share"] = n / max(len(X), 1)
        out["mean_abs_shap_when_active"] = np.where(n > 0, (absc * active).sum(axis=0) / np.maximum(n, 1), 0.0)
    out.index.name = "feature"
    return out


def family_importance(contrib: pd.DataFrame, specs: Sequence[FeatureSpec]) -> pd.Series:
    """Mean |sum of a family's SHAP values| per row: how much each family moves predictions."""
    fam = {s.name: s.family for s in specs}
    c = contrib.drop(columns=BIAS)
    groups = c.T.groupby([fam.get(n, "other") for n in c.columns]).sum().T
    return groups.abs().mean().sort_values(ascending=False).rename("mean_abs_shap").rename_axis("family")


def segment_drivers(contrib: pd.DataFrame, segments: pd.Series, top: int = 5) -> pd.DataFrame:
    """Mean SHAP by segment (e.g. value tier or lifecycle stage): the ``top`` features with the
    largest mean contribution in each segment, positive = pushes the score up there."""
    c = contrib.drop(columns=BIAS)
    means = c.groupby(segments.to_numpy()).mean()
    rows = []
    for seg, r in means.iterrows():
        for feat, v in r.sort_values(key=np.abs, ascending=False).head(top).items():
            rows.append((seg, feat, float(v)))
    return pd.DataFrame(rows, columns=["segment", "feature", "mean_shap"])


def write_explanations(churn: ChurnModel, value: ValueModel, X: pd.DataFrame, specs: Sequence[FeatureSpec],
                       folder, top: int = 3, max_rows: int = 5000, seed: int = 0,
                       segments: pd.DataFrame | None = None) -> dict[str, object]:
    """Global drivers of both models on ``X`` (a sample of at most ``max_rows``), written to ``folder``:
    mean |SHAP| rankings and family totals (CSV), a beeswarm summary and dependence plots of the
    ``top`` features per model (PNG), and, for each column of ``segments`` (same index as ``X``, e.g.
    value tier and lifecycle stage), the top drivers per segment (``<model>_drivers_by_<column>.csv``).
    Returns name -> path."""
    from pathlib import Path

    from clvml.io import atomic_write_text
    from clvml.plotting import save_figure

    folder = Path(folder)
    if len(X) > max_rows:
        X = X.sample(max_rows, random_state=seed)
    out: dict[str, object] = {}
    numeric = _numeric(X)
    for name, model in (("churn", churn), ("value", value)):
        c = contributions(model, X)
        imp = global_importance(c, specs, X)
        out[f"{name}_importance"] = atomic_write_text(imp.to_csv(), folder / f"{name}_shap_importance.csv")
        out[f"{name}_families"] = atomic_write_text(family_importance(c, specs).to_csv(),
                                                    folder / f"{name}_shap_families.csv")
        vals = c.drop(columns=BIAS)
        out[f"{name}_beeswarm"] = save_figure(beeswarm_figure(vals, numeric[vals.columns], name),
                                              folder / f"{name}_beeswarm.png")
        for col in [] if segments is None else segments.columns:
            drivers = segment_drivers(c, segments.loc[X.index, col], top=10).rename(columns={"segment": col})
            out[f"{name}_drivers_by_{col}"] = atomic_write_text(drivers.to_csv(index=False),
                                                                folder / f"{name}_drivers_by_{col}.csv")
        for feat in imp.index[:top]:
            out[f"{name}_dependence_{feat}"] = save_figure(dependence_figure(X[feat], vals[feat], name, seed),
                                                           folder / f"{name}_dependence_{feat}.png")
    return out


def beeswarm_figure(shap_values: pd.DataFrame, numeric: pd.DataFrame, name: str, max_display: int = 20):
    """SHAP's beeswarm summary of ``shap_values`` (rows × features), coloured by ``numeric`` (the
    same features as floats), titled over its own axes so the title never runs into the colour bar."""
    import matplotlib.pyplot as plt
    import shap

    plt.figure()
    with warnings.catch_warnings():
        # a feature missing for every sampled customer (e.g. no social history) has no colour
        # scale: SHAP's nanpercentile warns and draws its points grey, which is what we want
        warnings.filterwarnings("ignore", "All-NaN slice encountered", RuntimeWarning)
        shap.summary_plot(shap_values.to_numpy(), numeric, show=False, max_display=max_display)
    fig = plt.gcf()
    fig.axes[0].set_title(f"{name}: SHAP summary (raw score space)", pad=12, fontsize=13)
    return fig


MAX_LEVELS = 10
"""A feature with at most this many distinct values is plotted per level (box + jittered points)."""


def _levels(x: pd.Series) -> list[str] | None:
    """The labels of ``x``'s levels when it is categorical, boolean or has at most ``MAX_LEVELS``
    distinct values (e.g. the 0/1 ``act_closed``), else None (a continuous feature)."""
    if isinstance(x.dtype, pd.CategoricalDtype):
        return [str(v) for v in x.cat.categories]
    v = pd.to_numeric(x, errors="coerce").dropna().unique()
    if len(v) > MAX_LEVELS:
        return None
    return [f"{u:g}" for u in np.sort(v.astype(float))]


def dependence_figure(x: pd.Series, shap_values: pd.Series, name: str, seed: int = 0):
    """How one feature's value moves its SHAP value.

    A continuous feature is a scatter. A binary, categorical or low-cardinality one (at most
    ``MAX_LEVELS`` values) gets one box per level with its customers as jittered points, labelled
    with the level and its count (missing values are a level of their own): a 0/1 feature drawn on a
    continuous 0-1 axis suggests values in between that do not exist.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.set_ylabel(f"SHAP value ({name})")
    ax.set_title(f"{name}: dependence on {x.name}")
    ax.grid(alpha=0.3)
    sv = shap_values.to_numpy(float)
    levels = _levels(x)
    if levels is None:
        ax.scatter(_numeric(x.to_frame()).iloc[:, 0], sv, s=4, alpha=0.4)
        ax.set_xlabel(str(x.name))
        return fig
    if isinstance(x.dtype, pd.CategoricalDtype):
        lab = x.astype(object).map(str).where(x.notna())
    else:
        lab = pd.to_numeric(x, errors="coerce").map(lambda u: f"{u:g}", na_action="ignore")
    if lab.isna().any():
        levels = [*levels, "missing"]
        lab = lab.fillna("missing")
    lab = lab.to_numpy(object)
    groups = [sv[lab == lv] for lv in levels]
    keep = [i for i, g in enumerate(groups) if len(g)]
    pos = np.arange(len(keep))
    ax.boxplot([groups[i] for i in keep], positions=pos, widths=0.5, showfliers=False,
               medianprops={"color": "black", "gid": "median"})
    rng = np.random.default_rng(seed)
    for p, i in zip(pos, keep, strict=True):
        g = groups[i]
        ax.scatter(p + rng.uniform(-0.18, 0.18, len(g)), g, s=4, alpha=0.4, color="tab:blue", zorder=3)
    ax.set_xticks(pos, [f"{levels[i]}\n(n={len(groups[i]):,})" for i in keep])
    ax.set_xlim(-0.6, len(keep) - 0.4)
    ax.set_xlabel(f"{x.name} (one box per value)")
    return fig
