"""The columns of the marts BI reads, with their types and meanings: one place for docs and metadata.

docs/marts.md lists every column exactly as :func:`columns_markdown` renders it (a test keeps them in
step); assets pass :func:`column_types` to ``Warehouse.publish`` and build ``dagster/column_schema``
from these tuples.
"""

from __future__ import annotations

from crm_pipelines.analytics.clv.settings import ClvSettings
from crm_pipelines.analytics.cycle_columns import (
    CAMPAIGN_AUDIENCE_COLUMNS,
    CYCLE_MART_COLUMNS,
    LOYALTY_360_COLUMNS,
    LOYALTY_KPI_COLUMNS,
)
from crm_pipelines.analytics.pii_settings import PiiClass
from crm_pipelines.schema import CUSTOMER_ID, UNIFIED_CUSTOMER_COLUMNS, Column, ColumnType


def _c(name: str, dtype: ColumnType, description: str) -> Column:
    return Column(name, dtype, description)


_PROFILE = {c.name: c for c in UNIFIED_CUSTOMER_COLUMNS}

CUSTOMER_360_COLUMNS: tuple[Column, ...] = (
    # created_at leads the temporal columns: BI tools take the first one as the default time axis.
    *(
        _PROFILE[n]
        for n in (
            "customer_id", "created_at", "updated_at", "first_name", "last_name", "email", "phone", "date_of_birth"
        )
    ),  # fmt: skip
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
        "purchases",
        "integer",
        "Purchases: completed orders that are not refunds (cancelled, refunded, pending excluded).",
    ),
    _c("cancelled_orders", "integer", "Orders with status cancelled."),
    _c("refunded_orders", "integer", "Refunds: orders with status refunded or a negative total."),
    _c("gross_revenue", "float", "Sum of purchases, reporting currency."),
    _c("net_revenue", "float", "Net revenue: gross_revenue minus the amount of negative refund records."),
    _c("average_order_value", "float", "gross_revenue / purchases; null without purchases."),
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
    _c("purchases", "integer", "Purchases, the RFM frequency (as customer_360.purchases)."),
    _c("net_revenue", "float", "Net revenue, the RFM monetary value (as customer_360.net_revenue)."),
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
    _c("kpi_date", "date", "The day (UTC)."),
    _c("customers_total", "integer", "Customers known by that day (created, or first purchase if earlier)."),
    _c("active_customers", "integer", "Customers with a purchase in the 30 days ending that day."),
    _c("purchasing_customers", "integer", "Customers with a purchase that day."),
    _c("new_customers", "integer", "Customers whose first purchase ever was that day."),
    _c("repeat_customers", "integer", "Customers purchasing that day who had purchased on an earlier day."),
    _c("purchases", "integer", "Purchases that day."),
    _c("net_revenue", "float", "Net revenue that day: purchases minus negative refund records, by order date."),
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
    _c("recommendation_rank", "integer", "1 = the strongest recommendation for the customer."),
    _c("recommendation_level", "string", "category or product."),
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
    # Loyalty and campaign columns are added by the assets (crm_pipelines.assets.cycle_glue).
    "customer_360": (*CUSTOMER_360_COLUMNS, *LOYALTY_360_COLUMNS),
    "customer_segments": CUSTOMER_SEGMENTS_COLUMNS,
    "crm_kpis": (*CRM_KPIS_COLUMNS, *LOYALTY_KPI_COLUMNS),
    "cross_sell_recommendations": CROSS_SELL_COLUMNS,
    "marketing_audiences": (*MARKETING_AUDIENCES_COLUMNS, *CAMPAIGN_AUDIENCE_COLUMNS),
    **CYCLE_MART_COLUMNS,
}


# The personal data in the marts, by class: ``pii:`` in crm.yaml decides per class what every mart
# keeps of these columns (crm_pipelines.analytics.pii). city, region and country stay: they are the
# coarse location the masked address shows.
PII_COLUMNS: dict[str, PiiClass] = {
    "first_name": "name",
    "last_name": "name",
    "email": "email",
    "phone": "phone",
    "date_of_birth": "birth_date",
    "address_line1": "address",
    "address_line2": "address",
    "postcode": "address",
}


def column_types(table: str) -> dict[str, ColumnType]:
    """Column name -> type of ``marts.<table>``, for ``Warehouse.publish(column_types=...)``."""
    return {c.name: c.dtype for c in MART_COLUMNS[table]}


def column_line(column: Column) -> str:
    return f"- `{column.name}` ({column.dtype}): {column.description}"


def columns_markdown(table: str) -> str:
    """The column list of ``marts.<table>`` as docs/marts.md shows it: one line per column."""
    return "\n".join(column_line(c) for c in MART_COLUMNS[table])


