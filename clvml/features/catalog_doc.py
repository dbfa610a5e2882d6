"""Render the feature catalog (``docs/features.md``) from the registry."""

from __future__ import annotations

from collections.abc import Sequence

from clvml.features.builder import catalog
from clvml.features.custom import FAMILY
from clvml.features.registry import FAMILIES, REGISTRY, FeatureSpec


def reason_examples(spec: FeatureSpec) -> str:
    """What a reason code says for this feature: its sentence for 0, 1 and 2 (a label for a category)
    and for no value, each distinct one once, in quotes."""
    values: list = ["<label>"] if spec.dtype == "categorical" else [0, 1, 2]
    said: list[str] = []
    for v in [*values, None]:
        text = spec.explain(v)
        if text not in said:
            said.append(text)
    return " · ".join(f"“{t}”" for t in said)


def catalog_markdown(windows: Sequence[int] = (30, 90, 180, 365)) -> str:
    specs = catalog(windows)
    lines = [
        "# Feature catalog",
        "",
        "Generated from the feature registry by `clvml features list --markdown` — do not edit by hand.",
        f"Windows: {', '.join(str(w) for w in windows)} days and all history. Every feature of cut-off "
        "*c* uses only events with `ts < c`. The reason text is what a reason code says when the feature "
        "drives a score (its template lives in the registry beside the feature). The type is the "
        "column's type in the feature table: counts, flags and numbers of days are whole numbers, stored "
        "as `float32` (exact up to 16,777,216; a larger value is stored to within 1 part in 2²⁴ and "
        "counted in a warning), other numbers as `float64`, categories as strings.",
        "",
    ]
    custom = [s for s in specs if s.family == FAMILY]
    for fam in FAMILIES + ((FAMILY,) if custom else ()):
        rows = [s for s in specs if s.family == fam]
        source = (", ".join(f"`{t}`" for t in dict.fromkeys(s.source for s in custom)) if fam == FAMILY
                  else f"`{REGISTRY[fam].source}`")
        title = "custom (registered in this process: docs/custom-features.md)" if fam == FAMILY else fam
        lines += [f"## {title} (source: {source})", "",
                  "| feature | window | unit | type | description | when missing | reason text (e.g.) |",
                  "|---|---|---|---|---|---|---|"]
        for s in rows:
            w = f"{s.window} d" if s.window else "all"
            kind = "categorical" if s.dtype == "categorical" else f"numeric, {s.storage}"
            lines.append(f"| `{s.name}` | {w} | {s.unit} | {kind} | {s.description} | {s.missing} | "
                         f"{reason_examples(s)} |")
        lines.append("")
    return "\n".join(lines)
