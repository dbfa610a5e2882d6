"""Arithmetic over column names, parsed without ``eval``: the amount of a line (``Quantity * UnitPrice``).

The grammar is the whole language — column names (plain identifiers), numbers, ``+ - * /``, unary minus
and parentheses::

    expr   := term (("+" | "-") term)*
    term   := factor (("*" | "/") factor)*
    factor := ("+" | "-") factor | NUMBER | NAME | "(" expr ")"

Anything else (function calls, attributes, quotes, ``**``) is a syntax error naming its position. The
parsed tree is evaluated by :func:`evaluate` over any values that support the four operators (Ibis
columns in :mod:`clvml.data.validation`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: longest accepted expression and deepest nesting: an amount needs a few terms, not a program
MAX_LENGTH = 500
MAX_DEPTH = 32

_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<op>[-+*/()]))")


@dataclass(frozen=True)
class Node:
    """One node of a parsed expression: ``op`` is ``num``, ``col``, ``neg`` or one of ``+ - * /``."""

    op: str
    value: float | str | None = None
    args: tuple[Node, ...] = ()


@dataclass(frozen=True)
class Expression:
    """A parsed expression: its text, its tree and the column names it reads (in order of appearance)."""

    text: str
    tree: Node
    columns: tuple[str, ...]


def parse(text: str) -> Expression:
    """Parse ``text``; raise ValueError naming the position and what was expected."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise ValueError(f"the expression is {len(text)} characters long (at most {MAX_LENGTH})")
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            at = pos + len(text[pos:]) - len(text[pos:].lstrip())
            raise ValueError(f"unexpected {text[at]!r} at position {at + 1} of {text!r}: only column "
                             "names, numbers, + - * / and parentheses are allowed")
        kind = m.lastgroup or "op"
        tokens.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    parser = _Parser(text, tokens)
    tree = parser.expr(0)
    if parser.i < len(tokens):
        _, tok, at = tokens[parser.i]
        raise ValueError(f"unexpected {tok!r} at position {at + 1} of {text!r}")
    cols = tuple(dict.fromkeys(t for k, t, _ in tokens if k == "name"))
    return Expression(text, tree, cols)


class _Parser:
    def __init__(self, text: str, tokens: list[tuple[str, str, int]]) -> None:
        self.text, self.tokens, self.i = text, tokens, 0

    def _peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def _fail(self, expected: str) -> ValueError:
        if self.i < len(self.tokens):
            _, tok, at = self.tokens[self.i]
            return ValueError(f"expected {expected} at position {at + 1} of {self.text!r}, found {tok!r}")
        return ValueError(f"expected {expected} at the end of {self.text!r}")

    def expr(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise ValueError(f"the expression {self.text!r} nests deeper than {MAX_DEPTH} levels")
        node = self.term(depth)
        while self._peek() in ("+", "-"):
            op = self.tokens[self.i][1]
            self.i += 1
            node = Node(op, args=(node, self.term(depth)))
        return node

    def term(self, depth: int) -> Node:
        node = self.factor(depth)
        while self._peek() in ("*", "/"):
            op = self.tokens[self.i][1]
            self.i += 1
            node = Node(op, args=(node, self.factor(depth)))
        return node

    def factor(self, depth: int) -> Node:
        if self.i >= len(self.tokens):
            raise self._fail("a column name, a number or '('")
        kind, tok, _ = self.tokens[self.i]
        if tok in ("+", "-") and kind == "op":
            self.i += 1
            if depth + 1 > MAX_DEPTH:
                raise ValueError(f"the expression {self.text!r} nests deeper than {MAX_DEPTH} levels")
            inner = self.factor(depth + 1)
            return Node("neg", args=(inner,)) if tok == "-" else inner
        if kind == "num":
            self.i += 1
            return Node("num", float(tok))
        if kind == "name":
            self.i += 1
            return Node("col", tok)
        if tok == "(":
            self.i += 1
            node = self.expr(depth + 1)
            if self._peek() != ")":
                raise self._fail("')'")
            self.i += 1
            return node
        raise self._fail("a column name, a number or '('")


def evaluate(tree: Node, column: Callable[[str], Any], number: Callable[[float], Any] = float) -> Any:
    """The value of ``tree`` with each column name looked up by ``column`` and each literal made by
    ``number``."""
    if tree.op == "num":
        return number(float(tree.value))  # type: ignore[arg-type]
    if tree.op == "col":
        return column(str(tree.value))
    if tree.op == "neg":
        return -evaluate(tree.args[0], column, number)
    a, b = (evaluate(x, column, number) for x in tree.args)
    if tree.op == "+":
        return a + b
    if tree.op == "-":
        return a - b
    if tree.op == "*":
        return a * b
    return a / b
