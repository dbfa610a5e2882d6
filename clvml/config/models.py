"""The ``model``, ``clv``, ``backtest`` and ``tune`` sections."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from clvml.config.base import _Strict


class LGBMParams(_Strict):
    """LightGBM settings shared by the churn and value models (extra LightGBM params in ``params``)."""

    n_estimators: int = Field(2000, gt=0, description="Upper bound; early stopping picks the number.")
    learning_rate: float = Field(0.05, gt=0, le=1)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(50, ge=1)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    early_stopping_rounds: int = Field(50, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)


class ChurnModelConfig(LGBMParams):
    calibration: Literal["isotonic", "platt", "none"] = "isotonic"


class ValueModelConfig(LGBMParams):
    form: Literal["hurdle", "tweedie", "frequency", "offset"] = Field(
        "hurdle", description="offset: boosted from btyd_expected_spend (needs model.btyd_features).")
    tweedie_variance_power: float = Field(1.5, gt=1, lt=2)


class ModelConfig(_Strict):
    churn: ChurnModelConfig = Field(default_factory=ChurnModelConfig)
    value: ValueModelConfig = Field(default_factory=ValueModelConfig)
    btyd_features: bool = False
    refit_embargoed: bool = Field(
        False, description="The final refit (with the rounds early stopping chose) also uses the embargoed "
        "cut-offs between the training and the validation cut-offs: with a short history they are most "
        "of the labelled rows (CDNOW: 11 of 18 weekly cut-offs).")
    auto_select: bool = Field(
        True, description="clvml train fits the configured models and the BTYD candidates (the same with "
        "btyd_features, and the offset value form boosted from BG/NBD + Gamma-Gamma) and keeps the one "
        "with the lowest validation error of expected value (out of sample); the train report states the "
        "choice. Seven boosted fits instead of four; false keeps the configured models as they are.")

    @model_validator(mode="after")
    def _offset_needs_btyd(self) -> ModelConfig:
        if self.value.form == "offset" and not self.btyd_features:
            raise ValueError("model.value.form: offset boosts from the BG/NBD prediction "
                             "btyd_expected_spend; set model.btyd_features: true")
        return self


class CLVConfig(_Strict):
    periods: int = Field(4, gt=0, description="K horizons of length labels.horizon_days.")
    margin: float = Field(0.3, ge=0, le=1, description="Margin rate applied to spend.")
    discount_rate: float = Field(0.02, ge=0, description="Discount rate per horizon period.")
    cost: float = Field(0.0, ge=0, description="Per-customer cost over the CLV period.")
    survival: Literal["btyd", "geometric"] = Field(
        "btyd", description="btyd: LightGBM's first-period spend carried over the K periods with each "
        "customer's BTYD dynamics; geometric: (1 - churn probability)^(k-1), the former construction.")
    btyd_model: Literal["bgnbd", "pareto_nbd", "mbgnbd"] = Field(
        "bgnbd", description="The purchase model of survival: btyd.")
    interval: float = Field(0.8, gt=0, lt=1, description="Nominal coverage of the expected_value and "
                            "clv intervals (split-conformal on held-out time).")


class BacktestConfig(_Strict):
    """Rolling-origin backtest: explicit ``origins`` (labelled cut-offs), else the latest ``last``."""

    origins: list[dt.date] | None = None
    last: int = Field(3, ge=1, description="Without origins: how many of the latest labelled cut-offs.")
    clv_origins: list[dt.date] | None = Field(
        None, description="Origins of the long-horizon CLV evaluation (cut-offs with clv.periods x "
        "labels.horizon_days days of data after them); default: the latest clv_last such cut-offs.")
    clv_last: int = Field(2, ge=0, description="Without clv_origins: how many (0: no CLV evaluation).")
    train_evaluation: Literal["auto", "test_cutoff", "validation"] = Field(
        "auto", description="What clvml train evaluates on. test_cutoff: the latest labelled cut-off, held "
        "out, models trained on embargoed earlier cut-offs (needs about three horizons of labelled "
        "history); validation: the latest cut-off, scored by models trained on the cut-offs before it "
        "without an embargo (no separate test cut-off: short histories train the horizon they need; "
        "mildly optimistic); auto: test_cutoff when the history allows it, else validation. The report says which.")


TUNABLE = {"learning_rate": float, "num_leaves": int, "min_child_samples": int, "subsample": float,
           "colsample_bytree": float, "reg_lambda": float}


class SearchRange(_Strict):
    """One tuned parameter: uniform (or log-uniform) between ``low`` and ``high``."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


def _default_space() -> dict[str, SearchRange]:
    return {
        f"{m}.{k}": SearchRange(**v) for m in ("churn", "value") for k, v in {
            "learning_rate": {"low": 0.02, "high": 0.2, "log": True},
            "num_leaves": {"low": 7, "high": 127, "log": True},
            "min_child_samples": {"low": 20, "high": 400, "log": True},
            "colsample_bytree": {"low": 0.3, "high": 1.0},
        }.items()
    }


class TuneConfig(_Strict):
    """Optuna study over LightGBM parameters, scored on the time-ordered validation cut-offs."""

    n_trials: int = Field(20, ge=1)
    origins: int = Field(2, ge=1, description="Score each trial at the latest N labelled cut-offs, in "
                         "time order, training only on earlier ones; a trial can be pruned after each.")
    timeout_s: float | None = Field(None, gt=0)
    objective: Literal["churn_auc", "value_gini", "both"] = Field(
        "both", description="both: mean of churn ROC AUC and value normalized Gini.")
    space: dict[str, SearchRange] = Field(default_factory=_default_space)

    @field_validator("space")
    @classmethod
    def _known(cls, v: dict[str, SearchRange]) -> dict[str, SearchRange]:
        bad = [k for k in v if k.count(".") != 1 or k.split(".")[0] not in ("churn", "value")
               or k.split(".")[1] not in TUNABLE]
        if bad:
            raise ValueError(f"unknown tuning parameter(s) {bad}: use churn.<p> or value.<p> with p one of "
                             f"{sorted(TUNABLE)}")
        if not v:
            raise ValueError("the search space is empty")
        return v
