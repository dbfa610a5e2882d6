"""Validation of the input tables against their contracts, before any work is done.

Every table is checked in one pass and every problem is reported at once. Each problem names the table,
the column, the number of offending rows, up to three example rows, and how to fix it. Rows are only
dropped where a policy in ``data.policies`` says so, and every dropped row is counted in the report.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import ibis
import ibis.expr.datatypes as dtypes

from clvml.config import Policies, TableSource
from clvml.config.expression import evaluate, parse
from clvml.data.contracts import NUMBER_BOUND, SCHEMAS, TS_END, TS_START, Column, TableSchema
from clvml.engine import drop_columns, materialize, sql_identifier
from clvml.errors import DataSourceError

Severity = Literal["error", "warning"]
_TIMESTAMP = dtypes.Timestamp()


@dataclass
class Problem:
    """One broken rule in one table/column."""

    table: str
    column: str | None
    check: str
    n_rows: int
    message: str
    fix: str
    severity: Severity = "error"
    action: Literal["stopped", "dropped", "kept", "aggregated"] = "stopped"
    examples: list[dict[str, Any]] = field(default_factory=list)

    def format(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        rows = f"{self.n_rows:,} row(s)" if self.n_rows >= 0 else ""
        act = {"stopped": "", "dropped": " [dropped by policy]", "kept": " [kept by policy]",
               "aggregated": " [line items -> orders]"}[self.action]
        text = f"[{self.severity}] {where}: {self.message} — {rows}{act}"
        if self.examples:
            ex = "; ".join(_fmt_row(r) for r in self.examples)
            text += f"\n      e.g. {ex}"
        return text + f"\n      fix: {self.fix}"


def _fix_under_policy(fix: str, policy: str, value: str) -> str:
    """The fix of a problem a policy already handles: the advice to set that policy is left out (it is
    set), and the policy in force is named."""
    base = re.sub(r",? or set data\.policies\.\w+: [\w |]+?( to keep one copy of each)?$", "", fix)
    return f"{base}; data.policies.{policy}: {value} is already set"


def _fmt_row(row: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={v!r}" for k, v in row.items()) + "}"


@dataclass
class ValidationReport:
    """All problems found plus row counts in/out and rows dropped per table and reason."""

    problems: list[Problem] = field(default_factory=list)
    rows_in: dict[str, int] = field(default_factory=dict)
    rows_out: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    #: tables read at grain: line -> what became of their lines and orders (``clvml.data.line_items``)
    line_items: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error" and p.action == "stopped"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        head = (
            f"Input validation found {len(self.errors)} error(s) and "
            f"{len(self.problems) - len(self.errors)} other finding(s):"
        )
        return "\n".join([head] + ["  " + p.format() for p in self.problems])

    def summary(self) -> dict[str, Any]:
        return {
            "rows_in": dict(self.rows_in),
            "rows_out": dict(self.rows_out),
            "dropped": {t: dict(d) for t, d in self.dropped.items()},
            **({"line_items": {t: dict(d) for t, d in self.line_items.items()}} if self.line_items else {}),
            "problems": [
                {"table": p.table, "column": p.column, "check": p.check, "rows": p.n_rows,
                 "severity": p.severity, "action": p.action}
                for p in self.problems
            ],
        }

    def _drop(self, table: str, check: str, n: int) -> None:
        if n:
            self.dropped.setdefault(table, {})[check] = self.dropped.get(table, {}).get(check, 0) + n


@ibis.udf.scalar.builtin
def try_strptime(value: str, fmt: str) -> _TIMESTAMP:  # DuckDB's try_strptime
    ...


@ibis.udf.scalar.builtin
def try_to_timestamp(value: str, fmt: str) -> _TIMESTAMP:  # Spark's try_to_timestamp
    ...


#: strptime directives -> Spark datetime pattern letters
_JAVA_PATTERN = {"Y": "yyyy", "y": "yy", "m": "MM", "d": "dd", "H": "HH", "I": "hh", "M": "mm",
                 "S": "ss", "f": "SSSSSS", "p": "a", "b": "MMM", "B": "MMMM", "j": "DDD", "z": "Z",
                 "%": "'%'"}


def java_pattern(fmt: str) -> str:
    """A strptime format (``%Y%m%d``) as a Spark datetime pattern (``yyyyMMdd``); literal text is
    quoted. Raises ValueError for directives Spark cannot parse."""
    out, literal, i = [], "", 0
    while i < len(fmt):
        if fmt[i] == "%" and i + 1 < len(fmt):
            d = fmt[i + 1]
            if d not in _JAVA_PATTERN:
                raise ValueError(f"timestamp_format directive %{d} has no Spark equivalent")
            if literal:
                out.append("'" + literal.replace("'", "''") + "'")
                literal = ""
            out.append(_JAVA_PATTERN[d])
            i += 2
        else:
            literal += fmt[i]
            i += 1
    if literal:
        out.append("'" + literal.replace("'", "''") + "'")
    return "".join(out)


def _non_finite(x: ibis.Value) -> ibis.Value:
    """NaN or ±infinity, on every engine: x - x is exactly 0 for every finite float and NaN otherwise
    (Ibis compiles ``isinf`` to a constant FALSE on Spark)."""
    return (x - x) != 0


#: ISO 8601 date or date-time, with an optional UTC offset (read as TIMESTAMPTZ, so the offset counts)
ISO_TS = (r"^\s*\d{4}-\d{1,2}-\d{1,2}([T ]\d{1,2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?\s*"
          r"(Z|z|[+-]\d{2}(:?\d{2})?)?\s*$")
_TIME = r"([T ]+\d{1,2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?"
#: day and month in either order (03/04/2024, 03.04.2024), optional time: the order needs evidence
SLASHED_TS = r"^\s*(\d{1,2})[/.](\d{1,2})[/.](\d{4})" + _TIME + r"\s*$"
#: year first (2024/03/04): year/month/day, as in ISO 8601
YEAR_FIRST_TS = r"^\s*(\d{4})[/.](\d{1,2})[/.](\d{1,2})" + _TIME + r"\s*$"
DayOrder = Literal["mdy", "dmy", "either"]


def _as_timestamp(col: ibis.Value, fmt: str | None, backend: str = "duckdb",
                  order: DayOrder | None = None) -> ibis.Value:
    """A timestamp column from whatever the source holds. Text is parsed with ``fmt`` when given;
    otherwise only unambiguous forms are accepted: ISO 8601 (offsets converted to UTC), year/month/day,
    and day/month forms in the ``order`` the whole column proves (see :func:`_day_orders`)."""
    t = col.type()
    if t.is_timestamp():
        # DuckDB converts TIMESTAMPTZ to the session time zone (UTC, see readers.connect)
        return col.cast(dtypes.Timestamp()) if t.timezone is not None else col
    if t.is_date():
        return col.cast(dtypes.Timestamp())
    text = col.cast(dtypes.string)
    if fmt and backend == "pyspark":
        return try_to_timestamp(text, java_pattern(fmt))
    if fmt:
        return try_strptime(text, fmt)
    if backend == "pyspark":
        return text.try_cast(dtypes.Timestamp())

    def rebuilt(pattern: str, iso: str) -> ibis.Value:  # 03/04/2024 10:00 -> 2024-03-04 10:00
        return text.re_replace(pattern, iso).strip().try_cast(dtypes.Timestamp())

    mdy, dmy = rebuilt(SLASHED_TS, r"\3-\1-\2 \4"), rebuilt(SLASHED_TS, r"\3-\2-\1 \4")
    # "either": a column already refused for mixing both orders; read each value as it can be, so
    # the refusal is not repeated as unparseable values
    slashed = {"mdy": mdy, "dmy": dmy, "either": mdy.coalesce(dmy)}[order or "mdy"]
    return (ibis.cases(
        (text.re_search(ISO_TS), text.try_cast(dtypes.Timestamp(timezone="UTC")).cast(_TIMESTAMP)),
        (text.re_search(YEAR_FIRST_TS), rebuilt(YEAR_FIRST_TS, r"\1-\2-\3 \4")),
        (text.re_search(SLASHED_TS), slashed),
        else_=ibis.null(_TIMESTAMP)))


def _slashed_formats(example: str) -> tuple[str, str]:
    """The two timestamp_format values an ambiguous example could have: (mm/dd, dd/mm)."""
    m = re.match(SLASHED_TS, example)
    sep = "." if m and "." in example.strip()[:6] else "/"
    time = (m.group(4) or "") if m else ""
    tail = ""
    if time:
        tail = ("T" if "T" in time else " ") + "%H:%M" + (":%S" if time.count(":") == 2 else "")
        tail += ".%f" if "." in time else ""
    return f"%m{sep}%d{sep}%Y{tail}", f"%d{sep}%m{sep}%Y{tail}"


def _day_orders(name: str, mapped: ibis.Table, text_cols: dict[str, str],
                report: ValidationReport) -> dict[str, DayOrder]:
    """Which order day/month text timestamps are in, proven over the whole column (every file of a
    folder): a value whose first number is above 12 can only be dd/mm, one whose second is above 12
    only mm/dd. Without such a value, 03/04/2024 could be either: a problem naming both readings, as
    is a column where both orders occur. ``text_cols``: canonical column -> its label."""
    if not text_cols:
        return {}
    aggs: dict[str, ibis.Value] = {}
    for c in text_cols:
        text = mapped[f"raw_{c}"].cast(dtypes.string)
        slashed = text.re_search(SLASHED_TS)
        a = text.re_extract(SLASHED_TS, 1).try_cast(dtypes.int64)
        b = text.re_extract(SLASHED_TS, 2).try_cast(dtypes.int64)
        conds = {"dmy": slashed & (a > 12), "mdy": slashed & (b > 12),
                 "amb": slashed & (a <= 12) & (b <= 12) & (a != b)}
        for k, cond in conds.items():
            cond = cond.fill_null(False)
            aggs[f"{c}__{k}_n"] = cond.cast(dtypes.int64).sum()
            aggs[f"{c}__{k}_ex"] = text.min(where=cond)
    got = mapped.aggregate(**aggs).to_pyarrow().to_pylist()[0]
    orders: dict[str, DayOrder] = {}
    for c, label in text_cols.items():
        n = {k: int(got[f"{c}__{k}_n"] or 0) for k in ("dmy", "mdy", "amb")}
        ex = {k: got[f"{c}__{k}_ex"] for k in ("dmy", "mdy", "amb")}
        if n["dmy"] and n["mdy"]:
            report.problems.append(Problem(
                name, c, "mixed_date_order", n["dmy"] + n["mdy"],
                f"{label} mixes day/month orders: {n['dmy']:,} value(s) such as {ex['dmy']!r} can only "
                f"be dd/mm and {n['mdy']:,} such as {ex['mdy']!r} only mm/dd",
                "write the column in one order (ISO 8601, YYYY-MM-DD, is never ambiguous), or set "
                f"data.tables.{name}.timestamp_format to the order that is right (values in the other "
                "order are then counted as unparseable)",
                examples=[{c: ex["dmy"]}, {c: ex["mdy"]}]))
            orders[c] = "either"
        elif n["dmy"] or n["mdy"]:
            orders[c] = "dmy" if n["dmy"] else "mdy"
        elif n["amb"]:
            v = ex["amb"]
            m = re.match(SLASHED_TS, v)
            a, b, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
            mdy, dmy = _slashed_formats(v)
            report.problems.append(Problem(
                name, c, "ambiguous_date", n["amb"],
                f"{label}: {v.strip()} could be {y:04d}-{a:02d}-{b:02d} (mm/dd) or "
                f"{y:04d}-{b:02d}-{a:02d} (dd/mm), and no value in the column (or any file of the "
                "folder) has a day above 12 to tell which",
                f"set data.tables.{name}.timestamp_format: '{mdy}' or '{dmy}'",
                examples=[{c: v}]))
    return orders


def number_pattern(thousands: str | None, decimal: str | None) -> str:
    """The regular expression a text number must match under ``thousands`` / ``decimal`` (either set):
    an optional sign, digits — grouped by threes with the separator, or not at all — and an optional
    fraction after the decimal mark. ``1,738.20`` and ``1738.20`` match ``thousands: ','``; ``17,38.20``
    and ``1.738.20`` do not."""
    dec = "[" + (decimal or ".") + "]"
    whole = r"\d+"
    if thousands is not None:
        whole = r"(\d+|\d{1,3}([" + thousands + r"]\d{3})+)"
    return r"^\s*[+-]?(" + whole + "(" + dec + r"\d*)?|" + dec + r"\d+)\s*$"


def _as_number(col: ibis.Value, thousands: str | None = None, decimal: str | None = None) -> ibis.Value:
    """A float64 column from whatever the source holds. Text is read as a number literal; with
    ``thousands`` or ``decimal`` (CSV exports in a local format) it must match :func:`number_pattern`,
    and the separators are removed and the decimal mark made a point before the conversion."""
    if col.type().is_numeric():
        return col.cast(dtypes.float64)
    if col.type().is_boolean():
        return col.cast(dtypes.int8).cast(dtypes.float64)
    text = col.cast(dtypes.string)
    if thousands is None and decimal in (None, "."):
        return text.try_cast(dtypes.float64)
    plain = text.strip()
    if thousands is not None:
        plain = plain.replace(thousands, "")
    if decimal not in (None, "."):
        plain = plain.replace(decimal, ".")
    return ibis.ifelse(text.re_search(number_pattern(thousands, decimal)),
                       plain.try_cast(dtypes.float64), ibis.null(dtypes.float64))


#: text numbers written with a thousands separator or a decimal comma, and the options that read them
_GROUPED_POINT = re.compile(r"^\s*[+-]?\d{1,3}(,\d{3})+(\.\d*)?\s*$")  # 1,738.20
_GROUPED_COMMA = re.compile(r"^\s*[+-]?\d{1,3}(\.\d{3})+(,\d*)?\s*$")  # 1.738,20
_DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d*,\d+\s*$")  # 12,5


def number_format_hint(name: str, values: list[Any]) -> str | None:
    """The ``thousands`` / ``decimal`` options that would read these non-numeric values, or None when
    they do not look like numbers in a local format. The most telling value decides (``1.738,20``
    before ``1,738.20`` before ``12,5`` before ``1,738``, which could be either)."""
    opts = f"data.tables.{name}"
    texts = [str(x).strip() for x in values if x is not None]

    def first(test: Callable[[str], bool]) -> str | None:
        return next((v for v in texts if test(v)), None)

    ambiguous = lambda v: bool(_GROUPED_POINT.match(v) and _DECIMAL_COMMA.match(v))  # noqa: E731
    if v := first(lambda v: bool(_GROUPED_COMMA.match(v))):  # (1.738 alone is a number, never here)
        return (f"{v!r} looks like a number with a decimal comma and '.' between thousands: "
                f"set {opts}.thousands: '.' and {opts}.decimal: ','")
    if v := first(lambda v: bool(_GROUPED_POINT.match(v)) and not ambiguous(v)):
        return f"{v!r} looks like a number with thousands separators: set {opts}.thousands: ','"
    if v := first(lambda v: bool(_DECIMAL_COMMA.match(v)) and not ambiguous(v)):
        return f"{v!r} looks like a number with a decimal comma: set {opts}.decimal: ','"
    if v := first(ambiguous):
        return (f"{v!r} looks like a number in a local format: with a thousands separator "
                f"set {opts}.thousands: ','; with a decimal comma set {opts}.decimal: ','")
    return None


def _examples(expr: ibis.Table, cond: ibis.Value, cols: list[str]) -> list[dict[str, Any]]:
    rows = expr.filter(cond).select(*cols).order_by(cols).limit(3)
    try:
        rows = rows.to_pyarrow().to_pylist()
    except (OverflowError, ValueError):  # a timestamp beyond year 9999 has no Python datetime: text
        rows = rows.mutate(**{c: rows[c].cast(dtypes.string) for c in cols
                              if rows[c].type().is_temporal()}).to_pyarrow().to_pylist()
    return [{k: (v.isoformat() if isinstance(v, dt.datetime | dt.date) else v) for k, v in r.items()}
            for r in rows]


#: from this many rows a table's check flags are freed once counted and its duplicate check compares row
#: hashes first; below, the saving is smaller than the extra statements (~20 ms a table)
LARGE_TABLE_ROWS = 100_000


def rows_hash_distinct(table: ibis.Table, rows: int) -> bool:
    """Whether ``table``'s ``rows`` rows are certainly distinct, from one 64-bit hash per row (DuckDB).

    Equal rows hash equally, so as many distinct hashes as rows proves there is no duplicate; False
    proves nothing (a duplicate or a collision) and the caller counts distinct rows exactly. Counting
    distinct hashes costs about half of counting distinct rows over every column (6.4M transactions:
    1.2 s vs 2.2 s). Other engines: always False (Spark's hash has 32 bits, which collide at millions
    of rows).
    """
    con = table.get_backend()
    if con.name != "duckdb" or rows == 0:
        return rows == 0
    cols = ", ".join(sql_identifier(c) for c in table.columns)
    sql = f"SELECT count(DISTINCT hash({cols})) FROM ({con.compile(table)})"
    return int(con.raw_sql(sql).fetchone()[0]) == rows


def typed_table_name(name: str, report: ValidationReport) -> str:
    """The temporary table holding a source table's converted rows for one validation run."""
    return f"clvml_typed_{name}_{id(report)}"


