"""Execute the example notebooks on a fresh kernel and store them with their outputs.

``python -m tests.nbrun`` (``make notebooks``) re-executes every notebook under ``notebooks/`` and
writes it back with its outputs, so that a reader on a code host sees the tables and plots without
running anything. tests/test_notebooks.py executes them the same way and checks that the committed text
outputs are those of a fresh run.

What would change from one run to the next without the code changing is left out: execution timings,
the kernel's Python version, and LightGBM's thread count (one thread, as in CI, so that every fit is
bit-for-bit the same).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat import NotebookNode

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
LANGUAGE_INFO = {"name": "python", "pygments_lexer": "ipython3"}


def execute(path: Path, workdir: Path, timeout: int = 600) -> NotebookNode:
    """The notebook at ``path`` executed top to bottom on a fresh ``python3`` kernel whose working
    directory is ``workdir``, with volatile metadata removed (see :func:`normalize`)."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    os.environ.setdefault("CLVML_THREADS", "1")  # inherited by the kernel
    NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(workdir)}}).execute()
    return normalize(nb)


def normalize(nb: NotebookNode) -> NotebookNode:
    """Drop what differs between two executions of unchanged code: per-cell timings, the kernel's
    version details; the kernelspec is always present."""
    nb.metadata = nbformat.from_dict({"kernelspec": KERNELSPEC, "language_info": LANGUAGE_INFO})
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    return nb


def text_outputs(cell: NotebookNode) -> str:
    """A code cell's printed text and the plain-text form of its results and displays, in order
    (images are left out: they are checked for presence, not compared byte for byte)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(f"[{out.name}] {out.text}")
        elif out.output_type in ("execute_result", "display_data") and "text/plain" in out.data:
            if not any(k.startswith("image/") for k in out.data):  # a figure's text is its repr
                parts.append(out.data["text/plain"])
        elif out.output_type == "error":
            parts.append(f"[error] {out.ename}: {out.evalue}")
    return "\n".join(parts)


def main(names: list[str]) -> None:
    """Re-execute the notebooks whose file names start with one of ``names`` (all when none) and write them back with their outputs."""
    paths = [p for p in NOTEBOOKS if not names or any(p.name.startswith(n) for n in names)]
    for path in paths:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            nb = execute(path, Path(tmp))
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
        if errors:
            raise SystemExit(f"{path.name}: {errors[0].ename}: {errors[0].evalue}")
        nbformat.write(nb, path)
        print(f"{path.name}: executed in {time.perf_counter() - t0:.1f} s, {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main(sys.argv[1:])
