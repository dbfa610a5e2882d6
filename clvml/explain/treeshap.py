"""Exact tree SHAP for many rows, memoised by decision pattern.

The path-dependent SHAP values one tree gives a row depend only on which way the row goes at each of
the tree's split nodes. Rows that agree at every node get identical values, and a shallow tree sees few
distinct patterns: a depth-4 tree has at most 15 splits, and 100k customers show a few hundred
patterns per tree. So, per tree: evaluate every split for every row (vectorised comparisons), pack the
decisions into an integer code, let LightGBM's own ``pred_contrib`` compute SHAP values once per
distinct code (on one representative row, for that tree alone), and scatter them back. The sum over
trees equals LightGBM's ``pred_contrib`` on all rows up to float rounding (tests check 1e-9); LightGBM
still computes every SHAP value, this module only avoids recomputing identical ones.

The split semantics follow LightGBM's ``NumericalDecision`` / ``CategoricalDecision``: a missing value
goes the node's default way when the node learned a NaN direction, and counts as 0 otherwise;
categorical splits send the listed category codes left. Trees with more than 62 splits fall back to
``pred_contrib`` on all rows.

The per-row passes (the decision codes, the distinct codes, the scatter back) are compiled with Numba
(already installed with SHAP) and release the GIL: one pass over the rows per split and per used
feature instead of several NumPy temporaries. Each SHAP value is the same sum, in the same tree order,
as a NumPy loop would form, so the values do not depend on this.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clvml.jit import compiled

MAX_SPLITS = 62  # codes are int64
#: LightGBM's ``kZeroThreshold`` (``1e-35f``: a float literal, so not quite 1e-35): missing type Zero
ZERO = float(np.float32(1e-35))
BINCOUNT_SPLITS = 20  # up to 2^20 codes (and at most 2 per row): distinct codes by a direct table, beyond by hashing

# the kinds of split the compiled pass tells apart (LightGBM's decision type and missing type)
_NUM_NONE, _NUM_ZERO, _NUM_NAN, _CAT_NAN, _CAT_OTHER = range(5)


@dataclass
class _Split:
    feature: int
    threshold: float
    categorical: np.ndarray | None  # category codes sent left
    default_left: bool
    missing: str  # "None" | "Zero" | "NaN"


@dataclass
class _Tree:
    splits: list[_Split]
    left: np.ndarray  # per split: the split index its left child is, or ~leaf for a leaf
    right: np.ndarray
    leaf_value: np.ndarray  # the leaves' outputs (a tree without splits: its one leaf)

    @property
    def features(self) -> np.ndarray:
        return np.unique([s.feature for s in self.splits]).astype(np.int64)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The splits as flat arrays for :func:`_codes`: feature, threshold, kind, default left,
        category offsets and the category codes sent left (all categorical splits, concatenated)."""
        kinds = []
        for s in self.splits:
            if s.categorical is not None:
                kinds.append(_CAT_NAN if s.missing == "NaN" else _CAT_OTHER)
            else:
                kinds.append({"NaN": _NUM_NAN, "Zero": _NUM_ZERO}.get(s.missing, _NUM_NONE))
        cats = [s.categorical if s.categorical is not None else np.zeros(0, np.int64) for s in self.splits]
        offsets = np.concatenate([[0], np.cumsum([c.size for c in cats])]).astype(np.int64)
        return (np.array([s.feature for s in self.splits], dtype=np.int64),
                np.array([s.threshold for s in self.splits], dtype=np.float64),
                np.array(kinds, dtype=np.int64), np.array([s.default_left for s in self.splits], dtype=np.bool_),
                offsets, np.concatenate([np.zeros(0, np.int64), *cats]).astype(np.int64))


