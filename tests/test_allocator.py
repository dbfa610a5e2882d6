"""clvml.allocator: freed memory handed back to the system (glibc's heap, Arrow's pool)."""

from __future__ import annotations

import ctypes
import json
import platform
import subprocess
import sys
import textwrap

import pytest

from clvml import allocator

GLIBC = allocator.glibc() is not None

# 2,000 blocks of 100 KB (below glibc's 128 KiB mmap threshold: they come from the heap), each followed by
# a small block that stays alive, so that freeing the large ones leaves holes that glibc's automatic trim
# of the heap's top cannot return: RSS stays until malloc_trim releases them
HOLES = textwrap.dedent("""
    import json
    from clvml.allocator import trim_freed_memory

    def rss():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

    big, keep = [], []
    for _ in range(2000):
        big.append(bytearray(100_000))
        keep.append(bytearray(1_000))
    before = rss()
    del big
    freed = rss()
    trim_freed_memory()
    print(json.dumps({"before": before, "freed": freed, "trimmed": rss(), "kept": len(keep)}))
""")


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_trim_returns_the_heap_holes_that_free_keeps():
    proc = subprocess.run([sys.executable, "-c", HOLES], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    mb = json.loads(proc.stdout)
    assert mb["freed"] > mb["before"] - 50, mb  # free() alone keeps the ~190 MB of holes resident
    assert mb["trimmed"] < mb["freed"] - 150, mb  # malloc_trim hands them back


def test_glibc_is_found_only_where_it_is():
    libc = allocator.glibc()
    on_glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert (libc is not None) == on_glibc, (platform.libc_ver(), libc)
    if libc is not None:  # the library found is glibc itself: its version reads as platform's does
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        assert libc.gnu_get_libc_version().decode() == platform.libc_ver()[1]


def test_return_freed_memory_puts_arrow_on_the_system_allocator():
    script = ("import pyarrow as pa; from clvml.allocator import return_freed_memory; "
              "return_freed_memory(); print(pa.default_memory_pool().backend_name)")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "system"
