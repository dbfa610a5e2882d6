"""The ``segments`` and ``experiments`` sections (marketing analytics)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from clvml.config.base import _Strict


class ExperimentConfig(_Strict):
    """Retention-incentive experiments (``clvml experiment …``)."""

    assignments: Path | None = Field(None, description="Assignment table (Parquet or CSV): customer_id, "
                                     "group, assigned_ts[, campaign_id, segment columns].")
    window_days: int = Field(30, gt=0, description="Outcome window after assignment.")
    control: str = Field("control", description="Label of the control group.")
    alpha: float = Field(0.05, gt=0, lt=1, description="1 - confidence level of the intervals.")
    by: list[str] = Field(default_factory=list, description="Segment columns for per-segment effects.")
    uplift_metric: Literal["repurchased", "spend"] = "repurchased"
    test_share: float = Field(0.3, gt=0, lt=1, description="Customers held out to measure the Qini "
                              "coefficient of the uplift model.")
    value: float = Field(1.0, ge=0, description="Worth of one unit of the uplift metric (e.g. margin per "
                         "incremental repurchase).")
    cost: float = Field(0.0, ge=0, description="Cost of one contact.")
    budget: float | None = Field(None, gt=0, description="Total contact budget (caps the targets).")


TIERS = ("high", "potential", "general", "low")
BANDS = ("low", "medium", "high")


class RFMRule(_Strict):
    """A named RFM segment: customers whose scores fall in every given inclusive range."""

    name: str
    r: tuple[int, int] = (1, 5)
    f: tuple[int, int] = (1, 5)
    m: tuple[int, int] = (1, 5)

    def matches(self, r, f, m):
        return ((r >= self.r[0]) & (r <= self.r[1]) & (f >= self.f[0]) & (f <= self.f[1])
                & (m >= self.m[0]) & (m <= self.m[1]))


def _rfm_grid() -> list[RFMRule]:
    # the classic recency x frequency grid; the first matching rule wins
    rules = [("champions", (5, 5), (4, 5)), ("loyal", (3, 4), (4, 5)),
             ("potential_loyalists", (4, 5), (2, 3)), ("new", (5, 5), (1, 1)), ("promising", (4, 4), (1, 1)),
             ("need_attention", (3, 3), (3, 3)), ("about_to_sleep", (3, 3), (1, 2)),
             ("cannot_lose", (1, 2), (5, 5)), ("at_risk", (1, 2), (3, 4)), ("lost", (1, 1), (1, 2)),
             ("hibernating", (2, 2), (1, 2))]
    return [RFMRule(name=n, r=r, f=f) for n, r, f in rules]


class RFMConfig(_Strict):
    """RFM quintile scores and the named segments built from them."""

    quantiles: int = Field(5, ge=2, le=10, description="Score levels (5: quintiles).")
    window_days: int | None = Field(None, description="Frequency/monetary window (a features.windows "
                                    "entry); null: all history.")
    rules: list[RFMRule] = Field(default_factory=_rfm_grid, description="First matching rule wins.")
    fallback: str = "other"


class LifecycleConfig(_Strict):
    """Thresholds in days; left empty they are learned from the base's inter-purchase times."""

    active_days: float | None = Field(None, gt=0, description="Silent longer than this: dormant.")
    churned_days: float | None = Field(None, gt=0, description="Silent longer than this: churned.")
    new_days: float | None = Field(None, gt=0, description="First purchase within this: new "
                                   "(default: active_days).")
    active_quantile: float = Field(0.8, gt=0, lt=1, description="Learned active_days: this quantile of "
                                   "inter-purchase times.")
    churned_quantile: float = Field(0.95, gt=0, lt=1)


class RiskBands(_Strict):
    """Churn-probability thresholds of the medium and high risk bands."""

    medium: float = Field(0.3, gt=0, lt=1)
    high: float = Field(0.6, gt=0, lt=1)

    @model_validator(mode="after")
    def _ordered(self) -> RiskBands:
        if not self.medium < self.high:
            raise ValueError(f"medium ({self.medium}) must be below high ({self.high})")
        return self


def _default_actions() -> dict[str, dict[str, str]]:
    return {
        "high": {"high": "vip_retention_call", "medium": "vip_care", "low": "loyalty_reward"},
        "potential": {"high": "win_back_offer", "medium": "nurture_offer", "low": "upsell"},
        "general": {"high": "reactivation_email", "medium": "nurture_email", "low": "newsletter"},
        "low": {"high": "no_action", "medium": "automated_reminder", "low": "automated_reminder"},
    }


class BudgetConfig(_Strict):
    """Retention budget allocation (see :func:`clvml.analytics.segments.allocate_budget`)."""

    total: float = Field(10_000.0, ge=0)
    method: Literal["shares", "optimal"] = "shares"
    shares: dict[str, float] = Field(default_factory=lambda: {"high": 0.80, "potential": 0.15,
                                                              "general": 0.04, "low": 0.01})
    cost_per_contact: float = Field(5.0, gt=0)
    save_rate: float = Field(0.1, ge=0, le=1)


def _check_tiers(v: dict[str, Any], what: str) -> None:
    if set(v) != set(TIERS):
        raise ValueError(f"{what} must name exactly the tiers {list(TIERS)}, got {sorted(v)}")


class SegmentsConfig(_Strict):
    rfm: RFMConfig = Field(default_factory=RFMConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    value_tiers: dict[str, float] = Field(
        default_factory=lambda: {"high": 0.05, "potential": 0.15, "general": 0.40, "low": 0.40},
        description="Share of customers in each CLV tier, learned as CLV cut points at training.")
    risk_bands: RiskBands = Field(default_factory=RiskBands)
    actions: dict[str, dict[str, str]] = Field(default_factory=_default_actions,
                                               description="value tier -> risk band -> action.")
    budget: BudgetConfig = Field(default_factory=BudgetConfig)

    @model_validator(mode="after")
    def _complete(self) -> SegmentsConfig:
        _check_tiers(self.value_tiers, "segments.value_tiers")
        if abs(sum(self.value_tiers.values()) - 1) > 1e-6 or min(self.value_tiers.values()) <= 0:
            raise ValueError(f"segments.value_tiers shares must be positive and sum to 1, got "
                             f"{self.value_tiers}")
        _check_tiers(self.actions, "segments.actions")
        gaps = [f"{t}.{b}" for t in TIERS for b in BANDS if b not in self.actions[t]]
        if gaps:
            raise ValueError(f"segments.actions has no action for {gaps}: give one for every value tier "
                             f"x risk band ({list(BANDS)})")
        _check_tiers(self.budget.shares, "segments.budget.shares")
        if abs(sum(self.budget.shares.values()) - 1) > 1e-6:
            raise ValueError(f"segments.budget.shares must sum to 1, got {self.budget.shares}")
        return self
