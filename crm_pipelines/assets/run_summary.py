"""The asset that ends the nightly job: one summary of what the run published, where its reports are.

An asset rather than a run-status sensor, so the summary is in the run's own log whether the run was
started by the daemon, the UI or `make run` (which has no daemon to run sensors).
"""


from collections.abc import Sequence

import dagster as dg

from crm_pipelines.assets.staging import QUARANTINE_TABLE
from crm_pipelines.assets.validation import run_folder
from crm_pipelines.checks.report import write_run_index
from crm_pipelines.checks.summary import RunSummary
from crm_pipelines.config import CrmConfig
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import AUDIT, MARTS, QUARANTINE

RUN_SUMMARY_KEY = dg.AssetKey([AUDIT, "run_summary"])


def _published_tables(context: dg.AssetExecutionContext) -> dict[str, int]:
    tables: dict[str, int] = {}
    records = context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100_000
    ).records
    for record in records:
        metadata = record.asset_materialization.metadata if record.asset_materialization else {}
        table, rows = metadata.get("dagster/table_name"), metadata.get("dagster/row_count")
        if table is not None and rows is not None:
            tables[str(table.value)] = int(rows.value)
    return tables


def _warned_checks(context: dg.AssetExecutionContext) -> list[str]:
    records = context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, limit=100_000
    ).records
    warned = []
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN:
            warned.append(f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}")
    return warned


def _quarantined_rows(warehouse: WarehouseResource, run_id: str) -> int:
    import sqlalchemy as sa
    wh = warehouse.get_warehouse()
    if not wh.table_exists(QUARANTINE, QUARANTINE_TABLE):
        return 0
    return wh.row_count(QUARANTINE, QUARANTINE_TABLE, where=sa.column("run_id") == run_id)


def build_run_summary_asset(
    config: CrmConfig, warehouse_kind: str, upstream: Sequence[dg.AssetKey]
) -> dg.AssetsDefinition:
    @dg.asset(
        key=RUN_SUMMARY_KEY,
        deps=list(upstream),
        # Shown with the marts it sums up, so the lineage stays the four layers raw -> marts.
        group_name=MARTS,
        kinds={warehouse_kind},
        description="The run's ending: tables published with row counts, rows quarantined, checks that "
        "warned, and the path of the run's validation report index. Writes no table.",
    )
    def run_summary(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        run_id = context.run.run_id
        folder = run_folder(config, run_id)
        index = write_run_index(folder) if folder.is_dir() else None
        summary = RunSummary(
            run_id=run_id,
            tables=_published_tables(context),
            quarantined_rows=_quarantined_rows(warehouse, run_id),
            warned_checks=_warned_checks(context),
            report_index=index,
        )
        context.log.info(summary.to_text())
        metadata: dict[str, object] = {
            "tables_published": len(summary.tables),
            "rows_quarantined": summary.quarantined_rows,
            "checks_warned": len(summary.warned_checks),
            "summary": dg.MetadataValue.md(summary.to_markdown()),
        }
        if index is not None:
            metadata["report_index"] = dg.MetadataValue.path(str(index))
        return dg.MaterializeResult(metadata=metadata)

    return run_summary

