"""``core`` facts: purchases and per-customer order and engagement facts, computed in the warehouse.

Each is one query run by the warehouse (DuckDB or PostgreSQL) into a temporary table that is then
swapped in; nothing passes through Python but a five-row preview. The marts and the models read these
tables, one row per customer, instead of the order lines. The queries are in :mod:`crm_pipelines.facts`.
"""

import dagster as dg
import sqlalchemy as sa

from crm_pipelines.assets.core import core_key
from crm_pipelines.assets.marts import core_deps
from crm_pipelines.assets.metadata import table_metadata
from crm_pipelines.config import CrmConfig
from crm_pipelines.facts import build
from crm_pipelines.facts.engagement import CUSTOMER_ENGAGEMENT_FACTS, ENGAGEMENT_INPUTS
from crm_pipelines.facts.orders import CUSTOMER_CATEGORY_FACTS, CUSTOMER_ORDER_FACTS, PURCHASES
from crm_pipelines.resources.run_window import RunWindowResource
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import CORE
from crm_pipelines.warehouse import Warehouse


def facts_result(wh: Warehouse, table: str, rows: int, **extra) -> dg.MaterializeResult:
    preview = wh.query(sa.select(sa.text("*")).select_from(wh.table(CORE, table)).limit(5))
    metadata = table_metadata(wh, CORE, table, preview, extra=extra)
    metadata["dagster/row_count"] = rows
    return dg.MaterializeResult(metadata=metadata)


def build_facts_assets(config: CrmConfig, warehouse_kind: str) -> list[dg.AssetsDefinition]:
    statuses = config.clv.purchase_statuses
    window_days = config.segments.growth_window_days
    kinds = {"sql", warehouse_kind}

    @dg.asset(
        key=core_key(PURCHASES),
        group_name=CORE,
        kinds=kinds,
        deps=core_deps(config, "orders"),
        description="One row per purchase up to the run's cutoff: an order of a known customer whose status "
        "is one of clv.purchase_statuses and that is not a refund (the one definition every mart uses).",
    )
    def purchases(warehouse: WarehouseResource, run_window: RunWindowResource) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        rows = build.build_purchases(wh, run_window.cutoff(), statuses)
        return facts_result(wh, PURCHASES, rows, purchase_statuses=", ".join(statuses))

    @dg.asset(
        key=core_key(CUSTOMER_ORDER_FACTS),
        group_name=CORE,
        kinds=kinds,
        deps=[core_key(PURCHASES), *core_deps(config, "unified_customers", "orders")],
        description="One row per customer: purchases, cancellations, refunds, gross and net revenue, first "
        "and last order, purchases by window, and the (x, t_x, T) summary the CLV models read.",
    )
    def customer_order_facts(warehouse: WarehouseResource, run_window: RunWindowResource) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        rows = build.build_customer_order_facts(wh, run_window.cutoff(), window_days)
        return facts_result(wh, CUSTOMER_ORDER_FACTS, rows, window_days=window_days)

    @dg.asset(
        key=core_key(CUSTOMER_CATEGORY_FACTS),
        group_name=CORE,
        kinds=kinds,
        deps=[core_key(PURCHASES), *core_deps(config, "order_items")],
        description="One row per customer and category bought: purchased order lines of that category.",
    )
    def customer_category_facts(warehouse: WarehouseResource) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        return facts_result(wh, CUSTOMER_CATEGORY_FACTS, build.build_customer_category_facts(wh))

    @dg.asset(
        key=core_key(CUSTOMER_ENGAGEMENT_FACTS),
        group_name=CORE,
        kinds=kinds,
        deps=core_deps(config, "unified_customers", *ENGAGEMENT_INPUTS),
        description="One row per customer: tickets opened and resolved, average satisfaction, survey answers, "
        "latest NPS, campaign opens and clicks, up to the run's cutoff.",
    )
    def customer_engagement_facts(
        warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        rows = build.build_customer_engagement_facts(wh, run_window.cutoff())
        return facts_result(wh, CUSTOMER_ENGAGEMENT_FACTS, rows)

    return [purchases, customer_order_facts, customer_category_facts, customer_engagement_facts]


FACT_KEYS = {name: core_key(name) for name in build.FACT_TABLES}
