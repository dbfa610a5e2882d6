"""Benchmark: BG/NBD and Gamma-Gamma fit times on the CDNOW sample (and a 100x replicated copy)."""

from __future__ import annotations

import time

import pandas as pd

from clvml.datasets import load_cdnow_sample
from clvml.modeling.btyd import BGNBD, GammaGamma, rfm_summary


def main() -> None:
    s = rfm_summary(load_cdnow_sample(), "1997-09-30", unit_days=7)
    for k in (1, 100):
        r = pd.concat([s] * k, ignore_index=True)
        t0 = time.perf_counter()
        BGNBD(unit_days=7).fit(r["frequency"], r["recency"], r["T"])
        t1 = time.perf_counter()
        GammaGamma().fit(r["frequency"], r["monetary_value"])
        t2 = time.perf_counter()
        print(f"{len(r):>8,} customers: BG/NBD {t1 - t0:.3f} s, Gamma-Gamma {t2 - t1:.3f} s")


if __name__ == "__main__":
    main()
