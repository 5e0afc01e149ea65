"""Columns of the marts that verify CRM work: campaigns, portfolio, migrations, goals, loyalty.

Registered in :data:`crm_pipelines.analytics.mart_columns.MART_COLUMNS`, so docs/marts.md lists them
as rendered (a test keeps them in step) and publishing types them.
"""

from __future__ import annotations

from crm_pipelines.schema import CUSTOMER_ID, Column, ColumnType


def _c(name: str, dtype: ColumnType, description: str) -> Column:
    return Column(name, dtype, description)


CAMPAIGN_ASSIGNMENTS = "campaign_assignments"
CAMPAIGN_PERFORMANCE = "campaign_performance"
SEGMENT_HISTORY = "customer_segment_history"
CUSTOMER_PORTFOLIO = "customer_portfolio"
SEGMENT_MIGRATIONS = "segment_migrations"
CRM_GOALS = "crm_goals"

_CAMPAIGN = _c("campaign", "string", "The campaign's name in crm.yaml (campaigns:).")
_MONTH = _c("month", "date", "The calendar month (first day).")

CAMPAIGN_ASSIGNMENTS_COLUMNS: tuple[Column, ...] = (
    _CAMPAIGN,
    CUSTOMER_ID,
    _c("campaign_group", "string", "treatment (may be contacted) or control (held out, not exported while measured)."),
    _c("enrolled_at", "timestamp", "When she entered the campaign: the enrolling run's as-of day, or her first "
       "sent/holdout event for a source campaign. Her measurement window starts that day."),
    _c("assigned_by", "string", "hash (stable hash of campaign and customer_id) or source (the events)."),
    _c("loyalty_member", "boolean", "A loyalty member when she was enrolled."),
)  # fmt: skip

CAMPAIGN_PERFORMANCE_COLUMNS: tuple[Column, ...] = (
    _CAMPAIGN,
    _c("metric", "string", "purchase or retention (share with a purchase in the window), revenue (per customer)."),
    _c("subgroup", "string", "all, or loyalty_member / non_member for campaigns with loyalty_comparison."),
    _c("is_goal_metric", "boolean", "The metric is the campaign's goal (the target applies to it)."),
    _c("window_days", "integer", "Each customer's measurement window: goal.within_days from her enrolment day."),
    _c("first_enrolled_at", "timestamp", "The first enrolment."),
    _c("measured_until", "timestamp", "Outcomes counted up to here: the last window's end, or the as-of instant."),
    _c("window_complete", "boolean", "Every customer's window has ended by the as-of day: the result is final."),
    _c("customers_treatment", "integer", "Customers in the treatment group (of the subgroup)."),
    _c("customers_control", "integer", "Customers in the control group (of the subgroup)."),
    _c("converted_treatment", "integer", "Treated customers with a purchase in their window."),
    _c("converted_control", "integer", "Control customers with a purchase in their window."),
    _c("value_treatment", "float", "Conversion rate, or net revenue per customer, of the treatment group."),
    _c("value_control", "float", "The same for the control group."),
    _c("uplift_absolute", "float", "value_treatment - value_control."),
    _c("uplift_absolute_low", "float", "95% interval, low end: Newcombe (Wilson) for rates, Welch for revenue."),
    _c("uplift_absolute_high", "float", "95% interval, high end."),
    _c("uplift_relative", "float", "value_treatment / value_control - 1; null when value_control is 0."),
    _c("uplift_relative_low", "float", "95% interval, low end: log ratio (rates), delta method (revenue)."),
    _c("uplift_relative_high", "float", "95% interval, high end."),
    _c("p_value", "float", "Two-sided p-value of no difference: score test (rates), Welch's t-test (revenue)."),
    _c("incremental", "float", "uplift_absolute x customers_treatment: extra conversions, or extra revenue."),
    _c("target_uplift", "float", "The campaign's target_uplift, on its goal metric's rows."),
    _c("target_reached", "boolean", "uplift_absolute >= target_uplift and p_value < 0.05; null without target."),
)  # fmt: skip

SEGMENT_HISTORY_COLUMNS: tuple[Column, ...] = (
    _MONTH,
    _c("month_index", "integer", "year x 12 + month - 1: consecutive months differ by 1."),
    CUSTOMER_ID,
    _c("rfm_segment", "string", "Her RFM segment in that month's snapshot."),
    _c("value_tier", "string", "Her value tier in that month's snapshot."),
    _c("portfolio_cell", "string", "stars, develop, maintain or reconsider (see Portfolio matrix)."),
    _c("expected_clv", "float", "Expected CLV (customer_lifetime_value.clv_12m) at the snapshot; null if unknown."),
    _c("revenue_month", "float", "Net revenue in the month up to the snapshot day."),
    _c("active_month", "boolean", "A purchase in the month up to the snapshot day."),
    _c("snapshot_as_of", "date", "The as-of day of the snapshot: the month's latest nightly run, or its last day."),
    _c("snapshot_kind", "string", "nightly, or backfill (rebuilt from order history once)."),
)  # fmt: skip

