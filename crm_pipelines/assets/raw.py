"""``raw``: one asset per source system and entity, loaded incrementally as delivered."""

import dagster as dg

from crm_pipelines.checks.suites import RAW_CONTRACT
from crm_pipelines.config import CrmConfig, SourceConfig
from crm_pipelines.ingest.contracts import SourceContractError
from crm_pipelines.ingest.errors import SourceError
from crm_pipelines.resources.run_window import RunWindowResource
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import RAW, raw_table_name

CONNECTOR_KINDS = {"csv": "csv", "parquet": "parquet", "jsonl": "json", "sql": "sql", "http": "api"}


def raw_asset_key(source: str, entity: str) -> dg.AssetKey:
    return dg.AssetKey([RAW, raw_table_name(source, entity)])


def build_raw_asset(config: CrmConfig, source: SourceConfig, entity: str, warehouse_kind: str) -> dg.AssetsDefinition:
    entity_cfg = source.entities[entity]
    location = entity_cfg.path or entity_cfg.table or entity_cfg.endpoint or "query"
    mode = entity_cfg.incremental.mode
    by_column = f" by {entity_cfg.incremental.column}" if entity_cfg.incremental.column else ""

    @dg.asset(
        key=raw_asset_key(source.name, entity),
        group_name=RAW,
        kinds={CONNECTOR_KINDS[source.connector.type], warehouse_kind},
        description=(
            f"{entity} as delivered by source `{source.name}` ({source.connector.type}: {location}), "
            f"loaded {mode}{by_column}, "
            "with _source, _ingested_at and _batch_id lineage columns."
        ),
        tags={"source": source.name, "entity": entity},
        check_specs=[
            dg.AssetCheckSpec(
                RAW_CONTRACT,
                asset=raw_asset_key(source.name, entity),
                blocking=True,
                description="Volume contract, judged before the delivery replaces anything: not empty unless "
                "optional, and no more than checks.max_row_drop_pct fewer rows than the last good delivery.",
            )
        ],
    )
    def _raw(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        # The connectors (httpx, duckdb, ...) are imported by a run, not by loading the definitions.
        from crm_pipelines.ingest.loading import ingest_entity

        try:
            result = ingest_entity(
                warehouse.get_warehouse(),
                config,
                source,
                entity,
                until=run_window.cutoff(),
                batch_id=context.run.run_id,
            )
        except SourceContractError as e:
            if config.checks.on_source_failure == "stop":
                raise dg.Failure(description=str(e), allow_retries=False) from None
            # skip_source: the last good delivery stays in raw and the run goes on with it.
            context.log.warning(f"{e} Going on with the other sources (checks.on_source_failure: skip_source).")
            return dg.MaterializeResult(
                metadata={"contract": "failed: source skipped", "problem": str(e)},
                check_results=[
                    dg.AssetCheckResult(
                        check_name=RAW_CONTRACT, passed=False, severity=dg.AssetCheckSeverity.WARN,
                        metadata={"problem": str(e)},
                    )
                ],
            )
        except SourceError as e:
            raise dg.Failure(description=str(e), allow_retries=False) from None
        context.log.info(
            f"{source.name}.{entity}: read {result.rows_read}, loaded {result.rows_loaded} "
            f"({mode}), dropped {result.rows_erased} of erased people, raw now {result.raw_rows_total} rows"
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": result.raw_rows_total,
                "dagster/table_name": f"{RAW}.{result.table}",
                "rows_read": result.rows_read,
                "rows_loaded": result.rows_loaded,
                "rows_erased": result.rows_erased,
                "mode": mode,
                "cursor_before": str(result.cursor_before),
                "cursor_after": str(result.cursor_after),
                "window": str(result.window) if result.window else "",
                "source_columns": ", ".join(result.columns),
                "seconds": round(result.seconds, 3),
            },
            check_results=[dg.AssetCheckResult(check_name=RAW_CONTRACT, passed=True)],
        )

    return _raw


def build_raw_assets(config: CrmConfig, warehouse_kind: str) -> list[dg.AssetsDefinition]:
    return [
        build_raw_asset(config, source, entity, warehouse_kind)
        for source in config.sources
        for entity in source.entities
    ]
