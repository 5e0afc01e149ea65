"""The marts as a separate DuckDB file for BI tools, replaced atomically after each run.

DuckDB locks its whole file: while the nightly run writes the warehouse, a dashboard cannot open it,
and a dashboard holding it open makes the nightly fail. So BI tools read a copy of the marts instead.
The copy is written under a temporary name in the target's directory, checkpointed and closed, then
moved over the old file with ``os.replace``. On POSIX that swaps the directory entry in one step: a
reader that has the old file open keeps reading the old (still complete) file, the next connection
opens the new one, and the writer never touches a file a reader holds, so it never waits on one.

In the file, each mart is the table ``marts.<table>`` and also the view ``main.<table>``, because
several BI tools ignore the schema they are given and look in DuckDB's default schema ``main``.

In the nightly's export from a DuckDB warehouse (``carry_over``), a table written a month at a time
(the segment history: a night replaces its current month, and the earlier months, nine in ten of its
rows, stay as they were) is not copied whole again: the temporary file starts as a copy of the last
export, and of such a table only the months whose rows differ are replaced. A month counts as
unchanged when its row count and the sum of its rows' 64-bit hashes match the warehouse's (an
accidental match has a chance of about 2^-64). Writing is the cost (compression): at 100,000 people
the history took 1.3 s to copy whole, its hashes 0.13 s per side. Every other table is copied whole:
on a second night with 1% changes every mart of more than a few rows differed, so comparing them
first would only add the hashes' cost. Those tables are dropped from the copy and the copy
checkpointed before anything is written, so the new tables reuse their blocks: dropped and rewritten
one by one, each table's new blocks came from the end of the file, and at 100,000 people the file
carried about 28 MB (30%) of free blocks from night to night. A carried-over
file with more free than used blocks (DuckDB does not shrink files) is dropped and the export starts
from an empty file, as does every export without ``carry_over`` (an erasure's: no replaced row may
linger in the file's free blocks).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
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
# Marts whose writer replaces a month at a time, by the column naming the month.
MONTHLY_MARTS = {"customer_segment_history": "month_index"}


class BiFileError(RuntimeError):
    """The BI file could not be written; the message names the file and what to do."""


@dataclass(frozen=True)
class BiFileExport:
    path: Path
    rows: dict[str, int]
    size_bytes: int
    seconds: float
    carried_over: dict[str, int] = field(default_factory=dict)
    """Per table of :data:`MONTHLY_MARTS` updated in a copy of the last export: the months it kept."""


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


def export_marts_file(
    wh: Warehouse, target: str | os.PathLike[str], schema: str = MARTS, *, carry_over: bool = False
) -> BiFileExport:
    """Copy every table of ``schema`` into the DuckDB file ``target`` and swap it in atomically.

    ``carry_over``: start from a copy of the last export and replace only the changed months of
    :data:`MONTHLY_MARTS` (the nightly's export). Left False, the file is written afresh: rows deleted
    in the warehouse then leave no trace in it (an erasure's export), whereas a copied DuckDB file
    keeps replaced rows in its free or partly deleted blocks until they are overwritten."""
    import duckdb  # here, not at module level: loading the definitions should not pay for it

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
    carried: dict[str, int] = {}
    try:
        if wh.dialect == "duckdb":
            rows, carried = _copy_from_duckdb(wh, tmp, schema, tables, target if carry_over else None)
        else:
            rows = _copy_through_arrow(wh, tmp, schema, tables)
        os.replace(tmp, target)
    except (duckdb.Error, OSError) as e:
        raise BiFileError(f"could not write the BI file {target}: {e}") from e
    finally:
        for leftover in (tmp, Path(f"{tmp}.wal")):
            leftover.unlink(missing_ok=True)
    return BiFileExport(target, rows, target.stat().st_size, time.monotonic() - started, carried)


def _copy_from_duckdb(
    wh: Warehouse, tmp: Path, schema: str, tables: Sequence[str], previous: Path | None
) -> tuple[dict[str, int], dict[str, int]]:
    """Write ``tables`` into ``tmp`` and finish it (:func:`_add_views_and_checkpoint`); returns the rows
    per table and the months kept per table updated in a copy of ``previous``."""
    import duckdb

    # The new file is attached to the warehouse's own connection, so each table is copied inside
    # DuckDB, streamed and with its exact types, without passing through Python.
    alias = f"_crm_bi_{uuid.uuid4().hex[:8]}"
    carried: dict[str, int] = {}
    with wh.engine.connect() as conn:
        duck = conn.connection.driver_connection
        reused = previous is not None and _attach_previous(duck, previous, tmp, alias, schema)
        if not reused:
            duck.execute(f"ATTACH {_literal(tmp)} AS {_ident(alias)}")
        try:
            duck.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(alias)}.{_ident(schema)}")
            if reused:
                # Every table but the monthly ones is dropped, and the drops checkpointed, before any
                # is copied: DuckDB reuses a dropped table's blocks only after a checkpoint.
                replaced = set(_tables_in(duck, alias, schema)) - (set(tables) & set(MONTHLY_MARTS))
                for stale in sorted(replaced):
                    duck.execute(f"DROP VIEW IF EXISTS {_ident(alias)}.main.{_ident(stale)}")
                    duck.execute(f"DROP TABLE {_ident(alias)}.{_ident(schema)}.{_ident(stale)}")
                duck.execute(f"CHECKPOINT {_ident(alias)}")
            for table in tables:
                source = wh.qualified(schema, table)
                copy = f"{_ident(alias)}.{_ident(schema)}.{_ident(table)}"
                if reused:
                    kept = _update_months(duck, alias, schema, table, source, copy)
                    if kept is not None:
                        carried[table] = kept
                        continue
                    duck.execute(f"DROP VIEW IF EXISTS {_ident(alias)}.main.{_ident(table)}")
                    duck.execute(f"DROP TABLE IF EXISTS {copy}")
                duck.execute(f"CREATE TABLE {copy} AS SELECT * FROM {source}")
            rows = _add_views_and_checkpoint(duck, alias, schema, tables)
        except BaseException:  # whatever stopped the copy, the warehouse's connection lets go of the file
            with contextlib.suppress(duckdb.Error):
                duck.execute(f"DETACH {_ident(alias)}")
            raise
        duck.execute(f"DETACH {_ident(alias)}")
    return rows, carried


def _attach_previous(duck, previous: Path, tmp: Path, alias: str, schema: str) -> bool:
    """Attach a copy of the last export as ``tmp`` when one is worth updating; False: start empty."""
    import duckdb

    if not previous.is_file():
        return False
    try:
        shutil.copyfile(previous, tmp)
        duck.execute(f"ATTACH {_literal(tmp)} AS {_ident(alias)}")
    except (OSError, duckdb.Error):
        tmp.unlink(missing_ok=True)
        return False
    free, used = duck.execute(
        "SELECT free_blocks, used_blocks FROM pragma_database_size() WHERE database_name = ?", [alias]
    ).fetchone()
    if free > used or not _only_marts(duck, alias, schema):
        duck.execute(f"DETACH {_ident(alias)}")
        tmp.unlink()
        return False
    return True


def _only_marts(duck, catalog: str, schema: str) -> bool:
    """Whether the file holds nothing but what an export writes: tables in ``schema`` and views in main
    of the same names (a file holding anything else is not carried over, as a fresh one would not hold it)."""
    tables = duck.execute(
        "SELECT DISTINCT schema_name, table_name FROM duckdb_tables() WHERE database_name = ?", [catalog]
    ).fetchall()
    views = duck.execute(
        "SELECT view_name FROM duckdb_views() WHERE database_name = ? AND NOT internal AND schema_name = 'main'",
        [catalog],
    ).fetchall()
    others = duck.execute(
        "SELECT count(*) FROM duckdb_views() WHERE database_name = ? AND NOT internal AND schema_name <> 'main'",
        [catalog],
    ).fetchone()[0]
    return (
        others == 0
        and all(table_schema == schema for table_schema, _ in tables)
        and {v for (v,) in views} <= {t for _, t in tables}
    )


def _tables_in(duck, catalog: str, schema: str) -> list[str]:
    return [
        r[0]
        for r in duck.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ?", [catalog, schema]
        ).fetchall()
    ]


def _columns_of(duck, catalog: str, schema: str, table: str) -> list[tuple[str, str]]:
    return duck.execute(
        "SELECT column_name, data_type FROM duckdb_columns() "
        "WHERE database_name = ? AND schema_name = ? AND table_name = ? ORDER BY column_index",
        [catalog, schema, table],
    ).fetchall()


def _update_months(duck, alias: str, schema: str, table: str, source: str, copy: str) -> int | None:
    """Replace the months of ``copy`` whose rows differ from ``source``'s; the months kept, or None
    when the table is not one of :data:`MONTHLY_MARTS` or cannot be updated month by month."""
    month = MONTHLY_MARTS.get(table)
    if month is None:
        return None
    catalog = duck.execute("SELECT current_database()").fetchone()[0]
    columns = _columns_of(duck, catalog, schema, table)
    if not columns or columns != _columns_of(duck, alias, schema, table) or month not in dict(columns):
        return None
    hashed = ", ".join(_ident(name) for name, _ in columns)

    def fingerprints(relation: str) -> dict:
        return {
            m: (n, h)
            for m, n, h in duck.execute(
                f"SELECT {_ident(month)}, count(*), sum(hash({hashed})) FROM {relation} GROUP BY 1"
            ).fetchall()
        }

    new, old = fingerprints(source), fingerprints(copy)
    if None in new or None in old:
        return None
    changed = sorted(m for m in set(new) | set(old) if new.get(m) != old.get(m))
    if changed:
        months = f"{_ident(month)} IN ({', '.join('?' for _ in changed)})"
        duck.execute(f"DELETE FROM {copy} WHERE {months}", changed)
        duck.execute(f"INSERT INTO {copy} SELECT * FROM {source} WHERE {months}", changed)
    return len(set(new) - set(changed))


def _copy_through_arrow(wh: Warehouse, tmp: Path, schema: str, tables: Sequence[str]) -> dict[str, int]:
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
        catalog = duck.execute("SELECT current_database()").fetchone()[0]
        return _add_views_and_checkpoint(duck, catalog, schema, tables)


def _add_views_and_checkpoint(duck, catalog: str, schema: str, tables: Sequence[str]) -> dict[str, int]:
    """The view ``main.<table>`` of each table in the file ``catalog``, its rows counted, then the file
    checkpointed (whole without its write-ahead log, which the caller removes); returns the rows.

    The views' queries name ``schema.<table>`` without a catalog: DuckDB binds them in the catalog the
    view is created in, and stores them so, so they resolve to the file's own tables once it is opened
    alone. Done while the file is still attached to the warehouse's connection, the file is not opened
    a second time and is checkpointed once."""
    rows = {}
    for table in tables:
        duck.execute(
            f"CREATE OR REPLACE VIEW {_ident(catalog)}.main.{_ident(table)} AS "
            f"SELECT * FROM {_ident(schema)}.{_ident(table)}"
        )
        counted = duck.execute(f"SELECT count(*) FROM {_ident(catalog)}.{_ident(schema)}.{_ident(table)}")
        rows[table] = counted.fetchone()[0]
    duck.execute(f"CHECKPOINT {_ident(catalog)}")
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
