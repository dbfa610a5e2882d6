"""Atomic file output: write to a temporary file beside the target, then rename over it.

Every file and folder written here gets the permissions the process umask gives any new file (0644 and
0755 under umask 022, 0640 and 0750 under 027), so the accounts that may read the outputs can, and no
others. Temporary folders carry an *owner lock*: a lock file beside them that the writing process holds
(``flock``) for its lifetime, so that a later run removes only the temporary folders of runs that died.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
import threading
import time
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


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc/self/status)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:  # elsewhere: set and restore (the only portable way to read it)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open()`` would give a new file: 0666 less the umask."""
    return 0o666 & ~current_umask()


def new_dir_mode() -> int:
    """The mode ``mkdir`` would give a new folder: 0777 less the umask."""
    return 0o777 & ~current_umask()


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path in the target folder, fsync, then rename onto ``path``.

    A failure at any point leaves an existing ``path`` untouched and removes the temporary file. The
    file gets the mode the umask gives a new file (``mkstemp`` alone would make it owner-only).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, new_file_mode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write to {path.parent}: {exc.strerror or exc}; check the path "
                          "exists, is a folder and is writable") from None
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


def swap_dir(tmp: Path, path: Path) -> bool:
    """Put the finished folder ``tmp`` in place of ``path``; afterwards ``tmp`` holds the previous
    folder (True) or nothing (False: there was none).

    On Linux the two folders are exchanged in one atomic step, so a reader (or a crash) sees either the
    old folder or the new one, never neither. Elsewhere the old folder is renamed aside first and
    restored if the second rename fails.
    """
    if path.exists() and _exchange(tmp, path):
        return True
    if not path.exists():
        os.rename(tmp, path)
        return False
    old = tmp.with_name(tmp.name + ".old")
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except OSError:
        os.replace(old, path)
        raise
    os.replace(old, tmp)
    return True


def replace_dir(tmp: Path, path: Path) -> Path:
    """Put the finished folder ``tmp`` in place of the folder ``path`` and delete the previous one
    (see :func:`swap_dir`)."""
    if swap_dir(tmp, path):
        shutil.rmtree(tmp, ignore_errors=True)  # now holds the old folder
    return path


STAGING_SUFFIX = ".tmp"
LOCK_SUFFIX = ".lock"


def _new_staging(parent: Path, prefix: str) -> tuple[Path, int]:
    """Create ``parent/<prefix>XXXX.tmp`` and its owner lock ``…tmp.lock``, held (flock) through the
    returned descriptor. The lock file exists, locked, before the folder does: a folder whose lock can
    be taken has no live owner."""
    while True:
        fd, lock = tempfile.mkstemp(prefix=prefix, suffix=STAGING_SUFFIX + LOCK_SUFFIX, dir=parent)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.fchmod(fd, new_file_mode())  # others may open it to test the lock (never to write)
            st = os.fstat(fd)
            try:
                now = os.stat(lock)
            except FileNotFoundError:
                now = None
            if now is None or (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):
                os.close(fd)  # a cleaner removed it before we held it: take another name
                continue
            os.write(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
                     .encode())
            tmp = Path(lock[: -len(LOCK_SUFFIX)])
            os.mkdir(tmp)  # the umask's mode (mkdtemp would make it owner-only)
            return tmp, fd
        except BlockingIOError:
            os.close(fd)  # a cleaner is looking at it: take another name
        except BaseException:
            os.close(fd)
            Path(lock).unlink(missing_ok=True)
            raise


def remove_dead_staging(parent: Path, prefix: str = ".") -> tuple[int, list[Path]]:
    """Remove the temporary folders ``parent/<prefix>*.tmp`` whose owner is provably dead: their owner
    lock (``….tmp.lock``) can be taken, so no process holds it. A folder without a lock file (left by an
    older clvml) or whose lock cannot be opened is kept and returned. Lock files whose folder is gone
    are removed the same way. Returns (folders removed, folders kept because their owner is unknown).
    """
    removed, unknown = 0, []
    try:
        entries = sorted(parent.iterdir()) if parent.is_dir() else []
    except OSError:
        return 0, []
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix):
            continue
        if name.endswith(STAGING_SUFFIX + LOCK_SUFFIX):
            folder = entry.with_name(name[: -len(LOCK_SUFFIX)])
            lock = entry
        elif name.endswith(STAGING_SUFFIX) and entry.is_dir() and not entry.is_symlink():
            folder, lock = entry, entry.with_name(name + LOCK_SUFFIX)
            if lock.exists():
                continue  # handled with its lock file
        else:
            continue
        if not lock.exists():
            if folder.is_dir():
                unknown.append(folder)
            continue
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            if folder.is_dir():
                unknown.append(folder)
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its owner is alive
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                if folder.exists():
                    continue  # could not remove it all: keep the lock, the next run retries
                removed += 1
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return removed, unknown


@contextmanager
def staging_dir(parent: Path, prefix: str, target: str) -> Iterator[Path]:
    """A temporary folder ``parent/<prefix>XXXX.tmp`` in which to build the output ``target``.

    The folder has an owner lock beside it, held until the block ends (see :func:`remove_dead_staging`).
    The block moves it into place (:func:`replace_dir`) or consumes it; whatever is left afterwards is
    removed, also when the block fails, and an ``OSError`` becomes an :class:`OutputError` saying the
    previous output is unchanged.
    """
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _new_staging(parent, prefix)
    except OSError as exc:
        raise OutputError(f"cannot write to {parent}: {exc.strerror or exc}; check the path exists, is a "
                          "folder and is writable") from None
    try:
        yield tmp
    except OSError as exc:
        raise OutputError(f"writing {target} failed: {exc.strerror or exc}; the previous output (if "
                          "any) is unchanged") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not tmp.exists():
            Path(str(tmp) + LOCK_SUFFIX).unlink(missing_ok=True)
        os.close(fd)


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


def output_error(path: Path, exc: OSError, what: str = "write to") -> OutputError:
    """An :class:`OutputError` naming ``path`` and what is wrong with it."""
    hint = {errno.EROFS: "the file system is mounted read-only",
            errno.ENOTDIR: "a part of the path is a file, not a folder",
            errno.EEXIST: "a file of that name is in the way",
            errno.EISDIR: "it is a folder",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.ENOSPC: "the disk is full"}.get(exc.errno or -1, exc.strerror or str(exc))
    return OutputError(f"cannot {what} {path}: {hint}; the previous output (if any) is unchanged")
