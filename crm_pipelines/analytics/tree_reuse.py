"""Predictions of a fitted gradient boosting model on rows that differ from known rows in one column.

Permutation importance and the per-customer drivers of :mod:`crm_pipelines.analytics.churn` predict the
same rows again and again with one feature changed (shuffled, or set to its median). One pass over the
known rows remembers the leaf each row reaches in each tree. A row's path through a tree depends on a
column only through the splits on that column along the path: whether the value is missing and on
which side of each of those thresholds it lies. So each leaf admits, for each column, an interval of
values (and perhaps missing values) that keep a row in it; a row whose new value stays within its
leaf's interval reaches the same leaf and gets the same value, and only the rows that leave it are
evaluated by the tree again. Trees that never split on the column keep every row's leaf.

The result is bit for bit what ``HistGradientBoostingClassifier`` computes: its raw prediction is the
baseline plus each tree's value, added in tree order, and the sum here is made in that same order,
from the same per-tree values (a leaf's stored value is what the tree returns for it). Rows that differ
from the known rows in more than one column (or are not among them) are predicted by every tree, as
the model would.

It reads the model's internals (``_predictors``, ``_bin_mapper``, ``_baseline_prediction``,
``_preprocess_X``, ``_loss``) as scikit-learn 1.9.1, the pinned version, lays them out; ``tests/test_tree_reuse.py``
compares every path with the model's own predictions and permutation importance, so an upgrade that
changes them fails there rather than changing a number.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier


def _leaf_bounds(nodes: np.ndarray, n_columns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower, upper, missing), each of shape (nodes, columns): a value x of a column reaches the node
    when ``lower < x <= upper``, and a missing one when ``missing`` (a split sends a missing value
    where ``missing_go_to_left`` says, any other x left when x <= threshold)."""
    count = len(nodes)
    lower, upper = np.full((count, n_columns), -np.inf), np.full((count, n_columns), np.inf)
    missing = np.ones((count, n_columns), dtype=bool)
    stack = [0]  # the root: a parent's bounds are set before its children's
    while stack:
        node = stack.pop()
        if nodes["is_leaf"][node]:
            continue
        column, threshold = int(nodes["feature_idx"][node]), float(nodes["num_threshold"][node])
        to_left = bool(nodes["missing_go_to_left"][node])
        left, right = int(nodes["left"][node]), int(nodes["right"][node])
        for child in (left, right):
            lower[child], upper[child], missing[child] = lower[node], upper[node], missing[node]
        upper[left, column] = min(upper[node, column], threshold)
        missing[left, column] &= to_left
        lower[right, column] = max(lower[node, column], threshold)
        missing[right, column] &= not to_left
        stack += [left, right]
    return lower, upper, missing


class _ColumnBounds:
    """The bounds on one column of the leaves of the trees that split on it, laid out flat (tree after
    tree), so the rows that leave their leaf are found for all those trees in one pass."""

    def __init__(self, trees: list[int], bounds: list[tuple[np.ndarray, np.ndarray, np.ndarray]], column: int):
        self.trees = np.array(trees, dtype=np.intp)
        sizes = [len(bounds[i][0]) for i in trees]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        self.lower, self.upper, self.missing = (
            np.concatenate([bounds[i][part][:, column] for i in trees]) for part in range(3)
        )

    def _outside(self, at: np.ndarray | slice, values: np.ndarray | float) -> np.ndarray:
        """Where ``values`` lie outside the bounds of the leaves ``at`` (numbers in the flat layout)."""
        with np.errstate(invalid="ignore"):
            outside = ~((self.lower[at] < values) & (values <= self.upper[at]))
        missing = np.isnan(values)
        if missing.any():
            outside &= ~(missing & self.missing[at])
        return outside

    def leave(self, leaves: np.ndarray, values: np.ndarray | float) -> np.ndarray:
        """(rows, len(self.trees)), column-major: where a row at ``leaves`` (its leaf in every tree) with
        ``values`` in the column no longer reaches its leaf of each of these trees."""
        at = leaves[:, self.trees] + self.offsets
        values = np.asarray(values, dtype=np.float64)
        if values.ndim:
            return np.asfortranarray(self._outside(at, values[:, None]))
        # One value for every row (the drivers' median): decided once per leaf, then looked up per row.
        return np.asfortranarray(self._outside(slice(None), values)[at])