# -- predictive marts --------------------------------------------------------------------------------
# Their shapes live here with the other marts' so docs/marts.md ("Predictive marts") is rendered from
# one module. They stay out of MART_COLUMNS: customer_lifetime_value's columns follow the clv settings
# (horizons, CLV months), so :func:`predictive_columns` builds them for the configured settings.
CLV_PARAMS = "clv_model_params"
CLV_DIAGNOSTICS = "clv_model_diagnostics"
CHURN_METRICS = "churn_model_metrics"
CLV = "customer_lifetime_value"
RETENTION_COHORTS = "retention_cohorts"
RETENTION_SUMMARY = "retention_summary"
CHURN_RISK = "churn_risk"

_RUN_ID = _c("run_id", "string", "The Dagster run that fitted the model.")
_AS_OF = _c("as_of", "date", "The as-of day: orders up to its end were used.")

CLV_PARAMS_COLUMNS: tuple[Column, ...] = (
    _RUN_ID,
    _c("fitted_at", "timestamp", "When the model was fitted (UTC)."),
    _AS_OF,
    _c("model", "string", "bgnbd or pareto_nbd (purchase counts), gamma_gamma (spend per purchase)."),
    _c("parameter", "string", "r, alpha, a, b (BG/NBD); r, alpha, s, beta (Pareto/NBD); p, q, gamma."),
    _c("value", "float", "Maximum-likelihood estimate."),
    _c("std_error", "float", "Standard error from the Hessian; null when it cannot be computed."),
    _c(
        "time_unit",
        "string",
        "Unit of the models' recency, T (customer age) and scale parameters (week by default); none for spend.",
    ),
    _c("time_unit_days", "float", "The same unit in days (clv.time_unit_days, 7); null for gamma_gamma."),
    _c("log_likelihood", "float", "Total log-likelihood of the model's fit over its customers."),
    _c("customers_used", "integer", "Customers fitted on (repeat buyers only for gamma_gamma)."),
    _c("converged", "boolean", "The fit converged: the optimizer said so, or the log-likelihood's gradient is flat."),
)

CLV_DIAGNOSTICS_COLUMNS: tuple[Column, ...] = (
    _RUN_ID,
    _AS_OF,
    _c("model", "string", "The purchase-count model checked (bgnbd or pareto_nbd)."),
    _c("calibration_end", "date", "Last day of the calibration period; the holdout runs from then to as_of."),
    _c(
        "calibration_frequency",
        "string",
        "Repeat purchase days in the calibration period: 0 to 6, 7+, or all.",
    ),
    _c("customers", "integer", "Customers in the bucket (first purchase up to calibration_end)."),
    _c("actual_mean", "float", "Mean purchase days per customer in the holdout, observed."),
    _c("predicted_mean", "float", "The same, predicted by the model fitted on the calibration period."),
    _c("actual_total", "float", "Purchase days in the holdout, observed."),
    _c("predicted_total", "float", "Purchase days in the holdout, predicted."),
    _c("correlation", "float", "Row all only: Pearson correlation of predicted and actual per customer."),
    _c("mean_absolute_error", "float", "Row all only: mean |predicted - actual| purchases per customer."),
)

CHURN_METRICS_COLUMNS: tuple[Column, ...] = (
    _RUN_ID,
    _c("trained_at", "timestamp", "When the model was trained (UTC)."),
    _AS_OF,
    _c("horizon_days", "integer", "A customer has churned when she does not buy within this many days."),
    _c("train_cutoff", "date", "Features as of this day, labels from the following horizon: training."),
    _c("holdout_cutoff", "date", "The same one horizon later: the holdout check, then the refit."),
    _c("customers_train", "integer", "Customers with a purchase by train_cutoff."),
    _c("customers_holdout", "integer", "Customers with a purchase by holdout_cutoff."),
    _c("customers_scored", "integer", "Customers with a purchase by as_of."),
    _c("churn_rate_train", "float", "Share of training customers who churned."),
    _c("churn_rate_holdout", "float", "Share of holdout customers who churned."),
    _c("roc_auc", "float", "Holdout ROC AUC of the model trained one horizon earlier (0.5 = chance)."),
    _c("brier_score", "float", "Holdout mean squared error of the churn probability (lower is better)."),
    _c("mean_predicted_holdout", "float", "Mean predicted churn probability in the holdout."),
    _c(
        "calibration",
        "string",
        "Holdout deciles of predicted risk, JSON: customers, mean_predicted, observed_churn_rate.",
    ),
    _c("feature_importance", "string", "JSON: per feature, the mean drop in holdout ROC AUC when shuffled."),
    _c("model_path", "string", "Where the fitted model was saved (joblib)."),
)

RETENTION_COHORTS_COLUMNS: tuple[Column, ...] = (
    _c("cohort_month", "date", "Month of the customers' first purchase (first day of the month)."),
    _c("months_since_first", "integer", "Months from the cohort month to the activity month (0, 1, ...)."),
    _c("activity_month", "date", "The month counted."),
    _c("cohort_size", "integer", "Customers whose first purchase fell in the cohort month."),
    _c("customers_active", "integer", "Of those, customers with a purchase in the activity month."),
    _c("retention_rate", "float", "customers_active / cohort_size (1 in month 0)."),
    _c("gross_revenue", "float", "The cohort's purchase value in the activity month (refunds not subtracted)."),
    _c("revenue_retention", "float", "gross_revenue / the cohort's gross_revenue in its first month."),
    _c("period_complete", "boolean", "The activity month ended on or before the as-of day."),
)

