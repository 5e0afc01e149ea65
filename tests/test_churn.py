"""Churn: features and labels pinned by hand, accuracy on simulated customers who drop out, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from factories import order_rows

from crm_pipelines.analytics.churn import BASE_FEATURES, churn_features, churn_labels, train_churn_model
from crm_pipelines.analytics.clv.simulate import simulate_orders
from crm_pipelines.analytics.clv.summary import day_number, purchase_days

_orders = order_rows


SMALL = _orders(
    [
        ("a", "2024-01-01 10:00", "completed", 10.0, False),
        ("a", "2024-01-11 10:00", "completed", 20.0, False),
        ("a", "2024-01-31 10:00", "completed", 30.0, False),
        ("a", "2024-02-05 10:00", "refunded", -30.0, True),
        ("a", "2024-02-06 10:00", "cancelled", 5.0, False),
        ("b", "2023-06-01 10:00", "completed", 50.0, False),
        ("b", "2024-05-01 10:00", "completed", 70.0, False),  # after the cutoff
    ]
)


@pytest.fixture(scope="module")
def simulated_orders() -> pd.DataFrame:
    # BG/NBD purchasing with dropouts: about one purchase a month while active.
    return simulate_orders(5000, "2022-01-01", "2024-01-01", r=1.5, alpha=6.0, seed=2)


def test_features_are_pinned() -> None:
    features = churn_features(SMALL, "2024-03-01")
    a, b = features.loc["a"], features.loc["b"]
    assert list(features.columns) == list(BASE_FEATURES)
    assert (a["recency_days"], a["tenure_days"], a["purchase_days"]) == (30.0, 60.0, 3.0)
    assert (a["revenue_total"], a["order_value_mean"]) == (60.0, 20.0)
    assert (a["interval_mean_days"], a["interval_std_days"]) == (15.0, 5.0)  # gaps of 10 and 20 days
    assert a["recency_to_interval"] == 2.0
    assert (a["purchases_last_90d"], a["purchases_prior_90d"], a["purchase_trend_90d"]) == (3.0, 0.0, 3.0)
    assert a["revenue_last_90d"] == 60.0
    assert a["refund_share"] == pytest.approx(1 / 4)  # 1 refund record, 3 purchases
    assert a["cancelled_share"] == pytest.approx(1 / 5)  # 1 of 5 orders
    assert b["recency_days"] == 274.0 and b["purchase_days"] == 1.0
    assert np.isnan(b["interval_mean_days"]) and np.isnan(b["recency_to_interval"])
    assert (b["purchases_last_90d"], b["purchases_last_180d"]) == (0.0, 0.0)


def test_labels_look_only_at_the_horizon() -> None:
    days = purchase_days(SMALL)
    customers = pd.Index(["a", "b"])
    cutoff = day_number("2024-03-01")
    assert churn_labels(days, customers, cutoff, 90).tolist() == [True, False]  # b buys on 1 May
    assert churn_labels(days, customers, cutoff, 61).tolist() == [True, False]  # 1 May is day 61
    assert churn_labels(days, customers, cutoff, 60).tolist() == [True, True]


def test_extra_features_are_point_in_time() -> None:
    seen: list[pd.Timestamp] = []

    def nps_as_of(cutoff: pd.Timestamp) -> pd.DataFrame:
        seen.append(cutoff)
        return pd.DataFrame({"customer_id": ["a"], "nps": [9.0]})

    features = churn_features(SMALL, "2024-03-01", extra_features=nps_as_of)
    assert seen == [pd.Timestamp("2024-03-01", tz="UTC")]
    assert features.loc["a", "nps"] == 9.0 and np.isnan(features.loc["b", "nps"])
    with pytest.raises(ValueError, match="not numeric"):
        churn_features(
            SMALL, "2024-03-01", extra_features=pd.DataFrame({"customer_id": ["a"], "tier": ["gold"]})
        )


def test_model_separates_churners_on_a_later_window(simulated_orders: pd.DataFrame) -> None:
    result = train_churn_model(simulated_orders, "2023-12-31", horizon_days=90)
    metrics = result.metrics
    assert (metrics["train_cutoff"], metrics["holdout_cutoff"]) == ("2023-07-04", "2023-10-02")
    assert metrics["roc_auc"] >= 0.75
    calibration = result.calibration
    assert calibration["decile"].tolist() == list(range(1, 11))
    assert calibration["customers"].sum() == metrics["customers_holdout"]
    # Riskier deciles churn more, and predictions are on the scale of what happens.
    assert calibration["observed_churn_rate"].iloc[-1] > calibration["observed_churn_rate"].iloc[0] + 0.4
    assert metrics["mean_predicted_holdout"] == pytest.approx(metrics["churn_rate_holdout"], abs=0.05)
    assert result.feature_importance["feature"].iloc[0] in {"recency_days", "recency_to_interval"}

    scores = result.scores
    assert len(scores) == metrics["customers_scored"] == simulated_orders["customer_id"].nunique()
    assert scores["churn_probability"].between(0, 1).all()
    assert set(scores["risk_decile"]) == set(range(1, 11))
    assert {"driver_1", "driver_1_effect", "driver_3", "driver_3_effect"} <= set(scores.columns)
    # Drivers name features that raise the customer's risk, by a positive effect.
    named = scores["driver_1"].notna()
    assert named.mean() > 0.5
    assert (scores.loc[named, "driver_1_effect"] > 0).all()
    assert set(scores.loc[named, "driver_1"]) <= set(BASE_FEATURES)
    # The long-silent are at risk, and their silence is why.
    silent = result.features.set_index("customer_id")["recency_days"] > 300
    silent_scores = scores.set_index("customer_id").loc[silent[silent].index]
    assert silent_scores["churn_probability"].mean() > 0.8


def test_training_is_deterministic(simulated_orders: pd.DataFrame) -> None:
    sample = simulated_orders[simulated_orders["customer_id"] < "C0002000"]
    first = train_churn_model(sample, "2023-12-31")
    second = train_churn_model(sample, "2023-12-31")
    pd.testing.assert_frame_equal(first.scores, second.scores)
    pd.testing.assert_frame_equal(first.feature_importance, second.feature_importance)
    assert first.metrics == second.metrics


def test_too_little_history_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 50 customers"):
        train_churn_model(SMALL, "2024-03-01")


def _drivers_predicting_every_row(model, features: pd.DataFrame, reference: pd.Series, candidates: list[str]):
    """The drivers as computed before: every customer predicted again once per candidate feature."""
    from crm_pipelines.analytics.churn import DRIVER_COUNT

    base = model.predict_proba(features)[:, 1]
    effects = np.empty((len(features), len(candidates)))
    for j, name in enumerate(candidates):
        typical = features.copy()
        typical[name] = reference[name]
        effects[:, j] = base - model.predict_proba(typical)[:, 1]
    order = np.argsort(-effects, axis=1, kind="stable")[:, :DRIVER_COUNT]
    names = np.array(candidates, dtype=object)
    out = {}
    for k in range(DRIVER_COUNT):
        effect = effects[np.arange(len(features)), order[:, k]]
        raises_risk = effect > 1e-6
        out[f"driver_{k + 1}"] = pd.array(np.where(raises_risk, names[order[:, k]], None), dtype="str")
        out[f"driver_{k + 1}_effect"] = np.where(raises_risk, effect, np.nan)
    return pd.DataFrame(out, index=features.index)


@pytest.mark.parametrize("slice_rows", [50_000, 701])
def test_drivers_equal_predicting_every_customer_again(
    simulated_orders: pd.DataFrame, slice_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only customers whose value differs from the median are predicted again, a slice of customers at a
    time, by the trees that split on the feature: the drivers stay exactly those of predicting everybody
    with the whole model, NaN features and a NaN median included."""
    from crm_pipelines.analytics import churn
    from crm_pipelines.analytics.churn import _drivers

    monkeypatch.setattr(churn, "DRIVER_SLICE_ROWS", slice_rows)

    result = train_churn_model(simulated_orders, "2023-12-31", horizon_days=90)
    features = result.features.set_index("customer_id")
    candidates = [*result.driver_candidates, "purchase_days"]
    assert "interval_std_days" in candidates and "purchase_days" not in result.driver_candidates
    # A median no customer reaches, and one every customer has already.
    reference = result.reference.copy()
    features["interval_std_days"] = np.where(np.arange(len(features)) % 3 == 0, np.nan, features["interval_std_days"])
    assert (features["purchase_days"] == reference["purchase_days"]).mean() > 0.05
    unknown = pd.concat([reference.drop("interval_std_days"), pd.Series({"interval_std_days": np.nan})])
    for median in (reference, unknown):
        expected = _drivers_predicting_every_row(result.model, features, median, candidates)
        pd.testing.assert_frame_equal(_drivers(result.model, features, median, candidates), expected, check_exact=True)
        assert expected["driver_1"].notna().mean() > 0.5