class TreeLayout:
    """What :class:`KnownRowsPredictor` reads from a model whatever the rows: its trees, the bounds of
    their leaves and the trees that name the leaf reached. Made once, it serves every slice of rows."""

    def __init__(self, model: HistGradientBoostingClassifier):
        from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

        self.trees = [iteration[0] for iteration in model._predictors]
        self.splits_on = [
            frozenset(int(f) for f in tree.nodes["feature_idx"][~tree.nodes["is_leaf"].astype(bool)])
            for tree in self.trees
        ]
        self.bitsets = model._bin_mapper.make_known_categories_bitsets()
        self.leaf_values = [tree.nodes["value"] for tree in self.trees]
        bounds = [_leaf_bounds(tree.nodes, model.n_features_in_) for tree in self.trees]
        self.columns = {
            column: _ColumnBounds([i for i, used in enumerate(self.splits_on) if column in used], bounds, column)
            for column in set().union(*self.splits_on)
        }
        # The same tree with each node's number as its value: predicting with it names the leaf reached.
        self.numbered = []
        for tree in self.trees:
            nodes = tree.nodes.copy()
            nodes["value"] = np.arange(len(nodes))
            self.numbered.append(TreePredictor(nodes, tree.binned_left_cat_bitsets, tree.raw_left_cat_bitsets))
        # One byte per row and tree at the default 15 leaves (eight bytes for a remembered value).
        self.leaf_dtype = np.min_scalar_type(max(len(tree.nodes) for tree in self.trees))

    @staticmethod
    def fits(model: HistGradientBoostingClassifier) -> bool:
        """One tree per iteration (binary), no categorical preprocessing: the layout reused here."""
        return (
            getattr(model, "n_trees_per_iteration_", None) == 1
            and getattr(model, "_preprocessor", None) is None
            and not getattr(model, "_in_fit", False)
            and not any(tree.nodes["is_categorical"].any() for (tree,) in getattr(model, "_predictors", []))
        )


