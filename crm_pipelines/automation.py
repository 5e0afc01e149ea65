"""Jobs and schedules."""

from __future__ import annotations

import dagster as dg

from crm_pipelines.config import CrmConfig

NIGHTLY_JOB = "crm_nightly"
WEEKLY_REFIT_JOB = "crm_weekly_refit"
# Assets tagged so are (re)fitted models: the weekly job refits them, the nightly job predicts with them.
REFIT_TAG = ("crm/refit", "weekly")
REFIT_SELECTION = dg.AssetSelection.tag(*REFIT_TAG)


def build_nightly_job(warehouse_kind: str) -> dg.UnresolvedAssetJobDefinition:
    # DuckDB allows one writing process per file, so its runs execute in one process; a server
    # warehouse can take steps in parallel processes.
    executor = dg.in_process_executor if warehouse_kind == "duckdb" else dg.multiprocess_executor.configured(
        {"max_concurrent": 2}
    )
    return dg.define_asset_job(
        NIGHTLY_JOB,
        selection=dg.AssetSelection.all() - REFIT_SELECTION,
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


def build_weekly_refit_job(warehouse_kind: str) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        WEEKLY_REFIT_JOB,
        selection=REFIT_SELECTION,
        description="Refit the predictive models (CLV, churn) the nightly job predicts with.",
        executor_def=dg.in_process_executor,
    )


def build_weekly_refit_schedule(config: CrmConfig, job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    hour, minute = config.nightly.time.split(":")
    return dg.ScheduleDefinition(
        name=f"{WEEKLY_REFIT_JOB}_schedule",
        job=job,
        # Sundays, one hour before the nightly run, so Monday's predictions use the fresh models.
        cron_schedule=f"{int(minute)} {(int(hour) - 1) % 24} * * 0",
        execution_timezone=config.nightly.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Refits the models every Sunday before {NIGHTLY_JOB}.",
    )
