"""``core`` facts: purchases and per-customer order and engagement facts, computed in the warehouse.

Each is one query run by the warehouse (DuckDB or PostgreSQL) into a temporary table, validated
there against its contract (:func:`crm_pipelines.checks.suites.facts_suite`, compiled to SQL
aggregates), then swapped in; nothing passes through Python but counts, a few offending values and a
five-row preview. A version breaking its contract is kept in ``quarantine`` and not swapped in. The
marts and the models read these tables, one row per customer, instead of the order lines. The
queries are in :mod:`crm_pipelines.facts`.
"""

import dagster as dg

from crm_pipelines.assets.core import core_key
from crm_pipelines.assets.marts import core_deps
from crm_pipelines.assets.metadata import table_metadata
from crm_pipelines.assets.publishing import blocking_failures, copy_to_quarantine
from crm_pipelines.assets.validation import validate_in_place, validated_check_specs
from crm_pipelines.checks.suites import CORE_CONTRACT, facts_suite
from crm_pipelines.config import CrmConfig
from crm_pipelines.facts import build
from crm_pipelines.facts.engagement import CUSTOMER_ENGAGEMENT_FACTS, ENGAGEMENT_INPUTS
from crm_pipelines.facts.orders import CUSTOMER_CATEGORY_FACTS, CUSTOMER_ORDER_FACTS, PURCHASES
from crm_pipelines.resources.run_window import RunWindowResource
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import CORE, QUARANTINE
from crm_pipelines.warehouse import Warehouse


class ContractGate:
    """Validates a facts table's new version in the warehouse before it is swapped in.

    On a blocking failure the new version is copied to ``quarantine`` and refused (the previous table
    stays); the check results are kept for the asset to report either way."""

    def __init__(self, context: dg.AssetExecutionContext, config: CrmConfig, wh: Warehouse, table: str):
        self.context, self.config, self.wh, self.table = context, config, wh, table
        self.results: list[dg.AssetCheckResult] = []
        self.rejected: str | None = None

    def __call__(self, schema: str, staging_name: str) -> bool:
        self.results = validate_in_place(
            self.context, self.config, self.wh, core_key(self.table), schema, staging_name,
            facts_suite(self.table), f"{CORE}.{self.table}",
        )
        failures = blocking_failures(self.results)
        if not failures:
            return True
        rejected = copy_to_quarantine(self.wh, CORE, staging_name, self.table, schema)
        self.rejected = f"{QUARANTINE}.{rejected}"
        self.context.log.error(
            f"{CORE}.{self.table} NOT published: its contract failed in the warehouse. The previous version "
            f"stays in place; the rejected version is in {self.rejected}."
        )
        return False


def facts_result(wh: Warehouse, table: str, rows: int, gate: ContractGate, **extra) -> dg.MaterializeResult:
    import sqlalchemy as sa
    if gate.rejected is None:
        preview = wh.query(sa.select(sa.text("*")).select_from(wh.table(CORE, table)).limit(5))
        metadata = table_metadata(wh, CORE, table, preview, extra=extra)
        metadata.update({"dagster/row_count": rows, "published": True})
    else:
        metadata = {"dagster/row_count": rows, "published": False, "rejected_table": gate.rejected, **extra}
    return dg.MaterializeResult(metadata=metadata, check_results=gate.results)


def build_facts_assets(config: CrmConfig, warehouse_kind: str) -> list[dg.AssetsDefinition]:
    statuses = config.clv.purchase_statuses
    window_days = config.segments.growth_window_days
    kinds = {"sql", warehouse_kind}

    @dg.asset(
        key=core_key(PURCHASES),
        group_name=CORE,
        kinds=kinds,
        deps=core_deps(config, "orders"),
        check_specs=validated_check_specs(core_key(PURCHASES), CORE_CONTRACT),
        description="One row per purchase up to the run's cutoff: an order of a known customer whose status "
        "is one of clv.purchase_statuses and that is not a refund (the one definition every mart uses).",
    )
    def purchases(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        gate = ContractGate(context, config, wh, PURCHASES)
        rows = build.build_purchases(wh, run_window.cutoff(), statuses, gate)
        return facts_result(wh, PURCHASES, rows, gate, purchase_statuses=", ".join(statuses))

    @dg.asset(
        key=core_key(CUSTOMER_ORDER_FACTS),
        group_name=CORE,
        kinds=kinds,
        deps=[core_key(PURCHASES), *core_deps(config, "unified_customers", "orders")],
        check_specs=validated_check_specs(core_key(CUSTOMER_ORDER_FACTS), CORE_CONTRACT),
        description="One row per customer: purchases, cancellations, refunds, gross and net revenue, first "
        "and last order, purchases by window, and the (x, t_x, T) summary the CLV models read.",
    )
    def customer_order_facts(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        gate = ContractGate(context, config, wh, CUSTOMER_ORDER_FACTS)
        rows = build.build_customer_order_facts(wh, run_window.cutoff(), window_days, gate)
        return facts_result(wh, CUSTOMER_ORDER_FACTS, rows, gate, window_days=window_days)

    @dg.asset(
        key=core_key(CUSTOMER_CATEGORY_FACTS),
        group_name=CORE,
        kinds=kinds,
        deps=[core_key(PURCHASES), *core_deps(config, "order_items")],
        check_specs=validated_check_specs(core_key(CUSTOMER_CATEGORY_FACTS), CORE_CONTRACT),
        description="One row per customer and category bought: purchased order lines of that category.",
    )
    def customer_category_facts(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        gate = ContractGate(context, config, wh, CUSTOMER_CATEGORY_FACTS)
        return facts_result(wh, CUSTOMER_CATEGORY_FACTS, build.build_customer_category_facts(wh, gate), gate)

    @dg.asset(
        key=core_key(CUSTOMER_ENGAGEMENT_FACTS),
        group_name=CORE,
        kinds=kinds,
        deps=core_deps(config, "unified_customers", *ENGAGEMENT_INPUTS),
        check_specs=validated_check_specs(core_key(CUSTOMER_ENGAGEMENT_FACTS), CORE_CONTRACT),
        description="One row per customer: tickets opened and resolved, average satisfaction, survey answers, "
        "latest NPS, campaign opens and clicks, up to the run's cutoff.",
    )
    def customer_engagement_facts(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        gate = ContractGate(context, config, wh, CUSTOMER_ENGAGEMENT_FACTS)
        rows = build.build_customer_engagement_facts(wh, run_window.cutoff(), gate)
        return facts_result(wh, CUSTOMER_ENGAGEMENT_FACTS, rows, gate)

    return [purchases, customer_order_facts, customer_category_facts, customer_engagement_facts]


FACT_KEYS = {name: core_key(name) for name in build.FACT_TABLES}
