"""``staging``: one typed, normalized table per canonical entity, across all sources.

Rows that cannot be staged go to ``quarantine.rejected_rows`` with their reason, and
``audit.reconciliation`` proves per run and source that raw = staged + quarantined + superseded.
"""

from collections.abc import Iterator

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from crm_pipelines.assets.metadata import counts_markdown
from crm_pipelines.assets.publishing import publish_checked
from crm_pipelines.assets.raw import raw_asset_key
from crm_pipelines.assets.validation import validate_table, validated_check_specs
from crm_pipelines.checks.suites import STAGING_CONTRACT, staging_suite
from crm_pipelines.config import CrmConfig
from crm_pipelines.resources.run_window import RunWindowResource
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import (
    AUDIT,
    CUSTOMER_IDENTIFIERS_COLUMNS,
    ENTITIES,
    QUARANTINE,
    QUARANTINE_COLUMNS,
    RAW,
    RECONCILIATION_COLUMNS,
    STAGING,
    raw_table_name,
)
from crm_pipelines.staging.references import referenced_customers
from crm_pipelines.staging.stage import StagingResult, stage_entity
from crm_pipelines.warehouse import Warehouse

QUARANTINE_TABLE = "rejected_rows"
RECONCILIATION_TABLE = "reconciliation"
RECONCILES_CHECK = "reconciles"
REFERENCING_ENTITIES = ("orders", "support_tickets", "subscriptions", "campaign_events", "survey_responses")


def staging_key(entity: str) -> dg.AssetKey:
    return dg.AssetKey([STAGING, entity])


def record_quarantine(warehouse: Warehouse, layer: str, entity: str, rows: pd.DataFrame) -> None:
    """Replace the layer's quarantined rows for ``entity`` with this run's."""
    warehouse.create_table(QUARANTINE, QUARANTINE_TABLE, QUARANTINE_COLUMNS)
    warehouse.delete(QUARANTINE, QUARANTINE_TABLE, sa.and_(sa.column("layer") == layer, sa.column("entity") == entity))
    if len(rows):
        types = {c.name: c.dtype for c in QUARANTINE_COLUMNS}
        warehouse.write_table(rows, QUARANTINE, QUARANTINE_TABLE, mode="append", column_types=types)


def record_reconciliation(warehouse: Warehouse, rows: pd.DataFrame) -> None:
    warehouse.create_table(AUDIT, RECONCILIATION_TABLE, RECONCILIATION_COLUMNS)
    if len(rows):
        types = {c.name: c.dtype for c in RECONCILIATION_COLUMNS}
        warehouse.write_table(rows, AUDIT, RECONCILIATION_TABLE, mode="append", column_types=types)


def reconciliation_check(asset_key: dg.AssetKey, reconciliation: pd.DataFrame) -> dg.AssetCheckResult:
    bad = reconciliation[~reconciliation["reconciles"].astype(bool)] if len(reconciliation) else reconciliation
    shown = reconciliation[["source", "rows_in", "rows_out", "rows_quarantined", "rows_superseded", "reconciles"]]
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=RECONCILES_CHECK,
        passed=bool(len(bad) == 0),
        severity=dg.AssetCheckSeverity.ERROR,
        description="Every raw row is staged, quarantined or superseded by a newer version of its record.",
        metadata={
            "rows_in": int(reconciliation["rows_in"].sum()) if len(reconciliation) else 0,
            "rows_out": int(reconciliation["rows_out"].sum()) if len(reconciliation) else 0,
            "rows_quarantined": int(reconciliation["rows_quarantined"].sum()) if len(reconciliation) else 0,
            "rows_superseded": int(reconciliation["rows_superseded"].sum()) if len(reconciliation) else 0,
            "by_source": dg.MetadataValue.md(shown.to_markdown(index=False) if len(shown) else "_(no sources)_"),
        },
    )


def _read_raw(warehouse: Warehouse, config: CrmConfig, entity: str):
    frames = []
    for source in config.sources_for(entity):
        table = raw_table_name(source.name, entity)
        if warehouse.table_exists(RAW, table):
            frames.append((source, warehouse.read_table(RAW, table)))
    return frames


def _stage(
    context: dg.AssetExecutionContext, warehouse: Warehouse, config: CrmConfig, entity: str, cutoff
) -> StagingResult:
    result = stage_entity(
        config, entity, _read_raw(warehouse, config, entity), run_id=context.run.run_id, as_of_end=cutoff
    )
    record_quarantine(warehouse, STAGING, entity, result.quarantined)
    record_reconciliation(warehouse, result.reconciliation)
    return result


