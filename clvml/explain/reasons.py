"""Per-customer reason codes: the features that push one customer's score most, with a sentence from
the feature catalog for each (the texts account managers read)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pandas as pd

import clvml.features.builder  # noqa: F401 - registers every family (the templates of older bundles' specs)
from clvml.explain.drivers import BIAS
from clvml.features.registry import FeatureSpec
from clvml.jit import compiled


def reason_codes(contrib: pd.DataFrame, X: pd.DataFrame, specs: Sequence[FeatureSpec], k: int = 3,
                 direction: int = 1, values: bool = True) -> pd.DataFrame:
    """For each row, the ``k`` features pushing the score most in ``direction`` (+1: up, e.g. churn
    risk; -1: down, e.g. value), as ``reason_i`` (feature), ``reason_i_shap``, ``reason_i_value`` (left
    out when ``values`` is False) and ``reason_i_text`` (a sentence from the feature catalog). Fewer
    than ``k`` when fewer features push that way (the rest are null)."""
    by_name = {s.name: s for s in specs}
    keep = np.flatnonzero(contrib.columns != BIAS)
    full = contrib.to_numpy()  # one block: a view
    # without the bias column; a view when it is the last column (as contributions() returns it)
    C = full[:, :keep.size] if np.array_equal(keep, np.arange(keep.size)) else full[:, keep]
    names = np.array(contrib.columns[keep], dtype=object)
    # only features pushing some row this way can be a reason: the others (e.g. unused by the trees,
    # whose SHAP values are all 0) are left out of the search, which keeps the order of the rest
    extreme = C.max(axis=0) if direction == 1 else C.min(axis=0) * direction
    cand = np.flatnonzero(~(extreme <= 0))  # (a NaN stays a candidate, as argmax would find it)
    n, kk = len(contrib), min(k, cand.size)
    rows = np.arange(n)
    if np.isnan(extreme[cand]).any():  # a NaN ranks first, as argmax finds it: the general search
        order = _top_k_argmax(C, cand, kk, direction)
        pushes = np.stack([C[rows, order[:, i]] * direction > 0 for i in range(kk)], axis=1) if kk else None
    else:
        order, pushes = _top_k_positive(C, cand, kk, direction)
    Xv = X.reset_index(drop=True)
    out: dict[str, np.ndarray] = {}
    for i in range(k):
        name = np.full(n, None, dtype=object)
        shap = np.full(n, np.nan)
        value = np.full(n, None, dtype=object)
        text = np.full(n, None, dtype=object)
        if i < kk:
            j = order[:, i]
            ok = pushes[:, i]  # fewer than k features push this way: the rest stay null
            name[ok] = names[j[ok]]
            shap[ok] = C[rows[ok], j[ok]]
            idx = np.flatnonzero(ok)
            idx = idx[np.argsort(j[idx], kind="stable")]  # rows grouped by their i-th feature
            feats, starts = np.unique(j[idx], return_index=True)
            groups = np.split(idx, starts[1:]) if idx.size else []  # no row pushed this way: none
            for jj, at in zip(feats, groups, strict=True):
                feat = names[jj]
                codes, uniq = pd.factorize(Xv[feat].iloc[at], use_na_sentinel=True)
                spec = by_name.get(feat)
                said = np.array([*_TEXTS.render(spec, feat, uniq), _TEXTS.render(spec, feat, [None])[0]],
                                dtype=object)
                if values:
                    shown = np.array([str(u) for u in uniq] + [None], dtype=object)
                    value[at] = shown[codes]  # code -1 (missing) takes the last entry
                text[at] = said[codes]
        p = f"reason_{i + 1}"
        out.update({p: name, f"{p}_shap": shap, **({f"{p}_value": value} if values else {}), f"{p}_text": text})
    return pd.DataFrame(out, index=contrib.index)


def _top_k_argmax(C: np.ndarray, cand: np.ndarray, k: int, direction: int) -> np.ndarray:
    """Per row, the columns of ``C`` (among ``cand``) with the ``k`` largest values of ``C * direction``,
    largest first, ties by column order: ``k`` passes of argmax (which returns the first maximum, a NaN
    before any number), each knocking out the column it found. (rows, k) column indices."""
    rows = np.arange(C.shape[0])
    work = C[:, cand] if direction == 1 else C[:, cand] * direction  # (a copy: knocked out below)
    order = np.empty((C.shape[0], k), dtype=np.int64)
    for i in range(k):
        order[:, i] = work.argmax(axis=1)
        work[rows, order[:, i]] = -np.inf
    return cand[order]  # back to C's columns


def _top_k_positive(C: np.ndarray, cand: np.ndarray, k: int, direction: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_top_k_argmax` where it matters, when ``C`` holds no NaN: per row, the columns with a
    positive ``C * direction``, the ``k`` largest, largest first, ties by column order; and (rows, k)
    whether each place holds one (a row with fewer than ``k`` positive values: the rest hold none).

    One compiled pass over the candidate columns (each one contiguous when ``C`` is column-major, as
    :func:`~clvml.explain.drivers.contributions` returns it), keeping a running top ``k`` per row: a
    column enters the list only above an entry (strictly, so an equal value of an earlier column stays
    ahead), instead of ``k`` argmax passes over a copy of the whole matrix.
    """
    n = C.shape[0]
    if k == 0:
        return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0), dtype=bool)
    best = np.zeros((k, n))  # the running top values (0: nothing positive yet), largest first
    order = np.full((k, n), cand[0] if cand.size else 0, dtype=np.int64)
    _top_k_kernel(C, cand.astype(np.int64), float(direction), best, order)
    return np.ascontiguousarray(order.T), np.ascontiguousarray((best > 0).T)


