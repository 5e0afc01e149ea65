"""``marts``: retention cohorts and the monthly retention summary."""

from collections.abc import Sequence
from typing import TYPE_CHECKING

import dagster as dg

from crm_pipelines.analytics.mart_columns import (
    RETENTION_COHORTS,
    RETENTION_COHORTS_COLUMNS,
    RETENTION_SUMMARY,
    RETENTION_SUMMARY_COLUMNS,
)
from crm_pipelines.analytics.predictive_tables import (
    column_names,
    empty_frame,
    month_dates,
)
from crm_pipelines.assets.core import core_key
from crm_pipelines.assets.marts import publish_mart, validate_mart
from crm_pipelines.assets.modeling import (
    image_md,
    mart_spec,
    table_md,
)
from crm_pipelines.checks.rules import SuiteSpec
from crm_pipelines.checks.suites import NON_NEGATIVE, RATE, mart_suite
from crm_pipelines.config import CrmConfig
from crm_pipelines.facts.marts import read_retention_cohorts, read_retention_summary
from crm_pipelines.facts.orders import PURCHASES
from crm_pipelines.resources.run_window import RunWindowResource
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import MARTS
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd


def build_retention_assets(config: CrmConfig, warehouse_kind: str) -> list[dg.AssetsDefinition]:
    """Cohort retention and the monthly retention summary (nightly)."""

    def spec(table: str, description: str, kinds: set[str], deps: Sequence[dg.AssetKey], weekly: bool) -> dict:
        return mart_spec(config, warehouse_kind, table, description, kinds, deps, weekly)

    def validated(context, wh: Warehouse, table: str, frame: "pd.DataFrame", suite: SuiteSpec) -> list:
        return validate_mart(context, config, wh, table, frame, suite)

    @dg.asset(
        **spec(
            RETENTION_COHORTS,
            "Monthly acquisition cohorts: share of each cohort buying in each later month, and its revenue; "
            "computed in the warehouse from core.purchases.",
            {"sql"},
            [core_key(PURCHASES)],
            weekly=False,
        )
    )
    def retention_cohorts_mart(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        cohorts = read_retention_cohorts(wh, run_window.cutoff())
        frame = (
            month_dates(cohorts, "cohort_month", "activity_month")
            if len(cohorts)
            else empty_frame(RETENTION_COHORTS_COLUMNS)
        )
        suite = mart_suite(
            f"{MARTS}.{RETENTION_COHORTS}",
            columns=column_names(RETENTION_COHORTS_COLUMNS),
            ranges={"retention_rate": RATE, "cohort_size": NON_NEGATIVE, "customers_active": NON_NEGATIVE},
            unique_keys=[["cohort_month", "months_since_first"]],
        )
        from crm_pipelines.analytics.reporting import retention_heatmap_png

        extra = {"cohorts": int(frame["cohort_month"].nunique())}
        if len(frame):
            extra["retention_heatmap"] = image_md(retention_heatmap_png(frame), "retention")
        return publish_mart(context, config, wh, RETENTION_COHORTS, frame, suite, RETENTION_COHORTS_COLUMNS, extra)

    @dg.asset(
        **spec(
            RETENTION_SUMMARY,
            "One row per month: active, new and returning customers, "
            "month-to-month retention and churn, repeat-purchase rate; computed in the warehouse from "
            "core.purchases. The month holding the as-of day is flagged period_complete = false.",
            {"sql"},
            [core_key(PURCHASES)],
            weekly=False,
        )
    )
    def retention_summary_mart(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        summary = read_retention_summary(wh, run_window.cutoff())
        frame = month_dates(summary, "period_month") if len(summary) else empty_frame(RETENTION_SUMMARY_COLUMNS)
        suite = mart_suite(
            f"{MARTS}.{RETENTION_SUMMARY}",
            columns=column_names(RETENTION_SUMMARY_COLUMNS),
            ranges={"retention_rate": RATE, "churn_rate": RATE, "repeat_purchase_rate": RATE},
            unique_keys=[["period_month"]],
        )
        recent = frame.tail(12).iloc[::-1]
        extra = {"last_12_months": table_md(recent, float_digits=3)}
        return publish_mart(context, config, wh, RETENTION_SUMMARY, frame, suite, RETENTION_SUMMARY_COLUMNS, extra)

    return [retention_cohorts_mart, retention_summary_mart]