CUSTOMER_PORTFOLIO_COLUMNS: tuple[Column, ...] = (
    _MONTH,
    _c("dimension", "string", "total, value_tier, rfm_segment or portfolio_cell."),
    _c("segment", "string", "The tier, segment or cell (all for total)."),
    _c("customers", "integer", "Customers in the snapshot."),
    _c("active_customers", "integer", "Of those, with a purchase in the month."),
    _c("net_revenue", "float", "Their net revenue in the month."),
    _c("customer_equity", "float", "Sum of their expected CLV; null when no CLV was known that month."),
    _c("equity_change", "float", "customer_equity minus the previous month's; null for the first month."),
    _c("equity_share", "float", "customer_equity / the month's total equity."),
    _c("month_complete", "boolean", "The month ended on or before the as-of day."),
)  # fmt: skip

SEGMENT_MIGRATIONS_COLUMNS: tuple[Column, ...] = (
    _c("month", "date", "The month moved into (first day); from_segment is the previous month's."),
    _c("dimension", "string", "rfm_segment or value_tier."),
    _c("from_segment", "string", "The segment in the previous month's snapshot."),
    _c("to_segment", "string", "The segment in this month's snapshot."),
    _c("customers", "integer", "Customers in both snapshots making this move (or staying)."),
    _c("moved", "boolean", "from_segment differs from to_segment."),
    _c("share_of_from", "float", "customers / all customers of from_segment present in both months."),
)  # fmt: skip

CRM_GOALS_COLUMNS: tuple[Column, ...] = (
    _c("goal", "string", "The goal's name in crm.yaml (goals:)."),
    _c("kpi", "string", "A crm_kpis column, or customer_equity / portfolio_customers / "
       "portfolio_active_customers / portfolio_revenue."),
    _c("period", "string", "2026-03 (month), 2026Q1 (quarter) or 2026 (year)."),
    _c("period_start", "date", "First day of the period."),
    _c("period_end", "date", "Last day of the period."),
    _c("target", "float", "The goal's target."),
    _c("actual", "float", "Sum over the period for counts and revenue; else the value on its last day (month)."),
    _c("gap", "float", "actual - target."),
    _c("met", "boolean", "actual >= target (at_most: actual <= target); null without data."),
    _c("direction", "string", "at_least or at_most."),
    _c("period_complete", "boolean", "The period ended on or before the as-of day."),
)  # fmt: skip

LOYALTY_360_COLUMNS: tuple[Column, ...] = (
    _c("loyalty_member", "boolean", "Holds a declared loyalty identifier (loyalty.identifiers) on a record."),
    _c("regular_customer", "boolean", "At least loyalty.regular_min_purchases (4) purchases in the "
       "loyalty.regular_window_days (365) days up to the as-of day."),
)  # fmt: skip

CAMPAIGN_AUDIENCE_COLUMNS: tuple[Column, ...] = (
    _c("campaign", "string", "The campaign of a campaign audience (audience_group campaign); else null."),
    _c(
        "campaign_group", "string", "treatment on campaign audiences (control customers are never exported); else null."
    ),
)

LOYALTY_KPI_COLUMNS: tuple[Column, ...] = (
    _c("loyalty_members", "integer", "Customers holding a loyalty identifier (today's identifiers)."),
    _c("regular_customers", "integer", "Regular customers by that day (see customer_360.regular_customer)."),
)

CYCLE_MART_COLUMNS: dict[str, tuple[Column, ...]] = {
    CAMPAIGN_ASSIGNMENTS: CAMPAIGN_ASSIGNMENTS_COLUMNS,
    CAMPAIGN_PERFORMANCE: CAMPAIGN_PERFORMANCE_COLUMNS,
    SEGMENT_HISTORY: SEGMENT_HISTORY_COLUMNS,
    CUSTOMER_PORTFOLIO: CUSTOMER_PORTFOLIO_COLUMNS,
    SEGMENT_MIGRATIONS: SEGMENT_MIGRATIONS_COLUMNS,
    CRM_GOALS: CRM_GOALS_COLUMNS,
}

# Primary key on PostgreSQL, and the "One row per" of docs/marts.md (merged into mart_boundary's tables).
CYCLE_MART_KEYS: dict[str, tuple[str, ...]] = {
    CAMPAIGN_ASSIGNMENTS: ("campaign", "customer_id"),
    CAMPAIGN_PERFORMANCE: ("campaign", "metric", "subgroup"),
    SEGMENT_HISTORY: ("customer_id", "month"),
    CUSTOMER_PORTFOLIO: ("month", "dimension", "segment"),
    SEGMENT_MIGRATIONS: ("month", "dimension", "from_segment", "to_segment"),
    CRM_GOALS: ("goal", "period"),
}
CYCLE_MART_GRAIN: dict[str, str] = {
    CAMPAIGN_ASSIGNMENTS: "campaign and enrolled customer",
    CAMPAIGN_PERFORMANCE: "campaign, metric and subgroup",
    SEGMENT_HISTORY: "customer and month",
    CUSTOMER_PORTFOLIO: "month, dimension and segment",
    SEGMENT_MIGRATIONS: "month, dimension and from/to segment",
    CRM_GOALS: "goal and period",
}
