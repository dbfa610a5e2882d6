"""User-defined point-in-time features: a Python function over a customer's history before each cut-off.

A custom feature is a function ``f(history, at)`` that receives

* ``history``: an Ibis table of one event table's rows (``transactions``, ``activity``, ``social`` or
  ``after_sales``, with every canonical column of it) joined to the cut-offs and restricted to events
  **strictly before** each cut-off (and, for a windowed instance, to the window's last ``w`` days),
  plus the columns ``day`` (the event's day number, days since 1970-01-01), ``cutoff_day`` (the
  cut-off's day number) and ``cutoff`` (the cut-off as a timestamp, midnight);
* ``at``: a :class:`PointInTime` with the window (``at.window``: days, or None for all history), the
  grouping keys (``at.keys``) and the cut-off as values usable inside an aggregation (``at.cutoff``,
  ``at.cutoff_day``),

and returns either an Ibis **reduction** (e.g. ``history.amount.sum(where=history.amount > 100)``),
aggregated by clvml per customer and cut-off, or a **table** with the columns ``customer_id``,
``cutoff_day`` and exactly one value column, at most one row per (customer, cut-off).

Because the function only ever sees rows before the cut-off, a custom feature cannot leak the future
(unless it reaches for another table on its own: use only ``history``). It is one Ibis expression, so it
runs wherever the built-in features run (DuckDB, Spark).

Features are registered process-wide with :func:`register_feature` (a decorator) or from the config's
``features.custom`` entries (:func:`register_from_config`). Every registered feature is built by
:func:`~clvml.features.builder.build_features` unless the caller names the ones it wants. A feature's
*identity* (:attr:`CustomFeature.identity`: a hash of the function's source code and of the settings
that change its values) is recorded in the feature cache key and in the scoring bundle, so a changed
function rebuilds the cache, and a model refuses to score with a function that is missing or different.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import json
import marshal
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.operations as ops

from clvml.errors import FeatureDefinitionError, ModelIncompatibleError
from clvml.features.query import day_of
from clvml.features.registry import REGISTRY, FeatureSpec, Say, span_text

#: event tables a custom feature may read (each has ``customer_id`` and ``ts``)
TABLES = ("transactions", "activity", "social", "after_sales")
#: the family name of custom features in the catalog and in :class:`FeatureSpec`
FAMILY = "custom"
KEYS = ("customer_id", "cutoff_day")
_NAME = re.compile(r"^[a-z][a-z0-9_]*(\{w\}[a-z0-9_]*)?$")
#: column names clvml itself puts beside the features (keys, labels, BTYD features, scores)
_RESERVED = {"customer_id", "cutoff", "cutoff_day", "as_of", "churn", "purchases", "spend", "margin",
             "horizon_complete", "churn_probability", "expected_value", "clv", "model_version"}
_RESERVED_PREFIXES = ("btyd_", "reason_", "segment")


@dataclass(frozen=True)
class PointInTime:
    """What a custom feature's function knows besides the history: the window and the cut-off.

    ``cutoff`` (a timestamp) and ``cutoff_day`` (days since 1970-01-01) are reductions, constant within
    each (customer, cut-off) group, so they can be used in the returned aggregate, e.g. ``at.cutoff_day
    - history.day.max()`` for "days since the last event".
    """

    window: int | None
    cutoff: ibis.Value
    cutoff_day: ibis.Value
    keys: tuple[str, str] = KEYS


@dataclass(frozen=True)
class CustomFeature:
    """One registered custom feature (see the module docstring for what ``function`` receives)."""

    name: str
    function: Callable[[ibis.Table, PointInTime], Any]
    table: str
    description: str
    say: Say
    windows: bool | tuple[int, ...] = False
    unit: str = "count"
    fill: float | None = 0.0

    @property
    def windowed(self) -> bool:
        return self.windows is not False

    @property
    def source_hash(self) -> str:
        """SHA-256 (16 hex digits) of the function's source code (its compiled code when the source
        is not available, e.g. a function typed at a prompt)."""
        return function_hash(self.function)

    @property
    def identity(self) -> dict[str, Any]:
        """Everything that changes the feature's values: name, source hash, table, windows, fill."""
        return {"name": self.name, "source_hash": self.source_hash, "table": self.table,
                "windows": self.windows if isinstance(self.windows, bool) else list(self.windows),
                "fill": self.fill, "function": qualified_name(self.function)}

    def instances(self, windows: Sequence[int]) -> list[tuple[str, int | None]]:
        """The output columns (name, window) for the build's ``windows``."""
        if not self.windowed:
            return [(self.name, None)]
        ws = sorted(set(windows)) if self.windows is True else list(self.windows)
        return [(self.name.format(w=f"{w}d"), w) for w in ws] + [(self.name.format(w="all"), None)]

    def specs(self, windows: Sequence[int]) -> list[FeatureSpec]:
        missing = (f"{self.fill:g} when there is no {self.table} row" if self.fill is not None
                   else "null when undefined (no qualifying event)")
        return [FeatureSpec(name=n, family=FAMILY, source=self.table, window=w,
                            description=self.description.format(span=span_text(w)), unit=self.unit,
                            dtype="numeric", missing=missing, sentence=self.say.text, fill=self.fill,
                            say=self.say) for n, w in self.instances(windows)]


