"""Predictions of a fitted gradient boosting model on rows that differ from known rows in one column.

Permutation importance and the per-customer drivers of :mod:`crm_pipelines.analytics.churn` predict the
same rows again and again with one feature changed (shuffled, or set to its median). A tree that never
splits on that feature gives every row the value it gave before, so only the trees that split on it
are evaluated again; the others' values are remembered from one pass over the known rows.

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
        set to ``value``: only the trees that split on that column are evaluated.

        The direct form of :meth:`raw_predict` for a change the caller knows: no frame to build, no
        labels to look up, no columns to compare."""
        values = self.values[rows]  # a copy: the known values stay as they were
        values[:, column] = value
        raw = self._baseline(len(values))
        for i, tree in enumerate(self.trees):
            if column in self.splits_on[i]:
                raw[:, 0] += self._tree_values(tree, values)
            else:
                raw[:, 0] += self.per_tree[rows, i]
        return raw

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
