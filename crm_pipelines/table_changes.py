"""Publish tables that belong together by changing only their changed rows, all in one transaction.

:meth:`~crm_pipelines.warehouse.Warehouse.publish_together` rewrites whole tables. On a night that
touched one customer in a million that is a million rows written for one. :func:`publish_changes`
writes each table's changed rows instead: the rows to insert and the keys of the rows they replace
are first written to side tables (the slow part, outside the transaction), then ONE transaction
deletes the replaced rows and inserts the new ones in every table (and swaps in any table published
whole). A run killed before the commit leaves every table as it was; the database rolls back.

Rows are cast to the live table's column types before they are written (an all-empty column in the
changed rows has no type of its own). A table that does not exist yet, or whose columns differ from
the changed rows' (the schema moved on), is published whole from ``whole`` instead: the caller passes
the complete table for that case.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crm_pipelines.facts.sql import compiled
from crm_pipelines.schema import ColumnType
from crm_pipelines.warehouse import Warehouse, WarehouseError, arrow_table

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import sqlalchemy as sa


@dataclass(frozen=True)
class TableChange:
    """The changed rows of one table.

    rows: the rows to insert. key: the columns that identify replaced rows (empty: append only).
    replaced: the key values whose current rows are deleted first (default: the keys of ``rows``);
    give it when some replaced rows have no successor (a customer id retired by a merge).
    """

    rows: pd.DataFrame | pa.Table
    key: tuple[str, ...] = ()
    replaced: pd.DataFrame | pa.Table | None = None


REWRITE_SHARE = 0.25
"""A change replacing more than this share of a published table's rows is written as a whole table instead
(:func:`stage_select_change`, :mod:`crm_pipelines.attribution`): it would be written twice, to the side
table and into the table, and leave the table's storage full of deleted rows."""


def _side_name(table: str, kind: str) -> str:
    return f"{table}__{kind}"


def _cast_to(arrow: pa.Table, target: pa.Schema) -> pa.Table:
    """``arrow`` with the target's column order and types (all-null columns take any type)."""
    import pyarrow as pa
    arrays = []
    for field in target:
        column = arrow[field.name]
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise WarehouseError(
                    f"column {field.name!r}: the changed rows hold {column.type}, the published table "
                    f"{field.type}, and one cannot be cast to the other ({e}); publish the table whole."
                ) from e
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=pa.schema([pa.field(f.name, f.type) for f in target]))


def live_schema(warehouse: Warehouse, schema: str, table: str) -> pa.Schema | None:
    """The Arrow schema ``schema.table`` hands over (None: no such table)."""
    import sqlalchemy as sa
    if not warehouse.table_exists(schema, table):
        return None
    return warehouse.query_arrow(sa.select(sa.text("*")).select_from(warehouse.table(schema, table)).limit(0)).schema


def _stage_change(
    warehouse: Warehouse,
    schema: str,
    table: str,
    change: TableChange,
    column_types: Mapping[str, ColumnType] | None,
) -> tuple[int, list[str]] | None:
    """Write the change's side tables: (rows, the table's columns); None when the table must be
    published whole instead."""
    import pyarrow as pa
    live = live_schema(warehouse, schema, table)
    rows = arrow_table(change.rows, column_types)
    if live is None or set(live.names) != set(rows.column_names):
        return None
    rows = _cast_to(rows, live)
    warehouse.write_table(rows, schema, _side_name(table, "rows"), mode="replace")
    if change.key:
        replaced = rows.select(list(change.key)) if change.replaced is None else arrow_table(change.replaced)
        replaced = _cast_to(replaced.select(list(change.key)), pa.schema([live.field(k) for k in change.key]))
        warehouse.write_table(replaced, schema, _side_name(table, "replaced"), mode="replace")
    return rows.num_rows, list(live.names)


def _apply_change(
    conn: sa.Connection, warehouse: Warehouse, schema: str, table: str, key: Sequence[str], columns: Sequence[str]
) -> None:
    import sqlalchemy as sa
    target = warehouse.table(schema, table, columns)
    if key:
        replaced = warehouse.table(schema, _side_name(table, "replaced"), key)
        match = sa.exists().where(*(replaced.c[k] == target.c[k] for k in key))
        conn.execute(sa.delete(target).where(match))
    rows = warehouse.table(schema, _side_name(table, "rows"), columns)
    conn.execute(sa.insert(target).from_select(list(columns), sa.select(*(rows.c[c] for c in columns))))
    for kind in ("rows", "replaced") if key else ("rows",):
        conn.execute(sa.text(f"DROP TABLE {warehouse.qualified(schema, _side_name(table, kind))}"))


