"""Evaluate a (small) Ibis scalar expression over NumPy columns, with DuckDB's semantics, bit for bit.

The incremental plan (:mod:`clvml.features.incremental`) has a family's aggregates as NumPy arrays; its
``then`` conversions and derived columns (means, spreads, ratios, …) are Ibis expressions over them.
Sending the aggregates back through DuckDB just to evaluate those costs a scan and an export of every
(customer, cut-off) row, so the expressions are evaluated here instead, operation by operation, the way
DuckDB evaluates them:

* an arithmetic operation whose result is float64 converts its integer operands to float64 first and is
  one IEEE operation (``+ - * /``, ``sqrt``: correctly rounded, so the same bits); division by zero gives
  ±inf/NaN as DuckDB's (IEEE) division does; integer operations stay in int64;
* nulls propagate through arithmetic and comparisons; ``ifelse`` takes the else branch where the
  condition is null; ``coalesce`` the first non-null; ``greatest`` ignores nulls and ranks NaN above
  every number (DuckDB's order);
* a decimal is given as its int64 units (value x 10**scale); its only operation here is the cast to
  float64 (units below 2**53: the same bits as DuckDB's ``units / 10**scale``);
* float32 values (the whole-number features) are read, compared, filled and converted to float64
  (exactly), never computed in;
* a comparison with a NaN operand, a cast to anything but float64/int64 from integers or booleans,
  any other use of a decimal, and every operation not listed raise :class:`Unsupported`: the caller keeps
  DuckDB for that column (``tests/test_incremental.py`` compares the float bits and null masks of both).

Three of DuckDB's operations are reproduced as functions for the mixes of the transaction family
(:func:`~clvml.features.incremental.mix_totals`): :func:`square` (``POWER(x, 2)``), :func:`round_half_away`
(the rounding of a DOUBLE -> DECIMAL cast) and :func:`decimal_to_float` (DECIMAL -> DOUBLE).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence

import ibis
import ibis.expr.operations as ops
import numpy as np
import pyarrow as pa

#: a column: its values and its null mask (None: no nulls); a scalar is a 0-d array
Col = tuple[np.ndarray, np.ndarray | None]


class Unsupported(Exception):
    """The expression uses an operation or type this evaluator does not reproduce exactly."""


_ARITH: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ops.Add: np.add, ops.Subtract: np.subtract, ops.Multiply: np.multiply,
}
_COMPARE: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ops.Equals: np.equal, ops.NotEquals: np.not_equal, ops.Greater: np.greater,
    ops.GreaterEqual: np.greater_equal, ops.Less: np.less, ops.LessEqual: np.less_equal,
}


def _np_type(t: object) -> type:
    """The NumPy type holding values of the Ibis type ``t`` (int64 for every integer: DuckDB widens;
    float32 for the whole-number features stored so: cast to, read and passed on, never computed in)."""
    if t.is_floating():
        if t.nbytes == 4:
            return np.float32
        if t.nbytes != 8:
            raise Unsupported(f"type {t}")
        return np.float64
    if t.is_integer():
        return np.int64
    if t.is_boolean():
        return np.bool_
    raise Unsupported(f"type {t}")


def _or(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    return a if b is None else a | b


class Evaluator:
    """Evaluates expressions over the tables in ``tables`` (an Ibis table's operation -> its columns by
    name, each a :data:`Col` of ``n`` rows); a projection of such a table is followed to its expressions.
    Results are memoised by operation, so shared sub-expressions are computed once."""

    def __init__(self, tables: Mapping[ops.Relation, Mapping[str, Col]], n: int) -> None:
        self.tables, self.n = tables, n
        self.memo: dict[ops.Node, Col] = {}

    def values(self, expr: ibis.Value) -> Col:
        """``expr`` for every row: its values (the NumPy type of its Ibis type) and null mask (None: no
        nulls); raises :class:`Unsupported`."""
        v, null = self.column(expr.op())
        t = expr.type()
        if t.is_integer() and not t.is_int64():
            raise Unsupported(f"integer type {t}")  # DuckDB would keep the narrower type
        v = np.broadcast_to(v.astype(_np_type(t), copy=False), (self.n,))
        if null is not None:
            null = np.broadcast_to(null, (self.n,)) if null.any() else None
        return v, null

    def arrow(self, expr: ibis.Value) -> pa.Array:
        """``expr`` for every row as an Arrow array of its type (raises :class:`Unsupported`)."""
        if expr.type().is_string():
            labels = case_labels(expr.op())
            return labelled(self.codes(expr), labels)
        v, null = self.values(expr)
        return pa.array(v, type=expr.type().to_pyarrow(), mask=null)

    def codes(self, expr: ibis.Value) -> np.ndarray:
        """For a string ``ibis.cases(...)`` of literals (:func:`case_labels`): every row's label as its index
        in the labels, -1 for null. DuckDB's CASE: the first condition that is true (a null one is not),
        else the default."""
        op = _defined(expr.op())
        labels = case_labels(op)
        default = -1 if op.default.value is None else labels.index(op.default.value)
        codes = np.full(self.n, default, dtype=np.int8)
        decided = np.zeros(self.n, dtype=bool)
        for cond, res in zip(op.cases, op.results, strict=True):
            c, cn = self.column(cond)
            if c.dtype != np.bool_:
                raise Unsupported("a condition that is not boolean")
            hit = np.broadcast_to(c if cn is None else c & ~cn, (self.n,)) & ~decided
            codes[hit] = labels.index(res.value)
            decided |= hit
        return codes

    def column(self, op: ops.Node) -> Col:
        if op not in self.memo:
            self.memo[op] = self._eval(op)
        return self.memo[op]

    def _eval(self, op: ops.Node) -> Col:  # noqa: C901 - one branch per operation
        if isinstance(op, ops.Field):
            rel = op.rel
            if rel in self.tables:
                if op.name not in self.tables[rel]:
                    raise Unsupported(f"column {op.name}")
                return self.tables[rel][op.name]
            if isinstance(rel, ops.Project):
                return self.column(rel.values[op.name])
            raise Unsupported(f"table {type(rel).__name__}")
        if isinstance(op, ops.Literal):
            nt = _np_type(op.dtype)
            if op.value is None:
                return np.zeros((), dtype=nt), np.ones((), dtype=bool)
            return np.asarray(op.value, dtype=nt), None
        if isinstance(op, ops.Cast) and op.arg.dtype.is_decimal() and op.to.is_float64():
            return self._decimal_to_float(op.arg)
        for arg in op.__children__:  # decimals are int64 units here: only their cast to float64 is done
            if isinstance(arg, ops.Value) and arg.dtype.is_decimal():
                raise Unsupported(f"{type(op).__name__} of a decimal")
        out_t = _np_type(op.dtype)
        if isinstance(op, ops.Cast):
            v, null = self.column(op.arg)
            if out_t is np.float64 and v.dtype in (np.int64, np.bool_, np.float64, np.float32):
                return v.astype(np.float64, copy=False), null
            if out_t is np.int64 and v.dtype in (np.int64, np.bool_):
                return v.astype(np.int64, copy=False), null
            if out_t is np.float32 and v.dtype in (np.float64, np.int64, np.float32):
                # a whole-number feature stored as float32: CAST(x AS FLOAT) is C's conversion (to nearest)
                return v.astype(np.float32, copy=False), null
            raise Unsupported(f"cast {op.arg.dtype} -> {op.dtype}")
        if type(op) in _ARITH or isinstance(op, ops.Divide):
            (a, an), (b, bn) = self.column(op.left), self.column(op.right)
            with np.errstate(all="ignore"):
                if out_t is np.float64:
                    f = np.divide if isinstance(op, ops.Divide) else _ARITH[type(op)]
                    return f(a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)), _or(an, bn)
                if out_t is np.int64 and not isinstance(op, ops.Divide):
                    return _ARITH[type(op)](a.astype(np.int64, copy=False), b.astype(np.int64, copy=False)), _or(an, bn)
            raise Unsupported(f"{type(op).__name__} -> {op.dtype}")  # (float32 arithmetic among them)
        if type(op) in _COMPARE:
            (a, an), (b, bn) = self.column(op.left), self.column(op.right)
            for x, xn in ((a, an), (b, bn)):  # DuckDB orders NaN above every number and equal to itself
                if x.dtype.kind == "f" and np.isnan(x if xn is None else np.where(xn, 0.0, x)).any():
                    raise Unsupported("comparison with NaN")  # (a NaN standing for a null does not count)
            if a.dtype.kind == "f" or b.dtype.kind == "f":  # float32 to float64 is exact: the same order
                a, b = a.astype(np.float64, copy=False), b.astype(np.float64, copy=False)
            return _COMPARE[type(op)](a, b), _or(an, bn)
        if isinstance(op, (ops.IsNull, ops.NotNull)):
            _, null = self.column(op.arg)
            isnull = np.zeros((), dtype=bool) if null is None else null
            return (isnull if isinstance(op, ops.IsNull) else ~isnull), None
        if isinstance(op, ops.IfElse):
            c, cn = self.column(op.bool_expr)
            cond = c if cn is None else c & ~cn  # a null condition takes the else branch
            (t, tn), (f, fn) = self.column(op.true_expr), self.column(op.false_null_expr)
            v = np.where(cond, t.astype(out_t, copy=False), f.astype(out_t, copy=False))
            null = None if tn is None and fn is None else np.where(
                cond, False if tn is None else tn, False if fn is None else fn)
            return v, null
        if isinstance(op, ops.Coalesce):
            v, null = self.column(op.arg[0])
            v = v.astype(out_t, copy=False)
            for arg in op.arg[1:]:
                if null is None:
                    break
                b, bn = self.column(arg)
                v = np.where(null, b.astype(out_t, copy=False), v)
                null = None if bn is None else null & bn
            return v, null
        if isinstance(op, ops.Greatest):
            v, null = self.column(op.arg[0])
            v = v.astype(out_t, copy=False)
            for arg in op.arg[1:]:
                b, bn = self.column(arg)
                b = b.astype(out_t, copy=False)
                both = np.maximum(v, b)  # NaN wins, as in DuckDB's order
                take_b = np.zeros((), dtype=bool) if null is None else null
                take_v = np.zeros((), dtype=bool) if bn is None else bn
                v = np.where(take_b, b, np.where(take_v, v, both))
                null = None if null is None or bn is None else null & bn
            return v, null
        if isinstance(op, ops.Sqrt):
            v, null = self.column(op.arg)
            v = v.astype(np.float64, copy=False)
            neg = v < 0
            if (neg if null is None else neg & ~null).any():  # DuckDB raises an error here: leave it to DuckDB
                raise Unsupported("square root of a negative number")
            return np.sqrt(v), null
        raise Unsupported(type(op).__name__)

    def _decimal_to_float(self, arg: ops.Value) -> Col:
        """A decimal (given as its int64 units, value x 10**scale) as float64: DuckDB converts the units to
        float64 and divides by 10**scale; with every unit count below 2**53 the conversion is exact, so that
        is one correctly rounded division here too (larger: :class:`Unsupported`)."""
        units, null = self.column(arg)
        if units.dtype != np.int64:
            raise Unsupported("decimal not given as int64 units")
        big = np.abs(units) >= 2**53
        if (big if null is None else big & ~null).any():
            raise Unsupported("decimal units past 2**53")
        return units.astype(np.float64, copy=False) / float(10**arg.dtype.scale), null


#: ``square`` takes ``pow`` from the C library where x * x is within this many ULPs of a rounding boundary
#: (glibc's ``pow`` is accurate to 0.52 ULP: it can round differently from x * x only within 0.02 ULP)
POW_MARGIN = 0.45


def square(x: np.ndarray) -> np.ndarray:
    """DuckDB's ``POWER(x, 2)`` of float64 values, bit for bit.

    DuckDB calls the C library's ``pow``, which is not always the correctly rounded x * x (glibc misrounds
    about 0.15 % of squares). x * x is exact up to its residual (Dekker's product, exact in float64), so
    where x * x lies more than :data:`POW_MARGIN` ULP from a rounding boundary both give it; for the rest
    (about 10 %) ``math.pow``, the same C function, gives DuckDB's value.
    """
    x = np.asarray(x, dtype=np.float64)
    q = x * x
    with np.errstate(all="ignore"):
        c = 134217729.0 * x  # Veltkamp's split: x = hi + lo, each with 26 bits
        hi = c - (c - x)
        lo = x - hi
        err = ((hi * hi - q) + 2.0 * hi * lo) + lo * lo  # x * x - q, exactly
        ulp = np.minimum(np.spacing(q), q - np.nextafter(q, 0.0))
        near = (np.abs(err) >= POW_MARGIN * ulp) & (q != 0.0)
        near |= ~np.isfinite(q) | (np.abs(x) > 2.0**500) | ((q < 2.0**-900) & (x != 0.0))
    at = np.flatnonzero(near)
    if len(at):
        q[at] = [math.pow(v, 2.0) for v in x[at].tolist()]
    return q


def decimal_to_float(units: Sequence[int] | np.ndarray, scale: int) -> np.ndarray:
    """DuckDB's cast of DECIMAL(38, ``scale``) values with the integer ``units`` (value x 10**scale: an int64
    array, or Python integers of any size) to DOUBLE, bit for bit.

    DuckDB divides the units converted to double by 10**scale while they are at most 2**53 (exact in
    double); beyond, it adds the double of the integer quotient by 10**scale and the double of the
    remainder divided by 10**scale (both truncated toward zero), a 128-bit integer converted to double as
    its low 64 bits plus its high 64 bits times 2**64 — not always the correctly rounded value.
    """
    p = 10**scale
    if isinstance(units, np.ndarray) and units.dtype == np.int64:
        with np.errstate(all="ignore"):
            fast = units.astype(np.float64) / float(p)
            q = np.abs(units) // p * np.sign(units)  # truncated toward zero, like C++
            slow = q.astype(np.float64) + (units - q * p).astype(np.float64) / float(p)
        return np.where(np.abs(units) <= 2**53, fast, slow)
    out = np.empty(len(units), dtype=np.float64)
    for i, v in enumerate(units):
        v = int(v)
        if abs(v) <= 2**53:
            out[i] = float(v) / float(p)
            continue
        q = abs(v) // p * (1 if v >= 0 else -1)
        out[i] = _hugeint_to_float(q) + _hugeint_to_float(v - q * p) / float(p)
    return out


def _hugeint_to_float(v: int) -> float:
    """DuckDB's HUGEINT -> DOUBLE: low 64 bits + high 64 bits x 2**64, each converted on its own."""
    upper, lower = divmod(v, 2**64)
    if upper == -1:
        return -float(2**64 - 1 - lower) - 1.0
    return float(lower) + float(upper) * float(2**64)


