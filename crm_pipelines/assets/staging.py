"""``staging``: one typed, normalized table per canonical entity, across all sources.

Rows that cannot be staged go to ``quarantine.rejected_rows`` with their reason, and
``audit.reconciliation`` proves per run and source that raw = staged + quarantined + superseded +
deleted; records a source deleted are listed in ``audit.source_deletes``.
Each run stages only the raw batches not staged yet (:mod:`crm_pipelines.staging_batches` says when
more is restaged); the staging contract validates the rows being staged before they replace
anything, and the counts behind drift and reconciliation are taken in the warehouse.
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING

import dagster as dg

from crm_pipelines.assets.metadata import PREVIEW_ROWS, counts_markdown, table_metadata
from crm_pipelines.assets.publishing import blocking_failures, quarantine_staged, rejected_table_name
from crm_pipelines.assets.raw import raw_asset_key
from crm_pipelines.assets.validation import (
    previous_stats,
    record_stats,
    run_folder,
    validate_rows,
    validated_check_specs,
)
from crm_pipelines.checks.drift import drift_findings
from crm_pipelines.checks.report import render_html_report
from crm_pipelines.checks.results import drift_check_result, suite_check_result
from crm_pipelines.checks.suites import STAGING_CONTRACT, staging_suite
from crm_pipelines.config import CrmConfig
from crm_pipelines.resources.run_window import RunWindowResource
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import (
    AUDIT,
    ENTITIES,
    QUARANTINE,
    QUARANTINE_COLUMNS,
    RECONCILIATION_COLUMNS,
    STAGING,
)
from crm_pipelines.staging.references import EVENT_TIME_COLUMNS
from crm_pipelines.staging.stage import StagingResult, stage_entity
from crm_pipelines.staging.values import typed_frame
from crm_pipelines.staging_batches import (
    StagedBatch,
    apply_batches,
    only_records,
    plan_staging,
    read_records,
    rules_fingerprint,
)
from crm_pipelines.staging_deletes import removed_this_run
from crm_pipelines.staging_parts import batch_parts, merged_result, read_batch_parts
from crm_pipelines.staging_scratch import StagingScratch
from crm_pipelines.staging_sql import reconciliation, refresh_referenced_customers, table_stats_sql
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd

QUARANTINE_TABLE = "rejected_rows"
RECONCILIATION_TABLE = "reconciliation"
RECONCILES_CHECK = "reconciles"
REFERENCING_ENTITIES = ("orders", "support_tickets", "subscriptions", "campaign_events", "survey_responses")


def staging_key(entity: str) -> dg.AssetKey:
    return dg.AssetKey([STAGING, entity])


def record_quarantine(warehouse: Warehouse, layer: str, entity: str, rows: "pd.DataFrame") -> None:
    """Replace the layer's quarantined rows for ``entity`` with this run's."""
    import sqlalchemy as sa
    warehouse.create_table(QUARANTINE, QUARANTINE_TABLE, QUARANTINE_COLUMNS)
    warehouse.delete(QUARANTINE, QUARANTINE_TABLE, sa.and_(sa.column("layer") == layer, sa.column("entity") == entity))
    if len(rows):
        types = {c.name: c.dtype for c in QUARANTINE_COLUMNS}
        warehouse.write_table(rows, QUARANTINE, QUARANTINE_TABLE, mode="append", column_types=types)


def record_reconciliation(warehouse: Warehouse, rows: "pd.DataFrame") -> None:
    warehouse.create_table(AUDIT, RECONCILIATION_TABLE, RECONCILIATION_COLUMNS)
    if len(rows):
        types = {c.name: c.dtype for c in RECONCILIATION_COLUMNS}
        warehouse.write_table(rows, AUDIT, RECONCILIATION_TABLE, mode="append", column_types=types)


def reconciliation_check(asset_key: dg.AssetKey, reconciliation: "pd.DataFrame") -> dg.AssetCheckResult:
    bad = reconciliation[~reconciliation["reconciles"].astype(bool)] if len(reconciliation) else reconciliation
    counts = ["rows_in", "rows_out", "rows_quarantined", "rows_superseded", "rows_deleted"]
    shown = reconciliation[["source", *counts, "reconciles"]]
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name=RECONCILES_CHECK,
        passed=bool(len(bad) == 0),
        severity=dg.AssetCheckSeverity.ERROR,
        description="Every raw row is staged, quarantined, superseded by a newer version of its record, or "
        "deleted by its source.",
        metadata={
            **{name: int(reconciliation[name].sum()) if len(reconciliation) else 0 for name in counts},
            "by_source": dg.MetadataValue.md(shown.to_markdown(index=False) if len(shown) else "_(no sources)_"),
        },
    )


def _stage(
    context: dg.AssetExecutionContext, wh: Warehouse, config: CrmConfig, key: dg.AssetKey, entity: str, cutoff
) -> tuple[list[dg.AssetCheckResult], dict]:
    """Stage the raw batches not staged yet (all of them when a restage is due) and report."""
    fingerprint = rules_fingerprint(config, entity)
    plan = plan_staging(wh, config, entity, fingerprint, cutoff)
    context.log.info(f"staging.{entity}: {plan.reason}; {len(plan.batches)} batch(es) to stage")

    run_id = context.run.run_id

    def staged(source, raw):
        return stage_entity(config, entity, [(source, raw)], run_id=run_id, as_of_end=cutoff)

    scratch = StagingScratch(wh, entity)
    try:
        # Each batch's rows are written to the scratch tables as soon as it is staged (a big batch part by
        # part); the contract and the transaction read them in the warehouse. Only a preview is kept.
        batches = []
        for source, batch_id, ids in plan.rejudged:
            result = only_records(entity, staged(source, read_records(wh, source, entity, batch_id, ids)), ids)
            scratch.add(source.name, batch_id, result)
            batches.append(StagedBatch(source.name, batch_id, 0, _preview_only(result), rejudged=True))
        if plan.rejudged:
            context.log.info(
                f"staging.{entity}: the as-of end moved on: judging {sum(len(r[2]) for r in plan.rejudged)} "
                "record(s) quarantined by a time-bound rule again"
            )
        for source, batch_id, rows in plan.batches:
            parts, into, results = batch_parts(wh, source, entity, rows), None, []
            if parts > 1:
                context.log.info(f"staging.{entity}: batch {batch_id} of {source.name} ({rows:,} rows): {parts} parts")
            for raw in read_batch_parts(wh, source, entity, batch_id, parts):
                result = staged(source, raw)
                into = scratch.add(source.name, batch_id, result, into=into)
                results.append(_preview_only(result))
            batches.append(StagedBatch(source.name, batch_id, rows, merged_result(results)))
        delta_metadata = table_metadata(
            wh, STAGING, entity, _net_staged(entity, batches), ENTITIES[entity].staged_columns
        )
        delta_rows = wh.row_count(scratch.schema, scratch.contract_table())
    except BaseException:
        scratch.drop()
        raise
    try:
        contract = _contract(context, config, wh, key, entity, scratch, cutoff, bool(batches))
        checks = [contract]
        if blocking_failures(checks):
            rejected = rejected_table_name(STAGING, entity)
            context.log.error(
                f"{STAGING}.{entity}: the new batches were NOT staged: the staging contract failed. The table "
                f"stays as it was; the rejected rows are in {QUARANTINE}.{rejected}; the batches are retried "
                "next run."
            )
            applied = []
        else:
            stubs = _stub_refresher(config, wh) if entity == "customers" else None
            applied = apply_batches(
                wh, entity, plan, batches, scratch, run_id=run_id, fingerprint=fingerprint, as_of_end=cutoff,
                in_transaction=stubs,
            )
    finally:
        scratch.drop()
    removed = removed_this_run(wh, entity, run_id)
    if len(removed):
        context.log.info(f"staging.{entity}: records removed because their source deleted them: "
                         f"{dict(zip(removed['kind'], removed['records'].astype(int), strict=True))}")
    recon = reconciliation(wh, config, entity, run_id=run_id)
    record_reconciliation(wh, recon)
    checks.append(reconciliation_check(key, recon))
    checks.append(_drift(context, config, wh, key, entity, record=not blocking_failures(checks[:1])))
    metadata = {
        **delta_metadata,
        "dagster/row_count": wh.row_count(STAGING, entity),
        "published": not blocking_failures(checks[:1]),
        "staging_mode": "full" if plan.full else "incremental",
        "staging_reason": plan.reason,
        "batches_staged": dg.MetadataValue.md(_batches_markdown(applied)),
        "rows_staged_this_run": delta_rows,
        "records_deleted_by_source": int(removed["records"].sum()) if len(removed) else 0,
        **_staging_metadata(batches),
    }
    return checks, metadata


def _preview_only(result: StagingResult) -> StagingResult:
    """``result`` once its rows are in the scratch tables: its staged rows cut to a preview."""
    result.staged = result.staged.head(PREVIEW_ROWS)
    return result


def _net_staged(entity: str, batches: list[StagedBatch]) -> "pd.DataFrame":
    """A preview of the rows this run stages: a record staged by two new batches shows once, in its newest
    version (their count is taken in the warehouse)."""
    import pandas as pd
    ent = ENTITIES[entity]
    frames = [b.result.staged for b in batches if len(b.result.staged)]
    if not frames:
        return typed_frame(ent.staged_columns, {}, 0)
    if len(frames) == 1:  # one batch stages each record once (versions are resolved within it)
        return frames[0]
    delta = pd.concat(frames, ignore_index=True)
    return delta.drop_duplicates(["source", ent.record_id], keep="last").reset_index(drop=True)


def _contract(
    context, config: CrmConfig, wh: Warehouse, key: dg.AssetKey, entity: str, scratch: StagingScratch, cutoff,
    any_new: bool,
):
    """The staging contract on the rows this run stages, validated in the warehouse, in SQL, on the
    scratch tables staging wrote them to (:meth:`StagingScratch.contract_table`); a version that fails is
    moved to ``quarantine.staging__<entity>__rejected``."""
    if not any_new:
        return dg.AssetCheckResult(
            asset_key=key, check_name=STAGING_CONTRACT, passed=True,
            metadata={"rows_validated": 0, "note": "no new raw batches: nothing staged, nothing to validate"},
        )
    suite = staging_suite(entity, as_of_end=cutoff, currencies=list(config.fx_rates))
    checked = scratch.contract_table()
    outcome = validate_rows(wh, scratch.schema, checked, suite)
    if outcome.blocking_failures:
        quarantine_staged(wh, STAGING, checked, entity, staged_schema=scratch.schema)
    report = render_html_report(
        [outcome], run_folder(config, context.run.run_id) / f"{STAGING}.{entity}.html",
        title=f"Validation of the rows {STAGING}.{entity} stages in this run", run_id=context.run.run_id,
    )
    return suite_check_result(outcome, asset_key=key, report_path=report)


def _drift(context, config: CrmConfig, wh: Warehouse, key: dg.AssetKey, entity: str, record: bool):
    """Row count and null rates of the whole staged table, counted in the warehouse, against last run's."""
    table_name = f"{STAGING}.{entity}"
    stats = table_stats_sql(wh, STAGING, entity, [c.name for c in ENTITIES[entity].staged_columns])
    findings = drift_findings(
        stats, previous_stats(wh, table_name),
        max_row_change_pct=config.checks.max_row_change_pct,
        max_null_rate_increase=config.checks.max_null_rate_increase,
    )
    if record:
        record_stats(wh, context.run.run_id, table_name, stats)
    return drift_check_result(findings, asset_key=key, current_stats=stats)


