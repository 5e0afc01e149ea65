"""The columns of the marts BI reads, with their types and meanings: one place for docs and metadata.

docs/marts.md lists every column exactly as :func:`columns_markdown` renders it (a test keeps them in
step); assets pass :func:`column_types` to ``Warehouse.publish`` and build ``dagster/column_schema``
from these tuples.
"""

from __future__ import annotations

from crm_pipelines.schema import UNIFIED_CUSTOMER_COLUMNS, Column, ColumnType


def _c(name: str, dtype: ColumnType, description: str) -> Column:
    return Column(name, dtype, description)


_PROFILE = {c.name: c for c in UNIFIED_CUSTOMER_COLUMNS}

CUSTOMER_360_COLUMNS: tuple[Column, ...] = (
    *(_PROFILE[n] for n in ("customer_id", "first_name", "last_name", "email", "phone", "date_of_birth")),
    _c(
        "age",
        "integer",
        "Completed years on the as-of day; null when the birth date is unknown or implausible.",
    ),
    _c("age_band", "string", "<25, 25-34, 35-44, 45-54, 55-64, 65+ or unknown."),
    *(
        _PROFILE[n]
        for n in (
            "gender",
            "address_line1",
            "address_line2",
            "city",
            "postcode",
            "region",
            "country",
            "company",
            "created_at",
            "updated_at",
            "record_count",
            "sources",
        )
    ),  # fmt: skip
    _c("first_order_at", "timestamp", "First purchase (completed, not refunded order) up to the as-of day."),
    _c("last_order_at", "timestamp", "Latest purchase up to the as-of day."),
    _c(
        "days_since_last_order",
        "integer",
        "Days from the latest purchase to the as-of day; null without one.",
    ),
    _c(
        "orders",
        "integer",
        "Purchases: completed orders that are not refunds (cancelled, refunded, pending excluded).",
    ),
    _c("cancelled_orders", "integer", "Orders with status cancelled."),
    _c("refunded_orders", "integer", "Refunds: orders with status refunded or a negative total."),
    _c("gross_revenue", "float", "Sum of purchases, reporting currency."),
    _c("revenue", "float", "Net revenue: gross_revenue minus the amount of negative refund records."),
    _c("average_order_value", "float", "gross_revenue / orders; null without purchases."),
    _c("categories", "string", "Distinct categories of purchased lines, sorted, comma-separated."),
    _c("tickets_opened", "integer", "Support tickets opened up to the as-of day."),
    _c(
        "tickets_resolved",
        "integer",
        "Of those, resolved by the as-of day (resolved_at, else status resolved/closed).",
    ),
    _c("avg_satisfaction", "float", "Mean CSAT (1-5) of the customer's rated tickets."),
    _c("survey_responses", "integer", "Survey answers given up to the as-of day."),
    _c("latest_nps", "integer", "Likelihood to recommend (0-10) in the customer's latest answer."),
    _c("campaign_opens", "integer", "Email open events."),
    _c("campaign_clicks", "integer", "Email click events."),
    _c(
        "marketing_consent",
        "string",
        "subscribed, unsubscribed, pending or unknown: the latest consent across "
        "every list and source (see Consent and audiences).",
    ),  # fmt: skip
    _c(
        "consent_at",
        "timestamp",
        "When that consent was given (the opt-in for subscribed, else the latest signal).",
    ),
)

CUSTOMER_SEGMENTS_COLUMNS: tuple[Column, ...] = (
    _PROFILE["customer_id"],
    _c("recency_days", "integer", "Days from the latest purchase to the as-of day; null without purchases."),
    _c("frequency", "integer", "Purchases (as customer_360.orders)."),
    _c("monetary", "float", "Net revenue (as customer_360.revenue)."),
    _c("orders_recent", "integer", "Purchases in the last growth_window_days (180) up to the as-of day."),
    _c("orders_previous", "integer", "Purchases in the growth_window_days before those."),
    _c("r_score", "integer", "Recency quintile 1-5 among buyers, 5 = most recent; 1 without purchases."),
    _c("f_score", "integer", "Frequency quintile 1-5 among buyers, 5 = most purchases; 1 without purchases."),
    _c("m_score", "integer", "Monetary quintile 1-5 among buyers, 5 = most revenue; 1 without purchases."),
    _c("rfm_cell", "string", 'The three scores as digits, R then F then M ("545").'),
    _c("rfm_segment", "string", "RFM segment name from the R x FM grid, or No Purchases."),
    _c("value_tier", "string", "key, potential or ordinary."),
    _c("relationship_type", "string", "emotional, complementary, social, repeat, transactional or none."),
    _c("bought_add_on", "boolean", "Bought a core category and a non-core (add-on) category."),
    _c("engagement", "integer", "Tickets opened + survey answers + email clicks."),
    _c("cluster_id", "integer", "Behavioural cluster, 0 = highest mean net revenue; -1 without purchases."),
    _c("cluster_label", "string", 'Readable cluster description ("high value, frequent, engaged").'),
)

