"""Griffe extension for the API reference: Sphinx roles in docstrings rendered as Markdown code.

The docstrings use reStructuredText roles (``:class:`~clvml.errors.ConfigError```, ``:func:`fit```);
mkdocstrings renders Markdown, where they would show as written. Each role becomes a code span of its
target (the last dotted part when the target starts with ``~``, as Sphinx shows it).
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`<]+?)(?:\s*<[^`]+>)?`")


def plain(text: str) -> str:
    """``:class:`~a.b.C``` -> ```C```; ``:func:`a.f``` -> ```a.f```."""
    return ROLE.sub(lambda m: f"`{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}`", text)


class RstRoles(Extension):
    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