def _stub_refresher(config: CrmConfig, wh: Warehouse):
    referencing = [
        e for e in REFERENCING_ENTITIES
        if e in EVENT_TIME_COLUMNS and config.sources_for(e) and wh.table_exists(STAGING, e)
    ]
    return lambda conn: refresh_referenced_customers(conn, wh, config, referencing)


def _batches_markdown(applied: list[dict]) -> str:
    import pandas as pd
    if not applied:
        return "_(none)_"
    shown = pd.DataFrame(applied)[
        ["source", "batch_id", "rows", "rows_staged", "rows_quarantined", "rows_superseded", "rows_deleted"]
    ]
    return shown.to_markdown(index=False)


def _staging_metadata(batches: list[StagedBatch]) -> dict:
    import pandas as pd
    quarantined = [b.result.quarantined for b in batches if len(b.result.quarantined)]
    frame = pd.concat(quarantined, ignore_index=True) if quarantined else pd.DataFrame({"rule": []})
    summaries = [b.result.summary for b in batches]
    return {
        "rows_quarantined_this_run": len(frame),
        # Most rows first, ties by rule: the same table however the batches were split.
        "quarantined_by_rule": counts_markdown(
            dict(sorted(frame["rule"].value_counts().items(), key=lambda kv: (-kv[1], kv[0]))), key="rule"
        ),
        "summary": dg.MetadataValue.json([{k: _jsonable(v) for k, v in s.items()} for s in summaries]),
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
        "rejected rows are in quarantine.rejected_rows. Incremental: only raw batches not staged yet "
        "(audit.staged_batches).",
        check_specs=validated_check_specs(key, STAGING_CONTRACT, RECONCILES_CHECK),
    )
    def _staging(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, run_window: RunWindowResource
    ) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        checks, metadata = _stage(context, wh, config, key, entity, run_window.cutoff())
        return dg.MaterializeResult(metadata=metadata, check_results=checks)

    return _staging


def build_staging_customers(config: CrmConfig, warehouse_kind: str) -> dg.AssetsDefinition:
    """Customers, plus stubs for people other entities name but no source delivered, plus identifiers."""
    key = staging_key("customers")
    identifiers_key = staging_key("customer_identifiers")
    referencing = [e for e in REFERENCING_ENTITIES if config.sources_for(e)]

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
                "subscriptions, events or surveys name but no source delivered as a customer. Incremental: "
                "only raw batches not staged yet (audit.staged_batches); the stubs are kept in SQL.",
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
        import sqlalchemy as sa
        wh = warehouse.get_warehouse()
        checks, metadata = _stage(context, wh, config, key, "customers", run_window.cutoff())
        metadata["referenced_stubs"] = wh.row_count(STAGING, "customers", sa.column("record_kind") == "referenced")
        yield dg.MaterializeResult(asset_key=key, metadata=metadata, check_results=checks)
        yield dg.MaterializeResult(
            asset_key=identifiers_key,
            metadata={
                "dagster/row_count": wh.row_count(STAGING, "customer_identifiers"),
                "dagster/table_name": f"{STAGING}.customer_identifiers",
            },
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
