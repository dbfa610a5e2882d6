"""Atomic file output: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clvml.errors import ClvmlError


class OutputError(ClvmlError):
    """The output location cannot be written (missing permission, disk full...)."""

    exit_code = 6


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path in the target folder, fsync, then rename onto ``path``.

    A failure at any point leaves an existing ``path`` untouched and removes the temporary file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write to {path.parent}: {exc.strerror or exc}; check the path "
                          "exists and is writable") from None
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise OutputError(f"writing {path} failed: {exc.strerror or exc}; the previous file (if any) "
                          "is unchanged") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: filesystem or kernel cannot exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(tmp: Path, path: Path) -> Path:
    """Put the finished folder ``tmp`` in place of the folder ``path``.

    On Linux the two folders are exchanged in one atomic step, so a reader (or a crash) sees either the
    old folder or the new one, never neither. Elsewhere the old folder is renamed aside first and
    restored if the second rename fails.
    """
    import shutil

    if path.exists() and _exchange(tmp, path):
        shutil.rmtree(tmp, ignore_errors=True)  # now holds the old folder
        return path
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except OSError:
        if old is not None:
            os.replace(old, path)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return path


@contextmanager
def staging_dir(parent: Path, prefix: str, target: str) -> Iterator[Path]:
    """A temporary folder in ``parent`` in which to build the output ``target``.

    The block moves it into place (:func:`replace_dir`) or consumes it; whatever is left afterwards is
    removed, also when the block fails, and an ``OSError`` becomes an :class:`OutputError` saying the
    previous output is unchanged.
    """
    import shutil

    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write to {parent}: {exc.strerror or exc}; check the path exists and "
                          "is writable") from None
    try:
        yield tmp
    except OSError as exc:
        raise OutputError(f"writing {target} failed: {exc.strerror or exc}; the previous output (if "
                          "any) is unchanged") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_parquet(df: pd.DataFrame | pa.Table, path: str | Path) -> Path:
    """Write a DataFrame/Arrow table as Parquet atomically (deterministic bytes for equal input)."""
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def atomic_write_text(text: str, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(obj: Any, path: str | Path) -> Path:
    return atomic_write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", path)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (also when another account owns it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another account
        return True
    return True