def publish_changes(
    warehouse: Warehouse,
    schema: str,
    changes: Mapping[str, TableChange],
    whole: Mapping[str, pd.DataFrame | pa.Table],
    column_types: Mapping[str, Mapping[str, ColumnType]] | None = None,
    *,
    on_applied: Callable[[str], None] | None = None,
    attempts: int = 3,
) -> dict[str, int]:
    """Apply ``changes`` to their tables and swap in the tables of ``whole`` without a change, in one
    transaction. Returns the rows written per table (changed rows, or whole tables' rows).

    ``whole`` must hold every table without a change, and may hold any changed table's complete
    version, used when that table cannot take the change (it does not exist yet, or its columns
    differ). ``on_applied(table)`` is called inside the transaction after each table, for tests that
    kill the process right there.
    """
    types = column_types or {}
    written: dict[str, int] = {}
    applied: dict[str, list[str]] = {}
    replaced_whole: list[str] = []
    for table, change in changes.items():
        staged = _stage_change(warehouse, schema, table, change, types.get(table))
        if staged is None:
            if table not in whole:
                raise WarehouseError(
                    f"{schema}.{table} cannot take changed rows (it does not exist or its columns differ) "
                    "and no complete version was given to publish instead."
                )
            replaced_whole.append(table)
            continue
        written[table], applied[table] = staged
    for table in [*(t for t in whole if t not in changes), *replaced_whole]:
        written[table] = warehouse.write_table(
            whole[table], schema, _side_name(table, "new"), mode="replace", column_types=types.get(table)
        )
    swapped = [t for t in whole if t not in applied]

    def apply_all(conn: sa.Connection) -> None:
        for table in [*applied, *swapped]:
            if table in applied:
                _apply_change(conn, warehouse, schema, table, changes[table].key, applied[table])
            else:
                warehouse.rename_over(conn, schema, _side_name(table, "new"), table)
            if on_applied is not None:
                on_applied(table)

    warehouse.in_publish_transaction(f"the changes to {schema}.{', '.join(changes)}", apply_all, attempts)
    return written


def staged_change_names(table: str) -> tuple[str, str]:
    """The side tables :func:`publish_change_view` reads: the rows to insert, and the keys of the rows
    they replace (both in the table's schema)."""
    return _side_name(table, "rows"), _side_name(table, "replaced")


def change_names(table: str) -> tuple[str, str, str, str]:
    """The night's view of ``table`` with a change applied, the rows to insert, the keys they replace,
    and the comparison (:func:`create_hash_diff`) they are taken from."""
    rows_table, replaced_table = staged_change_names(table)
    return f"{table}__night", rows_table, replaced_table, f"{table}__diff"


def drop_staged_change(warehouse: Warehouse, schema: str, table: str) -> None:
    """Drop the view and side tables of :func:`change_names` (also what a killed run left)."""
    view, *tables = change_names(table)
    warehouse.execute(f"DROP VIEW IF EXISTS {warehouse.qualified(schema, view)}")
    for name in tables:
        warehouse.drop_table(schema, name)


def create_hash_diff(
    warehouse: Warehouse,
    schema: str,
    rows: sa.Subquery,
    published: str,
    columns: Sequence[str],
    key: Sequence[str],
    diff_table: str,
) -> None:
    """DuckDB: write ``schema.diff_table``, the rows that differ between ``rows`` (the new version, with
    ``columns``) and the published table, in one pass: a full outer join on a 64-bit hash of every row.

    It holds the new rows no published row has the hash of (``columns``, ``_is_new`` true) and the keys
    (``_old_<key column>``) of the published rows no new row has the hash of (``_is_new`` false). Rows
    sharing a hash on either side all match each other: a caller must make sure that merging such
    duplicates cannot change the result (by counting rows), and accept a chance of about 2^-64 per pair
    of rows that a changed row hashes as a published one."""
    import sqlalchemy as sa
    old = warehouse.table(schema, published, columns)
    new = sa.select(*(rows.c[n] for n in columns), sa.func.hash(*(rows.c[n] for n in columns)).label("_hash")).subquery(
        "new"
    )
    before = sa.select(
        *(old.c[k].label(f"_old_{k}") for k in key), sa.func.hash(*(old.c[n] for n in columns)).label("_hash")
    ).subquery("old")
    differing = sa.select(
        *(new.c[n] for n in columns),
        new.c._hash.is_not(None).label("_is_new"),
        *(before.c[f"_old_{k}"] for k in key),
    ).select_from(new.outerjoin(before, new.c._hash == before.c._hash, full=True)).where(
        sa.or_(new.c._hash.is_(None), before.c._hash.is_(None))
    )
    warehouse.execute(f"CREATE TABLE {warehouse.qualified(schema, diff_table)} AS {compiled(warehouse, differing)}")


