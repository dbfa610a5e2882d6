"""clvml.allocator: freed memory handed back to the system (glibc's heap, Arrow's pool)."""

from __future__ import annotations

import ctypes
import json
import os
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


# the state build_allocators changes, read without changing it, through nested and overlapping blocks
SWITCH = textwrap.dedent("""
    import json, threading
    import pyarrow as pa
    from clvml.allocator import _numpy_hugepage, build_allocators

    def state():
        hp = _numpy_hugepage()
        on = hp(True)
        hp(on)
        return [pa.default_memory_pool().backend_name, on]

    seen = {"before": state()}
    with build_allocators():
        seen["inside"] = state()
        with build_allocators():
            seen["nested"] = state()
        seen["after_nested"] = state()
        entered, leave = threading.Event(), threading.Event()

        def other():
            with build_allocators():
                entered.set()
                leave.wait(30)

        t = threading.Thread(target=other)
        t.start()
        entered.wait(30)
    seen["other_thread_open"] = state()  # this block ended, the thread's is still open
    leave.set()
    t.join(30)
    seen["after"] = state()
    print(json.dumps(seen))
""")


def _switch_states(env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", SWITCH], capture_output=True, text=True, timeout=120,
                          env={**{k: v for k, v in os.environ.items()
                                  if k not in ("ARROW_DEFAULT_MEMORY_POOL", "NUMPY_MADVISE_HUGEPAGE")}, **env})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_build_allocators_switch_while_any_block_is_open_and_restore_after_the_last():
    s = _switch_states({})
    default = s["before"]
    assert default[0] != "system" and default[1] is True, s  # pyarrow's and NumPy's defaults on Linux
    for k in ("inside", "nested", "after_nested", "other_thread_open"):
        assert s[k] == ["system", False], (k, s)
    assert s["after"] == default, s


def test_build_allocators_leave_the_settings_a_user_chose_alone():
    s = _switch_states({"ARROW_DEFAULT_MEMORY_POOL": "jemalloc", "NUMPY_MADVISE_HUGEPAGE": "1"})
    assert s["before"] == ["jemalloc", True], s
    assert all(v == ["jemalloc", True] for v in s.values()), s


BUILD = textwrap.dedent("""
    import datetime as dt, json
    import ibis, pyarrow as pa
    from clvml.allocator import _numpy_hugepage
    from clvml.engine import connect
    from clvml.features import build_features, to_arrow

    tx = connect().create_table("transactions", pa.table({
        "customer_id": ["a", "a", "b", "c", "c", "c"],
        "ts": pa.array([dt.datetime(2024, 1, d) for d in (2, 9, 3, 4, 5, 20)], pa.timestamp("us")),
        "amount": [10.0, 5.5, 7.25, 1.0, -1.0, 3.0]}), temp=True)
    before = pa.system_memory_pool().bytes_allocated()
    out = to_arrow(build_features({"transactions": tx}, ["2024-01-10", "2024-02-01"], plan="incremental"))
    hp = _numpy_hugepage()
    on = hp(True)
    print(json.dumps({"rows": out.num_rows, "orders": out.column("tx_orders_all").to_pylist(),
                      "system_bytes": pa.system_memory_pool().bytes_allocated() - before,
                      "pool": pa.default_memory_pool().backend_name, "hugepage": on}))
""")


def test_a_feature_build_allocates_from_the_system_pool_and_restores_the_defaults():
    proc = subprocess.run([sys.executable, "-c", BUILD], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items()
                               if k not in ("ARROW_DEFAULT_MEMORY_POOL", "NUMPY_MADVISE_HUGEPAGE")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout)
    assert r["rows"] == 6 and r["orders"] == [2.0, 1.0, 1.0, 2.0, 1.0, 2.0], r  # cut-off major, ids ascending
    assert r["system_bytes"] > 0, r  # the result's Arrow buffers came from the system allocator
    assert r["pool"] != "system" and r["hugepage"] is True, r  # and the defaults are back
