"""The documentation: the site builds in strict mode, and every Python example in it runs.

* ``mkdocs build --strict`` into a temporary folder: a broken link, a missing anchor, an unresolved
  cross-reference or a docstring mkdocstrings cannot render fails the test; the built site must hold an
  API entry for every public name of ``clvml.__all__``, a section for every CLI command and config key,
  and every notebook of ``notebooks/``.
* The block runner: every fenced ``python`` block of README.md and docs/**/*.md runs, in order, per
  file in a fresh namespace and a temporary working folder. A ``text`` block that follows a Python block
  directly is its expected output and must equal what the block printed. A Python block with a
  ``title="…"`` (rendered as a caption saying why) is an excerpt and is not run: keep those rare.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<info>[^`\n]*)$")


@dataclass
class Block:
    lang: str
    info: str
    code: str
    line: int  # 1-based line of the opening fence
    end: int  # 1-based line of the closing fence


def code_blocks(text: str) -> list[Block]:
    """Fenced code blocks of a Markdown text (indented fences in list items included, dedented)."""
    lines = text.split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m["indent"]), m["fence"], m["info"].strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not re.match(rf"^ {{0,{indent + 3}}}{re.escape(fence[0]) * len(fence)}\s*$",
                                              lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        if j == len(lines):
            raise AssertionError(f"unclosed code fence opened on line {i + 1}")
        blocks.append(Block(info.split()[0].lower() if info else "", info, "\n".join(body), i + 1, j + 1))
        i = j + 1
    return blocks


def runnable(block: Block) -> bool:
    return block.lang in ("python", "py") and "title=" not in block.info


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def files_with_examples() -> list[Path]:
    return [p for p in doc_files() if any(runnable(b) for b in code_blocks(p.read_text()))]


def test_block_parser() -> None:
    text = ("x\n```python\na = 1\n```\n\n```text\n1\n```\n- item\n\n    ```python title=\"excerpt\"\n"
            "    b = undefined\n    ```\n````md\n```python\nnot a block\n```\n````\n")
    blocks = code_blocks(text)
    assert [(b.lang, b.code) for b in blocks] == [
        ("python", "a = 1"), ("text", "1"), ("python", "b = undefined"), ("md", "```python\nnot a block\n```")]
    assert [runnable(b) for b in blocks] == [True, False, False, False]


def test_readme_has_a_runnable_example() -> None:
    readme = code_blocks((ROOT / "README.md").read_text())
    assert any(runnable(b) for b in readme), "README.md: its Python example must run as written"
    assert sum(runnable(b) for p in doc_files() for b in code_blocks(p.read_text())) >= 5


def test_readme_links_resolve() -> None:
    """README.md is read on a code host, outside the site: its relative links must name existing files."""
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [u for u in links if "://" not in u]
    assert local, "README.md links to no page of docs/"
    missing = [u for u in local if not (ROOT / u).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


@pytest.fixture
def own_custom_features():
    """A page's examples may register custom features (docs/custom-features.md): they are process-wide,
    so remove them afterwards, or later pages and tests in this process would build them too."""
    from clvml.features.custom import registered, unregister_feature

    before = {f.name for f in registered()}
    yield
    for f in registered():
        if f.name not in before:
            unregister_feature(f.name)


@pytest.mark.parametrize("path", files_with_examples(), ids=lambda p: str(p.relative_to(ROOT)))
def test_code_examples_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           own_custom_features: None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    blocks = code_blocks(path.read_text())
    lines = path.read_text().split("\n")
    namespace: dict = {"__name__": "__main__"}
    rel = path.relative_to(ROOT)
    for k, block in enumerate(blocks):
        if not runnable(block):
            continue
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(block.code, f"{rel}:{block.line}", "exec"), namespace)  # noqa: S102
        except Exception as exc:
            raise AssertionError(f"{rel}, the Python block on line {block.line} failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
        nxt = blocks[k + 1] if k + 1 < len(blocks) else None
        between = lines[block.end:nxt.line - 1] if nxt else []
        if nxt is not None and nxt.lang == "text" and all(not s.strip() for s in between):
            assert out.getvalue().rstrip() == nxt.code.rstrip(), (
                f"{rel}: the output shown on line {nxt.line} is not what the block on line {block.line} "
                f"prints:\n{out.getvalue()}")


def test_docs_build_strict(tmp_path: Path) -> None:
    """``mkdocs build --strict``: every page, generated reference and notebook; no warning."""
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "NO_MKDOCS_2_WARNING": "1"}  # Material's end-of-life banner
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"mkdocs build --strict failed:\n{res.stderr[-6000:]}"
    assert "WARNING -" not in res.stderr, res.stderr

    import clvml

    api = (site / "reference" / "api.html").read_text()
    where = {name: module for module, names in clvml._EXPORTS.items() for name in names}
    missing = [n for n in clvml.__all__ if n != "__version__" and f'id="{where.get(n, "?")}.{n}"' not in api]
    assert not missing, f"public names without an API reference entry: {missing}"

    import typer

    from clvml.cli import app

    cli = (site / "reference" / "cli.html").read_text()
    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="clvml")
    for name in root.list_commands(ctx):
        cmd = root.get_command(ctx, name)
        subs = cmd.list_commands(ctx) if hasattr(cmd, "list_commands") else [""]
        for sub in subs:
            assert f"clvml {name} {sub}".strip() in cli, f"CLI reference lacks `clvml {name} {sub}`"

    from clvml.config import Config

    config = (site / "reference" / "config.html").read_text()
    for section, field in Config.model_fields.items():
        assert f"<code>{section}</code>" in config, f"config reference lacks {section}"
        sub = getattr(field.annotation, "model_fields", {})
        for key in sub:
            assert f"<code>{section}.{key}</code>" in config, f"config reference lacks {section}.{key}"

    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        page = site / "notebooks" / f"{nb.stem}.html"
        assert page.exists(), f"notebook {nb.name} is not in the example gallery"
