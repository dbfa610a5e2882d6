"""Population stability of features and scores against the training snapshot.

At training, :meth:`DriftReference.fit` bins every feature and score of the latest training cut-off
(deciles for numbers, levels for categories, plus a bin for missing values) and stores the shares. At
scoring, :meth:`DriftReference.counts` counts a chunk into the same bins; counts add up over chunks, and
:meth:`DriftReference.psi` turns them into the population stability index per column::

    PSI = Σ_bins (actual − expected) · ln(actual / expected)

Rule of thumb: below 0.1 stable, 0.1–0.25 a shift worth a look, above 0.25 a real change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: shares below this are floored, so an empty bin does not make the index infinite
EPS = 1e-4


@dataclass
class _Bins:
    kind: str  # "num" or "cat"
    edges: np.ndarray | None = None  # inner edges for numbers: bin i holds edges[i-1] <= x < edges[i]
    levels: list[str] = field(default_factory=list)  # categories; one more bin for anything else

    def n_bins(self) -> int:
        inner = len(self.edges) + 1 if self.kind == "num" else len(self.levels) + 1
        return inner + 1  # + missing

    def count(self, s: pd.Series) -> np.ndarray:
        out = np.zeros(self.n_bins(), dtype=np.int64)
        if self.kind == "num":
            v = pd.to_numeric(s, errors="coerce").to_numpy(float)
            miss = np.isnan(v)
            idx = np.searchsorted(self.edges, v[~miss], side="right")
        else:
            miss = s.isna().to_numpy()
            codes = pd.Categorical(s[~miss].astype(str), categories=self.levels).codes.astype(np.int64)
            idx = np.where(codes < 0, len(self.levels), codes)  # unseen level: the "other" bin
        np.add.at(out, idx, 1)
        out[-1] = int(miss.sum())
        return out


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two count (or share) vectors over the same bins."""
    e = np.asarray(expected, float)
    a = np.asarray(actual, float)
    if e.sum() == 0 or a.sum() == 0:
        return float("nan")
    e = np.maximum(e / e.sum(), EPS)
    a = np.maximum(a / a.sum(), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass
class DriftReference:
    """Binned distribution of each column of the training snapshot."""

    bins: dict[str, _Bins]
    expected: dict[str, np.ndarray]
    rows: int

    @classmethod
    def fit(cls, frame: pd.DataFrame, n_bins: int = 10) -> DriftReference:
        """Learn bins and shares from the reference ``frame`` (features and score columns)."""
        bins: dict[str, _Bins] = {}
        for c in frame.columns:
            s = frame[c]
            if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == object or pd.api.types.is_string_dtype(s):
                levels = sorted(str(x) for x in s.dropna().unique())[:50]
                bins[c] = _Bins("cat", levels=levels)
            else:
                v = pd.to_numeric(s, errors="coerce").dropna().to_numpy(float)
                q = np.quantile(v, np.arange(1, n_bins) / n_bins) if len(v) else np.array([])
                bins[c] = _Bins("num", edges=np.unique(q))
        ref = cls(bins, {}, len(frame))
        ref.expected = ref.counts(frame)
        return ref

    def counts(self, frame: pd.DataFrame | Mapping[str, pd.Series]) -> dict[str, np.ndarray]:
        """Bin counts of ``frame`` (a DataFrame, or columns by name) for every reference column it has."""
        return {c: b.count(frame[c]) for c, b in self.bins.items() if c in frame}

    def psi(self, counts: dict[str, np.ndarray]) -> pd.Series:
        """PSI per column, largest first."""
        out = pd.Series({c: psi(self.expected[c], n) for c, n in counts.items()}, dtype=float)
        return out.sort_values(ascending=False, kind="mergesort")


def add_counts(total: dict[str, np.ndarray] | None, more: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sum two count dictionaries (for chunked scoring)."""
    if total is None:
        return {k: v.copy() for k, v in more.items()}
    for k, v in more.items():
        total[k] = total[k] + v
    return total
