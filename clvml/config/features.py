"""The ``cutoffs``, ``features`` and ``labels`` sections."""

from __future__ import annotations

import datetime as dt
import importlib
import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from clvml.config.base import _Strict


class CutoffConfig(_Strict):
    """The prediction dates stacked for training. Either ``dates`` or ``start``/``every_days``."""

    dates: list[dt.date] | None = None
    start: dt.date | None = None
    end: dt.date | None = Field(None, description="Default: the latest date with a complete horizon.")
    every_days: int = Field(30, gt=0)
    validation: int = Field(1, ge=1, description="How many of the latest labelled cut-offs are held out.")

    @model_validator(mode="after")
    def _one_way(self) -> CutoffConfig:
        if self.dates is None and self.start is None:
            raise ValueError("give either cutoffs.dates or cutoffs.start (with every_days)")
        if self.dates is not None and self.start is not None:
            raise ValueError("give cutoffs.dates or cutoffs.start, not both")
        return self


class CustomFeatureConfig(_Strict):
    """One user-defined feature (``features.custom``): a function ``f(history, at)`` importable as
    ``package.module:function`` (see ``docs/custom-features.md``). A function decorated with
    ``@clvml.register_feature`` needs only ``function``; the other keys register an undecorated one."""

    function: str = Field(description="'package.module:function', importable where clvml runs.")
    name: str | None = Field(None, description="Output column ('{w}' where the window goes when windowed).")
    description: str | None = None
    say: str | None = Field(None, description="Reason-code text, e.g. '{value} gift card {order|orders} {span}'.")
    kind: Literal["count", "money", "days", "seconds", "ratio", "share", "score", "flag", "number"] = "count"
    table: Literal["transactions", "activity", "social", "after_sales"] = "transactions"
    windows: bool | list[int] = False
    unit: str = "count"
    fill: float | None = 0.0

    @field_validator("function")
    @classmethod
    def _importable(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", v):
            raise ValueError(f"{v!r} is not 'package.module:function'")
        module, attr = v.split(":")
        try:
            obj: object = importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any failure of user code is reported with its cause
            raise ValueError(f"cannot import module {module!r} ({type(exc).__name__}: {exc}); install it "
                             "or put it on PYTHONPATH") from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ValueError(f"module {module!r} has no attribute {attr!r}") from None
            obj = getattr(obj, part)
        if not callable(obj):
            raise ValueError(f"{v} is not a function")
        return v

    @model_validator(mode="after")
    def _complete(self) -> CustomFeatureConfig:
        given = [k for k in ("name", "description", "say") if getattr(self, k) is not None]
        if given and len(given) < 3:
            missing = sorted({"name", "description", "say"} - set(given))
            raise ValueError(f"give name, description and say together (missing: {', '.join(missing)}), or "
                             "only function for a function decorated with @clvml.register_feature")
        return self


class FeatureConfig(_Strict):
    windows: list[int] = Field(default_factory=lambda: [30, 90, 180, 365])
    cutoffs_per_query: int = Field(4, ge=1, description="Cut-offs whose features one DuckDB query builds "
                                   "for a training set; fewer use less memory (the demo's training set: 16 "
                                   "at once peaked at 3.8 GB, 4 at 1.6-1.9 GB, 2 at 1.7 GB) and give "
                                   "identical features.")
    plan: Literal["auto", "cross_join", "incremental"] = Field(
        "auto", description="How the transaction aggregates are computed; every plan gives the same bits. "
        "'incremental': running totals in NumPy (DuckDB only; on other engines the cross join runs); "
        "'cross_join': every customer-day joined to every later cut-off in one query; 'auto': the incremental "
        "plan on DuckDB from three cut-offs on (training sets), the cross join below (scoring) and on other "
        "engines (measured: the demo's training job 5 % less CPU and 0.18 GB less memory, the full build at 6 "
        "cut-offs 29 % less CPU; at one cut-off 7 % more CPU; bench/RESULTS.md).")
    cache: bool = Field(True, description="Reuse the feature table built by an earlier train/backtest/"
                        "tune on the same inputs, settings and cut-offs (kept under output.dir/cache).")
    families: list[Literal["transactions", "activity", "social", "after_sales", "profile"]] = Field(
        default_factory=lambda: ["transactions", "activity", "social", "after_sales", "profile"],
        description="Feature families to build; must include transactions (the CLV's purchase dynamics, "
        "the recency baseline and the BTYD features read its features).")
    custom: list[CustomFeatureConfig] = Field(
        default_factory=list, description="User-defined point-in-time features (docs/custom-features.md).")

    @field_validator("windows")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(w <= 0 for w in v):
            raise ValueError("windows must be a non-empty list of positive day counts")
        return sorted(set(v))


class LabelConfig(_Strict):
    horizon_days: int = Field(90, gt=0)
    churn_definition: Literal["no_purchase", "no_activity", "cancellation"] = "no_purchase"
    cancellation_event: str = "account_closed"
    value_target: Literal["spend", "margin"] = "spend"
