"""Run the real ``clvml`` command line in a subprocess (stdout/stderr are pipes, as under cron)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: this checkout first on the path, no terminal size hints."""
    e = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TERM")}
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    e.update(extra)
    return e


def clvml(*args: str, cwd: str | Path | None = None, prelude: str = "", timeout: float = 600,
          **extra_env: str) -> subprocess.CompletedProcess:
    """``clvml ARGS`` through :func:`clvml.cli.main`; ``prelude`` is Python run first (e.g. to hide a
    module from the import system)."""
    code = f"{prelude}\nfrom clvml.cli import main\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=cwd, env=env(**extra_env), timeout=timeout)