CRM_KPIS_COLUMNS: tuple[Column, ...] = (
    _c("date", "date", "The day (UTC)."),
    _c("customers_total", "integer", "Customers known by that day (created, or first purchase if earlier)."),
    _c("active_customers", "integer", "Customers with a purchase in the 30 days ending that day."),
    _c("purchasing_customers", "integer", "Customers with a purchase that day."),
    _c("new_customers", "integer", "Customers whose first purchase ever was that day."),
    _c("repeat_customers", "integer", "Customers purchasing that day who had purchased on an earlier day."),
    _c("orders", "integer", "Purchases that day."),
    _c("revenue", "float", "Net revenue that day: purchases minus negative refund records, by order date."),
    _c("retention_rate", "float", "Of customers active in days d-179..d-90, the share active in d-89..d."),
    _c("churn_rate", "float", "1 - retention_rate."),
    _c("tickets_opened", "integer", "Support tickets opened that day."),
    _c("avg_satisfaction", "float", "Mean CSAT of tickets rated (resolved) in the 30 days ending that day."),
    _c(
        "median_first_response_hours",
        "float",
        "Median hours to first response of tickets opened in the 30 days ending that day and answered by it.",
    ),  # fmt: skip
    _c(
        "resolved_share",
        "float",
        "Of tickets opened in the 30 days ending that day, the share resolved by it.",
    ),
    _c("nps", "float", "% promoters (9-10) - % detractors (0-6) of answers in the 90 days ending that day."),
    _c("nps_responses", "integer", "Survey answers with a score in the 90 days ending that day."),
    _c(
        "email_conversion_rate",
        "float",
        "Of (customer, day) email clicks in the 30 days ending 7 days before "
        "that day, the share followed by a purchase within 7 days.",
    ),  # fmt: skip
)

CROSS_SELL_COLUMNS: tuple[Column, ...] = (
    _PROFILE["customer_id"],
    _c("rank", "integer", "1 = the strongest recommendation for the customer."),
    _c("level", "string", "category or product."),
    _c("recommendation", "string", "The category (or product id) the customer has not bought yet."),
    _c("recommendation_name", "string", "Its name: the category, or the product name."),
    _c("based_on", "string", "The bought category (or product) whose rule recommends it."),
    _c("lift", "float", "confidence / share of customers buying the recommendation; > 1 = bought together."),
    _c("confidence", "float", "Share of customers buying based_on who also bought the recommendation."),
    _c("support", "float", "Share of all customers who bought both."),
)

MARKETING_AUDIENCES_COLUMNS: tuple[Column, ...] = (
    _PROFILE["customer_id"],
    _c(
        "audience_group",
        "string",
        "The segmentation: rfm_segment, value_tier, relationship_type or cluster_label.",
    ),
    _c("audience", "string", 'The segment the customer belongs to ("Champions").'),
    _c("email", "string", "The opted-in address to send to (lower case)."),
    _c("consent_at", "timestamp", "When the opt-in behind this export was given."),
)

MART_COLUMNS: dict[str, tuple[Column, ...]] = {
    "customer_360": CUSTOMER_360_COLUMNS,
    "customer_segments": CUSTOMER_SEGMENTS_COLUMNS,
    "crm_kpis": CRM_KPIS_COLUMNS,
    "cross_sell_recommendations": CROSS_SELL_COLUMNS,
    "marketing_audiences": MARKETING_AUDIENCES_COLUMNS,
}


def column_types(table: str) -> dict[str, ColumnType]:
    """Column name -> type of ``marts.<table>``, for ``Warehouse.publish(column_types=...)``."""
    return {c.name: c.dtype for c in MART_COLUMNS[table]}


def column_line(column: Column) -> str:
    return f"- `{column.name}` ({column.dtype}): {column.description}"


def columns_markdown(table: str) -> str:
    """The column list of ``marts.<table>`` as docs/marts.md shows it: one line per column."""
    return "\n".join(column_line(c) for c in MART_COLUMNS[table])