class CompiledBooster:
    """The split structure of every tree of a LightGBM booster (from ``dump_model``)."""

    def __init__(self, booster):
        dump = booster.dump_model()
        self.booster = booster
        self.feature_names = list(dump["feature_names"])
        self.supported = True
        self.trees: list[_Tree] = []
        #: LightGBM's output transform (``dump_model()["objective"]``, e.g. ``"binary sigmoid:1"``)
        self.objective = str(dump.get("objective", ""))
        #: the raw score is the sum of the trees' leaf outputs: one tree per iteration, no linear leaves
        self.sums_leaves = int(dump.get("num_tree_per_iteration", 1)) == 1
        for info in dump["tree_info"]:
            splits: list[_Split] = []
            left: list[int] = []
            right: list[int] = []
            leaves: list[float] = []
            stack: list[tuple[dict, int, bool]] = [(info["tree_structure"], -1, True)]
            while stack:  # splits numbered in pre-order (node, left subtree, right subtree)
                node, parent, is_left = stack.pop()
                if "split_index" not in node:
                    if "leaf_coeff" in node:  # a linear leaf: its output depends on the row
                        self.sums_leaves = False
                    ref = ~len(leaves)
                    leaves.append(float(node["leaf_value"]))
                else:
                    cat = None
                    if node["decision_type"] == "==":
                        cat = np.array([int(c) for c in str(node["threshold"]).split("||")], dtype=np.int64)
                    ref = len(splits)
                    splits.append(_Split(int(node["split_feature"]), float(node["threshold"]) if cat is None
                                         else 0.0, cat, bool(node["default_left"]),
                                         str(node["missing_type"])))
                    left.append(0)
                    right.append(0)
                    stack.extend([(node["right_child"], ref, False), (node["left_child"], ref, True)])
                if parent >= 0:
                    (left if is_left else right)[parent] = ref
            self.trees.append(_Tree(splits, np.array(left, dtype=np.int64), np.array(right, dtype=np.int64),
                                    np.array(leaves, dtype=np.float64)))
            if len(splits) > MAX_SPLITS:
                self.supported = False
        self.memo = [_Memo() for _ in self.trees]
        self.arrays = [t.arrays() for t in self.trees] if self.supported else []


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def compile_booster(booster) -> CompiledBooster:
    """Parse (once per booster object) the trees of a LightGBM booster."""
    try:
        got = _CACHE.get(booster)
    except TypeError:
        return CompiledBooster(booster)
    if got is None:
        got = _CACHE[booster] = CompiledBooster(booster)
    return got


