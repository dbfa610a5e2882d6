"""A cache of built feature tables, so ``train``, ``backtest`` and ``tune`` on the same config build
the features once.

An entry is keyed by a hash of everything the table depends on: the clvml version, the ``data``
section (sources, column mappings, policies, as-of), a fingerprint of every input file (size,
modification time and SHA-256 of its bytes), the feature settings and the cut-offs. A changed input
therefore gives another key and can never be served stale. Each entry is a Parquet file plus a JSON
file listing its key parts, so a miss can say what changed since the last entry. Entries are written
atomically and read back (row count checked); the newest ``keep`` entries are kept.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from clvml.io import atomic_write_json, atomic_write_parquet


def cache_key(parts: dict[str, Any]) -> str:
    """A short, stable hash of the key parts (canonical JSON)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _what_changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    changed = []
    for k in sorted(set(old) | set(new)):
        if old.get(k) == new.get(k):
            continue
        if k == "inputs" and isinstance(old.get(k), dict) and isinstance(new.get(k), dict):
            for table in sorted(set(old[k]) | set(new[k])):
                a, b = old[k].get(table, {}), new[k].get(table, {})
                if a != b:
                    files = sorted(f for f in set(a) | set(b) if a.get(f) != b.get(f))
                    changed.append(f"input {table} ({', '.join(files[:3])}{'…' if len(files) > 3 else ''})")
        else:
            changed.append(k)
    return ", ".join(changed) or "nothing recorded differs"


def _restore_dtypes(frame: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    """Parquet stores timestamps in at least millisecond units: put back the built frame's units."""
    fix = {c: t for c, t in dtypes.items() if c in frame and str(frame[c].dtype) != t and t.startswith("datetime64")}
    return frame.astype(fix) if fix else frame


def cached_frame(folder: Path, parts: dict[str, Any], build: Callable[[], pd.DataFrame],
                 say: Callable[[str], None], *, keep: int = 3) -> pd.DataFrame:
    """The frame cached under ``parts`` in ``folder``, else ``build()`` stored there.

    Every hit and every miss is reported through ``say`` (a miss says why). A cache that cannot be
    read or written is reported and bypassed: the result is always the freshly built frame then.
    """
    key = cache_key(parts)
    data, meta = folder / f"features-{key}.parquet", folder / f"features-{key}.json"
    if data.exists() and meta.exists():
        try:
            stored = json.loads(meta.read_text())
            frame = _restore_dtypes(pd.read_parquet(data), stored.get("dtypes", {}))
            if stored.get("rows") == len(frame):
                say(f"feature cache hit: {data} ({len(frame):,} rows)")
                return frame
            say(f"feature cache entry {data} is damaged (rows {len(frame):,} != {stored.get('rows')}); "
                "rebuilding")
        except (OSError, ValueError) as exc:
            say(f"feature cache entry {data} is unreadable ({exc}); rebuilding")
    entries = sorted(folder.glob("features-*.json"), key=lambda p: p.stat().st_mtime_ns) if folder.exists() else []
    reason = "no cached features yet"
    if entries:
        try:
            reason = "changed since the last entry: " + _what_changed(json.loads(entries[-1].read_text())["parts"],
                                                                       json.loads(json.dumps(parts, default=str)))
        except (OSError, ValueError, KeyError):
            reason = "the last entry is unreadable"
    say(f"feature cache miss ({reason}); building features")
    frame = build()
    try:
        atomic_write_parquet(frame, data)
        back = pd.read_parquet(data, columns=[frame.columns[0]])
        if len(back) != len(frame):
            raise OSError(f"read back {len(back):,} rows of {len(frame):,}")
        atomic_write_json({"rows": len(frame), "dtypes": {c: str(t) for c, t in frame.dtypes.items()},
                           "parts": json.loads(json.dumps(parts, default=str))}, meta)
    except OSError as exc:
        say(f"feature cache not written ({exc}); results are unaffected")
        return frame
    for old in sorted(folder.glob("features-*.json"), key=lambda p: p.stat().st_mtime_ns)[:-keep]:
        old.with_suffix(".parquet").unlink(missing_ok=True)
        old.unlink(missing_ok=True)
    return frame
