"""Feature registry: every feature is declared once, with its metadata and the expression computing it.

The catalog (``clvml features list``, ``docs/features.md``) and the SQL both come from these
declarations, so they cannot drift apart.

A :class:`Feature` is either an aggregation over a family's event rows joined to cut-offs (``agg``), or a
value derived from other columns after aggregation (``derive``). Windowed features are instantiated once
per configured window and once over all history.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Literal

import ibis

FAMILIES = ("transactions", "activity", "social", "after_sales", "profile")

Agg = Callable[[ibis.Table, Any], ibis.Value]  # (rows joined to cut-offs, window condition or None)
Derive = Callable[[dict[str, ibis.Value], int | None], ibis.Value]
RowExpr = Callable[[ibis.Table], ibis.Value]  # an expression over a family's rows (before any join)


@dataclass(frozen=True)
class Inc:
    """The incremental form of an ``agg``: what it aggregates over a family's one-row-per-day rows, so that
    :mod:`clvml.features.incremental` can derive every (cut-off, window) value from running totals over the
    rows sorted once, instead of joining every row to every later cut-off.

    It must give exactly the ``agg``'s values, bit for bit (``tests/test_incremental.py`` compares both
    plans); features without one are computed by the cross join in either plan.

    ``kind``
        ``"sum"``: the sum of ``value`` over the rows in range (a boolean counts 0/1; an integer or boolean
        sum is int64, a float sum float64, a decimal sum the decimal type, like
        :func:`~clvml.features.query.wsum` / :func:`~clvml.features.query.wide_wsum`); null when no row of
        the customer before the cut-off has a value (like a sum of ``value`` times a 0/1 window indicator),
        or, with a ``band``, when no row in the band has one (like ``sum(where=…)``).
        ``"max"``/``"min"``: the largest/smallest non-null ``value`` in range (null: none).
        ``"first"``/``"last"``: ``value`` on the earliest/latest row (by day) before the cut-off with a
        non-null one; all history only.
    ``value``
        Per row of the family's rows; null: the row does not count.
    ``band``
        (lo, hi): only rows with ``cutoff - lo <= day < cutoff - hi`` (a fixed band, for a feature that is
        not windowed; sums only). Default: the feature's window, all history when it has none.
    ``then``
        ``(aggregate, cutoff_day) -> value``: applied (as an Ibis expression) to the aggregate, e.g. the
        conversion from whole units or the days since the last one.
    """

    kind: Literal["sum", "max", "min", "first", "last"]
    value: RowExpr
    band: tuple[int, int] | None = None
    then: Callable[[ibis.Value, ibis.Value], ibis.Value] | None = None


@dataclass(frozen=True)
class Feature:
    """Declaration of one feature (or one per window when ``windowed``).

    ``name`` may contain ``{w}`` (replaced by ``30d``… or ``all``); ``description`` may contain
    ``{span}`` ("in the last 30 days" / "over all history"). ``sentence`` is the plain-language
    template for reason codes (:class:`Say`: how the value reads when it is 0, 1, many or missing).
    """

    name: str
    description: str
    unit: str
    sentence: Say
    agg: Agg | None = None
    derive: Derive | None = None
    windowed: bool = False
    fill: float | None = 0.0  # value when the customer has no rows; None keeps "undefined" as null
    dtype: Literal["numeric", "categorical"] = "numeric"
    requires: tuple[str, ...] = ()  # optional source columns this feature needs
    hidden: bool = False  # helper aggregate, not part of the output
    #: grows with the calendar by construction (tenure, days since sign-up): its distribution moves
    #: whenever the scoring date differs from the training one, so the drift stop reports it but does
    #: not stop on it (clvml.scoring.drift)
    calendar: bool = False
    inc: Inc | None = None  # the agg's incremental form (None: computed by the cross join)
    #: a whole number by construction (a count, a flag, a number of days): stored as float32, which holds
    #: every whole number up to 2**24 exactly, at half the memory of float64 (see :data:`WHOLE_EXACT`)
    whole: bool = False

    def __post_init__(self) -> None:
        if self.whole and self.dtype != "numeric":
            raise ValueError(f"feature {self.name!r}: only a numeric feature can be whole")
        if self.whole and self.fill is not None and not (float(self.fill).is_integer()
                                                         and abs(self.fill) < WHOLE_EXACT):
            # exact in float32: filling before or after the cast to float32 then gives the same values
            raise ValueError(f"feature {self.name!r}: a whole feature's fill must be a whole number below 2**24, "
                             f"not {self.fill!r}")
        if isinstance(self.sentence, str):  # a plain template: "{value}" as a count
            object.__setattr__(self, "sentence", Say(self.sentence))

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
    sentence: str  # the template's main text (kept for bundles written before ``say``)
    fill: float | None = None
    say: Say | None = None  # the reason-code template (None in bundles written before it existed)
    calendar: bool = False  # grows with the calendar by construction (see Feature.calendar)
    #: the column's Arrow type: "float32" (whole numbers, :attr:`Feature.whole`), "float64" or "string"
    #: (bundles written before it existed: "float64"/"int64"/"string" as built then)
    storage: str = "float64"

    def explain(self, value: Any) -> str:
        """Plain-language sentence for this feature taking ``value`` (used by reason codes)."""
        say = self.say or _registered_say(self.name)
        if say is None:  # a feature this clvml does not declare: the old plain template
            return render_sentence(self.sentence, value, self.window)
        return say.render(value, self.window)


def _registered(name: str) -> Feature | None:
    """The declaration this clvml has for an output column (the families register themselves when
    ``clvml.features`` is imported)."""
    for fam in REGISTRY.values():
        for f in fam.features:
            pattern = re.escape(f"{fam.prefix}_{f.name}").replace(re.escape("{w}"), r"(?:\d+d|all)")
            if not f.hidden and re.fullmatch(pattern, name):
                return f
    return None


def _registered_say(name: str) -> Say | None:
    """The template this clvml declares for an output column (for specs unpickled from older bundles)."""
    f = _registered(name)
    return None if f is None else f.sentence


def calendar_columns(specs: Sequence[FeatureSpec]) -> list[str]:
    """The output columns among ``specs`` that grow with the calendar by construction (tenure, days
    since sign-up): marked on the spec, or, for specs unpickled from bundles written before the mark
    existed, declared so in this clvml's registry."""
    out = []
    for s in specs:
        f = None if getattr(s, "calendar", False) else _registered(s.name)
        if getattr(s, "calendar", False) or (f is not None and f.calendar):
            out.append(s.name)
    return out


