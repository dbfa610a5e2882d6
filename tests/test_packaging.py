"""The wheel: what `pip install clvml` gets must run without the source tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.clirun import ROOT


def test_packaged_demo_config_is_the_repository_one():
    assert (ROOT / "clvml" / "datasets" / "demo.yaml").read_bytes() == (ROOT / "configs" / "demo.yaml").read_bytes()


def _build_wheel(src: Path, dist: Path) -> Path:
    """Build offline: uv (installed with the dev environment; its cache holds setuptools and wheel from
    the install), else pip without build isolation."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv:
        cmd = [uv, "build", "--wheel", "--offline", "-o", str(dist), str(src)]
    else:
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
               "-w", str(dist), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = dist.glob("clvml-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_installs_and_validates_the_packaged_demo_config_from_an_empty_folder(tmp_path):
    src = tmp_path / "src"  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT / "clvml", src / "clvml", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    wheel = _build_wheel(src, tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"clvml/datasets/demo.yaml", "clvml/py.typed", "clvml/datasets/CDNOW_sample.txt",
            "clvml-0.1.0.dist-info/licenses/LICENSE"} <= names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # install the wheel alone (no index, no network); the dependencies come from this environment's
    # site-packages, appended after the new venv's own (so clvml is the wheel's, not this checkout)
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
                           "--quiet", str(wheel)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "empty"
    work.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "MLFLOW_ENABLE_ASYNC_LOGGING": "false"}
    where = subprocess.run([str(py), "-c", "import clvml.datasets as d; print(d.demo_config_path())"],
                           capture_output=True, text=True, cwd=work, env=env, timeout=300)
    demo = Path(where.stdout.strip())
    assert demo == site / "clvml" / "datasets" / "demo.yaml", where.stderr

    def installed() -> set[Path]:
        return {p for p in site.rglob("*") if "__pycache__" not in p.parts}

    before = installed()
    run = subprocess.run([str(venv / "bin" / "clvml"), "validate", str(demo)], capture_output=True, text=True,
                         cwd=work, env=env, timeout=1200)
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines()[-1] == "config and data are valid"
    assert (work / "data" / "demo" / "transactions.parquet").is_file()  # written where it ran...
    assert installed() == before  # ...and nothing inside the installed package
