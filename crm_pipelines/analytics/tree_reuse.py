"""Predictions of a fitted gradient boosting model on rows that differ from known rows in one column.

Permutation importance and the per-customer drivers of :mod:`crm_pipelines.analytics.churn` predict the
same rows again and again with one feature changed (shuffled, or set to its median). A tree that never
splits on that feature gives every row the value it gave before, so only the trees that split on it
are evaluated again; the others' values are remembered from one pass over the known rows. A tree that
does split on it sees the feature only through its splits on it: whether the value is missing and on
which side of each of the tree's thresholds on that feature it lies. A row whose new value falls on the
same sides as its known value follows the same path to the same leaf, so where a column is set to one
value (the drivers' median) only the rows that cross one of the tree's thresholds on the way (or become
or stop being missing) are evaluated by it again.

The result is bit for bit what ``HistGradientBoostingClassifier`` computes: its raw prediction is the
baseline plus each tree's value, added in tree order, and the sum here is made in that same order,
from the same per-tree values. Rows that differ from the known rows in more than one column (or are
not among them) are predicted by every tree, as the model would.

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


class KnownRowsPredictor:
    """Raw predictions of ``model`` for frames whose rows are rows of ``known`` (matched by index
    label, which must be unique), remembering each tree's values on ``known``."""

    def __init__(self, model: HistGradientBoostingClassifier, known: pd.DataFrame):
        self.model = model
        self.known = known
        self.trees = [iteration[0] for iteration in model._predictors]
        self.splits_on = [
            frozenset(int(f) for f in tree.nodes["feature_idx"][~tree.nodes["is_leaf"].astype(bool)])
            for tree in self.trees
        ]
        self._bitsets = model._bin_mapper.make_known_categories_bitsets()
        self.values = model._preprocess_X(known, reset=False)
        self.per_tree = np.empty((len(known), len(self.trees)), dtype=np.float64, order="F")
        self._last: tuple[pd.Index, np.ndarray, np.ndarray] | None = None
        self._thresholds: dict[tuple[int, int], np.ndarray] = {}
        for i, tree in enumerate(self.trees):
            self.per_tree[:, i] = self._tree_values(tree, self.values)

    @staticmethod
    def supports(model: HistGradientBoostingClassifier, known: pd.DataFrame) -> bool:
        """One tree per iteration (binary), no categorical preprocessing, rows told apart by their
        index: the layout reused here."""
        return (
            getattr(model, "n_trees_per_iteration_", None) == 1
            and getattr(model, "_preprocessor", None) is None
            and not getattr(model, "_in_fit", False)
            and known.index.is_unique
        )

    def _tree_values(self, tree, values: np.ndarray) -> np.ndarray:
        from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

        known_cat_bitsets, f_idx_map = self._bitsets
        return tree.predict(
            values, known_cat_bitsets=known_cat_bitsets, f_idx_map=f_idx_map,
            n_threads=_openmp_effective_n_threads(None),
        )  # fmt: skip

    def _split_thresholds(self, tree: int, column: int) -> np.ndarray:
        """The thresholds of tree number ``tree``'s splits on ``column``."""
        key = (tree, column)
        if key not in self._thresholds:
            nodes = self.trees[tree].nodes
            inner = nodes[~nodes["is_leaf"].astype(bool)]
            self._thresholds[key] = np.unique(inner["num_threshold"][inner["feature_idx"] == column])
        return self._thresholds[key]

    def _moved_ranges(
        self, tree: int, column: int, present: np.ndarray, rows: int, value: float
    ) -> list[tuple[int, int]]:
        """The ranges of rows, sorted by their value in ``column`` (``present``: the values that are not
        missing, ascending; the missing ones follow, up to ``rows``), that tree number ``tree`` may send
        another way once the column is set to ``value``.

        A split on the column sends a missing value where missing values go and any other x left when
        x <= threshold. With ``lo`` the tree's largest threshold below ``value`` and ``hi`` its smallest
        at or above it, a value in (lo, hi] takes every one of those splits as ``value`` does: the row
        keeps its path and its leaf. The others, and missing values, are evaluated again."""
        if np.isnan(value):
            return [(0, len(present))] if len(present) else []
        thresholds = self._split_thresholds(tree, column)
        below, above = thresholds[thresholds < value], thresholds[thresholds >= value]
        start = int(np.searchsorted(present, below[-1], side="right")) if len(below) else 0
        stop = int(np.searchsorted(present, above[0], side="right")) if len(above) else len(present)
        return [(a, b) for a, b in ((0, start), (stop, rows)) if a < b]

    def _baseline(self, rows: int) -> np.ndarray:
        """What ``model._raw_predict`` starts from before adding the trees' values."""
        raw = np.zeros((rows, 1), dtype=self.model._baseline_prediction.dtype, order="F")
        raw += self.model._baseline_prediction
        return raw

    def known_raw_predict(self) -> np.ndarray:
        """``model._raw_predict(known)`` from the remembered per-tree values: no tree is evaluated again."""
        raw = self._baseline(len(self.known))
        for i in range(len(self.trees)):
            raw[:, 0] += self.per_tree[:, i]
        return raw

    def raw_predict_with(self, rows: np.ndarray, column: int, value: float) -> np.ndarray:
        """``model._raw_predict`` of the known rows at positions ``rows`` with column number ``column``
        set to ``value``: only the trees that split on that column are evaluated, each only for the rows
        whose known value it sends another way than ``value`` (:meth:`_moved_ranges`).

        The direct form of :meth:`raw_predict` for a change the caller knows: no frame to build, no
        labels to look up, no columns to compare."""
        # Sorted by the column's known value (missing values last), the rows a tree must evaluate
        # again are at most two runs: a view of each is predicted, not a copy of scattered rows.
        known = self.values[rows, column]
        order = np.argsort(known, kind="stable")
        by_value = rows[order]
        values = np.ascontiguousarray(self.values[by_value])  # a copy: the known values stay as they were
        values[:, column] = value
        present = known[order][: int(np.count_nonzero(~np.isnan(known)))]
        raw = self._baseline(len(values))
        for i, tree in enumerate(self.trees):
            tree_values = self.per_tree[by_value, i]
            if column in self.splits_on[i]:
                for start, stop in self._moved_ranges(i, column, present, len(values), value):
                    tree_values[start:stop] = self._tree_values(tree, values[start:stop])
            raw[:, 0] += tree_values
        in_order = np.empty_like(raw)
        in_order[order] = raw  # each row's sum is made in tree order whatever the rows' order
        return in_order

    def probability(self, raw: np.ndarray) -> np.ndarray:
        """The positive class's probability of raw predictions, as ``model.predict_proba(...)[:, 1]``."""
        return self.model._loss.predict_proba(raw)[:, 1]

    def raw_predict(self, X: pd.DataFrame, n_threads: int | None = None) -> np.ndarray:
        """``model._raw_predict(X)``: shape (rows, 1)."""
        values = self.model._preprocess_X(X, reset=False)
        raw = self._baseline(len(values))
        found = self._known_rows(X.index) if hasattr(X, "index") and len(values) else None
        changed = None if found is None else self._changed_columns(values, found[1])
        if changed is None:
            for tree in self.trees:
                raw[:, 0] += self._tree_values(tree, values)
            return raw
        remembered = found[2]
        for i, tree in enumerate(self.trees):
            if changed & self.splits_on[i]:
                raw[:, 0] += self._tree_values(tree, values)
            else:
                raw[:, 0] += remembered[:, i]
        return raw

    def _known_rows(self, index: pd.Index) -> tuple[pd.Index, np.ndarray, np.ndarray] | None:
        """(index, the rows' known values, their per-tree values) of rows labelled ``index``; None when
        some label is unknown. The last answer is kept: callers ask about the same rows many times."""
        if self._last is not None and (index is self._last[0] or index.equals(self._last[0])):
            return self._last
        rows = self.known.index.get_indexer(index)
        if (rows < 0).any():
            return None
        self._last = (index, self.values[rows], np.asfortranarray(self.per_tree[rows]))
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


def known_rows_predictor(model: HistGradientBoostingClassifier, known: pd.DataFrame) -> KnownRowsPredictor | None:
    """A :class:`KnownRowsPredictor` of ``model`` on ``known``, or None where that layout does not apply."""
    if not len(known) or not KnownRowsPredictor.supports(model, known):
        return None
    return KnownRowsPredictor(model, known)


def reusing_trees(model: HistGradientBoostingClassifier, known: pd.DataFrame) -> HistGradientBoostingClassifier:
    """``model``, predicting rows of ``known`` with one column changed by its changed trees only
    (:class:`KnownRowsPredictor`), or ``model`` itself where that layout does not apply."""
    predictor = known_rows_predictor(model, known)
    return model if predictor is None else predictor.model_view()