class KnownRowsPredictor:
    """Raw predictions of ``model`` for frames whose rows are rows of ``known`` (matched by index
    label, which must be unique), remembering the leaf each row of ``known`` reaches in each tree.
    ``layout`` is the model's :class:`TreeLayout`, when the caller has made it already."""

    def __init__(self, model: HistGradientBoostingClassifier, known: pd.DataFrame, layout: TreeLayout | None = None):
        layout = TreeLayout(model) if layout is None else layout
        self.model = model
        self.known = known
        self.trees, self.splits_on, self.leaf_values = layout.trees, layout.splits_on, layout.leaf_values
        self._bitsets, self._columns = layout.bitsets, layout.columns
        self.values = model._preprocess_X(known, reset=False)
        self.leaves = np.empty((len(known), len(self.trees)), dtype=layout.leaf_dtype, order="F")
        for i, tree in enumerate(layout.numbered):
            self.leaves[:, i] = self._tree_values(tree, self.values)
        self._last: tuple[pd.Index, np.ndarray, np.ndarray, np.ndarray] | None = None
        self.known_raw = self._baseline(len(known))[:, 0]
        for i in range(len(self.trees)):
            self.known_raw += self.leaf_values[i][self.leaves[:, i]]

    @staticmethod
    def supports(model: HistGradientBoostingClassifier, known: pd.DataFrame) -> bool:
        """The model's layout is the one reused here (:meth:`TreeLayout.fits`) and rows are told apart by
        their index."""
        return TreeLayout.fits(model) and known.index.is_unique

    def _tree_values(self, tree, values: np.ndarray) -> np.ndarray:
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

        known_cat_bitsets, f_idx_map = self._bitsets
        return tree.predict(
            values, known_cat_bitsets=known_cat_bitsets, f_idx_map=f_idx_map,
            n_threads=_openmp_effective_n_threads(None),
        )  # fmt: skip

    def _baseline(self, rows: int) -> np.ndarray:
        """What ``model._raw_predict`` starts from before adding the trees' values."""
        raw = np.zeros((rows, 1), dtype=self.model._baseline_prediction.dtype, order="F")
        raw += self.model._baseline_prediction
        return raw

    def known_raw_predict(self) -> np.ndarray:
        """``model._raw_predict(known)``, summed once from the remembered leaves in the model's order."""
        return self.known_raw.reshape(-1, 1).copy()

    def _changed_sum(
        self, values: np.ndarray, leaves: np.ndarray, known_raw: np.ndarray, column: int, new: np.ndarray | float
    ) -> np.ndarray:
        """Raw predictions of ``values`` (rows whose leaves and raw predictions without the change are
        ``leaves`` and ``known_raw``) that differ from the known rows in ``column`` only (now ``new``).

        A row that stays in its leaf of every tree keeps its raw prediction; for the others, each tree
        evaluates only the rows that leave its leaf, and the sum is made in tree order."""
        raw = known_raw.reshape(-1, 1).copy()
        bounds = self._columns.get(column)
        if bounds is None:
            return raw
        leaving = bounds.leave(leaves, new)
        moved = np.flatnonzero(leaving.any(axis=1))
        if not len(moved):
            return raw
        leaves, leaving, values = np.asfortranarray(leaves[moved]), np.asfortranarray(leaving[moved]), values[moved]
        changed = {int(tree): j for j, tree in enumerate(bounds.trees)}
        moved_raw = self._baseline(len(moved))
        for i, tree in enumerate(self.trees):
            tree_values = self.leaf_values[i][leaves[:, i]]
            if i in changed:
                rows = np.flatnonzero(leaving[:, changed[i]])
                if len(rows):
                    tree_values[rows] = self._tree_values(tree, values[rows])
            moved_raw[:, 0] += tree_values
        raw[moved] = moved_raw
        return raw

    def raw_predict_with(self, rows: np.ndarray, column: int, value: float) -> np.ndarray:
        """``model._raw_predict`` of the known rows at positions ``rows`` with column number ``column``
        set to ``value``: only the trees that split on that column are evaluated, each only for the rows
        that ``value`` takes out of their leaf.

        The direct form of :meth:`raw_predict` for a change the caller knows: no frame to build, no
        labels to look up, no columns to compare."""
        values = self.values[rows]  # a copy: the known values stay as they were
        values[:, column] = value
        return self._changed_sum(values, self.leaves[rows], self.known_raw[rows], column, value)

    def probability(self, raw: np.ndarray) -> np.ndarray:
        """The positive class's probability of raw predictions, as ``model.predict_proba(...)[:, 1]``."""
        return self.model._loss.predict_proba(raw)[:, 1]

    def raw_predict(self, X: pd.DataFrame, n_threads: int | None = None) -> np.ndarray:
        """``model._raw_predict(X)``: shape (rows, 1)."""
        values = self.model._preprocess_X(X, reset=False)
        found = self._known_rows(X.index) if hasattr(X, "index") and len(values) else None
        changed = None if found is None else self._changed_columns(values, found[1])
        if changed is None:
            raw = self._baseline(len(values))
            for tree in self.trees:
                raw[:, 0] += self._tree_values(tree, values)
            return raw
        if not changed:
            return found[3].reshape(-1, 1).copy()
        column = next(iter(changed))
        return self._changed_sum(values, found[2], found[3], column, values[:, column])

    def _known_rows(self, index: pd.Index) -> tuple[pd.Index, np.ndarray, np.ndarray, np.ndarray] | None:
        """(index, the rows' known values, their leaves, their raw predictions) of rows labelled
        ``index``; None when some label is unknown. The last answer is kept: callers ask about the same
        rows many times."""
        if self._last is not None and (index is self._last[0] or index.equals(self._last[0])):
            return self._last
        rows = self.known.index.get_indexer(index)
        if (rows < 0).any():
            return None
        self._last = (index, self.values[rows], np.asfortranarray(self.leaves[rows]), self.known_raw[rows])
        return self._last

    def _changed_columns(self, values: np.ndarray, before: np.ndarray) -> frozenset[int] | None:
        """The columns in which ``values`` differ from their known rows, if at most one; else None."""
        if values.shape != before.shape:
            return None
        same = (values == before) | (np.isnan(values) & np.isnan(before))
        columns = np.flatnonzero(~same.all(axis=0))
        return frozenset(int(c) for c in columns) if len(columns) <= 1 else None

    def model_view(self) -> HistGradientBoostingClassifier:
        """A shallow copy of the model whose predictions (``predict_proba``, ``decision_function`` and
        what scorers call) go through :meth:`raw_predict`."""
        view = copy.copy(self.model)
        view._raw_predict = self.raw_predict
        return view


def known_rows_predictor(
    model: HistGradientBoostingClassifier, known: pd.DataFrame, layout: TreeLayout | None = None
) -> KnownRowsPredictor | None:
    """A :class:`KnownRowsPredictor` of ``model`` on ``known``, or None where that layout does not apply."""
    if not len(known) or not KnownRowsPredictor.supports(model, known):
        return None
    return KnownRowsPredictor(model, known, layout)


def reusing_trees(model: HistGradientBoostingClassifier, known: pd.DataFrame) -> HistGradientBoostingClassifier:
    """``model``, predicting rows of ``known`` with one column changed by its changed trees only
    (:class:`KnownRowsPredictor`), or ``model`` itself where that layout does not apply."""
    predictor = known_rows_predictor(model, known)
    return model if predictor is None else predictor.model_view()
