"""Predicting known rows with one column changed by the trees that split on it gives the model's numbers exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance

from crm_pipelines.analytics.tree_reuse import KnownRowsPredictor, reusing_trees


@pytest.fixture(scope="module")
def fitted() -> tuple[HistGradientBoostingClassifier, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(7)
    n = 3000
    frame = pd.DataFrame(
        {
            "strong": rng.normal(size=n),
            "weak": rng.normal(size=n),
            "sparse": np.where(rng.random(n) < 0.3, np.nan, rng.exponential(size=n)),
            "noise": rng.integers(0, 5, size=n).astype(float),
        },
        index=pd.Index([f"c{i:05d}" for i in range(n)], name="customer_id"),
    )
    logit = 2 * frame["strong"] + 0.5 * frame["weak"] - frame["sparse"].fillna(1.5)
    label = rng.random(n) < 1 / (1 + np.exp(-logit.to_numpy()))
    model = HistGradientBoostingClassifier(max_iter=60, max_leaf_nodes=15, random_state=0).fit(frame, label)
    return model, frame, label


def test_some_trees_are_skipped_for_each_feature(fitted) -> None:
    model, frame, _ = fitted
    predictor = KnownRowsPredictor(model, frame)
    splits = [sum(column in used for used in predictor.splits_on) for column in range(frame.shape[1])]
    assert min(splits) < len(predictor.trees), splits  # otherwise nothing here would be reused


def test_permutation_importance_is_unchanged(fitted) -> None:
    model, frame, label = fitted
    for scoring in ("roc_auc", "neg_brier_score"):
        arguments = {"scoring": scoring, "n_repeats": 3, "max_samples": 0.5, "random_state": 0}
        expected = permutation_importance(model, frame, label, **arguments)
        reused = permutation_importance(reusing_trees(model, frame), frame, label, **arguments)
        np.testing.assert_array_equal(reused.importances, expected.importances)


@pytest.mark.parametrize("change", ["one column", "median", "two columns", "unknown rows", "no change"])
def test_raw_predictions_equal_the_models(fitted, change: str) -> None:
    model, frame, _ = fitted
    view = reusing_trees(model, frame)
    rows = frame.sample(frac=0.4, random_state=1)  # a subset, in another order
    if change == "one column":
        rows = rows.assign(sparse=rows["sparse"].to_numpy()[::-1])
    elif change == "median":
        rows = rows.assign(strong=frame["strong"].median())
    elif change == "two columns":
        rows = rows.assign(strong=0.0, weak=1.0)
    elif change == "unknown rows":
        rows = rows.set_axis([f"new{i}" for i in range(len(rows))]).assign(noise=2.0)
    np.testing.assert_array_equal(view.predict_proba(rows), model.predict_proba(rows))
    np.testing.assert_array_equal(view.decision_function(rows), model.decision_function(rows))


def test_duplicate_row_labels_fall_back_to_the_model(fitted) -> None:
    model, frame, _ = fitted
    doubled = pd.concat([frame.iloc[:10], frame.iloc[:10]])
    assert reusing_trees(model, doubled) is model


def test_one_view_answers_changing_rows_and_columns(fitted) -> None:
    """The rows last asked about are remembered: later calls on the same rows, on other rows, and on
    the same labels with other values all get the model's numbers."""
    model, frame, _ = fitted
    view = reusing_trees(model, frame)
    first, second = frame.iloc[:500], frame.iloc[250:900]
    for rows in (first, first.assign(weak=2.0), second.assign(noise=0.0), second, first.assign(strong=-1.0)):
        np.testing.assert_array_equal(view.predict_proba(rows), model.predict_proba(rows))


def test_known_rows_and_one_column_set_equal_the_models_raw_predictions(fitted) -> None:
    """The direct paths the churn drivers use: the known rows' predictions summed from the remembered
    per-tree values, and a subset of them with one column set to a value (NaN included)."""
    model, frame, _ = fitted
    predictor = KnownRowsPredictor(model, frame)
    known = predictor.known_raw_predict()
    np.testing.assert_array_equal(known, model._raw_predict(frame))
    np.testing.assert_array_equal(predictor.probability(known), model.predict_proba(frame)[:, 1])
    rows = np.flatnonzero(np.arange(len(frame)) % 3 != 0)[::-1]  # a subset, in another order
    for column, value in ((0, float(frame["strong"].median())), (2, np.nan), (2, 0.5), (3, 2.0)):
        moved = frame.iloc[rows].copy()
        moved.iloc[:, column] = value
        raw = predictor.raw_predict_with(rows, column, value)
        np.testing.assert_array_equal(raw, model._raw_predict(moved))
        np.testing.assert_array_equal(predictor.probability(raw), model.predict_proba(moved)[:, 1])


def test_one_column_set_to_a_threshold_or_next_to_it_equals_the_model(fitted) -> None:
    """Rows whose value and the set value lie on the same sides of a tree's thresholds keep that tree's
    remembered value: known values and set values exactly at, just below and just above thresholds,
    and missing ones, must all still give the model's numbers."""
    model, frame, _ = fitted

    def split_thresholds(column: int) -> np.ndarray:
        nodes = [tree.nodes for (tree,) in model._predictors]
        return np.unique(
            np.concatenate([n["num_threshold"][(n["feature_idx"] == column) & (n["is_leaf"] == 0)] for n in nodes])
        )

    thresholds = {column: split_thresholds(column) for column in range(frame.shape[1])}
    known = frame.copy()
    for column, values in thresholds.items():
        near = np.concatenate([values, np.nextafter(values, -np.inf), np.nextafter(values, np.inf)])
        picked = np.arange(column, column + 3 * len(near) * 7, 7)[: len(near)] % len(known)
        known.iloc[picked, column] = near  # known values exactly at and next to the thresholds
    predictor = KnownRowsPredictor(model, known)
    rows = np.arange(len(known))[::-1]
    for column, values in thresholds.items():
        assert len(values)
        middle = values[len(values) // 2]
        for value in (middle, np.nextafter(middle, -np.inf), np.nextafter(middle, np.inf), values[0] - 1, np.nan):
            moved = known.iloc[rows].copy()
            moved.iloc[:, column] = value
            np.testing.assert_array_equal(predictor.raw_predict_with(rows, column, value), model._raw_predict(moved))


def test_shuffled_values_at_and_next_to_thresholds_equal_the_model(fitted) -> None:
    """Permutation importance through the remembered leaves, on rows whose values lie exactly at, just
    below and just above the trees' thresholds (or are missing), equals the model's own."""
    model, frame, label = fitted
    known = frame.copy()
    for column in range(known.shape[1]):
        nodes = [tree.nodes for (tree,) in model._predictors]
        values = np.unique(
            np.concatenate([n["num_threshold"][(n["feature_idx"] == column) & (n["is_leaf"] == 0)] for n in nodes])
        )
        near = np.concatenate([values, np.nextafter(values, -np.inf), np.nextafter(values, np.inf)])
        known.iloc[np.arange(column, column + 5 * len(near), 5)[: len(near)] % len(known), column] = near
    predictor = KnownRowsPredictor(model, known)
    assert predictor.leaves.dtype == np.uint8  # one byte per row and tree
    arguments = {"scoring": "roc_auc", "n_repeats": 2, "random_state": 3}
    expected = permutation_importance(model, known, label, **arguments)
    reused = permutation_importance(predictor.model_view(), known, label, **arguments)
    np.testing.assert_array_equal(reused.importances, expected.importances)