def round_half_away(x: np.ndarray) -> np.ndarray:
    """C's ``round`` (halves away from zero) of float64 values, as float64: DuckDB's rounding when it casts a
    DOUBLE to a DECIMAL (of ``x`` = the double times 10**scale)."""
    r = np.trunc(x)
    frac = x - r  # exact
    return r + np.where(np.abs(frac) >= 0.5, np.sign(x), 0.0)


class ArrowColumns(Mapping):
    """The numeric columns of an Arrow table as the evaluator's (values, null mask) pairs, converted when
    first used."""

    def __init__(self, table: pa.Table) -> None:
        self.table, self.cache = table, {}

    def __getitem__(self, name: str) -> tuple[np.ndarray, np.ndarray | None]:
        if name not in self.cache:
            arr = self.table.column(name).combine_chunks()
            t = arr.type
            if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
                raise Unsupported(f"column {name} of type {t}")
            null = None if arr.null_count == 0 else ~arr.is_valid().to_numpy(zero_copy_only=False)
            if null is not None:
                arr = arr.fill_null(False if pa.types.is_boolean(t) else 0)
            self.cache[name] = (arr.to_numpy(zero_copy_only=False), null)
        return self.cache[name]

    def __contains__(self, name: object) -> bool:
        return name in self.table.column_names

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.column_names)

    def __len__(self) -> int:
        return self.table.num_columns


def case_labels(op: ops.Value) -> tuple[str, ...]:
    """The labels of a string ``ibis.cases(...)`` whose results and default are literals (the default may be
    null), in order of first appearance; raises :class:`Unsupported` for any other string expression."""
    op = _defined(op)
    if not (isinstance(op, ops.SearchedCase) and op.dtype.is_string() and isinstance(op.default, ops.Literal)
            and all(isinstance(r, ops.Literal) and r.value is not None for r in op.results)
            and len(op.results) < 127):
        raise Unsupported(f"string {type(op).__name__}")
    values = [r.value for r in op.results] + ([] if op.default.value is None else [op.default.value])
    return tuple(dict.fromkeys(values))


def labelled(codes: np.ndarray, labels: Sequence[str]) -> pa.Array:
    """The strings of :meth:`Evaluator.codes` (-1: null) as an Arrow string array."""
    return pa.array(list(labels), pa.string()).take(pa.array(codes, mask=codes < 0))


def _defined(op: ops.Value) -> ops.Value:
    """``op`` itself, or for a column of a projection the expression defining it."""
    while isinstance(op, ops.Field) and isinstance(op.rel, ops.Project):
        op = op.rel.values[op.name]
    return op