def create_change_view(
    warehouse: Warehouse,
    schema: str,
    table: str,
    view: str,
    columns: Sequence[str],
    rows_table: str,
    key: Sequence[str] = (),
    replaced_table: str | None = None,
) -> None:
    """Create the view ``schema.view``: the published ``table`` with a change applied, its rows whose
    ``key`` is not in ``replaced_table`` plus the rows of ``rows_table`` (no key: every published row
    stays). Only the view is written; validating it reads the published rows where they are."""
    import sqlalchemy as sa
    kept = warehouse.table(schema, table, columns)
    statement = sa.select(*kept.c)
    if key:
        # An outer join on the (few, distinct) replaced keys rather than NOT EXISTS: DuckDB runs NOT EXISTS
        # as a join that first collects the distinct keys of every published row. Checking the unique key
        # of core.order_items' view (1.25M rows) took 0.11-0.18 s that way against 0.20-0.39 s; PostgreSQL
        # plans both as the same anti join. A matched key's columns are not null (= matches no null), so the
        # rows whose first key column comes back null are the ones no replaced key matched.
        replaced = warehouse.table(schema, replaced_table, key)
        gone = sa.select(*replaced.c).distinct().subquery("gone")
        statement = statement.select_from(
            kept.outerjoin(gone, sa.and_(*(gone.c[k] == kept.c[k] for k in key)))
        ).where(gone.c[key[0]].is_(None))
    statement = sa.union_all(statement, sa.select(*warehouse.table(schema, rows_table, columns).c))
    warehouse.execute(f"CREATE VIEW {warehouse.qualified(schema, view)} AS {compiled(warehouse, statement)}")


def stage_select_change(
    warehouse: Warehouse, schema: str, statement: sa.Select, table: str, key: Sequence[str]
) -> tuple[str, int] | None:
    """DuckDB: write only the rows in which ``statement``'s result differs from the published
    ``schema.table`` (its previous result), as :mod:`crm_pipelines.attribution` does for the attributed
    tables: the rows to insert, the keys (``key``, unique in the table) of the rows they replace, and the
    view of the new version (:func:`change_names`), which is what a contract validates. Returns the view
    and its rows; publish it with :func:`publish_change_view`, or drop it with :func:`drop_staged_change`.

    None (nothing left behind) where the whole result is to be written instead: another warehouse, no
    published table or one with other columns or types, a change of more than :data:`REWRITE_SHARE` of
    the rows, a replaced row without a key, or duplicate rows (counted: a rewrite keeps them, the hash
    comparison would merge them)."""
    import sqlalchemy as sa
    if warehouse.dialect != "duckdb":
        return None
    published = live_schema(warehouse, schema, table)
    if published is None or warehouse.query_arrow(statement.limit(0)).schema != published:
        return None
    rows = statement.subquery("rows")
    columns = list(rows.c.keys())
    view, rows_table, replaced_table, diff_table = change_names(table)
    drop_staged_change(warehouse, schema, table)
    create_hash_diff(warehouse, schema, rows, table, columns, key, diff_table)
    # The comparison holds two rows per changed row: its published and its new version.
    if warehouse.row_count(schema, diff_table) > REWRITE_SHARE * 2 * warehouse.row_count(schema, table):
        drop_staged_change(warehouse, schema, table)
        return None
    diff = warehouse.table(schema, diff_table, [*columns, "_is_new", *(f"_old_{k}" for k in key)])
    inserted = sa.select(*(diff.c[n] for n in columns)).where(diff.c._is_new)
    replaced = sa.select(*(diff.c[f"_old_{k}"].label(k) for k in key)).where(sa.not_(diff.c._is_new))
    for name, selected in ((rows_table, inserted), (replaced_table, replaced)):
        warehouse.execute(f"CREATE TABLE {warehouse.qualified(schema, name)} AS {compiled(warehouse, selected)}")
    warehouse.drop_table(schema, diff_table)
    if warehouse.row_count(schema, replaced_table, sa.or_(*(sa.column(k).is_(None) for k in key))):
        drop_staged_change(warehouse, schema, table)  # a row without a key cannot be deleted by its key
        return None
    create_change_view(warehouse, schema, table, view, columns, rows_table, key, replaced_table)
    written = warehouse.row_count(schema, view)
    with warehouse.connect() as conn:
        expected = conn.execute(sa.select(sa.func.count()).select_from(rows)).scalar_one()
    if written != expected:
        drop_staged_change(warehouse, schema, table)
        return None
    return view, written


def publish_change_view(
    warehouse: Warehouse, schema: str, table: str, key: Sequence[str], columns: Sequence[str]
) -> None:
    """Make the new version :func:`stage_select_change` (or attribution) staged the published
    ``schema.table`` in one transaction: drop its view, delete the replaced keys' rows, insert the new
    ones. Readers see the old table or the new one, never a mix."""
    import sqlalchemy as sa
    view = change_names(table)[0]

    def apply(conn: sa.Connection) -> None:
        conn.execute(sa.text(f"DROP VIEW {warehouse.qualified(schema, view)}"))
        _apply_change(conn, warehouse, schema, table, key, columns)

    warehouse.in_publish_transaction(f"{schema}.{table}", apply)
