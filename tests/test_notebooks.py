"""The notebooks are committed with their outputs, run top to bottom on a fresh kernel, and a fresh run
prints what the committed notebook shows; the prose of 02 states the ranking its own output shows.

Re-execute them after a change with ``make notebooks`` (``python -m tests.nbrun``).
"""

from __future__ import annotations

import base64
import copy
import functools
import io
import re
import tempfile
from pathlib import Path

import matplotlib.image
import nbformat
import pytest

from tests.nbrun import KERNELSPEC, NOTEBOOKS, execute, text_outputs

NAMES = ["01_quickstart.ipynb", "02_drivers_of_repurchase.ipynb", "03_cdnow_btyd_vs_lightgbm.ipynb",
         "04_retention_experiment.ipynb", "05_monitoring.ipynb"]
MAX_FILE_KIB = 400  # per notebook, images included
MAX_IMAGE_KIB = 80


@functools.cache
def fresh(name: str) -> nbformat.NotebookNode:
    """One fresh execution per notebook and test process (shared by the tests below)."""
    with tempfile.TemporaryDirectory() as tmp:
        return execute(Path(__file__).parents[1] / "notebooks" / name, Path(tmp))


def committed(name: str) -> nbformat.NotebookNode:
    return nbformat.read(Path(__file__).parents[1] / "notebooks" / name, as_version=4)


def code_cells(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def images(cell) -> list[bytes]:
    return [base64.b64decode(o.data["image/png"]) for o in cell.outputs if "image/png" in o.get("data", {})]


def test_notebooks_are_committed_with_their_outputs():
    assert [p.name for p in NOTEBOOKS] == NAMES
    for name in NAMES:
        nb = committed(name)
        path = Path(__file__).parents[1] / "notebooks" / name
        assert path.stat().st_size < MAX_FILE_KIB * 1024, f"{name}: {path.stat().st_size / 1024:.0f} KiB"
        assert nb.metadata.kernelspec == KERNELSPEC, f"{name}: kernelspec"
        cells = code_cells(nb)
        assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1)), \
            f"{name}: not executed top to bottom in one run (make notebooks)"
        assert sum(bool(c.outputs) for c in cells) >= len(cells) - 1, f"{name}: outputs missing"
        for cell in cells:
            assert "execution" not in cell.metadata, f"{name}: execution timings are stored"
            # public API only: `import clvml`, no submodule imports
            assert not any(line.strip().startswith(("from clvml.", "import clvml."))
                           for line in cell.source.splitlines()), f"{name}: use the public API"
            for out in cell.outputs:
                assert out.output_type != "error", f"{name}: {out.ename}"
                # no warnings or progress noise shown to a reader
                assert not (out.output_type == "stream" and out.name == "stderr"), f"{name}: {out.text[:200]}"
                # a figure is shown as an image, never only as its repr (`<Figure size ...>`, `Text(...)`)
                data = out.get("data", {})
                text = "" if "image/png" in data else data.get("text/plain", "")
                assert not re.match(r"^(<Figure|<Axes|Text\(|\[<matplotlib)", text), f"{name}: {text}"
            for png in images(cell):
                assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < MAX_IMAGE_KIB * 1024, name
                img = matplotlib.image.imread(io.BytesIO(png), format="png")
                assert 200 < img.shape[1] <= 1000 and 150 < img.shape[0] <= 700, (name, img.shape)
                assert img.std() > 0.05  # something is drawn
    tables = {n: sum("text/html" in o.get("data", {}) for c in code_cells(committed(n)) for o in c.outputs)
              for n in NAMES}
    plots = {n: sum(len(images(c)) for c in code_cells(committed(n))) for n in NAMES}
    assert all(tables.values()), tables
    assert plots["02_drivers_of_repurchase.ipynb"] == 1 and plots["04_retention_experiment.ipynb"] == 2, plots


