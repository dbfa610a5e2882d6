"""Render the feature catalog (``docs/features.md``) from the registry."""

from __future__ import annotations

from collections.abc import Sequence

from clvml.features.builder import catalog
from clvml.features.registry import FAMILIES, REGISTRY


def catalog_markdown(windows: Sequence[int] = (30, 90, 180, 365)) -> str:
    specs = catalog(windows)
    lines = [
        "# Feature catalog",
        "",
        "Generated from the feature registry by `clvml features list --markdown` — do not edit by hand.",
        f"Windows: {', '.join(str(w) for w in windows)} days and all history. Every feature of cut-off "
        "*c* uses only events with `ts < c`.",
        "",
    ]
    for fam in FAMILIES:
        rows = [s for s in specs if s.family == fam]
        lines += [f"## {fam} (source: `{REGISTRY[fam].source}`)", "",
                  "| feature | window | unit | type | description | when missing |",
                  "|---|---|---|---|---|---|"]
        for s in rows:
            w = f"{s.window} d" if s.window else "all"
            lines.append(f"| `{s.name}` | {w} | {s.unit} | {s.dtype} | {s.description} | {s.missing} |")
        lines.append("")
    return "\n".join(lines)
