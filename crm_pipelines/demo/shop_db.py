"""The shop's database: its schema, writing it as SQLite, and copying it into another database.

The schema is declared once with SQLAlchemy so the same tables can be created in SQLite (the demo
file), MariaDB or PostgreSQL (to try the SQL connector against a server). SQLite is written through
ADBC's Arrow ingest: millions of rows without building a Python object per value. Besides primary keys
only the incremental cursors (``updated_at``) are indexed: each index on a table of millions of rows
costs seconds to build.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

SHOP_METADATA = sa.MetaData()
_UTF8 = {"mysql_charset": "utf8mb4"}  # names like Yılmaz need more than latin1

CUSTOMERS = sa.Table(
    "customers",
    SHOP_METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("email", sa.String(255)),
    sa.Column("first_name", sa.String(100)),
    sa.Column("last_name", sa.String(100)),
    sa.Column("phone", sa.String(50)),
    sa.Column("street", sa.String(200)),
    sa.Column("city", sa.String(100)),
    sa.Column("postal_code", sa.String(20)),
    sa.Column("country", sa.String(60)),
    sa.Column("loyalty_card", sa.String(32)),
    sa.Column("created_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime, index=True),
    **_UTF8,
)
ORDERS = sa.Table(
    "orders",
    SHOP_METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("total", sa.Numeric(12, 2), nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False, index=True),
    **_UTF8,
)
ORDER_ITEMS = sa.Table(
    "order_items",
    SHOP_METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("order_id", sa.Integer, nullable=False),
    sa.Column("sku", sa.String(32), nullable=False),
    sa.Column("product_name", sa.String(200)),
    sa.Column("category", sa.String(100)),
    sa.Column("qty", sa.Integer, nullable=False),
    sa.Column("unit_price", sa.Numeric(12, 2), nullable=False),
    **_UTF8,
)
SHOP_TABLES = (CUSTOMERS, ORDERS, ORDER_ITEMS)


def write_shop_database(path: Path, tables: dict[str, pa.Table]) -> dict[str, int]:
    """Create ``path`` afresh with the shop schema and the given rows; return the row count per table."""
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    path.unlink(missing_ok=True)
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            for table in SHOP_TABLES:
                conn.execute(sa.schema.CreateTable(table))  # without indexes: those slow a bulk load
        with adbc_sqlite.connect(str(path)) as adbc_conn:
            with adbc_conn.cursor() as cursor:
                for table in SHOP_TABLES:
                    rows = tables[table.name].select([c.name for c in table.columns])
                    cursor.adbc_ingest(table.name, rows, mode="append")
            adbc_conn.commit()
        with engine.begin() as conn:
            for table in SHOP_TABLES:
                for index in table.indexes:
                    index.create(conn)
    finally:
        engine.dispose()
    return {name: t.num_rows for name, t in tables.items()}


def load_shop_database(sqlite_path: Path, url: str, chunk_rows: int = 20_000) -> None:
    """Copy the shop tables from the SQLite file into the database at ``url`` (any SQLAlchemy URL).

    Existing shop tables there are replaced. Rows go in chunks of ``chunk_rows`` through
    ``executemany`` (multi-row inserts on PostgreSQL and MariaDB), one transaction per table.
    """
    sqlite_path = Path(sqlite_path)
    if not sqlite_path.is_file():
        raise FileNotFoundError(f"{sqlite_path}: no shop database here (generate the demo data first)")
    engine = sa.create_engine(url)
    try:
        SHOP_METADATA.drop_all(engine)
        SHOP_METADATA.create_all(engine)
        source = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
        try:
            for table in SHOP_TABLES:
                _copy_table(source, engine, table, chunk_rows)
        finally:
            source.close()
    finally:
        engine.dispose()


def _copy_table(source: sqlite3.Connection, engine: sa.Engine, table: sa.Table, chunk_rows: int) -> None:
    names = [c.name for c in table.columns]
    convert = [_converter(c.type) for c in table.columns]
    quoted = ", ".join(f'"{n}"' for n in names)  # names come from our own schema, not from input
    cursor = source.execute(f'SELECT {quoted} FROM "{table.name}" ORDER BY "id"')
    with engine.begin() as conn:
        while rows := cursor.fetchmany(chunk_rows):
            conn.execute(
                table.insert(),
                [{n: f(v) for n, f, v in zip(names, convert, row, strict=True)} for row in rows],
            )


def _converter(column_type: sa.types.TypeEngine) -> Callable[[Any], Any]:
    """SQLite hands back timestamps as text; servers want datetime objects."""
    if isinstance(column_type, sa.DateTime):
        return lambda v: dt.datetime.fromisoformat(v) if isinstance(v, str) else v
    return lambda v: v


def shop_row_counts(url: str) -> dict[str, int]:
    """Rows per shop table in the database at ``url``."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in SHOP_TABLES
            }
    finally:
        engine.dispose()
