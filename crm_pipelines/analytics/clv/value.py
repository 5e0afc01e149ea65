"""Customer lifetime value and per-customer scores from a fitted purchase model and spend model.

CLV over ``months`` months is the discrete monthly approximation of lifetimes'
``customer_lifetime_value``: the expected purchases of each month (the difference of the
cumulative conditional expectations at the month's end and start) times the expected order value,
discounted at the end of the month,

    CLV = margin * E(M) * sum_{i=1..months} (E[Y(i d)] - E[Y((i-1) d)]) / (1 + rate_m)^i,

with d = 365.25 / 12 days in the model's time unit and rate_m = (1 + annual rate)^(1/12) - 1, the
monthly rate equivalent to the configured annual one. Unlike lifetimes, whose ``discount_rate`` is
per month and whose months are 30 days (or 4.345 weeks), the rate here is annual and months are
calendar-average months. The result is in the reporting currency, gross of costs unless ``margin``
is below 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_pipelines.analytics.clv._data import ArrayLike, history_index
from crm_pipelines.analytics.clv.bgnbd import BgNbdFit
from crm_pipelines.analytics.clv.gamma_gamma import GammaGammaFit
from crm_pipelines.analytics.clv.pareto_nbd import ParetoNbdFit
from crm_pipelines.analytics.clv.settings import ClvSettings

TransactionFit = BgNbdFit | ParetoNbdFit
DAYS_PER_MONTH = 365.25 / 12


def monthly_discount_rate(annual_rate: float) -> float:
    """The monthly rate that compounds to ``annual_rate`` over twelve months."""
    if not 0 <= annual_rate < 1:
        raise ValueError(f"annual discount rate must be in [0, 1), got {annual_rate}")
    return (1.0 + annual_rate) ** (1.0 / 12.0) - 1.0


class _Forecaster:
    """Purchase forecasts for many customers, each computed once where it can be.

    P(alive) depends on the whole history (x, t_x, T) and is computed once per distinct history;
    the expectation given alive depends on (x, T) only (and the horizon), so it is computed once
    per distinct (x, T), which on daily data is a small fraction of the customers.
    """

    def __init__(self, fit: TransactionFit, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> None:
        self.fit = fit
        x, t_x, age, self.history_of_row = history_index(frequency, recency, T)
        self.alive = fit.probability_alive(x, t_x, age)
        pair_x, _, pair_age, self.pair_of_history = history_index(x, np.zeros_like(x), age)
        self.pair_x, self.pair_age = pair_x, pair_age

    def _per_row(self, if_alive_per_pair: np.ndarray) -> np.ndarray:
        return (if_alive_per_pair[self.pair_of_history] * self.alive)[self.history_of_row]

    def probability_alive(self) -> np.ndarray:
        return self.alive[self.history_of_row]

    def expected_purchases(self, t: float) -> np.ndarray:
        return self._per_row(self.fit.expected_purchases_if_alive(t, self.pair_x, self.pair_age))

    def discounted_expected_purchases(self, months: int, discount_rate_annual: float) -> np.ndarray:
        month = DAYS_PER_MONTH / self.fit.time_unit_days
        factor = 1.0 / (1.0 + monthly_discount_rate(discount_rate_annual))
        previous = np.zeros(len(self.pair_x))
        total = np.zeros(len(self.pair_x))
        for i in range(1, months + 1):
            cumulative = self.fit.expected_purchases_if_alive(i * month, self.pair_x, self.pair_age)
            total += (cumulative - previous) * factor**i
            previous = cumulative
        return self._per_row(total)


def discounted_expected_purchases(
    transaction_fit: TransactionFit,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    *,
    months: int = 12,
    discount_rate_annual: float = 0.10,
) -> np.ndarray:
    """Sum over the next ``months`` months of each month's expected purchases, discounted."""
    forecaster = _Forecaster(transaction_fit, frequency, recency, T)
    return forecaster.discounted_expected_purchases(months, discount_rate_annual)


def customer_lifetime_value(
    transaction_fit: TransactionFit,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    expected_order_value: ArrayLike,
    *,
    months: int = 12,
    discount_rate_annual: float = 0.10,
    margin: float = 1.0,
) -> np.ndarray:
    """Discounted expected revenue (times ``margin``) over the next ``months`` months, per customer."""
    purchases = discounted_expected_purchases(
        transaction_fit, frequency, recency, T, months=months, discount_rate_annual=discount_rate_annual
    )
    return margin * np.asarray(expected_order_value, dtype=float) * purchases


def score_customers(
    summary: pd.DataFrame,
    transaction_fit: TransactionFit,
    spend_fit: GammaGammaFit,
    settings: ClvSettings | None = None,
    *,
    margin: float = 1.0,
) -> pd.DataFrame:
    """Per-customer predictions for a :func:`summary_from_orders` frame fitted in the same time unit.

    Columns: customer_id, frequency, recency, T, monetary_value, probability_alive,
    expected_purchases_<h>d for each configured horizon, expected_order_value and clv_<n>m.
    Predictions are computed once per distinct (frequency, recency, T) history.
    """
    settings = settings or ClvSettings()
    if abs(transaction_fit.time_unit_days - settings.time_unit_days) > 1e-9:
        raise ValueError(
            f"the purchase model was fitted in {transaction_fit.time_unit_days}-day units but the settings "
            f"say {settings.time_unit_days}; summarise and fit with the same time_unit_days"
        )
    summary = summary.reset_index(drop=True)
    forecaster = _Forecaster(transaction_fit, summary["frequency"], summary["recency"], summary["T"])
    unit = transaction_fit.time_unit_days
    scores = pd.DataFrame(
        {
            "customer_id": summary["customer_id"].astype("str"),
            "frequency": summary["frequency"].astype("int64"),
            "recency": summary["recency"].astype(float),
            "T": summary["T"].astype(float),
            "monetary_value": summary["monetary_value"].astype(float),
            "probability_alive": forecaster.probability_alive(),
        }
    )
    for days in settings.horizon_days:
        scores[f"expected_purchases_{days}d"] = forecaster.expected_purchases(days / unit)
    expected_value = spend_fit.expected_order_value(scores["frequency"], scores["monetary_value"])
    scores["expected_order_value"] = expected_value
    purchases = forecaster.discounted_expected_purchases(settings.clv_months, settings.discount_rate_annual)
    scores[f"clv_{settings.clv_months}m"] = margin * expected_value * purchases
    return scores
