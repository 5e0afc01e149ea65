"""Jobs and schedules."""

from __future__ import annotations

import dagster as dg

from crm_pipelines.config import CrmConfig

NIGHTLY_JOB = "crm_nightly"


def build_nightly_job(warehouse_kind: str) -> dg.UnresolvedAssetJobDefinition:
    # DuckDB allows one writing process per file, so its runs execute in one process; a server
    # warehouse can take steps in parallel processes.
    executor = dg.in_process_executor if warehouse_kind == "duckdb" else dg.multiprocess_executor.configured(
        {"max_concurrent": 2}
    )
    return dg.define_asset_job(
        NIGHTLY_JOB,
        selection=dg.AssetSelection.all(),
        description="Ingest every source, stage, resolve identities and publish the marts.",
        executor_def=executor,
    )


def build_nightly_schedule(config: CrmConfig, job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name=f"{NIGHTLY_JOB}_schedule",
        job=job,
        cron_schedule=config.nightly.cron,
        execution_timezone=config.nightly.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Runs {NIGHTLY_JOB} every night at {config.nightly.time} {config.nightly.timezone}.",
    )
