"""Publish the identity tables together: all of them swap in within one transaction, or none do.

The identity map, the links, the golden records, their lineage, the id history and the matching
state describe one resolution. A reader (or the next nightly) that saw today's map with yesterday's
golden records would find customer ids without a customer. So a blocking check failing on any of
them keeps every one of yesterday's tables, and a run killed mid-publish leaves all as they were.

A first run (or a full re-resolution) swaps in whole tables. An incremental night changes only the
rows of the customers it touched (:mod:`crm_pipelines.table_changes`): their old rows are deleted and
the new ones inserted, in every identity table within one transaction, so a night with a thousand new
records writes thousands of rows, not millions. Each table's metadata says how many rows were written.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import dagster as dg

from crm_pipelines.assets.metadata import table_metadata
from crm_pipelines.assets.publishing import blocking_failures, rejected_table_name
from crm_pipelines.schema import QUARANTINE, Column
from crm_pipelines.table_changes import TableChange, publish_changes
from crm_pipelines.warehouse import Warehouse, WarehouseError

if TYPE_CHECKING:
    import pandas as pd


def publish_identity_tables(
    context: dg.AssetExecutionContext,
    warehouse: Warehouse,
    schema: str,
    tables: Mapping[str, pd.DataFrame],
    asset_keys: Mapping[str, dg.AssetKey],
    check_results: Mapping[str, Sequence[dg.AssetCheckResult]],
    columns: Mapping[str, Sequence[Column]],
    extra_metadata: Mapping[str, Mapping[str, Any]],
    changes: Mapping[str, TableChange] | None = None,
    partial: Collection[str] = (),
    validated: Collection[str] = (),
) -> list[dg.MaterializeResult]:
    """Publish all ``tables`` at once unless a blocking check failed on one; report each either way.

    ``tables`` are the complete tables (validated, described in metadata); with ``changes``, only
    those changed rows are written, in one transaction; without, the whole tables are swapped in.
    ``partial`` names tables of ``tables`` that hold only the changed rows (never read whole): they are
    never published whole, and their row count is taken from the warehouse after publishing.
    ``validated`` names tables whose complete version the checks validated under the temporary name
    ``<table>__new``: a whole publish swaps that in without writing it again; otherwise it is dropped."""
    column_types = {
        table: {c.name: c.dtype for c in columns.get(table, ()) if c.name in frame.columns}
        for table, frame in tables.items()
    }
    failed = {table: blocking_failures(check_results.get(table, ())) for table in tables}
    failed = {table: failures for table, failures in failed.items() if failures}
    metadata = {
        table: table_metadata(warehouse, schema, table, frame, columns.get(table, ()), extra_metadata.get(table))
        for table, frame in tables.items()
    }
    if failed or changes is not None:
        for table in validated:
            warehouse.drop_table(schema, f"{table}__new")
    if failed:
        for table, failures in failed.items():
            rejected = rejected_table_name(schema, table)
            warehouse.write_table(tables[table], QUARANTINE, rejected, mode="replace", column_types=column_types[table])
            metadata[table]["rejected_table"] = f"{QUARANTINE}.{rejected}"
            names = ", ".join(r.check_name or "?" for r in failures)
            context.log.error(
                f"{schema}.{table} failed blocking check(s) {names}: NONE of the identity tables is "
                f"published; yesterday's stay in place. The rejected version is in {QUARANTINE}.{rejected}."
            )
        written = {}
    elif changes is not None:
        whole = {table: frame for table, frame in tables.items() if table not in partial}
        try:
            written = publish_changes(warehouse, schema, changes, whole, column_types)
        except WarehouseError as e:
            raise WarehouseError(
                f"{e} Nothing was published; run identity_resolution with full_resolution: true to "
                "rebuild the identity tables whole."
            ) from e
        for table in partial:
            metadata[table]["dagster/row_count"] = warehouse.row_count(schema, table)
            metadata[table]["preview_rows"] = "the rows this run changed"
    else:
        written = warehouse.publish_together(schema, tables, column_types, already_written=validated)
    for table in tables:
        metadata[table]["published"] = not failed
        metadata[table]["rows_written"] = int(written.get(table, 0))
        metadata[table]["publish_mode"] = "none" if failed else ("changed_rows" if changes is not None else "whole")
    return [
        dg.MaterializeResult(
            asset_key=asset_keys[table], metadata=metadata[table], check_results=list(check_results.get(table, ()))
        )
        for table in tables
    ]
