"""The package layout follows the data flow: no import cycles, and lower stages never import higher ones.

Every ``import`` in every module counts, at module level or inside a function, so a lazy import cannot
hide a cycle or a layering breach.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import clvml

ROOT = Path(clvml.__file__).resolve().parent

#: rank of each top-level part of the package; a module may import only parts of equal or lower rank,
#: and only within the same part when ranks are equal (see SAME_RANK_ALLOWED for the exceptions)
RANKS = {
    "_version": 0, "errors": 0, "jit": 0, "allocator": 0, "io": 1, "console": 1, "plotting": 2, "config": 2,
    "engine": 3, "tracking": 3,
    "datasets": 4, "data": 5,
    "features": 6, "labels": 7, "modeling": 8,
    "evaluation": 9, "explain": 9, "analytics": 10,
    "scoring": 11, "monitoring": 12, "jobs": 13, "cli": 14, "__init__": 14,
}
#: same-rank imports between different parts that are allowed (importer, imported)
SAME_RANK_ALLOWED: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """clvml modules imported by ``name`` (``from a import b`` counts as ``a.b`` when that is a module)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "clvml"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_pkg else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            if base.split(".")[0] != "clvml":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _part(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def test_every_part_has_a_rank():
    assert {_part(m) for m in MODULES} <= set(RANKS), {_part(m) for m in MODULES} - set(RANKS)


def test_no_import_cycles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert cycles == []


def _breaches(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, deps in graph.items():
        a = _part(mod)
        for dep in deps:
            b = _part(dep)
            if a == b:
                continue
            if RANKS[b] > RANKS[a] or (RANKS[b] == RANKS[a] and (a, b) not in SAME_RANK_ALLOWED):
                out.append(f"{mod} imports {dep}")
    return sorted(out)


def test_lower_stages_never_import_higher_ones():
    assert _breaches(GRAPH) == []


def test_only_the_cli_imports_jobs():
    importers = sorted(m for m, deps in GRAPH.items() if _part(m) not in ("jobs", "cli")
                       and any(_part(d) == "jobs" for d in deps))
    assert importers == []


def test_data_and_features_import_no_model_scoring_job_or_analytics_module():
    for mod, deps in GRAPH.items():
        if _part(mod) in ("data", "datasets", "features"):
            assert not {_part(d) for d in deps} & {"modeling", "scoring", "jobs", "analytics", "explain",
                                                    "evaluation", "labels"}, mod


def test_the_checker_sees_a_breach():
    """The rank rule is live: made-up edges upwards and across equal ranks are reported."""
    fake = {"clvml.data.loading": {"clvml.scoring.job", "clvml.datasets.synthetic"},
            "clvml.explain.drivers": {"clvml.evaluation.plots"}}
    assert _breaches(fake) == ["clvml.data.loading imports clvml.scoring.job",
                               "clvml.explain.drivers imports clvml.evaluation.plots"]


def test_only_infrastructure_lies_flat_in_the_package():
    flat = {p.stem for p in ROOT.glob("*.py")} - {"__init__"}
    assert flat <= {"_version", "allocator", "cli", "console", "engine", "errors", "io", "jit", "labels", "plotting", "tracking"}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports_on_its_own(module):
    importlib.import_module(module)


def test_the_public_api_is_lazy_and_complete():
    """``import clvml`` loads no heavy dependency; every name in ``__all__`` resolves (issue 28.4)."""
    import subprocess
    import sys

    code = ("import sys, clvml; heavy = [m for m in ('lightgbm', 'mlflow', 'shap', 'optuna', 'scipy', "
            "'sklearn', 'ibis', 'duckdb', 'pandas', 'matplotlib') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert set(clvml.__all__) == {"__version__", *clvml._WHERE}
    for name in clvml.__all__:
        assert getattr(clvml, name) is not None
    assert clvml.ChurnModel.__module__ == "clvml.modeling.churn"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        clvml.nope  # noqa: B018
