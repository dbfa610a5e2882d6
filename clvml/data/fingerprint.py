"""Fingerprints of input tables: what a cache must know to never serve results of other data.

A file is identified by its path, size, modification time and the SHA-256 of its bytes, so a file
rewritten in place with the same size and an old modification time is still seen as changed. Sources
that are not files (a database table, an in-memory frame) have no fingerprint: results built from them
are never cached.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from clvml.config import DataConfig

_CHUNK = 1 << 20


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Size, modification time (ns) and SHA-256 of one file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": h.hexdigest()}


def source_fingerprints(data: DataConfig) -> dict[str, dict[str, Any]] | None:
    """``table -> {file: fingerprint}`` for every configured table, or None when a table is not read
    from files (nothing built from it may be cached)."""
    out: dict[str, dict[str, Any]] = {}
    for name, src in sorted(data.tables.items()):
        if src.path is None or getattr(src, "url", None) or getattr(src, "query", None):
            return None
        path = Path(src.path)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
            out[name] = {str(p.relative_to(path)): file_fingerprint(p) for p in files}
        elif path.is_file():
            out[name] = {path.name: file_fingerprint(path)}
        else:
            return None
    return out