Kind = Literal["count", "money", "days", "seconds", "ratio", "share", "score", "flag", "category", "number"]
_CHOICE = re.compile(r"\{([^{}|]*)\|([^{}|]*)\}")


@dataclass(frozen=True)
class Say:
    """How a reason code reads one feature: a sentence for every case an account manager will see.

    ``text`` is used for a value other than 0; ``{value}`` is the value written for its ``kind``
    (``count`` 1,234 or 37.5; ``money`` 37.50 or 1,234; ``days``/``seconds`` a duration in the
    largest sensible unit, "3 hours", "1 day", "2.5 years"; ``ratio`` 1.5×; ``share`` 25%; ``score``
    7 or 3.5; ``number`` as is; ``category`` the label), ``{span}`` the window ("in the last 30 days" /
    "over all history"), and ``{singular|plural}`` picks the word agreeing with the value ("1 order",
    "2 orders", "37.5 orders"). ``zero`` is the sentence for 0 (a flag's "no"), ``negative`` for a
    value below 0 (``{value}`` is then its absolute size: "3 fewer orders"), ``one`` (optional) for
    exactly 1 ("usually buys every day" rather than "every 1 day"), ``missing`` for no value
    at all (a sentence saying there is no data, never "no data days"). Negative zero reads as 0.
    """

    text: str
    zero: str | None = None
    missing: str | None = None
    kind: Kind = "count"
    negative: str | None = None
    one: str | None = None  # the sentence when the value reads as exactly 1 ("usually buys every day")

    def render(self, value: Any, window: int | None = None) -> str:
        span = span_text(window)
        v = _number(value)
        if _is_missing(value) or (isinstance(value, str) and value == ""):
            return _fill(self.missing or self.zero or f"no data {span}", "", span)
        if v is None:
            return _fill(self.text, str(value), span)
        if self.kind == "category":  # a numeric label: written without "-0" or float noise
            return _fill(self.text, _plain(v, 2), span)
        if math.isinf(v):
            return _fill(self.missing or f"no data {span}", "", span)
        shown = format_value(v, self.kind)
        if (self.kind == "flag" and v == 0) or (self.zero is not None and _is_zero(shown)):
            return _fill(self.zero or self.text, shown, span)
        if self.one is not None and shown == format_value(1.0, self.kind):
            return _fill(self.one, shown, span)
        if v < 0 and self.negative is not None:
            return _fill(self.negative, format_value(-v, self.kind), span)
        return _fill(self.text, shown, span)


