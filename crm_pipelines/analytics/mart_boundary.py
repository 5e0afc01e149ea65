"""Where the model code's names become the names BI reads, and what each mart is keyed and indexed by.

The analytics functions keep the names their literature uses (``frequency``, ``recency``, ``T``,
``monetary``), which are ambiguous or BI-hostile in a warehouse shared by many tables: ``T`` must be
quoted in SQL, ``date`` and ``rank`` are SQL keywords, and ``frequency`` means purchases in the RFM
segments but repeat purchase days in the lifetime value. The marts rename them here, once, at the
boundary (:func:`to_mart_frame`), and the README's changelog lists every rename.

The personal-data policy (``pii:`` in crm.yaml) applies here too, after the renames
(:func:`to_published_mart`): every mart goes through it, and the BI file copies the marts as published.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from crm_pipelines.analytics.clv.settings import ClvSettings
from crm_pipelines.analytics.cycle_columns import CYCLE_MART_GRAIN, CYCLE_MART_KEYS
from crm_pipelines.analytics.mart_columns import (
    CHURN_RISK,
    CLV,
    MART_COLUMNS,
    PII_COLUMNS,
    predictive_columns,
)
from crm_pipelines.analytics.pii_settings import PiiSettings
from crm_pipelines.schema import Column

if TYPE_CHECKING:
    import pandas as pd

    from crm_pipelines.checks.rules import SuiteSpec

# Model name -> mart name, per mart. The lifetime value's are renamed by
# predictive_tables.lifetime_value_frame, which also converts their time unit to weeks.
MART_RENAMES: dict[str, dict[str, str]] = {
    "customer_360": {"orders": "purchases", "revenue": "net_revenue"},
    "customer_segments": {"frequency": "purchases", "monetary": "net_revenue"},
    "crm_kpis": {"date": "kpi_date", "orders": "purchases", "revenue": "net_revenue"},
    "cross_sell_recommendations": {"rank": "recommendation_rank", "level": "recommendation_level"},
    "retention_cohorts": {"revenue": "gross_revenue"},
    CLV: {
        "frequency": "repeat_purchases",
        "recency": "first_to_last_purchase_weeks",
        "T": "customer_age_weeks",
        "monetary_value": "avg_repeat_purchase_value",
    },
}

# What one row of each mart is: the primary key on PostgreSQL, the comment of the table, and the
# "One row per" column of docs/marts.md (a test keeps them in step).
MART_KEYS: dict[str, tuple[str, ...]] = {
    "customer_360": ("customer_id",),
    "customer_segments": ("customer_id",),
    "crm_kpis": ("kpi_date",),
    "cross_sell_recommendations": ("customer_id", "recommendation_rank"),
    "marketing_audiences": ("customer_id", "audience"),
    CLV: ("customer_id",),
    CHURN_RISK: ("customer_id",),
    "retention_cohorts": ("cohort_month", "months_since_first"),
    "retention_summary": ("period_month",),
    "clv_model_params": ("run_id", "model", "parameter"),
    "clv_model_diagnostics": ("run_id", "calibration_frequency"),
    "churn_model_metrics": ("run_id",),
    **CYCLE_MART_KEYS,
}

MART_GRAIN: dict[str, str] = {
    "customer_360": "customer",
    "customer_segments": "customer",
    "crm_kpis": "day",
    "cross_sell_recommendations": "customer and recommendation",
    "marketing_audiences": "consented customer and audience",
    CLV: "customer",
    CHURN_RISK: "customer with a purchase",
    "retention_cohorts": "cohort month and month since first purchase",
    "retention_summary": "month",
    "clv_model_params": "weekly run, model and parameter (history)",
    "clv_model_diagnostics": "weekly run and calibration-frequency bucket (history)",
    "churn_model_metrics": "weekly run (history)",
    **CYCLE_MART_GRAIN,
}

# The per-customer marts customer_360 left-joins, and their columns it does not repeat (they restate
# the 360's own figures or describe the other table's run).
CUSTOMER_360_EXTRAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "customer_segments",
        ("recency_days", "purchases", "net_revenue", "orders_recent", "orders_previous", "engagement"),
    ),
    (
        CLV,
        (
            "repeat_purchases",
            "first_to_last_purchase_weeks",
            "customer_age_weeks",
            "avg_repeat_purchase_value",
            "expected_purchases_90d",
            "expected_order_value",
            "model",
            "model_run_id",
            "as_of",
        ),
    ),
    (
        CHURN_RISK,
        (
            "driver_1",
            "driver_1_effect",
            "driver_2",
            "driver_2_effect",
            "driver_3",
            "driver_3_effect",
            "horizon_days",
            "model_run_id",
            "model_as_of",
            "as_of",
        ),
    ),
)


def all_mart_columns(settings: ClvSettings | None = None) -> dict[str, tuple[Column, ...]]:
    """Every mart's declared columns (customer_360 with the columns it joins), for ``settings``."""
    marts = {**MART_COLUMNS, **predictive_columns(settings)}
    marts["customer_360"] = customer_360_columns(settings)
    return marts


def customer_360_columns(settings: ClvSettings | None = None) -> tuple[Column, ...]:
    """customer_360's own columns, then the joined marts' columns it keeps, declared as in their tables."""
    marts = {**MART_COLUMNS, **predictive_columns(settings)}
    own = MART_COLUMNS["customer_360"]
    seen = {c.name for c in own}
    joined = []
    for table, dropped in CUSTOMER_360_EXTRAS:
        for column in marts[table]:
            if column.name not in seen and column.name not in dropped:
                seen.add(column.name)
                joined.append(column)
    return (*own, *joined)


def to_mart_frame(table: str, frame: pd.DataFrame, columns: Sequence[Column]) -> pd.DataFrame:
    """``frame`` with the mart's names, its declared ``columns`` first in their order, others after."""
    renamed = frame.rename(columns=MART_RENAMES.get(table, {}))
    declared = [c.name for c in columns if c.name in renamed.columns]
    rest = [c for c in renamed.columns if c not in set(declared)]
    return renamed[[*declared, *rest]]


def pii_marts(settings: ClvSettings | None = None) -> dict[str, tuple[str, ...]]:
    """The marts holding personal data, and which of :data:`PII_COLUMNS` each holds."""
    marts = {t: tuple(c.name for c in cols if c.name in PII_COLUMNS) for t, cols in all_mart_columns(settings).items()}
    return {t: names for t, names in marts.items() if names}


def to_published_mart(
    table: str, frame: pd.DataFrame, columns: Sequence[Column], suite: SuiteSpec, pii: PiiSettings
) -> tuple[pd.DataFrame, tuple[Column, ...], SuiteSpec]:
    """The mart as BI reads it: model names renamed (:func:`to_mart_frame`), then the ``pii`` policy
    applied to its personal-data columns; the declared ``columns`` and the contract ``suite`` follow
    the renamed (``<col>_sha256``) and dropped columns, so what is validated is what is published."""
    from crm_pipelines.analytics.pii import protect_frame

    mart = protect_frame(table, to_mart_frame(table, frame, columns), columns, pii, PII_COLUMNS)
    return mart.frame, mart.columns, suite.with_columns_changed(mart.renamed, mart.dropped)
