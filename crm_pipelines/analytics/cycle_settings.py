"""``campaigns:``, ``goals:``, ``loyalty:`` and ``portfolio:`` in crm.yaml: the settings of the marts
that verify whether CRM work paid off (campaign_performance, crm_goals, customer_portfolio).

Kept apart from the analytics modules so that loading the configuration imports neither pandas nor
statsmodels.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NAME = r"^[a-z][a-z0-9_]*$"


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CampaignGoal(_Settings):
    """What a campaign should achieve within ``within_days`` of a customer's enrolment.

    - ``purchase``: a purchase (conversion rate);
    - ``revenue``: net revenue of purchases (revenue per customer);
    - ``retention``: still buying: a purchase in the window, for audiences at risk of churning.
    """

    metric: Literal["purchase", "revenue", "retention"] = "purchase"
    within_days: int = Field(30, ge=1, le=730)


class CampaignSettings(_Settings):
    """One campaign: its audience and dates, or the source campaign whose events define it."""

    name: str = Field(pattern=_NAME)
    audience: list[str] = Field(
        default_factory=list,
        description="Segments, value tiers, relationship types or cluster labels of marts.customer_segments; "
        "a customer in any of them is in the audience.",
    )
    source_campaign_id: str | None = Field(
        None,
        description="A campaign run outside this project: its 'sent' events define the treated customers "
        "and its 'holdout' events the control group (campaign_events.campaign_id).",
    )
    start: dt.date | None = Field(None, description="First day customers are enrolled.")
    end: dt.date | None = Field(None, description="Last day customers are enrolled.")
    goal: CampaignGoal = CampaignGoal()
    control_share: float = Field(0.10, gt=0, lt=1, description="Share of the audience held out as control.")
    target_uplift: float | None = Field(
        None,
        description="Absolute uplift the campaign should reach in its goal metric: a share (0.02 = 2 points) "
        "for purchase and retention, money per customer for revenue.",
    )
    loyalty_comparison: bool = Field(
        False, description="Also report the uplift of loyalty members and non-members separately."
    )

    @field_validator("audience", mode="before")
    @classmethod
    def _one_or_many(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _defined_once(self) -> CampaignSettings:
        if bool(self.audience) == bool(self.source_campaign_id):
            raise ValueError(
                f"campaign {self.name!r}: give exactly one of 'audience' (customers this project assigns) "
                "or 'source_campaign_id' (a campaign whose sent/holdout events a source delivers)"
            )
        if self.audience and (self.start is None or self.end is None):
            raise ValueError(f"campaign {self.name!r}: an audience campaign needs 'start' and 'end' dates")
        if self.start and self.end and self.end < self.start:
            raise ValueError(f"campaign {self.name!r}: end {self.end} is before start {self.start}")
        return self


class GoalSettings(_Settings):
    """A target for a KPI of marts.crm_kpis or a figure of marts.customer_portfolio, per period."""

    name: str = Field(pattern=_NAME)
    kpi: str = Field(
        description="A column of marts.crm_kpis (revenue, active_customers, nps, ...) or customer_equity, "
        "portfolio_customers, portfolio_active_customers, portfolio_revenue."
    )
    target: float
    period: Literal["month", "quarter", "year"] = "month"
    direction: Literal["at_least", "at_most"] = Field(
        "at_least", description="at_most for figures that should stay low (churn_rate)."
    )
    start: dt.date | None = Field(None, description="First period shown (default: the last 12 periods).")


class LoyaltySettings(_Settings):
    """Who is a loyalty member and who is a regular customer (customer_360, crm_kpis)."""

    identifiers: list[str] = Field(
        default_factory=lambda: ["loyalty_card"],
        description="Declared customer identifiers (sources' identifiers:) whose holders are members.",
    )
    regular_min_purchases: int = Field(4, ge=1, description="Purchases within the window that make a regular.")
    regular_window_days: int = Field(365, ge=7, le=3650)


class PortfolioSettings(_Settings):
    """marts.customer_portfolio and segment_migrations: month snapshots and the portfolio matrix."""

    backfill_months: int = Field(
        12, ge=0, le=60, description="Months of snapshots rebuilt from order history when none exist yet."
    )
    strength_cut: float = Field(
        3.5, ge=1, le=5, description="Mean of R and F score from which a relationship counts as strong."
    )