@pytest.mark.parametrize("name", NAMES, ids=lambda n: n[:2])
def test_notebook_runs_top_to_bottom_and_prints_what_is_committed(name):
    nb, old = fresh(name), committed(name)
    errors = [o for c in code_cells(nb) for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{errors[0].ename}: {errors[0].evalue}"
    assert all(c.execution_count for c in code_cells(nb))
    assert [c.source for c in nb.cells] == [c.source for c in old.cells]
    for i, (new, was) in enumerate(zip(code_cells(nb), code_cells(old), strict=True), start=1):
        # every table and printed number, as text; images: present where they were
        assert text_outputs(new) == text_outputs(was), \
            f"{name}, code cell {i}: the output changed; re-execute with `make notebooks` and check the prose"
        assert len(images(new)) == len(images(was)), f"{name}, code cell {i}"


# ---- 02: every rank the prose cites is the executed one ------------------------------------------

CLAIM = re.compile(r"`(\w+)`\s+\(([^)]*#\d+[^)]*)\)")
RANK = re.compile(r"#(\d+)( when active| overall)?")


def parse_frame(text: str) -> dict[str, dict[str, str]]:
    """column -> index -> value of a DataFrame's plain-text form (wrapped column blocks merged)."""
    out: dict[str, dict[str, str]] = {}
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        columns = [c for c in lines[0].split() if c != "\\"]
        for line in lines[2:]:  # lines[1] holds the index name
            index, *values = line.split()
            for col, v in zip(columns, [v for v in values if v != "\\"], strict=True):
                out.setdefault(col, {})[index] = v
    return out


def executed_rankings(nb) -> dict[str, dict[str, int]]:
    """``rank`` and ``rank_when_active`` of every feature shown in the notebook's tables."""
    ranks: dict[str, dict[str, int]] = {"rank": {}, "rank_when_active": {}}
    for cell in code_cells(nb):
        for out in cell.outputs:
            text = out.get("data", {}).get("text/plain", "")
            if set(ranks) & set(text.split("\n", 1)[0].split()):
                for col, values in parse_frame(text).items():
                    if col in ranks:
                        ranks[col].update({k: int(v) for k, v in values.items()})
    return ranks


def rank_claims(nb) -> list[tuple[str, str, int]]:
    """(feature, "rank" | "rank_when_active", rank) for every "`feature` (#k[ when active|overall])" in
    the prose."""
    claims = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for feature, inside in CLAIM.findall(cell.source):
                for k, kind in RANK.findall(inside):
                    claims.append((feature, "rank_when_active" if kind == " when active" else "rank", int(k)))
    return claims


def wrong_claims(nb) -> list[str]:
    ranks = executed_rankings(nb)
    return [f"`{f}` is cited as {col} {k}, executed: {ranks[col].get(f, 'not shown')}"
            for f, col, k in rank_claims(nb) if ranks[col].get(f) != k]


def test_02_prose_cites_the_executed_ranking():
    nb = fresh("02_drivers_of_repurchase.ipynb")
    claims = rank_claims(nb)
    assert len(claims) >= 12 and {c[1] for c in claims} == {"rank", "rank_when_active"}, claims
    assert wrong_claims(nb) == []
    ranks = executed_rankings(nb)
    # the three silence features lead, as the prose says; the check above would catch a reordering ...
    assert sorted(ranks["rank"], key=ranks["rank"].get)[:3] == [
        "act_days_since_activity", "act_closed", "tx_recency_days"]
    # ... and does: a wrong rank in the prose is reported
    nb = copy.deepcopy(nb)
    prose = next(c for c in nb.cells if c.source.startswith("**Reading it.**"))
    prose.source = prose.source.replace("`tx_ipt_mean` (#10)", "`tx_ipt_mean` (#4)")
    assert wrong_claims(nb) == ["`tx_ipt_mean` is cited as rank 4, executed: 10"]


def test_02_calls_shap_rankings_associations_and_points_to_the_experiment_tools():
    nb = committed("02_drivers_of_repurchase.ipynb")
    prose = " ".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "causal story" not in prose and "come next" not in prose
    assert "**Associations, not causes.**" in prose and "does not say what would happen" in prose
    assert "`clvml.evaluate_experiment`" in prose and "`clvml.UpliftModel`" in prose and "notebook 04" in prose
    code = " ".join(c.source for c in code_cells(nb))
    assert "clvml.global_importance(c_churn, specs, te[cols])" in code  # with X: the "when active" ranking
    shown = " ".join(text_outputs(c) for c in code_cells(nb))
    assert "mean_abs_shap_when_active" in shown and "active_share" in shown


def test_04_has_numbered_sections_and_its_legend_outside_the_axes():
    nb = committed("04_retention_experiment.ipynb")
    heads = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
             if line.startswith("## ")]
    assert [h.split()[1] for h in heads] == ["1.", "2.", "3."], heads
    forest = next(c for c in code_cells(nb) if "errorbar" in c.source)
    assert "fig.legend(" in forest.source and "axes[0].legend()" not in forest.source
    assert "95% confidence interval" in forest.source and "treatment − control" in forest.source


def test_01_prints_labelled_metrics():
    nb = committed("01_quickstart.ipynb")
    printed = " ".join(text_outputs(c) for c in code_cells(nb))
    assert re.search(r"churn ROC AUC:\s+0\.\d{3}\n", printed)
    assert re.search(r"value normalized Gini \(90 days\):\s+0\.\d{3}\n", printed)
    assert not re.search(r"\n0\.\d{8,} 0\.\d{8,}", printed)  # no bare pair of floats