RETENTION_SUMMARY_COLUMNS: tuple[Column, ...] = (
    _c("period_month", "date", "The calendar month (first day)."),
    _c("customers_acquired_before", "integer", "Customers whose first purchase came before the month."),
    _c("active_previous_month", "integer", "Customers with a purchase in the previous month."),
    _c("active_customers", "integer", "Customers with a purchase in the month."),
    _c("new_customers", "integer", "Of those, first purchase in the month."),
    _c("returning_customers", "integer", "Of those, first purchase earlier."),
    _c("retained_customers", "integer", "Customers with a purchase in both the previous month and this one."),
    _c("retention_rate", "float", "retained_customers / active_previous_month; null when that is 0."),
    _c("churn_rate", "float", "1 - retention_rate."),
    _c("repeat_customers", "integer", "Customers with purchases on two or more days by the month's end."),
    _c("repeat_purchase_rate", "float", "repeat_customers / customers acquired by the month's end."),
    _c("period_complete", "boolean", "The month ended on or before the as-of day."),
)

CHURN_DRIVER_COLUMNS: tuple[Column, ...] = tuple(
    column
    for k in (1, 2, 3)
    for column in (
        _c(f"driver_{k}", "string", f"The feature raising her risk most, rank {k} (null when none does)."),
        _c(
            f"driver_{k}_effect",
            "float",
            "Churn probability it adds over setting it to the population median.",
        ),
    )
)

CHURN_RISK_COLUMNS: tuple[Column, ...] = (
    CUSTOMER_ID,
    _c("churn_probability", "float", "Probability of no purchase within horizon_days after the as-of day."),
    _c("risk_decile", "integer", "Decile of churn_probability among scored customers, 10 = riskiest."),
    *CHURN_DRIVER_COLUMNS,
    _AS_OF,
    _c("horizon_days", "integer", "The churn horizon (clv.churn_horizon_days)."),
    _c(
        "model_run_id",
        "string",
        "The run that trained the model used (churn_model_metrics.run_id); this run when trained inline.",
    ),
    _c("model_as_of", "date", "The as-of day the model was trained on."),
)


def clv_columns(settings: ClvSettings) -> tuple[Column, ...]:
    """Columns of marts.customer_lifetime_value; the horizon and CLV columns follow the settings."""
    return (
        CUSTOMER_ID,
        _c(
            "repeat_purchases",
            "integer",
            "Purchase days after the first (the models' frequency); 0 without purchases.",
        ),
        _c(
            "first_to_last_purchase_weeks",
            "float",
            "First to last purchase day in weeks (the models' recency); null without purchases.",
        ),
        _c(
            "customer_age_weeks",
            "float",
            "First purchase day to the as-of day in weeks (the models' T); null without purchases.",
        ),
        _c(
            "avg_repeat_purchase_value",
            "float",
            "Mean value of the repeat purchase days (the models' monetary value); 0 without repeat purchases.",
        ),
        _c(
            "probability_alive",
            "float",
            "Probability the customer still buys (has not dropped out); null without purchases.",
        ),
        *(
            _c(
                f"expected_purchases_{h}d",
                "float",
                f"Expected purchase days in the next {h} days; 0 without purchases.",
            )
            for h in settings.horizon_days
        ),
        _c(
            "expected_order_value",
            "float",
            "Gamma-Gamma expected value of a next purchase; null without purchases.",
        ),
        _c(
            f"clv_{settings.clv_months}m",
            "float",
            f"Expected revenue of the next {settings.clv_months} months, "
            f"discounted at {settings.discount_rate_annual:.0%} a year; 0 without purchases.",
        ),
        _c("model", "string", "The purchase-count model (bgnbd or pareto_nbd), with gamma_gamma for spend."),
        _c(
            "model_run_id",
            "string",
            "The run that fitted the parameters used (clv_model_params.run_id); this run when fitted inline.",
        ),
        _AS_OF,
    )


def predictive_columns(settings: ClvSettings | None = None) -> dict[str, tuple[Column, ...]]:
    """Every predictive mart's columns for ``settings`` (the defaults by default), as docs/marts.md
    lists them."""
    return {
        CLV: clv_columns(settings or ClvSettings()),
        CHURN_RISK: CHURN_RISK_COLUMNS,
        RETENTION_COHORTS: RETENTION_COHORTS_COLUMNS,
        RETENTION_SUMMARY: RETENTION_SUMMARY_COLUMNS,
        CLV_PARAMS: CLV_PARAMS_COLUMNS,
        CLV_DIAGNOSTICS: CLV_DIAGNOSTICS_COLUMNS,
        CHURN_METRICS: CHURN_METRICS_COLUMNS,
    }
