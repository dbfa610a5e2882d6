"""Predictions from raw scores computed elsewhere: tree SHAP finds every row's leaf in every tree on its
way (:func:`clvml.explain.treeshap.tree_shap_and_raw`), so when the scoring job explains a chunk it
also has each booster's raw score, to the bit of LightGBM's ``predict(raw_score=True)``. Asking
LightGBM again would walk the same trees a second time: at 1M customers and 153 features that walk
(over a column-major matrix, row by row) costs about as much CPU as the explanations themselves.

:func:`from_raw_score` applies LightGBM's output transform of an objective, with the same arithmetic
and the same ``exp`` (the C library's: NumPy's vectorised ``exp`` differs from it in the last bit for
about one value in ten). :func:`clvml.modeling.lgbm.predict_matrix` uses a known raw score only after
checking a sample of rows against LightGBM's own prediction, bit for bit.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from clvml.jit import compiled


class RawScore(NamedTuple):
    """A booster's raw score of each row of a model matrix and its objective string
    (``Booster.dump_model()["objective"]``, e.g. ``"binary sigmoid:1"``)."""

    values: np.ndarray
    objective: str


#: raw scores known for a model matrix, by the estimator (the object passed to ``predict_matrix``)
RawScores = dict[Any, RawScore]


@compiled
def _exp(raw):  # pragma: no cover (compiled)
    out = np.empty(raw.size)
    for i in range(raw.size):
        out[i] = math.exp(raw[i])
    return out


@compiled
def _sigmoid(raw, sigmoid):  # pragma: no cover (compiled)
    out = np.empty(raw.size)
    for i in range(raw.size):  # BinaryLogloss::ConvertOutput: 1.0f / (1.0f + std::exp(-sigmoid_ * x))
        out[i] = 1.0 / (1.0 + math.exp(-sigmoid * raw[i]))
    return out


def from_raw_score(raw: np.ndarray, objective: str) -> np.ndarray | None:
    """LightGBM's prediction for the raw scores ``raw`` of a booster with objective string ``objective``:
    the sigmoid for ``binary``, ``exp`` for ``poisson``, ``gamma`` and ``tweedie``, the raw score for
    ``regression``. None for any other objective (and when Numba would vectorise ``exp`` with Intel's
    SVML, whose results differ from the C library's): the caller then asks LightGBM."""
    import numba

    tokens = objective.split()
    if not tokens or getattr(numba.config, "USING_SVML", False):
        return None
    raw = np.ascontiguousarray(raw, dtype=np.float64)
    name, options = tokens[0], dict(t.split(":", 1) for t in tokens[1:] if ":" in t)
    if name == "binary":
        return _sigmoid(raw, float(options.get("sigmoid", 1.0)))
    if name in ("poisson", "gamma", "tweedie"):
        return _exp(raw)
    if name == "regression" and "sqrt" not in tokens:
        return raw.copy()
    return None
