"""The one Definitions object: every asset, check, job, schedule and resource.

Built from the configuration that ``CRM_CONFIG`` names (``crm.yaml`` by default), because the
source systems it declares decide which raw assets exist.
"""

from __future__ import annotations

import dagster as dg

from crm_pipelines.assets.bi import build_bi_assets
from crm_pipelines.assets.core import IDENTITY_MAP, build_core_assets, build_identity_training_job, core_key
from crm_pipelines.assets.cycle import build_cycle_assets
from crm_pipelines.assets.erasure import build_erasure_job
from crm_pipelines.assets.facts import build_facts_assets
from crm_pipelines.assets.marts import build_marts_assets
from crm_pipelines.assets.predictive import build_predictive_assets
from crm_pipelines.assets.raw import build_raw_assets
from crm_pipelines.assets.run_summary import build_run_summary_asset
from crm_pipelines.assets.staging import build_staging_assets
from crm_pipelines.automation import (
    build_full_reresolution_job,
    build_nightly_job,
    build_nightly_schedule,
    build_weekly_refit_job,
    build_weekly_refit_schedule,
    run_executor,
)
from crm_pipelines.config import CrmConfig, load_config
from crm_pipelines.resources.run_window import RunWindowResource
from crm_pipelines.resources.warehouse import WarehouseResource


def build_definitions(config: CrmConfig) -> dg.Definitions:
    # The URL as written, ${ENV} references unexpanded: Dagster stores resource config in its run storage.
    warehouse = WarehouseResource(
        url=config.warehouse_url_unexpanded,
        duckdb_memory_limit=config.warehouse.duckdb_memory_limit,
        duckdb_threads=config.warehouse.duckdb_threads,
        duckdb_checkpoint_threshold=config.warehouse.duckdb_checkpoint_threshold,
    )
    kind = warehouse.kind
    nightly = build_nightly_job(kind)
    weekly_refit = build_weekly_refit_job(kind)
    marts = [*build_marts_assets(config, kind), *build_predictive_assets(config, kind)]
    cycle = build_cycle_assets(config, kind)
    return dg.Definitions(
        assets=[
            *build_raw_assets(config, kind),
            *build_staging_assets(config, kind),
            *build_core_assets(config, kind),
            *build_facts_assets(config, kind),
            *marts,
            *cycle,
            # The BI file copies every marts table, the campaign, portfolio and loyalty marts among them.
            *build_bi_assets(config, warehouse, [key for asset in [*marts, *cycle] for key in asset.keys]),
            build_run_summary_asset(config, kind, [key for asset in marts for key in asset.keys]),
        ],
        jobs=[
            nightly,
            weekly_refit,
            build_full_reresolution_job(kind, core_key(IDENTITY_MAP)),
            build_identity_training_job(config),
            build_erasure_job(config, kind),
        ],
        schedules=[
            build_nightly_schedule(config, nightly),
            build_weekly_refit_schedule(config, weekly_refit),
        ],
        # The UI's "Materialize all" and single-asset launches use this, not a job's executor.
        executor=run_executor(kind),
        resources={
            "warehouse": warehouse,
            "run_window": RunWindowResource(
                as_of=config.as_of.isoformat() if config.as_of else None, timezone=config.nightly.timezone
            ),
        },
    )


defs = build_definitions(load_config())
