"""Compiling small per-row loops with Numba (installed with SHAP): the kernels release the GIL and are
cached on disk where a cache folder is writable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba


def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` compiled in nopython mode, releasing the GIL. Cached beside the module (or in Numba's
    user cache folder) when one is writable; an installed package read by a service account may have
    neither, and is then compiled once per process instead of failing."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available for file ..."
        return numba.njit(nogil=True)(fn)
