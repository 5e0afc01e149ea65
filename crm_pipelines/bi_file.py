"""The marts as a separate DuckDB file for BI tools, replaced atomically after each run.

DuckDB locks its whole file: while the nightly run writes the warehouse, a dashboard cannot open it,
and a dashboard holding it open makes the nightly fail. So BI tools read a copy of the marts instead.
The copy is written under a temporary name in the target's directory, checkpointed and closed, then
moved over the old file with ``os.replace``. On POSIX that swaps the directory entry in one step: a
reader that has the old file open keeps reading the old (still complete) file, the next connection
opens the new one, and the writer never touches a file a reader holds, so it never waits on one.

In the file, each mart is the table ``marts.<table>`` and also the view ``main.<table>``, because
several BI tools ignore the schema they are given and look in DuckDB's default schema ``main``.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from crm_pipelines.config import RESERVED_DUCKDB_CATALOGS, duckdb_catalog_name
from crm_pipelines.schema import MARTS
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import sqlalchemy as sa

# Publishing writes ``<table>__new`` before the swap; a killed run can leave one behind.
_STAGING_SUFFIX = "__new"
_TMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp(\.wal)?$")


class BiFileError(RuntimeError):
    """The BI file could not be written; the message names the file and what to do."""


@dataclass(frozen=True)
class BiFileExport:
    path: Path
    rows: dict[str, int]
    size_bytes: int
    seconds: float


def export_enabled(mode: str, warehouse_kind: str) -> bool:
    """``auto`` writes the file on an embedded DuckDB warehouse only: on a server warehouse BI tools
    connect to the warehouse itself, which serves many readers while the nightly writes."""
    return mode == "always" or (mode == "auto" and warehouse_kind == "duckdb")


def mart_tables(wh: Warehouse, schema: str = MARTS) -> list[str]:
    """The published tables of ``schema`` (not views, not half-published staging tables), sorted."""
    import sqlalchemy as sa
    tables = sa.table(
        "tables",
        sa.column("table_schema"),
        sa.column("table_name"),
        sa.column("table_type"),
        schema="information_schema",
    )
    stmt = sa.select(tables.c.table_name).where(
        tables.c.table_schema == schema, tables.c.table_type == "BASE TABLE"
    )
    with wh.connect() as conn:
        names = [r[0] for r in conn.execute(stmt)]
    return sorted(n for n in names if not n.endswith(_STAGING_SUFFIX))


def export_marts_file(wh: Warehouse, target: str | os.PathLike[str], schema: str = MARTS) -> BiFileExport:
    import duckdb  # here, not at module level: loading the definitions should not pay for it

    """Copy every table of ``schema`` into the DuckDB file ``target`` and swap it in atomically."""
    started = time.monotonic()
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    if wh.url.startswith("duckdb:///") and Path(wh.url[len("duckdb:///") :]).resolve() == target:
        raise BiFileError(
            f"bi.marts_file {target} is the warehouse file itself; name another file in crm.yaml"
        )
    if duckdb_catalog_name(target) in RESERVED_DUCKDB_CATALOGS:
        raise BiFileError(f"{target}: a file of that name makes `marts.<table>` ambiguous; choose another name")
    _remove_abandoned_temporaries(target)
    tables = mart_tables(wh, schema)
    if not tables:
        raise BiFileError(f"{wh.display_url}: schema {schema!r} has no tables yet; nothing to write to {target}")
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        if wh.dialect == "duckdb":
            _copy_from_duckdb(wh, tmp, schema, tables)
        else:
            _copy_through_arrow(wh, tmp, schema, tables)
        rows = _add_unprefixed_views_and_close(tmp, schema, tables)
        os.replace(tmp, target)
    except (duckdb.Error, OSError) as e:
        raise BiFileError(f"could not write the BI file {target}: {e}") from e
    finally:
        for leftover in (tmp, Path(f"{tmp}.wal")):
            leftover.unlink(missing_ok=True)
    return BiFileExport(target, rows, target.stat().st_size, time.monotonic() - started)


def _copy_from_duckdb(wh: Warehouse, tmp: Path, schema: str, tables: Sequence[str]) -> None:
    # The new file is attached to the warehouse's own connection, so each table is copied inside
    # DuckDB, streamed and with its exact types, without passing through Python.
    alias = f"_crm_bi_{uuid.uuid4().hex[:8]}"
    with wh.engine.connect() as conn:
        duck = conn.connection.driver_connection
        duck.execute(f"ATTACH {_literal(tmp)} AS {_ident(alias)}")
        try:
            duck.execute(f"CREATE SCHEMA {_ident(alias)}.{_ident(schema)}")
            for table in tables:
                duck.execute(
                    f"CREATE TABLE {_ident(alias)}.{_ident(schema)}.{_ident(table)} AS "
                    f"SELECT * FROM {wh.qualified(schema, table)}"
                )
        finally:
            duck.execute(f"DETACH {_ident(alias)}")


def _copy_through_arrow(wh: Warehouse, tmp: Path, schema: str, tables: Sequence[str]) -> None:
    import duckdb
    import sqlalchemy as sa

    # A server warehouse is read table by table as Arrow (ADBC on PostgreSQL), keeping its types.
    with contextlib.closing(duckdb.connect(str(tmp))) as duck:
        duck.execute(f"CREATE SCHEMA {_ident(schema)}")
        for table in tables:
            data = wh.query_arrow(sa.select(sa.text("*")).select_from(wh.table(schema, table)))
            duck.register("_crm_bi_source", data)
            try:
                duck.execute(f"CREATE TABLE {_ident(schema)}.{_ident(table)} AS SELECT * FROM _crm_bi_source")
            finally:
                duck.unregister("_crm_bi_source")


def _add_unprefixed_views_and_close(tmp: Path, schema: str, tables: Sequence[str]) -> dict[str, int]:
    import duckdb

    # Views are created with the file as the only database, so they resolve to its own tables.
    with contextlib.closing(duckdb.connect(str(tmp))) as duck:
        rows = {}
        for table in tables:
            duck.execute(
                f"CREATE VIEW main.{_ident(table)} AS SELECT * FROM {_ident(schema)}.{_ident(table)}"
            )
            rows[table] = duck.execute(f"SELECT count(*) FROM {_ident(schema)}.{_ident(table)}").fetchone()[0]
        duck.execute("CHECKPOINT")
    return rows


def _remove_abandoned_temporaries(target: Path) -> None:
    """Temporary files of runs killed mid-export; those of a live process are left alone."""
    for path in target.parent.iterdir():
        match = _TMP_PATTERN.match(path.name)
        if match and match["name"] == target.name and not _process_alive(int(match["pid"])):
            path.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@cache
def _duckdb_quoting() -> sa.sql.compiler.IdentifierPreparer:
    """Identifiers in the BI file are quoted by SQLAlchemy's DuckDB dialect, as in the warehouse."""
    import duckdb_engine

    return duckdb_engine.Dialect().identifier_preparer


def _ident(name: str) -> str:
    return _duckdb_quoting().quote_identifier(name)


def _literal(path: Path) -> str:
    # ATTACH takes no bound parameters, so the path goes in as a quoted SQL string literal.
    return "'" + str(path).replace("'", "''") + "'"
