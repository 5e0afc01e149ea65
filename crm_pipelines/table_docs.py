"""What a published table tells a BI tool on PostgreSQL: its primary key, a customer_id index, comments.

BI tools (Metabase, Superset, Power BI) show table and column comments as descriptions and use primary
keys to propose joins; dashboards filtering one customer need the customer_id index. DuckDB is left
alone: its readers are single-user tools that read whole tables, and it has no index for them to use.

The key and indexes are created on the staging table, before it is swapped in, so a BI reader never
sees the table without them. PostgreSQL names indexes per schema, and the table being replaced still
holds its own until the swap drops it, so each publish names them with a fresh suffix.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crm_pipelines.schema import Column

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection

# PostgreSQL truncates identifiers longer than this; the table part of an index name is cut to fit.
_MAX_IDENTIFIER = 63


@dataclass(frozen=True)
class TableDocs:
    """The description, documented columns, key and indexed columns of one published table."""

    description: str
    columns: Sequence[Column] = ()
    key: Sequence[str] = ()
    indexed: Sequence[str] = ("customer_id",)


def _name(table: str, kind: str, suffix: str) -> str:
    import sqlalchemy as sa
    tail = f"_{kind}_{suffix}"
    return sa.quoted_name(table[: _MAX_IDENTIFIER - len(tail)] + tail, True)


def _table(schema: str, table: str, present: Sequence[str], docs: TableDocs) -> sa.Table:
    import sqlalchemy as sa
    described = {c.name: c.description for c in docs.columns}
    return sa.Table(
        sa.quoted_name(table, True),
        sa.MetaData(),
        *(sa.Column(sa.quoted_name(name, True), comment=described.get(name)) for name in present),
        schema=sa.quoted_name(schema, True),
        comment=docs.description,
    )


def document_postgres_table(
    conn: Connection, schema: str, table: str, present: Sequence[str], docs: TableDocs, *, keyed: bool = True
) -> None:
    """Comment ``schema.table`` and its ``present`` columns; with ``keyed``, add the key and indexes.

    SQLAlchemy's DDL constructs render the comments as escaped literals (PostgreSQL's COMMENT takes
    no bind parameters).
    """
    import sqlalchemy as sa
    target = _table(schema, table, present, docs)
    conn.execute(sa.schema.SetTableComment(target))
    for column in target.columns:
        if column.comment:
            conn.execute(sa.schema.SetColumnComment(column))
    if not keyed:
        return
    suffix = uuid.uuid4().hex[:8]
    key = [c for c in docs.key if c in present]
    if key and len(key) == len(docs.key):
        constraint = sa.PrimaryKeyConstraint(*(target.c[c] for c in key), name=_name(table, "pkey", suffix))
        target.append_constraint(constraint)
        conn.execute(sa.schema.AddConstraint(constraint))
    for name in docs.indexed:
        # A key led by the column already serves lookups by it.
        if name in present and (not key or key[0] != name):
            sa.Index(_name(table, f"{name}_idx", suffix), target.c[name]).create(conn)


def has_primary_key(conn: Connection, schema: str, table: str) -> bool:
    import sqlalchemy as sa
    constraints = sa.table(
        "table_constraints",
        sa.column("table_schema"),
        sa.column("table_name"),
        sa.column("constraint_type"),
        schema="information_schema",
    )
    stmt = (
        sa.select(sa.func.count())
        .select_from(constraints)
        .where(
            constraints.c.table_schema == schema,
            constraints.c.table_name == table,
            constraints.c.constraint_type == "PRIMARY KEY",
        )
    )
    return bool(conn.execute(stmt).scalar_one())
