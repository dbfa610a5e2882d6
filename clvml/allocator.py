"""Which allocator serves clvml's memory, and when freed memory goes back to the system: glibc's malloc and
Arrow's memory pool keep what a large job frees for reuse, so its resident size stays at its high-water
mark, while pyarrow's default pool (mimalloc) hands freed pages back at once, so they must be faulted in
again. Three policies, measured in ``bench/RESULTS.md``: :func:`return_freed_memory` (process-wide, for
``clvml train``), :func:`trim_freed_memory` (one call per scoring chunk) and :func:`build_allocators`
(during a feature build: Arrow's buffers from the system allocator, NumPy's arrays without huge pages).
Off glibc (macOS, musl) only Arrow's part applies."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec, TypeVar

import pyarrow as pa

P = ParamSpec("P")
R = TypeVar("R")

#: glibc's ``M_MMAP_THRESHOLD`` option of ``mallopt`` and its default value (128 KiB)
M_MMAP_THRESHOLD, MMAP_THRESHOLD = -3, 128 * 1024


@functools.cache
def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (which has ``mallopt`` and ``malloc_trim``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (glibc only; AttributeError on musl)
    except (OSError, AttributeError):
        return None
    return libc


def return_freed_memory() -> None:
    """Make the process hand freed memory back to the system (the ``clvml train`` command calls it first;
    :func:`clvml.jobs.train.train` does not, as it may run inside someone else's process): the train
    job's large, short-lived arrays (feature columns, model matrices, LightGBM's bin samples) are then
    returned when freed instead of kept by the allocators, and its peak RSS is that of what is alive.

    * glibc's malloc keeps its default mmap threshold (128 KiB) fixed: by default it raises it to the
      size of every mmapped block freed (up to 32 MiB), after which blocks of that size come from the
      heap, whose freed memory is not returned (what ``MALLOC_MMAP_THRESHOLD_=131072`` does; nothing
      changes off glibc).
    * pyarrow allocates from the system allocator (``pyarrow.system_memory_pool``, what
      ``ARROW_DEFAULT_MEMORY_POOL=system`` does) instead of mimalloc, which kept ~0.3 GB of the demo's
      freed feature batches.

    Both affect the whole process. Measured on the demo in ``bench/RESULTS.md`` (same trees).
    """
    pa.set_memory_pool(pa.system_memory_pool())
    libc = glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def trim_freed_memory() -> None:
    """Hand back to the system what was just freed and the allocators kept: Arrow's pool
    (``release_unused``) and, on glibc, the C heap (``malloc_trim``). No process-wide setting changes;
    unlike a low fixed mmap threshold (:func:`return_freed_memory`) it costs one call (the scoring job
    makes one per chunk), not a page fault per large array."""
    pa.default_memory_pool().release_unused()
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


#: what :func:`build_allocators` changed while any block is open, and how many blocks are open
_switch_lock = threading.Lock()
_switch: dict[str, Any] = {"depth": 0, "pool": None, "hugepage": None}


@functools.cache
def _numpy_hugepage() -> Callable[[bool], bool] | None:
    """NumPy's switch for ``madvise(MADV_HUGEPAGE)`` on its large arrays (returns the previous setting);
    None when this NumPy has none (it is a private function, so looked up defensively)."""
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            fn = getattr(importlib.import_module(module), "_set_madvise_hugepage", None)
        except ImportError:
            continue
        if fn is not None:
            return fn
    return None


@contextlib.contextmanager
def build_allocators() -> Iterator[None]:
    """Inside the block, freed memory is reused rather than faulted in afresh: pyarrow's default memory
    pool is the system allocator (glibc's malloc), as :func:`return_freed_memory` makes it for a whole
    process, and NumPy does not ask for transparent huge pages for its large arrays. The settings before
    are restored when the last open block ends (blocks may nest and run on several threads at once); a
    setting the user chose by its environment variable (``ARROW_DEFAULT_MEMORY_POOL``,
    ``NUMPY_MADVISE_HUGEPAGE``) is left alone.

    The feature builds run in it (:func:`clvml.features.build_features`, :func:`clvml.features.to_arrow`),
    measured on a 2-core VM in ``bench/RESULTS.md`` (session 23):

    * pyarrow's default, mimalloc, hands freed pages back to the system within milliseconds, so every
      batch's Arrow buffers (exports, takes, casts, dictionaries) came from freshly faulted pages;
    * NumPy's huge-page advice on every array of 4 MiB or more makes the kernel (``defrag=madvise``,
      the usual default) compact memory on the fault to find a free 2 MiB page: on memory freed a few
      seconds earlier that cost ~6 s per GiB against ~0.5 s with ordinary pages.

    Together the transaction family at 10M transactions x 6 cut-offs took ~35 % less wall time and half
    the kernel time. Arrow buffers keep the pool they came from, so tables made inside the block stay
    valid and are freed correctly after it.
    """
    with _switch_lock:
        if _switch["depth"] == 0:
            current = pa.default_memory_pool()
            if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL") and current.backend_name != "system":
                _switch["pool"] = current
                pa.set_memory_pool(pa.system_memory_pool())
            hugepage = _numpy_hugepage()
            if hugepage is not None and not os.environ.get("NUMPY_MADVISE_HUGEPAGE"):
                _switch["hugepage"] = hugepage(False)
        _switch["depth"] += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch["depth"] -= 1
            if _switch["depth"] == 0:
                if _switch["pool"] is not None:
                    pa.set_memory_pool(_switch["pool"])
                if _switch["hugepage"] is not None:
                    _numpy_hugepage()(_switch["hugepage"])
                _switch["pool"] = _switch["hugepage"] = None


def in_build_allocators(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` run inside :func:`build_allocators`."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with build_allocators():
            return fn(*args, **kwargs)

    return run