def test_scores_and_holdout_figures_are_the_models_own_predictions(simulated_orders: pd.DataFrame) -> None:
    """Scoring sums each customer's probability from the per-tree values the drivers keep, and the holdout
    figures from those permutation importance keeps: both must be exactly the model's predict_proba."""
    from sklearn.metrics import brier_score_loss

    from crm_pipelines.analytics.churn import _calibration_table, _classifier, _scores

    result = train_churn_model(simulated_orders, "2023-12-31", horizon_days=90)
    features = result.features.set_index("customer_id")
    expected = result.model.predict_proba(features)[:, 1]
    np.testing.assert_array_equal(result.scores["churn_probability"].to_numpy(), expected)
    rescored = _scores(result.model, features, result.reference, list(result.driver_candidates))
    pd.testing.assert_frame_equal(rescored, result.scores, check_exact=True)

    # The holdout check as the model computes it, by hand: a model fitted on the training window.
    train_day, holdout_day = day_number(result.metrics["train_cutoff"]), day_number(result.metrics["holdout_cutoff"])
    days = purchase_days(simulated_orders)
    train_x = churn_features(simulated_orders, result.metrics["train_cutoff"])
    holdout_x = churn_features(simulated_orders, result.metrics["holdout_cutoff"])
    train_y = churn_labels(days, train_x.index, train_day, 90)
    holdout_y = churn_labels(days, holdout_x.index, holdout_day, 90)
    predicted = _classifier(0).fit(train_x, train_y).predict_proba(holdout_x)[:, 1]
    assert result.metrics["brier_score"] == float(brier_score_loss(holdout_y, predicted))
    assert result.metrics["mean_predicted_holdout"] == float(predicted.mean())
    pd.testing.assert_frame_equal(result.calibration, _calibration_table(predicted, holdout_y), check_exact=True)


@pytest.mark.parametrize(
    ("ids", "allowed"),
    [
        (["a", None, "b", np.nan], ["a", None]),
        (["a", "c"], []),
        ([], ["x"]),
        (pd.Index(["1", "2"]), pd.Series([1, 3])),
        (pd.Series(["a", None], dtype="str"), pd.Series(["b", None], dtype="str")),
        (pd.Series([f"c{i}" for i in range(1000)], dtype="str"), pd.Index([f"c{i}" for i in range(0, 2000, 3)])),
    ],
)
def test_ids_in_answers_as_pandas_isin_of_strings(ids, allowed) -> None:
    from crm_pipelines.analytics.predictive_tables import ids_in

    expected = pd.Series(ids, dtype=object).astype("str").isin(pd.Series(allowed, dtype=object).astype("str"))
    got = ids_in(ids, allowed)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, expected.to_numpy(dtype=bool))
