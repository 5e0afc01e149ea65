"""Publish a table only after its blocking checks pass.

A table BI reads is swapped in only when none of its ERROR-severity checks failed. When one fails,
yesterday's table stays in place, the rejected version is kept in ``quarantine`` for inspection,
and the blocking check result fails the step, so downstream assets do not run on bad data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

from crm_pipelines.analytics.mart_boundary import MART_GRAIN
from crm_pipelines.assets.metadata import table_metadata
from crm_pipelines.schema import MARTS, QUARANTINE, Column
from crm_pipelines.table_docs import TableDocs
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa


def rejected_table_name(schema: str, table: str) -> str:
    return f"{schema}__{table}__rejected"


def table_docs(table: str, columns: Sequence[Column], key: Sequence[str] = ()) -> TableDocs:
    """A table's docs for the warehouse: its grain (docs/marts.md's "One row per") and its columns."""
    grain = MART_GRAIN.get(table)
    description = f"One row per {grain}. See docs/marts.md." if grain else f"{table}: see docs/marts.md."
    return TableDocs(description=description, columns=columns, key=key)


def quarantine_staged(
    warehouse: Warehouse, schema: str, staged: str, table: str, staged_schema: str | None = None
) -> str:
    """Move a rejected new version, ``schema.staged`` (or ``staged_schema.staged``), to
    ``quarantine.<schema>__<table>__rejected`` inside the warehouse (no round trip through Python);
    returns that table's name."""
    rejected = copy_to_quarantine(warehouse, schema, staged, table, staged_schema)
    warehouse.drop_table(staged_schema or schema, staged)
    return rejected


def copy_to_quarantine(
    warehouse: Warehouse, schema: str, staged: str, table: str, staged_schema: str | None = None
) -> str:
    """Copy a rejected new version (a table or a view) to ``quarantine.<schema>__<table>__rejected``
    inside the warehouse, leaving it in place; returns that table's name."""
    rejected = rejected_table_name(schema, table)
    warehouse.ensure_schemas(QUARANTINE)
    warehouse.drop_table(QUARANTINE, rejected)
    source, target = warehouse.qualified(staged_schema or schema, staged), warehouse.qualified(QUARANTINE, rejected)
    warehouse.execute(f"CREATE TABLE {target} AS SELECT * FROM {source}")
    return rejected


def blocking_failures(check_results: Sequence[dg.AssetCheckResult]) -> list[dg.AssetCheckResult]:
    return [r for r in check_results if not r.passed and r.severity == dg.AssetCheckSeverity.ERROR]


def publish_checked(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    warehouse: Warehouse,
    schema: str,
    table: str,
    frame: pd.DataFrame,
    check_results: Sequence[dg.AssetCheckResult],
    *,
    columns: Sequence[Column] = (),
    key: Sequence[str] = (),
    asset_key: dg.AssetKey | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
    staged: bool = False,
) -> dg.MaterializeResult:
    """Swap ``frame`` in as ``schema.table`` unless a blocking check failed; report either way.

    With ``staged``, the frame was already written and validated as ``schema.<table>__new``
    (:func:`crm_pipelines.assets.validation.validate_table`): that version is swapped in, or moved to
    quarantine, without writing the frame again. ``columns`` and ``key`` become the table's comments
    and primary key on PostgreSQL."""
    column_types = {c.name: c.dtype for c in columns if c.name in frame.columns}
    failures = blocking_failures(check_results)
    metadata = table_metadata(warehouse, schema, table, frame, columns, extra_metadata)
    staged_table = f"{table}__new"
    if failures:
        if staged:
            rejected = quarantine_staged(warehouse, schema, staged_table, table)
        else:
            rejected = rejected_table_name(schema, table)
            warehouse.write_table(frame, QUARANTINE, rejected, mode="replace", column_types=column_types)
        names = ", ".join(r.check_name or "?" for r in failures)
        context.log.error(
            f"{schema}.{table} NOT published: blocking check(s) failed: {names}. The previous version stays "
            f"in place; the rejected version is in {QUARANTINE}.{rejected}."
        )
        metadata.update({"published": False, "rejected_table": f"{QUARANTINE}.{rejected}"})
    else:
        docs = table_docs(table, columns, key) if schema == MARTS else None
        if staged:
            warehouse.publish_staged(schema, staged_table, table, docs=docs)
        else:
            warehouse.publish(frame, schema, table, column_types=column_types, docs=docs)
        metadata["published"] = True
    return dg.MaterializeResult(asset_key=asset_key, metadata=metadata, check_results=list(check_results))


def replace_from_staged(
    warehouse: Warehouse,
    schema: str,
    staged: str,
    table: str,
    replaced: sa.ColumnElement[bool],
    *,
    add_columns: bool = False,
) -> bool:
    """In one transaction, delete the rows of ``schema.table`` that ``replaced`` selects, insert every
    row of the already validated ``schema.staged`` and drop it: the rows are not written a second time,
    and a reader sees the old rows or the new ones, never neither. Returns False, having done nothing,
    when ``table`` does not exist or its columns differ from the staged copy's (then the caller writes
    the rows its own way), unless ``add_columns``: then the staged columns the table lacks are added in
    the same transaction (null on the rows already there), and columns only the table has stay (null
    on the new rows). DuckDB and PostgreSQL only, for ``add_columns``."""
    import sqlalchemy as sa

    if not warehouse.table_exists(schema, table):
        return False
    columns = warehouse.columns(schema, table)
    added: dict[str, str] = {}
    if sorted(columns) != sorted(warehouse.columns(schema, staged)):
        if not add_columns:
            return False
        staged_types = warehouse.column_types(schema, staged)
        added = {name: kind for name, kind in staged_types.items() if name not in columns}
        columns = list(staged_types)
    target = warehouse.table(schema, table, columns)
    source = warehouse.table(schema, staged, columns)

    def replace(conn: sa.Connection) -> None:
        qualified = warehouse.qualified(schema, table)
        for name, kind in added.items():
            conn.execute(sa.text(f"ALTER TABLE {qualified} ADD COLUMN {warehouse.quote(name)} {kind}"))
        conn.execute(sa.delete(target).where(replaced))
        conn.execute(sa.insert(target).from_select(columns, sa.select(*(source.c[c] for c in columns))))
        conn.execute(sa.text(f"DROP TABLE {warehouse.qualified(schema, staged)}"))

    warehouse.in_publish_transaction(f"{schema}.{table}", replace)
    warehouse.analyze(schema, table)
    return True
