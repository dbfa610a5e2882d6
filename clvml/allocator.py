"""Handing freed memory back to the system: glibc's malloc and Arrow's memory pool keep what a large job
frees for reuse, so its resident size stays at its high-water mark. Two policies, measured in
``bench/RESULTS.md``: :func:`return_freed_memory` (process-wide, for ``clvml train``) and
:func:`trim_freed_memory` (one call per scoring chunk). Off glibc (macOS, musl) only Arrow's part applies."""

from __future__ import annotations

import ctypes
import functools
import sys

import pyarrow as pa

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