def feature_matrix(X: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Features as LightGBM sees them, one contiguous row per feature: (features, rows) float64;
    categoricals as their category codes, missing as NaN."""
    out = np.empty((len(names), len(X)))
    for j, c in enumerate(names):
        col = X[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = col.cat.codes.to_numpy()
            out[j] = np.where(codes < 0, np.nan, codes)
        else:
            out[j] = col.to_numpy(dtype=float, na_value=np.nan)
    return out


@compiled
def _codes(F, feature, threshold, kind, default_left, cat_offsets, cats, code):  # pragma: no cover (compiled)
    """Bit j of ``code[i]``: whether row i goes left at split j (LightGBM's decision rules)."""
    n = F.shape[1]
    code[:] = 0
    for j in range(feature.size):
        v = F[feature[j]]
        t = threshold[j]
        k = kind[j]
        dl = default_left[j]
        bit = np.int64(1) << np.int64(j)
        if k == 2:  # missing type NaN: NaN goes the default way (it compares False both ways)
            if dl:
                for i in range(n):
                    if not v[i] > t:
                        code[i] |= bit
            else:
                for i in range(n):
                    if v[i] <= t:
                        code[i] |= bit
        elif k == 0:  # missing type None: NaN counts as 0
            for i in range(n):
                x = v[i]
                if x != x:
                    x = 0.0
                if x <= t:
                    code[i] |= bit
        elif k == 1:  # missing type Zero: (near) zero and NaN go the default way
            for i in range(n):
                x = v[i]
                if x != x:
                    x = 0.0
                if abs(x) <= ZERO:
                    if dl:
                        code[i] |= bit
                elif x <= t:
                    code[i] |= bit
        else:  # categorical: the listed codes go left; NaN is code -1 (NaN missing type) or 0
            lo = cat_offsets[j]
            hi = cat_offsets[j + 1]
            for i in range(n):
                x = v[i]
                if x != x:
                    x = -1.0 if k == 3 else 0.0
                if x >= 0:
                    for c in range(lo, hi):
                        if x == cats[c]:
                            code[i] |= bit
                            break


@compiled
def _distinct(code, n_splits):  # pragma: no cover (compiled)
    """(the row of each distinct code's first appearance, every row's distinct-code index), the distinct
    codes numbered in order of first appearance: a direct table of all 2^splits codes when that is at
    most two per row (and 2^BINCOUNT_SPLITS), else an open-addressing hash table."""
    n = code.size
    first = np.empty(n, dtype=np.int64)
    inv = np.empty(n, dtype=np.int64)
    m = 0
    if n_splits <= 20 and (1 << n_splits) <= 2 * n:
        ids = np.full(1 << n_splits, -1, dtype=np.int64)
        for i in range(n):
            c = code[i]
            d = ids[c]
            if d < 0:
                d = m
                ids[c] = d
                first[m] = i
                m += 1
            inv[i] = d
        return first[:m], inv
    bits = 1
    while (1 << bits) < 2 * n:
        bits += 1
    mask = (1 << bits) - 1
    keys = np.empty(1 << bits, dtype=np.int64)
    ids = np.full(1 << bits, -1, dtype=np.int64)
    for i in range(n):
        c = code[i]
        h = np.int64((np.uint64(c) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits))
        while True:
            d = ids[h]
            if d < 0:
                d = m
                ids[h] = d
                keys[h] = c
                first[m] = i
                m += 1
                break
            if keys[h] == c:
                break
            h = (h + 1) & mask
        inv[i] = d
    return first[:m], inv


@compiled
def _scatter(phi, used, vals, inv, bias):  # pragma: no cover (compiled)
    """``phi[used[k], i] += vals[inv[i], k]`` for every used feature k and row i, then the tree's
    expected value ``bias`` to the last row of ``phi``: one addition per value, as NumPy would."""
    n = inv.size
    for k in range(used.size):
        row = phi[used[k]]
        for i in range(n):
            row[i] += vals[inv[i], k]
    last = phi[phi.shape[0] - 1]
    for i in range(n):
        last[i] += bias


_PREDICT_LOCK = threading.Lock()


def _one_tree_shap(booster, rows: np.ndarray, t: int) -> np.ndarray:
    # LightGBM's predictor keeps the iteration range on the booster: one such predict at a time
    with _PREDICT_LOCK:
        return np.asarray(booster.predict(rows, pred_contrib=True, start_iteration=t, num_iteration=1,
                                          num_threads=1)).T


@compiled
def _leaves(codes, left, right, leaf_value):  # pragma: no cover (compiled)
    """The leaf output each decision pattern ``codes`` reaches (bit j set: left at split j)."""
    out = np.empty(codes.size)
    for d in range(codes.size):
        c = codes[d]
        node = 0
        while node >= 0:
            node = left[node] if (c >> np.int64(node)) & np.int64(1) else right[node]
        out[d] = leaf_value[~node]
    return out


@compiled
def _add_leaves(raw, leaf, inv):  # pragma: no cover (compiled)
    """``raw[i] += leaf[inv[i]]``: one tree's output added to every row's raw score."""
    for i in range(raw.size):
        raw[i] += leaf[inv[i]]


def tree_shap(booster, X: pd.DataFrame | None, F: np.ndarray | None = None) -> np.ndarray:
    """SHAP values of ``booster`` for the rows of ``X``: (rows, features + 1), the last column the
    expected value; the same as ``booster.predict(X, pred_contrib=True)``.

    ``X`` must be prepared the way the booster was trained (same columns, categoricals with the
    training categories), as for ``predict``. ``F``: :func:`feature_matrix` of ``X`` when the caller
    already has it (boosters trained on the same columns share it); with ``F``, ``X`` may be None.

    The values of each tree's decision patterns are kept on the compiled booster (up to
    ``MEMO_PATTERNS`` per tree), so later calls (the next chunk of a scoring run) ask LightGBM only for
    patterns not seen before.
    """
    return tree_shap_and_raw(booster, X, F)[0]


def tree_shap_and_raw(booster, X: pd.DataFrame | None, F: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`tree_shap`, and the booster's raw score of each row found on the way (None where it is not:
    trees past ``MAX_SPLITS`` splits, several trees per iteration, linear leaves).

    Each row's decision pattern fixes the leaf it reaches in each tree, so the raw score is the sum of
    those leaves' outputs, added in tree order from 0 as LightGBM's ``predict(raw_score=True)`` adds
    them: the same bits, at one addition per tree and row."""
    cb = compile_booster(booster)
    n = len(X) if F is None else F.shape[1]
    if n == 0:
        return np.zeros((0, len(cb.feature_names) + 1)), np.zeros(0)
    if F is None or F.shape != (len(cb.feature_names), n) or (X is not None and list(X.columns) != cb.feature_names):
        if X is None:
            raise ValueError(f"F has shape {None if F is None else F.shape}; the booster takes "
                             f"{len(cb.feature_names)} features")
        F = feature_matrix(X, cb.feature_names)
    if not cb.supported:
        return np.asarray(booster.predict(F.T, pred_contrib=True), dtype=float), None
    F = np.ascontiguousarray(F, dtype=np.float64)
    phi = np.zeros((F.shape[0] + 1, F.shape[1]))
    raw = np.zeros(F.shape[1]) if cb.sums_leaves else None
    code = np.empty(F.shape[1], dtype=np.int64)
    for t, tree in enumerate(cb.trees):
        memo = cb.memo[t]
        if not tree.splits:
            if memo.bias is None:
                memo.bias = _one_tree_shap(booster, np.ascontiguousarray(F[:, :1].T), t)[-1, 0]
            phi[-1] += memo.bias
            if raw is not None:
                raw += tree.leaf_value[0]
            continue
        _codes(F, *cb.arrays[t], code)
        first, inv = _distinct(code, len(tree.splits))
        used = tree.features
        vals = memo.values(code[first], lambda new, first=first, used=used, t=t: _pattern_shap(booster, F, first[new],
                                                                                            used, t))
        _scatter(phi, used, np.ascontiguousarray(vals, dtype=np.float64), inv, memo.bias)
        if raw is not None:
            _add_leaves(raw, _leaves(code[first], tree.left, tree.right, tree.leaf_value), inv)
    return phi.T, raw


MEMO_PATTERNS = 1 << 16
"""At most this many decision patterns of one tree are remembered across calls."""


def _pattern_shap(booster, F: np.ndarray, rows: np.ndarray, used: np.ndarray, t: int) -> np.ndarray:
    """LightGBM's SHAP values of tree ``t`` for the rows ``rows`` of ``F``: (len(used) + 1, len(rows)),
    the used features' values then the tree's expected value."""
    # one row per pattern; features the tree does not split on are left 0 (their SHAP value is 0
    # whatever they are, and LightGBM skips zeros when it reads a row)
    X = np.zeros((rows.size, F.shape[0]))
    X[:, used] = F[np.ix_(used, rows)].T
    c = _one_tree_shap(booster, X, t)
    return np.concatenate([c[used], c[-1:]])


class _Memo:
    """The SHAP values of one tree's decision patterns seen so far: sorted codes, their values."""

    def __init__(self) -> None:
        self.codes = np.zeros(0, dtype=np.int64)
        self.vals = np.zeros((0, 0))
        self.bias: float | None = None
        self.lock = threading.Lock()

    def values(self, codes: np.ndarray, compute) -> np.ndarray:
        """(len(codes), used features) SHAP values of the patterns ``codes`` (distinct); ``compute(mask)``
        gives those of the patterns ``codes[mask]`` not known yet, as :func:`_pattern_shap` returns them."""
        with self.lock:
            return self._values(codes.astype(np.int64, copy=False), compute)

    def _values(self, codes: np.ndarray, compute) -> np.ndarray:
        pos = np.searchsorted(self.codes, codes)
        hit = np.zeros(codes.size, dtype=bool)
        inside = pos < self.codes.size
        hit[inside] = self.codes[pos[inside]] == codes[inside]
        new = ~hit
        if not new.any():
            return self.vals[pos]
        c = compute(new)
        self.bias = float(c[-1, 0])
        fresh = c[:-1].T
        out = np.empty((codes.size, fresh.shape[1]))
        out[new] = fresh
        if hit.any():
            out[hit] = self.vals[pos[hit]]
        if self.codes.size + fresh.shape[0] <= MEMO_PATTERNS:
            all_codes = np.concatenate([self.codes, codes[new]])
            order = np.argsort(all_codes, kind="stable")
            self.codes = all_codes[order]
            self.vals = np.concatenate([self.vals.reshape(-1, fresh.shape[1]), fresh])[order]
        return out
