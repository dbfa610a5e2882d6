"""What the incremental-plan tests share: a spy on which attempts ran in NumPy, and the bit comparison."""

import numpy as np
import pandas as pd

from clvml.features import query


def spy_incremental(monkeypatch) -> list[bool]:
    """Whether each incremental attempt ran in NumPy (True) or fell back to the cross join (False)."""
    return spy_results(monkeypatch, query, "aggregate_incremental")


def spy_results(monkeypatch, module, name: str) -> list[bool]:
    """Whether each call of ``module.name`` returned a result (True) or None (False)."""
    calls: list[bool] = []
    real = getattr(module, name)

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(module, name, spy)
    return calls


def assert_same_bits(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """The same columns, types, null masks and (floats) bit patterns."""
    assert list(got.columns) == list(want.columns) and len(got) == len(want)
    for c in want.columns:
        assert got[c].dtype == want[c].dtype, c
        g, w = got[c].to_numpy(), want[c].to_numpy()
        if w.dtype.kind == "f":  # the same bits, NaN where NaN (nulls are NaN here)
            assert (np.isnan(g) == np.isnan(w)).all(), c
            bits = f"int{8 * w.dtype.itemsize}"  # float32 (whole numbers) or float64
            assert (g.view(bits)[~np.isnan(g)] == w.view(bits)[~np.isnan(w)]).all(), c
        else:
            assert got[c].isna().equals(want[c].isna()), c
            pd.testing.assert_series_equal(got[c], want[c], check_exact=True, obj=c)