#: every custom feature registered in this process, by name
CUSTOM: dict[str, CustomFeature] = {}


def qualified_name(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of a function (how the config's ``features.custom`` refers to it)."""
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def function_hash(fn: Callable[..., Any]) -> str:
    try:
        text = inspect.getsource(fn).encode()
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        text = marshal.dumps(code) if code is not None else repr(fn).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def _builtin_names() -> set[str]:
    """The built-in families' column prefixes (``tx_`` …)."""
    return {"tx_", "act_", "soc_", "as_", "prof_"} | {f"{fam.prefix}_" for fam in REGISTRY.values()}


def _check(feature: CustomFeature) -> None:
    """Every problem of a definition, raised at once as a :class:`FeatureDefinitionError`."""
    name, problems = feature.name, []
    if not callable(feature.function):
        problems.append(f"the function {feature.function!r} is not callable")
    if not _NAME.match(name):
        problems.append("the name must be lowercase snake_case (letters, digits, _; starting with a letter), "
                        "with '{w}' once where the window goes when the feature is windowed")
    if len(name) > 60:
        problems.append(f"the name is {len(name)} characters long (at most 60)")
    if feature.windowed != ("{w}" in name):
        problems.append("a windowed feature needs '{w}' in its name (e.g. 'gift_orders_{w}', giving "
                        "gift_orders_30d … gift_orders_all), and a feature over all history must not have one"
                        if feature.windowed else "'{w}' in the name needs windows=True or a list of windows")
    prefixes = tuple(sorted(_builtin_names())) + _RESERVED_PREFIXES
    if name.startswith(prefixes) or name.replace("{w}", "") in _RESERVED:
        problems.append(f"the name collides with clvml's own columns (reserved: the prefixes "
                        f"{', '.join(prefixes)} and {', '.join(sorted(_RESERVED))}); choose another name")
    if feature.table not in TABLES:
        problems.append(f"table {feature.table!r} is not an event table; use one of {', '.join(TABLES)}")
    if not isinstance(feature.windows, bool) and (
            not feature.windows or any(not isinstance(w, int) or isinstance(w, bool) or w <= 0
                                       for w in feature.windows)):
        problems.append(f"windows {list(feature.windows)} must be True, False or a non-empty list of "
                            "positive day counts")
    if not feature.description.strip():
        problems.append("a description is required (it goes into the feature catalog)")
    if not feature.say.text.strip():
        problems.append("a reason-text template (say) is required, e.g. '{value} gift card "
                        "{order|orders} {span}'")
    if problems:
        raise FeatureDefinitionError(f"custom feature {name!r}: " + "; ".join(problems))


def register_feature(function: Callable[..., Any] | None = None, *, name: str, description: str,
                     say: str | Say, table: str = "transactions", windows: bool | Sequence[int] = False,
                     unit: str = "count", fill: float | None = 0.0) -> Any:
    """Register a point-in-time feature computed by ``function(history, at)``.

    Use as a decorator (``@clvml.register_feature(name=..., ...)``) or call it with the function.

    Parameters
    ----------
    function
        ``f(history, at) -> reduction or table`` (see :mod:`clvml.features.custom`).
    name
        Output column name: lowercase snake_case, not colliding with clvml's columns (``tx_``, ``act_``,
        ``soc_``, ``as_``, ``prof_``, ``btyd_`` … are reserved). A windowed feature has ``{w}`` where the
        window goes (``30d`` … and ``all``).
    description
        One sentence for the catalog; ``{span}`` becomes "in the last 30 days" / "over all history".
    say
        Reason-code template (:class:`~clvml.features.registry.Say`, or a string: a count's text).
    table
        The event table whose history the function receives.
    windows
        False (default): one feature over all history. True: one per configured window plus all
        history. A list of days: one per listed window plus all history.
    unit
        Unit shown in the catalog.
    fill
        Value for a customer without rows in ``table`` before the cut-off (None keeps it null).

    Returns
    -------
    The function itself (so the decorator leaves it callable), marked with ``__clvml_feature__``.

    Raises
    ------
    FeatureDefinitionError
        The definition breaks a rule (each broken rule is named), or another function is already
        registered under ``name``.
    """
    if function is None:
        return lambda fn: register_feature(fn, name=name, description=description, say=say, table=table,
                                           windows=windows, unit=unit, fill=fill)
    wins: bool | tuple[int, ...] = windows if isinstance(windows, bool) else tuple(windows)
    feature = CustomFeature(name=name, function=function, table=table, description=description,
                            say=Say(say) if isinstance(say, str) else say, windows=wins, unit=unit,
                            fill=None if fill is None else float(fill))
    _check(feature)
    old = CUSTOM.get(name)
    if old is not None and qualified_name(old.function) != qualified_name(function):
        raise FeatureDefinitionError(
            f"custom feature {name!r} is already registered by {qualified_name(old.function)}; "
            f"{qualified_name(function)} cannot take the same name (unregister_feature({name!r}) first, or "
            "choose another name)")
    CUSTOM[name] = feature  # the same function defined again (a reloaded module): the new definition
    with contextlib.suppress(AttributeError, TypeError):  # a builtin or an object without a __dict__
        function.__clvml_feature__ = name  # type: ignore[attr-defined]
    return function


def unregister_feature(name: str) -> None:
    """Remove a registered custom feature (no error when it is not registered)."""
    CUSTOM.pop(name, None)


def registered(names: Iterable[str] | None = None) -> list[CustomFeature]:
    """The registered features named (all, in registration order, when ``names`` is None).

    Raises
    ------
    ModelIncompatibleError
        A named feature is not registered in this process (the error says how to register it).
    """
    if names is None:
        return list(CUSTOM.values())
    names = list(names)
    missing = [n for n in names if n not in CUSTOM]
    if missing:
        raise ModelIncompatibleError(
            f"custom feature(s) {', '.join(missing)} are not registered in this process; import the module "
            "that defines them (its @clvml.register_feature runs on import) or list them under "
            "features.custom in the config given with -c")
    return [CUSTOM[n] for n in names]


def require(recorded: Sequence[dict[str, Any]]) -> list[str]:
    """Check that every custom feature a model was trained with (``recorded``: their
    :attr:`CustomFeature.identity`) is registered here with the same source; return their names.

    Raises
    ------
    ModelIncompatibleError
        A feature is not registered, or its function or settings differ from training.
    """
    problems = []
    for rec in recorded:
        name = rec["name"]
        have = CUSTOM.get(name)
        if have is None:
            problems.append(
                f"custom feature {name!r} (function {rec.get('function', '?')}, table {rec.get('table', '?')}) "
                f"is not registered in this process: import {rec.get('function', '?').split(':')[0]} before "
                f"scoring (its @clvml.register_feature runs on import), or list it under features.custom "
                f"in the config given with -c (function: \"{rec.get('function', 'module:function')}\")")
            continue
        now = have.identity
        diff = [k for k in ("source_hash", "table", "windows", "fill") if now.get(k) != rec.get(k)]
        if diff:
            problems.append(
                f"custom feature {name!r} differs from the one the model was trained with ("
                + ", ".join(f"{k} {rec.get(k)!r} then, {now.get(k)!r} now" for k in diff)
                + "): restore the training version of the function or retrain the model")
    if problems:
        raise ModelIncompatibleError("the model cannot score here: " + "; ".join(problems))
    return [rec["name"] for rec in recorded]


def import_function(path: str) -> Callable[..., Any]:
    """The object ``module:attribute`` (``attribute`` may be dotted) names.

    Raises
    ------
    ValueError
        Malformed path, module not importable, attribute missing or not callable (the message says which).
    """
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", path):
        raise ValueError(f"{path!r} is not 'package.module:function'")
    module, attr = path.split(":")
    try:
        obj: Any = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure of user code is reported with its cause
        raise ValueError(f"cannot import module {module!r} ({type(exc).__name__}: {exc}); check the "
                         "module path and that it is importable (installed, or on PYTHONPATH)") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{path} is not a function")
    return obj


def register_from_config(entries: Sequence[Any]) -> list[str]:
    """Register the config's ``features.custom`` entries (:class:`clvml.config.CustomFeatureConfig`).

    An entry naming a function already decorated with :func:`register_feature` (registered when its
    module was imported) needs only ``function``; otherwise ``name``, ``description`` and ``say`` are
    required. Returns the registered names.
    """
    names = []
    for i, e in enumerate(entries):
        key = f"features.custom[{i}]"
        try:
            fn = import_function(e.function)
        except ValueError as exc:
            raise FeatureDefinitionError(f"{key}.function: {exc}") from None
        marked = getattr(fn, "__clvml_feature__", None)
        if e.name is None:
            if marked is None or marked not in CUSTOM:
                raise FeatureDefinitionError(
                    f"{key}: {e.function} is not decorated with @clvml.register_feature; give name, "
                    "description and say in the entry")
            names.append(marked)
            continue
        if e.description is None or e.say is None:
            raise FeatureDefinitionError(f"{key}: give description and say for {e.name!r}")
        try:
            register_feature(fn, name=e.name, description=e.description, say=Say(e.say, kind=e.kind),
                             table=e.table, windows=e.windows, unit=e.unit, fill=e.fill)
        except FeatureDefinitionError as exc:
            raise FeatureDefinitionError(f"{key}: {exc}") from None
        names.append(e.name)
    return names


def identities(features: Sequence[CustomFeature]) -> list[dict[str, Any]]:
    """The identities of ``features`` (for cache keys and bundles), as plain JSON values."""
    return json.loads(json.dumps([f.identity for f in features]))


def custom_identities(specs: Sequence[FeatureSpec], windows: Sequence[int]) -> list[dict[str, Any]]:
    """The identities of the registered custom features that produce columns of ``specs`` (built with
    ``windows``)."""
    used = {s.name for s in specs if s.family == FAMILY}
    return identities([f for f in CUSTOM.values() if used & {n for n, _ in f.instances(windows)}])


def _columns_hint(history: ibis.Table) -> str:
    return ", ".join(history.columns)


def build_custom(feature: CustomFeature, table: ibis.Table, cuts: ibis.Table,
                 windows: Sequence[int]) -> list[ibis.Table]:
    """One table per instance (window) of ``feature``: ``customer_id``, ``cutoff_day`` and its column,
    for customers with rows in ``table`` strictly before each cut-off (others are absent: the builder
    fills them).

    Raises
    ------
    FeatureDefinitionError
        The function failed (e.g. a column that does not exist), returned something other than a
        reduction or a table keyed by customer and cut-off, a non-numeric value, or more than one row
        for a (customer, cut-off).
    """
    rows = table.mutate(day=day_of(table.ts))
    j = rows.cross_join(cuts).filter(rows.day < cuts.cutoff_day)
    j = j.mutate(cutoff=(ibis.date(1970, 1, 1) + j.cutoff_day.as_interval("D")).cast("timestamp"))
    parts = []
    where = f"custom feature {feature.name!r} ({qualified_name(feature.function)}, table {feature.table})"
    for col, w in feature.instances(windows):
        h = j if w is None else j.filter(j.day >= j.cutoff_day - w)
        at = PointInTime(window=w, cutoff=h.cutoff.max(), cutoff_day=h.cutoff_day.max())
        try:
            value = feature.function(h, at)
        except (AttributeError, ibis.common.exceptions.IbisError) as exc:
            raise FeatureDefinitionError(
                f"{where} failed: {exc}. The history table has the columns {_columns_hint(h)}; use only "
                "those (optional columns exist only when configured)") from None
        parts.append(_as_table(value, h, col, where))
    return parts


def _as_table(value: Any, h: ibis.Table, col: str, where: str) -> ibis.Table:
    """The function's result as ``customer_id, cutoff_day, <col>`` (float64)."""
    if isinstance(value, ibis.Table):
        missing = [k for k in KEYS if k not in value.columns]
        others = [c for c in value.columns if c not in KEYS]
        if missing or len(others) != 1:
            raise FeatureDefinitionError(
                f"{where} returned a table with columns {', '.join(value.columns)}; it needs customer_id, "
                "cutoff_day (group by at.keys) and exactly one value column")
        _check_numeric(value[others[0]], where)
        if not _unique_by_construction(value):
            dup = value.group_by(list(KEYS)).aggregate(n=value.count()).filter(lambda t: t.n > 1)
            found = dup.aggregate(groups=dup.count(), example=dup.customer_id.cast("string").min()) \
                .to_pyarrow().to_pylist()[0]
            if found["groups"]:
                raise FeatureDefinitionError(
                    f"{where} returned {found['groups']:,} (customer, cut-off) pair(s) with more than one row "
                    f"(e.g. customer_id {found['example']}); a feature has one value per customer and "
                    "cut-off: aggregate with .group_by(at.keys).aggregate(...)")
        return value.select(*KEYS, **{col: value[others[0]].cast("float64")})
    if isinstance(value, ibis.Column):
        raise FeatureDefinitionError(
            f"{where} returned a column ({value.get_name()}), not one value per customer: reduce it, e.g. "
            ".sum(), .max(), .count(), .nunique() (or return a table grouped by at.keys)")
    if not isinstance(value, ibis.Scalar):
        raise FeatureDefinitionError(
            f"{where} returned {type(value).__name__}; return an Ibis reduction (e.g. history.amount.sum()) "
            "or a table grouped by at.keys")
    _check_numeric(value, where)
    try:
        return h.group_by(list(KEYS)).aggregate(**{col: value.cast("float64")})
    except ibis.common.exceptions.IbisError as exc:
        raise FeatureDefinitionError(
            f"{where} returned an expression that is not a reduction over the history table it was given "
            f"({exc}); build it from that table only (no other tables, no unreduced columns)") from None


def _check_numeric(value: ibis.Value, where: str) -> None:
    t = value.type()
    if not (t.is_numeric() or t.is_boolean()):
        raise FeatureDefinitionError(f"{where} returned a {t} value; custom features are numeric "
                                     "(cast it, or count/flag it)")


def _unique_by_construction(t: ibis.Table) -> bool:
    """Whether ``t`` is an aggregation grouped by (at least) the keys: one row per key pair."""
    op = t.op()
    return isinstance(op, ops.Aggregate) and set(KEYS) <= set(op.groups)
