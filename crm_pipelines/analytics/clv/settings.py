"""Settings of the lifetime-value, retention and churn models: the ``clv:`` section of crm.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ClvSettings(BaseModel):
    """How customer lifetime value and churn risk are estimated.

    - ``model``: the purchase-count model, ``bgnbd`` (robust, fast) or ``pareto_nbd``.
    - ``time_unit_days``: the unit in which recency, age and model scale parameters are expressed.
    - ``horizon_days``: horizons of the expected-purchases columns.
    - ``discount_rate_annual`` and ``clv_months``: CLV discounts expected monthly revenue over
      ``clv_months`` months at the monthly equivalent of this annual rate.
    - ``calibration_holdout_days``: the last days of history held out to check the model's forecasts.
    - ``gamma_gamma_max_correlation``: the spend model refuses data whose frequency and spend
      correlate more strongly than this (absolute Pearson r).
    - ``churn_horizon_days``: a customer has churned when she does not buy within this many days.
    - ``purchase_statuses``: order statuses that count as purchases (refunds never do).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["bgnbd", "pareto_nbd"] = "bgnbd"
    time_unit_days: float = Field(7.0, gt=0, le=366)
    horizon_days: tuple[int, ...] = Field((90, 365), min_length=1)
    discount_rate_annual: float = Field(0.10, ge=0, lt=1)
    clv_months: int = Field(12, ge=1, le=120)
    calibration_holdout_days: int = Field(180, ge=7)
    gamma_gamma_max_correlation: float = Field(0.3, gt=0, le=1)
    churn_horizon_days: int = Field(90, ge=7)
    purchase_statuses: tuple[str, ...] = Field(("completed",), min_length=1)

    @field_validator("horizon_days")
    @classmethod
    def _positive_horizons(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(h <= 0 for h in value):
            raise ValueError(f"horizon_days must be positive, got {list(value)}")
        return tuple(sorted(set(value)))

    @field_validator("purchase_statuses")
    @classmethod
    def _known_statuses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        allowed = {"completed", "pending", "other"}
        unknown = sorted({s.lower() for s in value} - allowed)
        if unknown:
            raise ValueError(
                f"purchase_statuses may hold {sorted(allowed)} (refunds and cancellations never count), "
                f"not {unknown}"
            )
        return tuple(s.lower() for s in value)
