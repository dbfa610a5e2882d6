"""Bundled data: the demo config and the CDNOW sample (package data: present in the wheel too)."""

from __future__ import annotations

from pathlib import Path


def demo_config_path() -> Path:
    """The demo config shipped inside the package (``clvml/datasets/demo.yaml``; ``configs/demo.yaml``
    of the source tree is the same file). Its relative paths resolve against the working directory, so
    ``clvml demo`` writes ``data/``, ``outputs/`` and ``models/`` where it is run, never into the
    installed package."""
    path = Path(__file__).resolve().with_name("demo.yaml")
    if not path.exists():
        from clvml.errors import ConfigError

        raise ConfigError([f"default demo config {path} not found (a broken install?): pass --config"])
    return path


def load_cdnow_sample() -> pd.DataFrame:  # noqa: F821
    """The CDNOW 1/10 sample (Fader, Hardie & Lee 2005): 2,357 customers, 6,919 purchase rows.

    Columns: ``customer_id`` (text), ``cohort``, ``ts`` (purchase date, midnight), ``quantity`` (CDs),
    ``amount`` (dollars), ``order_id`` (the line number in the file: 9 pairs of lines are identical yet
    are separate purchases, so the id keeps them distinct for duplicate checks).
    """
    import pandas as pd

    path = Path(__file__).with_name("CDNOW_sample.txt")
    df = pd.read_csv(path, sep=r"\s+", header=None, names=["customer_id", "cohort", "date", "quantity", "amount"],
                     dtype={"customer_id": str, "cohort": str, "date": str})
    df["ts"] = pd.to_datetime(df["date"], format="%Y%m%d")
    df["order_id"] = [f"L{i + 1}" for i in range(len(df))]
    return df[["customer_id", "cohort", "ts", "quantity", "amount", "order_id"]]
