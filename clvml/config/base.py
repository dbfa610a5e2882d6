"""Shared pieces of every config section: the strict base model and identifier/size checks."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: a memory size as DuckDB accepts it ('4GB', '512 MiB'); checked before it reaches a SET statement
SIZE = re.compile(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


def _check_size(value: str | None, examples: str) -> str | None:
    """A memory size such as '4GB' or '3500MiB' (or None); the error shows ``examples``."""
    if value is not None and not SIZE.fullmatch(value.strip()):
        raise ValueError(f"must look like {examples}")
    return value


def _check_identifier(value: str, what: str) -> str:
    if not _IDENT.match(value):
        raise ValueError(
            f"{what} {value!r} is not a plain identifier (letters, digits and _; not starting with a "
            "digit; at most 128 characters). Rename the column/table or quote-free alias it."
        )
    return value
