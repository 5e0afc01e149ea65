"""CLV discounting, per-customer scores, holdout diagnostics and the one-call workflow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crm_pipelines.analytics.clv.bgnbd import BgNbdFit, fit_bgnbd
from crm_pipelines.analytics.clv.diagnostics import calibration_holdout_diagnostics
from crm_pipelines.analytics.clv.gamma_gamma import GammaGammaFit
from crm_pipelines.analytics.clv.pareto_nbd import ParetoNbdFit
from crm_pipelines.analytics.clv.settings import ClvSettings
from crm_pipelines.analytics.clv.simulate import simulate_orders
from crm_pipelines.analytics.clv.summary import summary_from_orders
from crm_pipelines.analytics.clv.value import (
    customer_lifetime_value,
    discounted_expected_purchases,
    monthly_discount_rate,
    score_customers,
)
from crm_pipelines.analytics.clv.workflow import run_clv

BG = BgNbdFit.from_params(r=0.243, alpha=4.414, a=0.793, b=2.426)
GG = GammaGammaFit.from_params(p=6.25, q=3.74, gamma=15.44, time_unit_days=float("nan"))
HISTORIES = pd.DataFrame(
    {
        "customer_id": pd.array(["a", "b", "c", "d"], dtype="str"),
        "frequency": [0, 2, 2, 12],
        "recency": [0.0, 30.43, 30.43, 37.0],
        "T": [38.86, 38.86, 38.86, 38.0],
        "monetary_value": [0.0, 22.35, 40.0, 30.0],
    }
)


@pytest.fixture(scope="module")
def orders() -> pd.DataFrame:
    return simulate_orders(6000, "2022-01-01", "2024-01-01", seed=3)


def test_settings_defaults_and_validation() -> None:
    settings = ClvSettings()
    assert (settings.model, settings.time_unit_days, settings.horizon_days) == ("bgnbd", 7.0, (90, 365))
    assert (settings.discount_rate_annual, settings.calibration_holdout_days) == (0.10, 180)
    assert (settings.gamma_gamma_max_correlation, settings.churn_horizon_days) == (0.3, 90)
    assert ClvSettings.model_validate({"horizon_days": [365, 30, 30]}).horizon_days == (30, 365)
    with pytest.raises(ValueError, match="refunds and cancellations never count"):
        ClvSettings(purchase_statuses=("completed", "refunded"))
    with pytest.raises(ValueError, match="extra"):
        ClvSettings.model_validate({"modle": "bgnbd"})
    with pytest.raises(ValueError):
        settings.model = "pareto_nbd"  # frozen


def test_monthly_rate_compounds_to_the_annual_rate() -> None:
    assert (1 + monthly_discount_rate(0.10)) ** 12 == pytest.approx(1.10)
    with pytest.raises(ValueError):
        monthly_discount_rate(1.5)


def test_undiscounted_purchases_telescope_to_the_twelve_month_expectation() -> None:
    x, t_x, T = HISTORIES["frequency"], HISTORIES["recency"], HISTORIES["T"]
    year = 12 * (365.25 / 12) / 7
    undiscounted = discounted_expected_purchases(BG, x, t_x, T, months=12, discount_rate_annual=0.0)
    assert undiscounted == pytest.approx(BG.expected_purchases(year, x, t_x, T), rel=1e-10)


def test_clv_is_the_discounted_monthly_sum() -> None:
    x, t_x, T = 12, 37.0, 38.0
    month = 365.25 / 12 / 7
    rate = 1.10 ** (1 / 12) - 1
    by_hand = sum(
        (BG.expected_purchases(i * month, x, t_x, T) - BG.expected_purchases((i - 1) * month, x, t_x, T))
        / (1 + rate) ** i
        for i in range(1, 13)
    )
    order_value = GG.expected_order_value(x, 30.0)
    clv = customer_lifetime_value(BG, [x], [t_x], [T], order_value, months=12, discount_rate_annual=0.10)
    assert clv[0] == pytest.approx(float(order_value * by_hand), rel=1e-12)
    cheaper_money = customer_lifetime_value(BG, [x], [t_x], [T], order_value, discount_rate_annual=0.0)
    assert cheaper_money[0] > clv[0]
    assert customer_lifetime_value(BG, [x], [t_x], [T], order_value, margin=0.3)[0] == pytest.approx(
        0.3 * clv[0]
    )


def test_scores_per_customer() -> None:
    scores = score_customers(HISTORIES, BG, GG, ClvSettings(horizon_days=(365, 90)))
    assert list(scores.columns) == [
        "customer_id",
        "frequency",
        "recency",
        "T",
        "monetary_value",
        "probability_alive",
        "expected_purchases_90d",
        "expected_purchases_365d",
        "expected_order_value",
        "clv_12m",
    ]
    a, b, c, d = (scores.iloc[i] for i in range(4))
    assert a["probability_alive"] == 1.0 and a["expected_order_value"] == pytest.approx(
        GG.population_mean_order_value()
    )
    # b and c share a purchase history: same purchase forecast, different spend.
    assert b["expected_purchases_365d"] == c["expected_purchases_365d"]
    assert b["expected_purchases_365d"] == pytest.approx(BG.expected_purchases(365 / 7, 2, 30.43, 38.86)[()])
    assert c["clv_12m"] > b["clv_12m"]
    assert d["expected_purchases_90d"] < d["expected_purchases_365d"]
    assert (scores["clv_12m"] >= 0).all()


def test_scores_refuse_mixed_time_units() -> None:
    in_days = BgNbdFit.from_params(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426, time_unit_days=1)
    with pytest.raises(ValueError, match="same time_unit_days"):
        score_customers(HISTORIES, in_days, GG)


def test_pareto_nbd_scores_too() -> None:
    pnbd = ParetoNbdFit.from_params(r=0.553, alpha=10.578, s=0.606, beta=11.669)
    scores = score_customers(HISTORIES, pnbd, GG)
    assert scores["probability_alive"].between(0, 1).all()
    assert scores["clv_12m"].notna().all()


def test_holdout_diagnostics_on_simulated_orders(orders: pd.DataFrame) -> None:
    calibration = summary_from_orders(orders, "2023-12-31", calibration_end="2023-07-04")
    fit = fit_bgnbd(calibration["frequency"], calibration["recency"], calibration["T"])
    diagnostics = calibration_holdout_diagnostics(calibration, fit)
    table = diagnostics.table
    assert table["calibration_frequency"].tolist() == ["0", "1", "2", "3", "4", "5", "6", "7+", "all"]
    assert table["customers"].iloc[-1] == len(calibration) == diagnostics.customers
    assert table["actual_total"].iloc[:-1].sum() == pytest.approx(calibration["frequency_holdout"].sum())
    assert diagnostics.holdout_duration == pytest.approx(180 / 7)
    # The data follow the model, so the forecast is close in total and tracks customers.
    assert diagnostics.predicted_total == pytest.approx(diagnostics.actual_total, rel=0.06)
    assert diagnostics.correlation > 0.5
    assert diagnostics.mean_absolute_error < 1.5
    # Frequent buyers are forecast to buy more, as they do.
    assert table["predicted_mean"].iloc[7] > table["predicted_mean"].iloc[0]


def test_run_clv_end_to_end(orders: pd.DataFrame) -> None:
    run = run_clv(orders, "2023-12-31", ClvSettings())
    assert run.transaction_fit.converged and run.spend_fit.converged
    assert (
        len(run.scores)
        == len(run.summary)
        == orders.loc[orders["status"] == "completed", "customer_id"].nunique()
    )
    assert run.parameters["model"].tolist() == ["bgnbd"] * 4 + ["gamma_gamma"] * 3
    assert run.diagnostics is not None and run.diagnostics.customers > 0
    # Simulated with r=0.8, alpha=8, a=0.8, b=4 per week.
    assert run.transaction_fit.params["r"] == pytest.approx(0.8, rel=0.15)
    assert run.transaction_fit.params["alpha"] == pytest.approx(8.0, rel=0.15)
    assert np.isfinite(run.scores["clv_12m"]).all()
    with pytest.raises(ValueError, match="no purchases"):
        run_clv(orders, "2021-06-30")