def prepare_table(
    name: str,
    raw: ibis.Table,
    source: TableSource | None,
    policies: Policies,
    report: ValidationReport,
    as_of: dt.date | None = None,
    what: str | None = None,
) -> ibis.Table | None:
    """Map, type-check and clean one raw table. Returns ``None`` when the table cannot be used.

    Problems are appended to ``report``; rows dropped under a policy are counted in it. ``what``
    names the table and its source in engine errors (a damaged file shows when it is converted).
    """
    source = source or TableSource()
    schema, extras = table_schema(name, source)
    mapping = {c: source.columns.get(c, c) for c in schema.names} | extras
    unknown_keys = sorted(set(source.columns) - set(schema.names) - set(extras))
    for k in unknown_keys:
        report.problems.append(Problem(
            name, k, "unknown_mapping", -1, f"'{k}' is not a canonical {name} column",
            f"use one of: {', '.join(c for c in schema.names if c not in extras)} as keys of "
            f"data.tables.{name}.columns",
        ))
    present = set(raw.columns)
    missing = [c for c in schema.required if mapping[c] not in present]
    expr = parse(source.amount) if source.amount is not None else None
    for c in [c for c in missing if c in extras]:
        report.problems.append(Problem(
            name, extras[c], "missing_column", -1,
            (f"column '{extras[c]}' of the amount expression {source.amount!r}" if c.startswith(EXPR_PREFIX)
             else f"product column '{extras[c]}' (data.tables.{name}.product)")
            + f" is not in the data (found: {', '.join(raw.columns) or 'none'})",
            f"fix the name in data.tables.{name}.{'amount' if c.startswith(EXPR_PREFIX) else 'product'}"))
    for c in [c for c in missing if c not in extras]:
        user = mapping[c]
        report.problems.append(Problem(
            name, c, "missing_column",
            -1, f"required column '{user}' is missing (found: {', '.join(raw.columns) or 'none'})",
            f"rename it in your data or map it: data.tables.{name}.columns.{c}: <your column>",
        ))
    # an optional column mapped in the config but absent from the data: the mapping is wrong
    absent = [c for c in source.columns if c in schema.names and c not in schema.required
              and mapping[c] not in present]
    for c in absent:
        report.problems.append(Problem(
            name, c, "missing_column", -1,
            f"mapped column '{mapping[c]}' (data.tables.{name}.columns.{c}) is not in the data "
            f"(found: {', '.join(raw.columns) or 'none'})",
            f"fix the name in data.tables.{name}.columns.{c}, or remove that mapping",
        ))
    if missing or unknown_keys or absent:
        return None

    n_in = -1  # counted below, in the one pass over the source
    cols = [c for c in schema.names if mapping[c] in present]
    user_of = {c: mapping[c] for c in cols}

    # one projection: raw values under canonical names (for examples) + typed values + flags
    proj: dict[str, ibis.Value] = {}
    flags: dict[str, tuple[ibis.Value, str, str, str]] = {}  # key -> (cond, column, message, fix)
    for c in cols:
        proj[f"raw_{c}"] = raw[user_of[c]]
    mapped = raw.select(**proj)
    backend = raw.get_backend().name

    def label_of(c: str) -> str:
        if c.startswith(EXPR_PREFIX):
            return f"{user_of[c]} (in the amount expression)"
        return c if user_of[c] == c else f"{c} (your column '{user_of[c]}')"

    text_ts = {c: label_of(c) for c in cols if schema.column(c).kind == "timestamp"
               and not source.timestamp_format and backend != "pyspark"
               and not (mapped[f"raw_{c}"].type().is_temporal())}
    orders = _day_orders(name, mapped, text_ts, report)
    typed: dict[str, ibis.Value] = {}
    for c in cols:
        col = mapped[f"raw_{c}"]
        kind = schema.column(c).kind
        label = label_of(c)
        if kind == "id":
            t = col.type()
            if not (t.is_string() or t.is_integer()):
                report.problems.append(Problem(
                    name, c, "wrong_type", int(raw.count().to_pyarrow().as_py()),
                    f"{label} has type {t}; ids must be text or integers",
                    "cast the id column to integer or text before loading",
                ))
                return None
            typed[c] = col.cast(dtypes.string)
            flags["null_id"] = (col.isnull(), c, f"null {label}", "remove these rows or fill the id, or "
                                "set data.policies.null_keys: drop")
        elif kind == "timestamp":
            try:
                typed[c] = _as_timestamp(col, source.timestamp_format, backend, orders.get(c))
            except ValueError as exc:
                raise DataSourceError(f"data.tables.{name}.timestamp_format: {exc}; use ISO-8601 "
                                      "text or a format of %Y %m %d %H %M %S %f %p %b %j %z") from None
            if c == "ts":
                flags["null_ts"] = (col.isnull(), c, f"null {label}",
                                    "fill the timestamp or set data.policies.null_keys: drop")
            flags[f"bad_{c}"] = (
                col.notnull() & typed[c].isnull(), c,
                f"unparseable timestamp in {label}",
                f"use ISO-8601 text or set data.tables.{name}.timestamp_format (e.g. '%Y%m%d')"
                + (" or set data.policies.null_keys: drop" if c == "ts" else ""),
            )
            flags[f"range_{c}"] = (
                (typed[c] < ibis.timestamp(TS_START)) | (typed[c] >= ibis.timestamp(TS_END)), c,
                f"timestamps in {label} outside the supported range {TS_START:%Y-%m-%d} to "
                f"{TS_END - dt.timedelta(microseconds=1):%Y-%m-%d %H:%M:%S}",
                "fix these values at the source (a placeholder date such as 1899-12-30 or 9999-12-31? "
                "a wrong unit?)" + (" or set data.policies.null_keys: drop" if c == "ts" else ""),
            )
        elif kind == "number":
            same = [k for k in typed if k in user_of and user_of[k] == user_of[c]
                    and schema.column(k).kind == "number"]
            if same:  # the expression reads a column also mapped (quantity): checked once, under its name
                typed[c] = typed[same[0]]
                flags[f"null_{c}"] = (col.isnull(), c, f"null {label} (required)",
                                      "fill the value or remove the rows")
                continue
            typed[c] = _as_number(col, source.thousands, source.decimal)
            fmt = (f" written with thousands: {source.thousands!r} and decimal: {source.decimal or '.'!r}"
                   if source.thousands is not None or source.decimal not in (None, ".") else "")
            flags[f"bad_{c}"] = (col.notnull() & typed[c].isnull(), c, f"non-numeric values in {label}",
                                 f"clean the column so it holds numbers{fmt} only")
            flags[f"nonfinite_{c}"] = (
                typed[c].notnull() & _non_finite(typed[c]), c,
                f"NaN or infinite values in {label}", "replace them with real numbers or null (if optional)",
            )
            flags[f"range_{c}"] = (
                typed[c].abs() > NUMBER_BOUND, c,
                f"values in {label} beyond ±{NUMBER_BOUND:.0e} (the supported range)".replace("e+", "e"),
                "check the unit of the column (cents? a currency with many digits?) and scale it, "
                "or fix or remove these rows",
            )
            if schema.column(c).required:
                flags[f"null_{c}"] = (col.isnull(), c, f"null {label} (required)",
                                      "fill the value or remove the rows")
        elif kind == "event_type":
            text = col.cast(dtypes.string)
            reverse = {v: k for k, vals in source.event_types.items() for v in vals}
            if reverse:
                typed[c] = text.substitute(reverse)
            else:
                typed[c] = text
            vocab = list(schema.event_types)
            flags["unknown_event"] = (
                typed[c].isnull() | ~typed[c].isin(vocab), c,
                f"event types outside the vocabulary ({', '.join(vocab)})",
                f"map your values: data.tables.{name}.event_types.<canonical>: [your values], or set "
                "data.policies.unknown_event_types: drop",
            )
        else:
            typed[c] = col.cast(dtypes.string)
            if c == "order_id" and schema.column(c).required:  # line items: the key of the order
                flags["null_order_id"] = (col.isnull(), c, f"null {label}: the line belongs to no order",
                                          "fill the order id, or set data.policies.null_keys: drop")

    out_cols = list(cols)
    if expr is not None:  # the amount computed from the typed columns it reads
        amount = evaluate(expr.tree, lambda raw_name: typed[EXPR_PREFIX + raw_name],
                          lambda x: ibis.literal(x, dtypes.float64))
        refs = ibis.literal(True)
        for raw_name in expr.columns:
            refs = refs & typed[EXPR_PREFIX + raw_name].notnull()
        typed["amount"] = amount
        out_cols.insert(2, "amount")
        flags["bad_amount"] = (
            refs & (amount.isnull() | _non_finite(amount)), "amount",
            f"amount expression {source.amount!r} has no finite value (a division by zero?)",
            f"fix these rows or the expression in data.tables.{name}.amount")
        flags["range_amount"] = (
            amount.abs() > NUMBER_BOUND, "amount",
            f"amount expression {source.amount!r} beyond ±{NUMBER_BOUND:.0e} (the supported range)"
            .replace("e+", "e"), "check the units of the columns it reads, or fix or remove these rows")

    if as_of is not None and "ts" in typed:
        limit = ibis.timestamp(dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time()))
        flags["future"] = (typed["ts"] >= limit, "ts", f"events after the as-of date {as_of}",
                           "fix data.as_of or the clock of the source, or set "
                           "data.policies.future_events: drop")

    full = mapped.mutate(**{f"t_{c}": v for c, v in typed.items()},
                         **{f"f_{k}": v[0].fill_null(False) for k, v in flags.items()})
    # the source is read and converted once: typed values and flags go to a temporary table, sorted
    # by customer (and time); counts, duplicates and orphans are then cheap scans of it. The raw
    # values are read again only to show examples of a problem.
    con = raw.get_backend()
    order = [f"t_{c}" for c in ("customer_id", "ts") if c in typed]
    mat = materialize(con, typed_table_name(name, report),
                      full.select(*[f"t_{c}" for c in out_cols], *[f"f_{k}" for k in flags]).order_by(order),
                      what or f"table {name!r}")
    counts = mat.aggregate(n=mat.count(), **{k: mat[f"f_{k}"].cast("int64").sum() for k in flags}
                           ).to_pyarrow()
    n_in = int(counts["n"][0].as_py())
    report.rows_in[name] = n_in
    counts = {k: int(counts[k][0].as_py() or 0) for k in flags}

    policy_of = {
        "null_id": policies.null_keys, "null_ts": policies.null_keys, "bad_ts": policies.null_keys,
        "range_ts": policies.null_keys, "null_order_id": policies.null_keys,
        "future": policies.future_events, "unknown_event": policies.unknown_event_types,
    }
    policy_name = {"null_id": "null_keys", "null_ts": "null_keys", "bad_ts": "null_keys",
                   "null_order_id": "null_keys",
                   "range_ts": "null_keys", "future": "future_events", "unknown_event": "unknown_event_types"}
    dropping: list[str] = []
    # (a column the amount expression reads and that is also mapped is shown once, under its name)
    raw_cols = [f"raw_{c}" for c in cols if not (c.startswith(EXPR_PREFIX) and any(
        user_of[k] == user_of[c] for k in cols if not k.startswith(EXPR_PREFIX)))]
    for key, (_cond, column, message, fix) in flags.items():
        n = counts[key]
        if not n:
            continue
        policy = policy_of.get(key, "error")
        action = "dropped" if policy == "drop" else "stopped"
        if action == "dropped":
            fix = _fix_under_policy(fix, policy_name[key], policy)
        ex = _examples(full, full[f"f_{key}"], raw_cols)
        ex = [{user_of[k.removeprefix("raw_")] if k.startswith("raw_" + EXPR_PREFIX) else k.removeprefix("raw_"): v
               for k, v in r.items()} for r in ex]
        if (key.startswith("bad_") and key[4:] in user_of and schema.column(key[4:]).kind == "number"
                and source.thousands is None and source.decimal is None):  # (else the fix names the format)
            hint = number_format_hint(name, [r.get(user_of[key[4:]] if key[4:].startswith(EXPR_PREFIX)
                                                   else key[4:]) for r in ex])
            if hint:
                fix = hint
        if column.startswith(EXPR_PREFIX):
            column = user_of[column]
        report.problems.append(Problem(name, column, key.replace(EXPR_PREFIX, ""), n, message, fix,
                                       "warning" if action == "dropped" else "error", action, ex))
        if action == "dropped":
            dropping.append(key)

    if dropping:
        # a row with several problems is dropped once: count it under its first reason, so the
        # per-reason counts add up to the rows removed
        excl, seen = {}, ibis.literal(False)
        for key in dropping:
            excl[key] = (mat[f"f_{key}"] & ~seen).cast("int64").sum()
            seen = seen | mat[f"f_{key}"]
        got = mat.aggregate(**excl).to_pyarrow()
        for key in dropping:
            report._drop(name, key, int(got[key][0].as_py() or 0))
        drop_cond = seen
    if not dropping and con.name == "duckdb" and n_in >= LARGE_TABLE_ROWS:
        # every row is kept and the flags are counted: free their memory (on the synthetic world a
        # third of the stored rows' bytes) before the table is kept for the run
        mat = drop_columns(con, mat, [f"f_{k}" for k in flags])
    clean = mat.filter(~drop_cond) if dropping else mat
    clean = clean.select(**{c: clean[f"t_{c}"] for c in out_cols})

    # exact duplicates (after the drops above; without drops every counted row is kept)
    n_kept = int(clean.count().to_pyarrow().as_py()) if dropping else n_in
    hashed = n_kept >= LARGE_TABLE_ROWS and rows_hash_distinct(clean, n_kept)
    n_distinct = n_kept if hashed else int(clean.distinct().count().to_pyarrow().as_py())
    if n_distinct < n_kept:
        n_dup = n_kept - n_distinct
        dup_keys = (clean.group_by(clean.columns).aggregate(_n=ibis._.count())
                    .filter(ibis._._n > 1).drop("_n").order_by(clean.columns).limit(3))
        ex = [{k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in r.items()}
              for r in dup_keys.to_pyarrow().to_pylist()]
        dropping = policies.duplicates == "drop"
        report.problems.append(Problem(
            name, None, "duplicates", n_dup, "exact duplicate rows (all columns equal)",
            _fix_under_policy("de-duplicate the source, or set data.policies.duplicates: drop to keep one copy "
                              "of each", "duplicates", "drop") if dropping else
            "de-duplicate the source, or set data.policies.duplicates: drop to keep one copy of each",
            "warning" if dropping else "error", "dropped" if dropping else "stopped", ex,
        ))
        if dropping:
            clean = clean.distinct()
            report._drop(name, "duplicates", n_dup)
    if source.grain != "line" and extras:  # the columns the amount was computed from
        clean = clean.select(*[c for c in clean.columns if c not in extras])
    return clean