def _contract(context, config: CrmConfig, wh: Warehouse, key: dg.AssetKey, entity: str, frame: pd.DataFrame, cutoff):
    suite = staging_suite(entity, as_of_end=cutoff, currencies=list(config.fx_rates))
    return validate_table(context, config, wh, key, f"{STAGING}.{entity}", frame, suite)


def _staging_metadata(result: StagingResult) -> dict:
    quarantined = result.quarantined
    by_rule = quarantined["rule"].value_counts().to_dict() if len(quarantined) else {}
    return {
        "rows_quarantined": len(quarantined),
        "quarantined_by_rule": counts_markdown(by_rule, key="rule"),
        "summary": dg.MetadataValue.json({k: _jsonable(v) for k, v in result.summary.items()}),
    }


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "item"):
        return value.item()
    return value


def build_staging_asset(config: CrmConfig, entity: str, warehouse_kind: str) -> dg.AssetsDefinition:
    key = staging_key(entity)
    ent = ENTITIES[entity]

    @dg.asset(
        key=key,
        group_name=STAGING,
        kinds={"pandas", warehouse_kind},
        deps=[raw_asset_key(s.name, entity) for s in config.sources_for(entity)],
        description=f"{ent.description} Typed and normalized, one row per record and source; "
        "rejected rows are in quarantine.rejected_rows.",
        check_specs=validated_check_specs(key, STAGING_CONTRACT, RECONCILES_CHECK),
    )
    def _staging(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        cutoff = run_window.cutoff()
        result = _stage(context, wh, config, entity, cutoff)
        checks = [
            *_contract(context, config, wh, key, entity, result.staged, cutoff),
            reconciliation_check(key, result.reconciliation),
        ]
        return publish_checked(
            context,
            wh,
            STAGING,
            entity,
            result.staged,
            checks,
            columns=ent.staged_columns,
            extra_metadata=_staging_metadata(result),
        )

    return _staging


def build_staging_customers(config: CrmConfig, warehouse_kind: str) -> dg.AssetsDefinition:
    """Customers, plus stubs for people other entities name but no source delivered, plus identifiers."""
    key = staging_key("customers")
    identifiers_key = staging_key("customer_identifiers")
    referencing = [e for e in REFERENCING_ENTITIES if config.sources_for(e)]
    ent = ENTITIES["customers"]

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                key,
                group_name=STAGING,
                kinds={"pandas", warehouse_kind},
                deps=[raw_asset_key(s.name, "customers") for s in config.sources_for("customers")]
                + [staging_key(e) for e in referencing],
                description="Customer records of every source, typed and normalized (emails validated, "
                "phones "
                "E.164, countries ISO 3166), plus 'referenced' stubs for people that orders, tickets, "
                "subscriptions, events or surveys name but no source delivered as a customer.",
            ),
            dg.AssetSpec(
                identifiers_key,
                group_name=STAGING,
                kinds={"pandas", warehouse_kind},
                description="Identifier fields sources declare for customers (loyalty card, tax number), long form.",
            ),
        ],
        check_specs=validated_check_specs(key, STAGING_CONTRACT, RECONCILES_CHECK),
    )
    def _staging_customers(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> Iterator[dg.MaterializeResult]:
        wh = warehouse.get_warehouse()
        cutoff = run_window.cutoff()
        result = _stage(context, wh, config, "customers", cutoff)
        others = {e: wh.read_table(STAGING, e) for e in referencing if wh.table_exists(STAGING, e)}
        stubs = referenced_customers(config, others, result.staged)
        customers = pd.concat([result.staged, stubs], ignore_index=True) if len(stubs) else result.staged
        checks = [
            *_contract(context, config, wh, key, "customers", customers, cutoff),
            reconciliation_check(key, result.reconciliation),
        ]
        yield publish_checked(
            context,
            wh,
            STAGING,
            "customers",
            customers,
            checks,
            columns=ent.staged_columns,
            asset_key=key,
            extra_metadata={**_staging_metadata(result), "referenced_stubs": len(stubs)},
        )
        yield publish_checked(
            context,
            wh,
            STAGING,
            "customer_identifiers",
            result.identifiers,
            [],
            columns=CUSTOMER_IDENTIFIERS_COLUMNS,
            asset_key=identifiers_key,
        )

    return _staging_customers


def build_staging_assets(config: CrmConfig, warehouse_kind: str) -> list[dg.AssetsDefinition]:
    assets = [
        build_staging_asset(config, entity, warehouse_kind)
        for entity in ENTITIES
        if entity != "customers" and config.sources_for(entity)
    ]
    assets.append(build_staging_customers(config, warehouse_kind))
    return assets
