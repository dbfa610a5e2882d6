"""Bundled data: the demo config and (later) the CDNOW sample."""

from __future__ import annotations

from pathlib import Path


def demo_config_path() -> Path:
    """``configs/demo.yaml`` of the source tree."""
    path = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    if not path.exists():
        from clvml.errors import ConfigError

        raise ConfigError([f"default demo config {path} not found: pass --config"])
    return path