#: internal names of the columns an amount expression reads (``amount__UnitPrice``)
EXPR_PREFIX = "amount__"


def table_schema(name: str, source: TableSource) -> tuple[TableSchema, dict[str, str]]:
    """The contract a source is checked against, and the columns it reads beyond the canonical ones
    (internal name -> your column): the columns of an ``amount`` expression, which replace the amount
    column, and at line grain the ``product`` column (and ``order_id`` becomes required)."""
    schema = SCHEMAS[name]
    extras: dict[str, str] = {}
    if source.amount is None and source.grain != "line":
        return schema, extras
    columns = list(schema.columns)
    if source.amount is not None:
        columns = [c for c in columns if c.name != "amount"]
        for raw_name in parse(source.amount).columns:
            extras[EXPR_PREFIX + raw_name] = raw_name
            columns.append(Column(EXPR_PREFIX + raw_name, "number", True,
                                  f"Column {raw_name} of the amount expression."))
    if source.grain == "line":
        columns = [Column("order_id", "string", True, c.description) if c.name == "order_id" else c
                   for c in columns]
        if source.product is not None:
            extras["product"] = source.product
            columns.append(Column("product", "string", False, "Product of the line."))
    return replace(schema, columns=tuple(columns)), extras


def check_orphans(
    tables: dict[str, ibis.Table], policies: Policies, report: ValidationReport
) -> dict[str, ibis.Table]:
    """Customers that appear in a history but not in ``customers`` (only when customers is given)."""
    if "customers" not in tables:
        return tables
    known = tables["customers"].select("customer_id").distinct()
    out = dict(tables)
    for name, t in tables.items():
        if name == "customers":
            continue
        # a null id is not an orphan: it is reported (and dropped, by policy) as a null key already
        orphans = t.filter(t.customer_id.notnull()).anti_join(known, "customer_id")
        n = int(orphans.count().to_pyarrow().as_py())
        if not n:
            continue
        n_cust = int(orphans.customer_id.nunique().to_pyarrow().as_py())
        ex = [{"customer_id": r["customer_id"]}
              for r in orphans.select("customer_id").distinct().order_by("customer_id").limit(3)
              .to_pyarrow().to_pylist()]
        pol = policies.orphan_customers
        action = {"error": "stopped", "drop": "dropped", "keep": "kept"}[pol]
        fix = "add them to customers, or set data.policies.orphan_customers: drop | keep"
        report.problems.append(Problem(
            name, "customer_id", "orphan_customers", n,
            f"{n_cust:,} customer(s) absent from the customers table",
            fix if pol == "error" else _fix_under_policy(fix, "orphan_customers", pol),
            "error" if pol == "error" else "warning", action, ex,
        ))
        if pol == "drop":
            out[name] = t.semi_join(known, "customer_id")
            report._drop(name, "orphan_customers", n)
    return out