@compiled
def _top_k_kernel(C, cand, direction, best, order):  # pragma: no cover (compiled)
    """The running top k of :func:`_top_k_positive`, row by row: ``best``/``order`` (k, rows) hold the
    largest values so far (0: none) and their columns; a column enters below every entry it does not
    beat strictly."""
    k = best.shape[0]
    n = C.shape[0]
    for jj in range(cand.size):
        j = cand[jj]
        for i in range(n):
            x = C[i, j] * direction
            if x > best[k - 1, i]:
                q = k - 1
                while q > 0 and x > best[q - 1, i]:
                    best[q, i] = best[q - 1, i]
                    order[q, i] = order[q - 1, i]
                    q -= 1
                best[q, i] = x
                order[q, i] = j


class _Texts:
    """The catalog sentences already written, per (spec, value): a scoring run renders each distinct
    value of a feature once across its chunks instead of once per chunk. At most ``limit`` sentences
    are kept (then the oldest feature's are dropped); zero is rendered each time (``-0.0`` equals
    ``0.0`` but an old-style template writes it as "-0")."""

    def __init__(self, limit: int = 200_000):
        self.limit, self.size = limit, 0
        self.by_spec: dict[object, dict[tuple[type, object], str]] = {}
        self.lock = threading.Lock()

    def render(self, spec: FeatureSpec | None, feat: str, values) -> list[str]:
        """The sentence of each of ``values`` for the feature ``feat`` (described by ``spec``)."""
        if spec is None:
            return [f"{feat} = {u}" for u in values]
        with self.lock:
            try:
                memo = self.by_spec.setdefault(spec, {})
            except TypeError:  # a spec with an unhashable field: rendered every time
                return [spec.explain(u) for u in values]
            out = []
            for u in values:
                key = (type(u), u) if _cacheable(u) else None
                text = None if key is None else memo.get(key)
                if text is None:
                    text = spec.explain(u)
                    if key is not None:
                        memo[key] = text
                        self.size += 1
                out.append(text)
            while self.size > self.limit and self.by_spec:
                self.size -= len(self.by_spec.pop(next(iter(self.by_spec))))
            return out


def _cacheable(u: object) -> bool:
    """None, or a value equal to itself (not NaN) and not zero."""
    try:
        return u is None or bool(u == u and u != 0)
    except (TypeError, ValueError):  # pd.NA and the like
        return False


_TEXTS = _Texts()
