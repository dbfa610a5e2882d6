"""The ``promote`` section: when a challenger model replaces the champion (``clvml promote``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from clvml.config.base import _Strict

#: metrics a champion and a challenger can be compared on, and whether higher is better
PROMOTE_METRICS: dict[str, bool] = {
    "churn_roc_auc": True, "churn_pr_auc": True, "churn_log_loss": False, "churn_brier": False,
    "churn_ece": False, "churn_lift_top10": True, "value_mae": False, "value_rmse": False,
    "value_normalized_gini": True, "value_spearman": True, "value_decile_mape": False,
}


class PromoteConfig(_Strict):
    """Champion and challenger: ``clvml score --shadow`` scores a challenger beside production, and
    ``clvml promote`` moves the production alias to it only when it wins on matured partitions."""

    alias: str = Field("champion", description="Registry alias of the production model (score "
                       "production with models:/<name>@<alias>); clvml promote moves it.")
    metric: Literal[tuple(PROMOTE_METRICS)] = Field(  # type: ignore[valid-type]
        "churn_roc_auc", description="Metric the challenger must win on, computed on each matured "
        "as_of from the realised outcomes (value_* compare expected_value with the realised "
        "labels.value_target over the horizon).")
    min_runs: int = Field(3, ge=1, description="Matured as_of partitions scored by both models that "
                          "the decision needs.")
    min_improvement: float = Field(0.0, ge=0, description="The challenger wins when its metric beats the "
                                   "champion's by more than this (in the metric's better direction).")
    rule: Literal["mean", "every"] = Field(
        "mean", description="mean: the improvement averaged over the matured runs must exceed "
        "min_improvement; every: each matured run's improvement must.")