def _is_missing(value: Any) -> bool:
    """None, NaN, NaT or pandas' NA."""
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN and NaT differ from themselves
    except TypeError:  # pd.NA: its truth value is ambiguous
        return True


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, Real) or (hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iuf"):
        return float(value)
    return None


def _is_zero(shown: str) -> bool:
    """Whether a formatted value reads as zero ("0", "0.00", "0%", "0×", "0 seconds")."""
    return re.fullmatch(r"[0.,]+(%|×)?( [a-z]+)?", shown) is not None


def _fill(template: str, shown: str, span: str) -> str:
    """``{value}``, ``{span}`` and ``{singular|plural}`` (agreeing with the number in ``shown``)."""
    m = re.match(r"-?[\d,]+(\.\d+)?", shown)
    one = m is not None and m.group(0) in ("1", "-1")
    text = _CHOICE.sub(lambda c: c.group(1) if one else c.group(2), template)
    return " ".join(text.replace("{value}", shown).replace("{span}", span).split())


def _plain(x: float, decimals: int) -> str:
    """``x`` with thousands separators and at most ``decimals`` decimals, trailing zeros dropped, and
    never "-0"."""
    r = round(x, decimals)
    if r == 0:
        r = 0.0  # also turns -0.0 into 0.0
    out = f"{r:,.{decimals}f}"
    return out.rstrip("0").rstrip(".") if "." in out else out


_UNITS = (("year", 365 * 86400.0), ("day", 86400.0), ("hour", 3600.0), ("minute", 60.0), ("second", 1.0))


def duration(seconds: float) -> str:
    """A duration in the largest unit that reads naturally: "45 seconds", "1 minute", "3.5 hours",
    "12 days", "2.1 years" (days up to two years)."""
    s = abs(seconds)
    for unit, size in _UNITS:
        limit = 2 * size if unit == "year" else size
        if s >= limit or unit == "second":
            n = s / size
            shown = _plain(n, 0 if n >= 10 else 1)
            return f"{shown} {unit}{'' if shown == '1' else 's'}"
    raise AssertionError  # unreachable: seconds is the last unit


def format_value(v: float, kind: str) -> str:
    """A (non-missing) number written for its kind (see :class:`Say`)."""
    if kind == "money":
        return _plain(v, 0) if abs(v) >= 100 else (f"{round(v, 2):,.2f}" if round(v, 2) != 0 else "0.00")
    if kind == "days":
        return duration(v * 86400.0)
    if kind == "seconds":
        return duration(v)
    if kind == "ratio":
        return _plain(v, 1 if abs(v) < 10 else 0) + "×"
    if kind == "share":
        return _plain(v * 100, 0 if abs(v) >= 0.1 else 1) + "%"
    if kind == "number":
        return _plain(v, 2 if abs(v) < 100 else 0)
    return _plain(v, 0 if v == int(v) or abs(v) >= 100 else 1)  # count, score, flag


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
                    dtype=f.dtype, missing=missing, sentence=f.sentence.text, fill=f.fill, say=f.sentence,
                    calendar=f.calendar, storage=storage(f),
                ))
        return out


REGISTRY: dict[str, Family] = {}

#: every whole number of magnitude up to this is exact in float32 (a larger one is stored to within 1 part
#: in 2**24 and counted by :func:`clvml.features.builder.count_rounded`)
WHOLE_EXACT = 2**24


def storage(f: Feature) -> str:
    """The Arrow type of ``f``'s output column: float32 for a whole number, string for a category."""
    if f.dtype == "categorical":
        return "string"
    return "float32" if f.whole else "float64"


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
