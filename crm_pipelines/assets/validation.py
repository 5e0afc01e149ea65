"""Validate a table's new version before it is published: contract (blocking) and drift (warning).

Every contract runs in the warehouse, on the new version under its temporary name
(``<table>__new``, the name :meth:`~crm_pipelines.warehouse.Warehouse.publish` swaps in): a table
built there by SQL is validated where it lies (:func:`validate_in_place`); a frame built in Python
is first written there, as publishing would write it, and validated the same way
(:func:`validate_table`). The suite compiles to SQL aggregates (:mod:`crm_pipelines.checks.sql`),
so only counts and a few offending values reach Python, and BI never sees a version that failed.

Each run's statistics per table are kept in ``audit.table_stats``, so the next run can compare its
row count and null rates against them; the HTML report lands in the run's own folder.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from crm_pipelines.checks.drift import drift_findings
from crm_pipelines.checks.gx import SuiteOutcome
from crm_pipelines.checks.report import render_html_report
from crm_pipelines.checks.results import check_specs, drift_check_result, suite_check_result
from crm_pipelines.checks.rules import SuiteSpec
from crm_pipelines.checks.sql import table_stats_in_warehouse, validate_in_warehouse
from crm_pipelines.checks.suites import DRIFT_CHECK
from crm_pipelines.config import CrmConfig
from crm_pipelines.schema import AUDIT, Column, ColumnType
from crm_pipelines.warehouse import Warehouse, col

if TYPE_CHECKING:
    import pandas as pd

TABLE_STATS = "table_stats"
TABLE_STATS_COLUMNS = (
    Column("run_id", "string", "The run."),
    Column("recorded_at", "timestamp", "When the table was published (UTC)."),
    Column("table_name", "string", "schema.table"),
    Column("row_count", "integer", "Rows published."),
    Column("stats", "string", "Row count and null rates per column, JSON."),
)


def validated_check_specs(key: dg.AssetKey, contract: str, *extra: str) -> list[dg.AssetCheckSpec]:
    return check_specs(key, [contract, DRIFT_CHECK, *extra])


def run_folder(config: CrmConfig, run_id: str) -> Path:
    return config.resolve_path(config.checks.reports_dir) / run_id


def previous_stats(warehouse: Warehouse, table_name: str) -> dict | None:
    import sqlalchemy as sa
    if not warehouse.table_exists(AUDIT, TABLE_STATS):
        return None
    stmt = (
        sa.select(col("stats"))
        .select_from(warehouse.table(AUDIT, TABLE_STATS))
        .where(col("table_name") == table_name)
        .order_by(col("recorded_at").desc())
        .limit(1)
    )
    with warehouse.connect() as conn:
        row = conn.execute(stmt).first()
    return json.loads(row[0]) if row else None


def record_stats(warehouse: Warehouse, run_id: str, table_name: str, stats: dict) -> None:
    import sqlalchemy as sa
    warehouse.create_table(AUDIT, TABLE_STATS, TABLE_STATS_COLUMNS)
    # One row, so one INSERT with bound values: the bulk path (Arrow, schema alignment) costs several
    # catalog queries per call, and a night records the statistics of every table it publishes.
    row = {
        "run_id": run_id,
        "recorded_at": dt.datetime.now(dt.UTC),
        "table_name": table_name,
        "row_count": int(stats.get("row_count", 0)),
        "stats": json.dumps(stats),
    }
    target = warehouse.table(AUDIT, TABLE_STATS, list(row))
    with warehouse.connect() as conn:
        conn.execute(sa.insert(target).values(row))


def staged_name(table: str) -> str:
    """The temporary name a table's new version is written and validated under before the swap."""
    return f"{table}__new"


def validate_rows(warehouse: Warehouse, schema: str, table: str, suite: SuiteSpec) -> SuiteOutcome:
    """``suite`` on ``schema.table``, in the warehouse (the one place every contract runs)."""
    return validate_in_warehouse(warehouse, schema, table, suite)


def validate_table(
    context: dg.AssetExecutionContext,
    config: CrmConfig,
    warehouse: Warehouse,
    key: dg.AssetKey,
    table_name: str,
    frame: pd.DataFrame,
    suite: SuiteSpec,
    *,
    column_types: Mapping[str, ColumnType] | None = None,
    keep_staged: bool = True,
) -> list[dg.AssetCheckResult]:
    """Contract and drift results for ``frame``, a new version of ``table_name`` built in Python.

    The frame is written as ``<table>__new`` with ``column_types`` (as publishing writes it) and
    validated there in SQL. With ``keep_staged`` it stays for :func:`publish_checked
    <crm_pipelines.assets.publishing.publish_checked>` (``staged=True``) to swap in or quarantine;
    otherwise it is dropped (a caller that publishes the frame its own way). The stats are recorded
    only if the contract holds."""
    schema, table = table_name.split(".", 1)
    staged = staged_name(table)
    warehouse.write_table(frame, schema, staged, mode="replace", column_types=column_types)
    try:
        return validate_in_place(context, config, warehouse, key, schema, staged, suite, table_name)
    finally:
        if not keep_staged:
            warehouse.drop_table(schema, staged)


def validate_in_place(
    context: dg.AssetExecutionContext,
    config: CrmConfig,
    warehouse: Warehouse,
    key: dg.AssetKey,
    schema: str,
    table: str,
    suite: SuiteSpec,
    table_name: str,
    *,
    stats_where: Any = None,
) -> list[dg.AssetCheckResult]:
    """Contract and drift results for ``schema.table``, a new version of ``table_name`` in the
    warehouse: both computed there in SQL (:mod:`crm_pipelines.checks.sql`), so only counts and a
    few offending values reach Python, whatever the table's size.

    ``stats_where`` (a SQLAlchemy condition) limits the drift statistics to the rows that are
    comparable from run to run, where the staged rows vary in kind: the segment history stages
    thirteen months on its first run and one month after, and compares this month's snapshot with
    the previous run's."""
    outcome = validate_rows(warehouse, schema, table, suite)
    stats = outcome.table_stats
    if stats_where is not None:
        stats = table_stats_in_warehouse(warehouse, schema, table, where=stats_where)
    elif stats is None:
        stats = table_stats_in_warehouse(warehouse, schema, table)
    return _check_results(context, config, warehouse, key, table_name, outcome, stats)


def _check_results(
    context: dg.AssetExecutionContext,
    config: CrmConfig,
    warehouse: Warehouse,
    key: dg.AssetKey,
    table_name: str,
    outcome: SuiteOutcome,
    stats: dict,
) -> list[dg.AssetCheckResult]:
    findings = drift_findings(
        stats,
        previous_stats(warehouse, table_name),
        max_row_change_pct=config.checks.max_row_change_pct,
        max_null_rate_increase=config.checks.max_null_rate_increase,
    )
    report = render_html_report(
        [outcome],
        run_folder(config, context.run.run_id) / f"{table_name}.html",
        title=f"Validation of {table_name}",
        run_id=context.run.run_id,
        drift={table_name: findings},
    )
    if not outcome.blocking_failures:
        record_stats(warehouse, context.run.run_id, table_name, stats)
    return [
        suite_check_result(outcome, asset_key=key, report_path=report),
        drift_check_result(findings, asset_key=key, report_path=report, current_stats=stats),
    ]
