"""Jobs and schedules."""

from __future__ import annotations

import dagster as dg

from crm_pipelines.config import CrmConfig

NIGHTLY_JOB = "crm_nightly"
WEEKLY_REFIT_JOB = "crm_weekly_refit"
# Assets tagged so are (re)fitted models: the weekly job refits them, the nightly job predicts with them.
REFIT_TAG = ("crm/refit", "weekly")
REFIT_SELECTION = dg.AssetSelection.tag(*REFIT_TAG)


def run_executor(warehouse_kind: str) -> dg.ExecutorDefinition:
    """The executor of every job and of ad-hoc launches ("Materialize all", a selection, one asset).

    In one process on every warehouse kind. DuckDB allows one writing process per file, so parallel
    step processes fail on its lock. On PostgreSQL a step's heavy work is SQL inside the server or
    single-threaded pandas, while the multiprocess executor starts a process per step that first
    re-imports Dagster, Great Expectations and Splink (about 6 s a step): crm_nightly took 5-7 min
    on PostgreSQL against 72 s on DuckDB at demo scale. The graph is mostly one chain, so parallel
    steps would gain little on the reference machine's 2 cores, one of which the server needs.
    ``benchmarks/nightly.py --warehouse-url`` measures the PostgreSQL/DuckDB ratio.
    """
    return dg.in_process_executor


def build_nightly_job(warehouse_kind: str) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        NIGHTLY_JOB,
        selection=dg.AssetSelection.all() - REFIT_SELECTION,
        description="Ingest every source, stage, resolve identities and publish the marts.",
        executor_def=run_executor(warehouse_kind),
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
        executor_def=run_executor(warehouse_kind),
    )


def build_weekly_refit_schedule(
    config: CrmConfig, job: dg.UnresolvedAssetJobDefinition
) -> dg.ScheduleDefinition:
    hour, minute = (int(part) for part in config.nightly.time.split(":"))
    # One hour before Sunday's nightly run (Saturday late evening when that run starts before 01:00),
    # so the week's predictions use the fresh models.
    weekday = 0 if hour >= 1 else 6
    return dg.ScheduleDefinition(
        name=f"{WEEKLY_REFIT_JOB}_schedule",
        job=job,
        cron_schedule=f"{minute} {(hour - 1) % 24} * * {weekday}",
        execution_timezone=config.nightly.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Refits the models every Sunday before {NIGHTLY_JOB}.",
    )


FULL_RERESOLUTION_JOB = "crm_full_reresolution"


def build_full_reresolution_job(
    warehouse_kind: str, identity_key: dg.AssetKey
) -> dg.UnresolvedAssetJobDefinition:
    """Re-resolve every customer record from scratch, then rebuild everything downstream of it."""
    return dg.define_asset_job(
        FULL_RERESOLUTION_JOB,
        selection=dg.AssetSelection.assets(identity_key).downstream() - REFIT_SELECTION,
        description="Re-resolve all customer records (ids stay stable) and rebuild core and marts.",
        config={"ops": {"identity_resolution": {"config": {"full_resolution": True}}}},
        executor_def=run_executor(warehouse_kind),
    )
