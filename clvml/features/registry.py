"""Feature registry: every feature is declared once, with its metadata and the expression computing it.

The catalog (``clvml features list``, ``docs/features.md``) and the SQL both come from these
declarations, so they cannot drift apart.

A :class:`Feature` is either an aggregation over a family's event rows joined to cut-offs (``agg``), or a
value derived from other columns after aggregation (``derive``). Windowed features are instantiated once
per configured window and once over all history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import ibis

FAMILIES = ("transactions", "activity", "social", "after_sales", "profile")

Agg = Callable[[ibis.Table, Any], ibis.Value]  # (rows joined to cut-offs, window condition or None)
Derive = Callable[[dict[str, ibis.Value], int | None], ibis.Value]


@dataclass(frozen=True)
class Feature:
    """Declaration of one feature (or one per window when ``windowed``).

    ``name`` may contain ``{w}`` (replaced by ``30d``… or ``all``); ``description`` may contain
    ``{span}`` ("in the last 30 days" / "over all history"). ``sentence`` is the plain-language
    template for reason codes, with ``{value}`` and ``{span}``.
    """

    name: str
    description: str
    unit: str
    sentence: str
    agg: Agg | None = None
    derive: Derive | None = None
    windowed: bool = False
    fill: float | None = 0.0  # value when the customer has no rows; None keeps "undefined" as null
    dtype: Literal["numeric", "categorical"] = "numeric"
    requires: tuple[str, ...] = ()  # optional source columns this feature needs
    hidden: bool = False  # helper aggregate, not part of the output

    def instances(self, windows: Sequence[int]) -> list[tuple[str, int | None]]:
        if not self.windowed:
            return [(self.name, None)]
        return [(self.name.format(w=f"{w}d"), w) for w in windows] + [
            (self.name.format(w="all"), None)
        ]


@dataclass(frozen=True)
class FeatureSpec:
    """Catalog entry of one output column."""

    name: str
    family: str
    source: str
    window: int | None
    description: str
    unit: str
    dtype: str
    missing: str
    sentence: str
    fill: float | None = None

    def explain(self, value: Any) -> str:
        """Plain-language sentence for this feature taking ``value`` (used by reason codes)."""
        return render_sentence(self.sentence, value, self.window)


def span_text(window: int | None) -> str:
    return f"in the last {window} days" if window else "over all history"


def render_sentence(template: str, value: Any, window: int | None) -> str:
    if value is None or (isinstance(value, float) and value != value):
        shown = "no data"
    elif isinstance(value, float):
        shown = f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:,.2f}"
    else:
        shown = str(value)
    return template.format(value=shown, span=span_text(window))


@dataclass
class Family:
    """A family of features computed from one source table."""

    name: str
    source: str
    prefix: str
    features: list[Feature] = field(default_factory=list)

    def register(self, feature: Feature) -> Feature:
        self.features.append(feature)
        return feature

    def active(self, columns: Sequence[str]) -> list[Feature]:
        return [f for f in self.features if all(c in columns for c in f.requires)]

    def specs(self, windows: Sequence[int], columns: Sequence[str] | None = None) -> list[FeatureSpec]:
        feats = self.features if columns is None else self.active(columns)
        out = []
        for f in feats:
            if f.hidden:
                continue
            for name, w in f.instances(windows):
                missing = (f"{f.fill:g} when there is no {self.source} row"
                           if f.fill is not None else "null when undefined (no qualifying event)")
                out.append(FeatureSpec(
                    name=f"{self.prefix}_{name}", family=self.name, source=self.source, window=w,
                    description=f.description.format(span=span_text(w)), unit=f.unit,
                    dtype=f.dtype, missing=missing, sentence=f.sentence, fill=f.fill,
                ))
        return out


REGISTRY: dict[str, Family] = {}


def family(name: str, source: str, prefix: str) -> Family:
    fam = Family(name, source, prefix)
    REGISTRY[name] = fam
    return fam


def both(a: Any, b: Any) -> Any:
    """AND of two optional conditions (None means 'no condition')."""
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def in_window(rows: ibis.Table, w: int | None, day: str = "day") -> Any:
    """Rows whose day lies in [cutoff - w, cutoff) (rows are already restricted to before the cutoff)."""
    return None if w is None else rows[day] >= rows.cutoff_day - w
