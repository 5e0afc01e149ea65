"""The warehouse: SQLAlchemy for every statement, the fastest bulk path each engine offers for data.

DuckDB (the embedded default) loads Arrow tables with ``CREATE TABLE ... AS SELECT`` from a
registered view; PostgreSQL loads through ADBC's COPY-based ingest; any other SQLAlchemy warehouse
falls back to pandas ``to_sql`` in chunks. Tables that BI reads are published with
:meth:`Warehouse.publish`: written under a temporary name, then swapped in within one transaction,
so a reader sees either yesterday's table or today's, never a half-written one.

Identifiers are always quoted by the dialect's preparer, never pasted into SQL as they come.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crm_pipelines.adbc_pool import adbc_connection, close_pooled
from crm_pipelines.schema import Column, ColumnType
from crm_pipelines.table_docs import TableDocs, document_postgres_table, has_primary_key

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)


def arrow_type(dtype: str) -> pa.DataType | None:
    """The Arrow type a canonical column type (``ColumnType``) is written as; None for any other name."""
    import pyarrow as pa
    return {
        "string": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "date": pa.date32(),
        "float": pa.float64(),
        "integer": pa.int64(),
        "boolean": pa.bool_(),
    }.get(dtype)


class WarehouseError(RuntimeError):
    """The warehouse cannot be reached or refused a statement; the message says which and why."""


_ENGINES: dict[str, Engine] = {}
_ENGINE_DUCKDB_SETTINGS: dict[str, DuckDBSettings] = {}
_DUCKDB_CATALOGS: dict[str, str] = {}
SCRATCH_DATABASE = "_crm_scratch"
"""DuckDB: the in-memory database that holds a run's scratch tables (see Warehouse.scratch_schema)."""

DUCKDB_SIZE = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*$", re.IGNORECASE)
"""A size DuckDB's memory settings accept, e.g. ``2GB`` or ``512MiB``."""
DEFAULT_DUCKDB_MEMORY_LIMIT = "2GB"
"""The warehouse DuckDB's buffer pool limit unless crm.yaml sets one (README: warehouse settings)."""
DUCKDB_ROW_GROUP_ROWS = 122_880
"""Rows per row group of a DuckDB table: a bulk write stores its input in groups of this many rows."""

POSTGRES_SESSION_OPTIONS = "-c jit=off -c default_statistics_target=20"
"""Settings of every PostgreSQL session the warehouse opens (SQLAlchemy's and ADBC's), given to libpq
as its ``options``; an ``options`` in the warehouse URL comes after them, so it wins
(``?options=-c%20jit%3Don`` turns JIT back on).

``jit=off``: JIT compiles a query's expressions when its estimated cost passes ``jit_above_cost``; the
marts' queries over a few million rows all do, and the compilation cost more than it saved. A
100,000-people first night took 255 s on PostgreSQL 15 with the server's default ``jit = on`` and 195 s
with it off (DuckDB 110-127 s on the same machine).

``default_statistics_target=20``: the ANALYZE a run issues after every load (:meth:`Warehouse.analyze`)
samples 6,000 rows instead of 30,000. The plans need row counts and rough distinct counts, which the
smaller sample gives; at 100,000 people a night's 57 ANALYZEs took 11 s, and one of core.order_items
(1.25M rows) or staging.customers 0.06-0.16 s against 0.56-0.90 s. The first night took 115.1 s
against DuckDB's 70.0 s (1.64x) with it, 197.4 s against 110.5 s (1.79x) without, on a machine whose
speed changed between the runs; the ratio is the comparable figure. Autovacuum's own ANALYZE keeps
the server's target."""


@dataclass(frozen=True)
class DuckDBSettings:
    """Instance settings of a DuckDB warehouse, applied to every connection the engine opens.

    ``memory_limit``: DuckDB's own default is 80% of the machine's memory, and its buffer pool keeps
    what it read until it needs the room, so a night's warehouse grew beside the Python steps instead
    of giving way to them. Queries that need more than the limit spill to DuckDB's temp directory.
    ``threads``: worker threads. ``checkpoint_threshold``: the write-ahead log size at which DuckDB
    checkpoints (README: why its default stays). None in any of them keeps DuckDB's default."""

    memory_limit: str | None = DEFAULT_DUCKDB_MEMORY_LIMIT
    threads: int | None = None
    checkpoint_threshold: str | None = None

    def __post_init__(self) -> None:
        # The values are written into SET statements (DuckDB does not bind parameters there).
        for name in ("memory_limit", "checkpoint_threshold"):
            value = getattr(self, name)
            if value is not None and not DUCKDB_SIZE.match(value):
                raise ValueError(f"DuckDB {name} {value!r} is not a size such as 2GB or 512MB")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"DuckDB threads must be a whole number of at least 1, got {self.threads!r}")

    def statements(self) -> list[str]:
        out = []
        if self.memory_limit is not None:
            out.append(f"SET GLOBAL memory_limit = '{self.memory_limit.strip()}'")
        if self.threads is not None:
            out.append(f"SET GLOBAL threads = {int(self.threads)}")
        if self.checkpoint_threshold is not None:
            out.append(f"SET GLOBAL checkpoint_threshold = '{self.checkpoint_threshold.strip()}'")
        return out


def _engine(url: str, duckdb_settings: DuckDBSettings | None = None) -> Engine:
    """One engine per URL per process: DuckDB allows one writer process per file, so share it.

    The first Warehouse of a URL in a process decides its DuckDB settings."""
    import sqlalchemy as sa
    if url not in _ENGINES:
        if url.startswith("duckdb:///"):
            path = url[len("duckdb:///") :]
            if path and not path.startswith(":"):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        duckdb = url.startswith("duckdb")
        # DuckDB: no rollback when a connection returns to the pool. Every statement runs inside
        # Warehouse.connect()'s transaction, which commits or rolls back before the return, and a
        # rollback with no transaction open costs duckdb-engine about 0.6 ms (a raised and caught
        # error): a third of each connection's cost, and a night opens a few thousand of them.
        engine_options: dict[str, Any] = {"pool_reset_on_return": None} if duckdb else {}
        parsed = sa.engine.make_url(url)
        if parsed.get_backend_name() == "postgresql":
            engine_options["connect_args"] = {"options": postgres_options(parsed)}
        engine = sa.create_engine(url, pool_pre_ping=not duckdb, **engine_options)
        if duckdb:
            _ENGINE_DUCKDB_SETTINGS[url] = duckdb_settings or DuckDBSettings()
            _apply_duckdb_settings(engine, _ENGINE_DUCKDB_SETTINGS[url])
        _ENGINES[url] = engine
    return _ENGINES[url]


def postgres_options(url: sa.URL) -> str:
    """libpq ``options`` of a PostgreSQL warehouse session: :data:`POSTGRES_SESSION_OPTIONS`, then the URL's."""
    own = url.query.get("options")
    own = own[-1] if isinstance(own, tuple) else own
    return f"{POSTGRES_SESSION_OPTIONS} {own}" if own else POSTGRES_SESSION_OPTIONS


def _apply_duckdb_settings(engine: Engine, settings: DuckDBSettings) -> None:
    # SET on every new connection rather than duckdb-engine's connect_args={"config": ...}: DuckDB
    # refuses a second connection to a file whose instance was opened with another configuration, so
    # a config at connect time would break every plain duckdb.connect(file) in the same process (a
    # notebook, a test) while the warehouse is open. The settings are the instance's (GLOBAL), so
    # they hold for every connection; the pool opens few.
    import sqlalchemy as sa
    statements = settings.statements()
    if not statements:
        return

    @sa.event.listens_for(engine, "connect")
    def _set(dbapi_connection, _record) -> None:
        for statement in statements:
            dbapi_connection.execute(statement)


def duckdb_row_groups(arrow: pa.Table) -> pa.Table | pa.RecordBatchReader:
    """``arrow`` cut for a DuckDB bulk write: one long batch into row groups, many short ones gathered.

    DuckDB's threads each take a batch, and it stores a batch of its row-group size as one row group.
    One batch of all rows (a frame from pandas) is written by one thread; batches far shorter than a
    row group (the ADBC SQLite driver's 1,024 rows) are gathered into row groups afterwards. Measured
    on 1.26M rows of 12 text columns: 2.2 CPU seconds (1.2 s on 2 threads) from row-group batches,
    2.4 (3.1 s) from one batch, 3.6 from 1,024-row batches. Batches near a row group's size (a CSV
    file's blocks) are left as they are: gathering them costs more than it saves. One long batch is
    sliced; short ones are copied a row group at a time (never the whole table at once).
    """
    import pyarrow as pa
    size = DUCKDB_ROW_GROUP_ROWS
    batches = arrow.to_batches()
    if len(batches) == 1 and arrow.num_rows > size:
        return pa.Table.from_batches(arrow.to_batches(max_chunksize=size), schema=arrow.schema)
    if arrow.num_rows <= size or arrow.num_rows / len(batches) >= size / 4:
        return arrow

    def gathered() -> Iterator[pa.RecordBatch]:
        for start in range(0, arrow.num_rows, size):
            yield from arrow.slice(start, size).combine_chunks().to_batches()

    return pa.RecordBatchReader.from_batches(arrow.schema, gathered())


def dispose_engines() -> None:
    """Close every pooled connection (releases DuckDB's file lock)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()
    _ENGINE_DUCKDB_SETTINGS.clear()
    _DUCKDB_CATALOGS.clear()
    close_pooled()


def arrow_table(frame: pd.DataFrame | pa.Table, column_types: Mapping[str, ColumnType] | None = None) -> pa.Table:
    """Arrow table with declared columns cast to their types and untyped all-null columns as strings."""
    import pyarrow as pa
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    column_types = column_types or {}
    fields = []
    arrays = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        target = arrow_type(column_types.get(name, ""))
        if target is None:
            if pa.types.is_null(col.type):
                target = pa.string()
            elif pa.types.is_large_string(col.type) or pa.types.is_string_view(col.type):
                target = pa.string()
            elif pa.types.is_timestamp(col.type) and col.type.unit == "ns":
                target = pa.timestamp("us", tz=col.type.tz)
        if target is not None and col.type != target:
            col = col.cast(target)
        fields.append(pa.field(name, col.type))
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


class Warehouse:
    """One warehouse, addressed by a SQLAlchemy URL."""

    def __init__(self, url: str, duckdb_settings: DuckDBSettings | None = None):
        self.url = url
        self.duckdb_settings = duckdb_settings
        self._engine: Engine | None = None
        # Schemas this object created or found: every write ensures its schema, and a step writes
        # several tables (new version, quarantine, audit rows) into a handful of schemas.
        self._schemas_present: set[str] = set()

    # -- connections -----------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = _engine(self.url, self.duckdb_settings)
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def _checked_out(self) -> Connection:
        """A pooled connection, or a WarehouseError that says where to fix an unreachable warehouse."""
        import sqlalchemy as sa
        try:
            return self.engine.connect()
        except sa.exc.OperationalError as e:
            raise WarehouseError(
                f"cannot connect to the warehouse {self.display_url}: {e.orig or e}. "
                "Check warehouse.url in crm.yaml or CRM_WAREHOUSE_URL."
            ) from e

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection inside one transaction: committed on success, rolled back on error."""
        connection = self._checked_out()
        with connection, connection.begin():
            yield connection

    @contextlib.contextmanager
    def _duckdb_autocommit(self) -> Iterator[Any]:
        """DuckDB: a pooled connection's DuckDB connection outside any transaction (each statement
        commits on its own), for a single read. Through :meth:`connect` a catalog look-up (0.3 ms) cost
        three times that: SQLAlchemy's BEGIN and COMMIT round it, and a night asks a few hundred."""
        with self._checked_out() as connection:
            yield connection.connection.driver_connection

    def checkpoint(self) -> float | None:
        """DuckDB: write the write-ahead log into the database file now (no effect on other warehouses).

        A run ends with one, so the file it leaves is whole without its WAL (a BI copy, a backup) and
        the next run does not replay it; a run killed before still loses nothing committed, which
        DuckDB replays from the WAL when the file is next opened. Returns the seconds it took (None:
        not a DuckDB file)."""
        if self.dialect != "duckdb" or not self.url.startswith("duckdb:///") or self.url.endswith(":memory:"):
            return None
        started = time.perf_counter()
        with self.engine.connect() as conn:  # outside a transaction: CHECKPOINT cannot run inside one
            conn.connection.driver_connection.execute("CHECKPOINT")
        return time.perf_counter() - started

    def release_memory(self) -> None:
        """DuckDB: hand the blocks its buffer pool keeps from earlier reads back to the system.

        Call it before a step whose memory goes to Python (identity resolution): DuckDB keeps what it
        read until its limit needs the room, which in one process means beside that step's frames.
        Lowering the limit evicts the cached blocks (about 15 ms; they are read back from the file if
        needed); the limit is then restored. No effect on other warehouses."""
        import duckdb
        if self.dialect != "duckdb":
            return
        # The limit is restored from the engine's settings: current_setting() rounds it (1.8 GiB).
        limit = _ENGINE_DUCKDB_SETTINGS.get(self.url, DuckDBSettings()).memory_limit
        restore = f"SET GLOBAL memory_limit = '{limit}'" if limit else "RESET GLOBAL memory_limit"
        # Outside a transaction: DuckDB evicts what it can, then refuses a limit below what it must
        # keep (data not yet checkpointed, blocks a query pins); inside a transaction that refusal
        # would abort it, and the restore with it.
        with self.engine.connect() as conn:
            duck = conn.connection.driver_connection
            try:
                duck.execute("SET GLOBAL memory_limit = '1MB'")
            except duckdb.OutOfMemoryException as e:
                log.debug("DuckDB kept part of its buffer pool: %s", e)
            finally:
                duck.execute(restore)

    def dispose(self) -> None:
        self._schemas_present.clear()
        if self._engine is not None:
            if self.dialect == "postgresql":
                close_pooled(self._adbc_uri)
            self._engine.dispose()

    def forget(self) -> None:
        """Dispose of the engine and drop it from the per-process cache (a throwaway warehouse)."""
        self.dispose()
        _ENGINES.pop(self.url, None)
        _ENGINE_DUCKDB_SETTINGS.pop(self.url, None)
        _DUCKDB_CATALOGS.pop(self.url, None)
        self._engine = None

    # -- names -----------------------------------------------------------------------------------
    def quote(self, name: str) -> str:
        # Always quoted: DuckDB's dialect does not know all of DuckDB's reserved words (e.g. "at").
        return self.engine.dialect.identifier_preparer.quote_identifier(name)

    def qualified(self, schema: str, table: str) -> str:
        return f"{self.quote(schema)}.{self.quote(table)}"

    def table(self, schema: str, table: str, columns: Sequence[str] = ()) -> sa.TableClause:
        """A lightweight table construct for building statements with SQLAlchemy (names always quoted)."""
        import sqlalchemy as sa
        return sa.table(sa.quoted_name(table, True), *(col(c) for c in columns), schema=sa.quoted_name(schema, True))

    def scratch_schema(self, fallback: str) -> str:
        """Where a run's scratch tables go: on DuckDB an in-memory database attached to the process's
        instance (shared by its connections; no disk writes, gone with the process), else ``fallback``.

        A transaction on DuckDB writes to one database only: create and drop scratch tables in their own
        transactions, and only read them inside one that writes the warehouse."""
        if self.dialect != "duckdb":
            return fallback
        with self.connect() as conn:
            conn.exec_driver_sql(f"ATTACH IF NOT EXISTS ':memory:' AS {self.quote(SCRATCH_DATABASE)}")
        return SCRATCH_DATABASE

    def in_schema(self, t: sa.TableClause, schema: str) -> sa.ColumnElement[bool]:
        """An information_schema table's rows of ``schema`` (the default schema of the scratch database on
        DuckDB)."""
        import sqlalchemy as sa
        if self.dialect == "duckdb" and schema == SCRATCH_DATABASE:
            return sa.and_(sa.column("table_catalog") == schema, t.c.table_schema == "main")
        return t.c.table_schema == schema

    # -- inspection ------------------------------------------------------------------------------
    def ensure_schemas(self, *schemas: str) -> None:
        import sqlalchemy as sa
        missing = [s for s in schemas if s not in self._schemas_present]
        if not missing:
            return
        with self.connect() as conn:
            for schema in missing:
                if self.dialect == "duckdb" and schema == SCRATCH_DATABASE:
                    continue  # an attached database, not a schema (scratch_schema attaches it)
                conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        self._schemas_present.update(missing)

    # duckdb-engine's reflection queries pg_catalog tables DuckDB lacks, so DuckDB and PostgreSQL
    # are asked through their catalogs; other dialects use the inspector.
    def _information_schema(self) -> bool:
        return self.dialect in ("duckdb", "postgresql")

    def table_exists(self, schema: str, table: str) -> bool:
        import sqlalchemy as sa
        if self.dialect == "duckdb":
            return bool(self.column_types(schema, table))  # a DuckDB table has at least one column
        if not self._information_schema():
            with self.connect() as conn:
                return sa.inspect(conn).has_table(table, schema=schema)
        tables = sa.table("tables", sa.column("table_schema"), sa.column("table_name"), schema="information_schema")
        stmt = (
            sa.select(sa.func.count())
            .select_from(tables)
            .where(self.in_schema(tables, schema), tables.c.table_name == table)
        )
        with self.connect() as conn:
            return bool(conn.execute(stmt).scalar_one())

    def columns(self, schema: str, table: str) -> list[str]:
        import sqlalchemy as sa
        if self._information_schema():
            return list(self.column_types(schema, table))
        with self.connect() as conn:
            return [c["name"] for c in sa.inspect(conn).get_columns(table, schema=schema)]

    def column_types(self, schema: str, table: str) -> dict[str, str]:
        """``{column: data type}`` in column order, as information_schema.columns spells the types;
        empty when the table (or view) does not exist. DuckDB and PostgreSQL only."""
        import sqlalchemy as sa
        if self.dialect == "duckdb":
            found = self._duckdb_column_types(schema, table)
            if found is not None:
                return found
        cols = sa.table("columns", sa.column("table_schema"), sa.column("table_name"), sa.column("column_name"),
                        sa.column("data_type"), sa.column("ordinal_position"), schema="information_schema")  # fmt: skip
        stmt = (
            sa.select(cols.c.column_name, cols.c.data_type)
            .where(self.in_schema(cols, schema), cols.c.table_name == table)
            .order_by(cols.c.ordinal_position)
        )
        with self.connect() as conn:
            return {name: kind for name, kind in conn.execute(stmt)}

    def _duckdb_column_types(self, schema: str, table: str) -> dict[str, str] | None:
        # DuckDB's information_schema views build a row for every table (and column) of every attached
        # database before filtering: 2-6 ms per question with the warehouse's hundred tables, asked a
        # few hundred times a night. pragma_table_info looks up the one table (about 0.3 ms); it
        # raises a catalog error for a table that does not exist. Its name parser does not undo doubled
        # quotes, so a name holding a double quote is left to information_schema (None).
        import duckdb
        if schema == SCRATCH_DATABASE:
            path = (SCRATCH_DATABASE, "main", table)
        else:
            path = (self._duckdb_catalog(), schema, table)
        if any('"' in part for part in path):
            return None
        name = ".".join(self.quote(part) for part in path)
        try:
            with self._duckdb_autocommit() as duck:
                rows = duck.execute("SELECT name, type FROM pragma_table_info(?)", [name]).fetchall()
        except duckdb.CatalogException:
            return {}
        return {column: kind for column, kind in rows}

    def _duckdb_catalog(self) -> str:
        """The name DuckDB gives the warehouse file's database (asked once per process)."""
        if self.url not in _DUCKDB_CATALOGS:
            with self.connect() as conn:
                _DUCKDB_CATALOGS[self.url] = conn.exec_driver_sql("SELECT current_database()").scalar_one()
        return _DUCKDB_CATALOGS[self.url]

    def row_count(self, schema: str, table: str, where: sa.ColumnElement[bool] | None = None) -> int:
        import sqlalchemy as sa
        stmt = sa.select(sa.func.count()).select_from(self.table(schema, table))
        if where is not None:
            stmt = stmt.where(where)
        with self.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    # -- reading ---------------------------------------------------------------------------------
    def read_table(
        self, schema: str, table: str, columns: Sequence[str] | None = None, where: Any = None
    ) -> pd.DataFrame:
        import sqlalchemy as sa
        cols = [col(c) for c in columns] if columns else [sa.text("*")]
        stmt = sa.select(*cols).select_from(self.table(schema, table))
        if where is not None:
            stmt = stmt.where(where)
        return self.query(stmt)

    def query(self, statement: str | sa.Executable, params: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Run a SELECT and return a DataFrame (through Arrow where the engine offers it)."""
        return self.query_arrow(statement, params).to_pandas()

    def query_arrow(self, statement: str | sa.Executable, params: Mapping[str, Any] | None = None) -> pa.Table:
        import pandas as pd
        import pyarrow as pa
        import sqlalchemy as sa
        stmt = sa.text(statement) if isinstance(statement, str) else statement
        if self.dialect == "duckdb":
            sql = str(stmt.compile(dialect=self.engine.dialect, compile_kwargs={"literal_binds": True}))
            if params:
                return self._duckdb_fetch_params(stmt, params)
            with self._duckdb_autocommit() as duck:
                return duck.execute(sql).to_arrow_table()
        if self.dialect == "postgresql" and not params:
            sql = str(stmt.compile(dialect=self.engine.dialect, compile_kwargs={"literal_binds": True}))
            with self._adbc() as adbc, adbc.cursor() as cur:
                cur.execute(sql)
                return cur.fetch_arrow_table()
        with self.connect() as conn:
            frame = pd.read_sql(stmt, conn, params=dict(params or {}))
        return pa.Table.from_pandas(frame, preserve_index=False)

    def arrow_batches(
        self, statement: sa.Executable, batch_rows: int = DUCKDB_ROW_GROUP_ROWS
    ) -> Iterator[pa.RecordBatch]:
        """The rows of a SELECT as Arrow record batches of at most ``batch_rows`` rows, in order.

        DuckDB streams its result: the caller holds one batch at a time while the rest waits in
        DuckDB's buffer pool (spilled to its temp directory past the memory limit), and its connection
        stays checked out until the generator is exhausted or closed. Other warehouses fetch the whole
        result first (:meth:`query_arrow`) and cut it."""
        if self.dialect != "duckdb":
            yield from self.query_arrow(statement).to_batches(batch_rows)
            return
        sql = str(statement.compile(dialect=self.engine.dialect, compile_kwargs={"literal_binds": True}))
        with self.connect() as conn:
            yield from conn.connection.driver_connection.execute(sql).to_arrow_reader(batch_rows)

    def _duckdb_fetch_params(self, stmt: sa.Executable, params: Mapping[str, Any]) -> pa.Table:
        import pyarrow as pa
        with self.connect() as conn:
            result = conn.execute(stmt, dict(params))
            rows = result.fetchall()
            return (
                pa.Table.from_pylist([dict(r._mapping) for r in rows])
                if rows
                else pa.table({k: pa.array([], pa.string()) for k in result.keys()})
            )

    def execute(self, statement: str | sa.Executable, params: Mapping[str, Any] | None = None) -> None:
        import sqlalchemy as sa
        stmt = sa.text(statement) if isinstance(statement, str) else statement
        with self.connect() as conn:
            conn.execute(stmt, dict(params or {}))

    # -- writing ---------------------------------------------------------------------------------
    def create_table(self, schema: str, table: str, columns: Sequence[Column]) -> None:
        """Create an empty table with canonical column types, if it does not exist."""
        import pyarrow as pa
        empty = pa.table({c.name: pa.array([], arrow_type(c.dtype)) for c in columns})
        if not self.table_exists(schema, table):
            self.write_table(empty, schema, table, mode="create")

    def write_table(
        self,
        data: pd.DataFrame | pa.Table,
        schema: str,
        table: str,
        mode: str = "replace",
        column_types: Mapping[str, ColumnType] | None = None,
    ) -> int:
        """Bulk-write ``data``. ``mode``: create (fails if it exists), replace, or append."""
        if mode not in ("create", "replace", "append"):
            raise ValueError(f"unknown write mode {mode!r}")
        arrow = arrow_table(data, column_types)
        self.ensure_schemas(schema)
        if mode == "append" and self.table_exists(schema, table):
            existing = self._add_missing_columns(schema, table, arrow)
            arrow = self._align_to_table(arrow, existing)
        elif mode == "append":
            mode = "create"
        if self.dialect == "duckdb":
            self._duckdb_write(arrow, schema, table, mode)
        elif self.dialect == "postgresql":
            self._postgres_write(arrow, schema, table, mode)
        else:
            self._generic_write(arrow, schema, table, mode)
        return arrow.num_rows

    @staticmethod
    def _align_to_table(arrow: pa.Table, existing: Sequence[str]) -> pa.Table:
        """``arrow`` with the table's ``existing`` columns, in their order (nulls where it has none)."""
        import pyarrow as pa
        arrays = []
        for name in existing:
            if name in arrow.column_names:
                arrays.append(arrow[name])
            else:
                arrays.append(pa.nulls(arrow.num_rows, pa.string()))
        aligned = pa.Table.from_arrays(arrays, names=existing)
        return aligned

    def _add_missing_columns(self, schema: str, table: str, arrow: pa.Table) -> list[str]:
        """Add the columns of ``arrow`` the table lacks; returns the table's columns after that, in order."""
        import sqlalchemy as sa
        existing = self.columns(schema, table)
        present = set(existing)
        missing = [f for f in arrow.schema if f.name not in present]
        if not missing:
            return existing
        with self.connect() as conn:
            for f in missing:
                sql_type = _sql_type_for(f.type).compile(dialect=self.engine.dialect)
                conn.execute(
                    sa.text(f"ALTER TABLE {self.qualified(schema, table)} ADD COLUMN {self.quote(f.name)} {sql_type}")
                )
        return [*existing, *(f.name for f in missing)]

    def _duckdb_write(self, arrow: pa.Table, schema: str, table: str, mode: str) -> None:
        target = self.qualified(schema, table)
        view = f"_crm_arrow_{uuid.uuid4().hex}"
        with self.connect() as conn:
            duck = conn.connection.driver_connection
            duck.register(view, duckdb_row_groups(arrow))
            try:
                if mode == "append":
                    cols = ", ".join(self.quote(c) for c in arrow.column_names)
                    duck.execute(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {view}")
                else:
                    verb = "CREATE OR REPLACE TABLE" if mode == "replace" else "CREATE TABLE"
                    duck.execute(f"{verb} {target} AS SELECT * FROM {view}")
            finally:
                duck.unregister(view)

    @property
    def _adbc_uri(self) -> str:
        from urllib.parse import quote
        url = self.engine.url
        options = postgres_options(url)
        url = url.difference_update_query(["options"]).set(drivername="postgresql")
        uri = url.render_as_string(hide_password=False)
        # libpq reads %20 as a space, not SQLAlchemy's +
        return f"{uri}{'&' if '?' in uri else '?'}options={quote(options, safe='')}"

    @contextlib.contextmanager
    def _adbc(self) -> Iterator[Any]:
        """A pooled ADBC connection in one transaction (crm_pipelines/adbc_pool.py says why pooled)."""
        with contextlib.ExitStack() as stack:
            try:
                conn = stack.enter_context(adbc_connection(self._adbc_uri))
            except Exception as e:  # the driver raises its own OperationalError family
                raise WarehouseError(f"cannot connect to the warehouse {self.display_url}: {e}") from e
            yield conn

    def _postgres_write(self, arrow: pa.Table, schema: str, table: str, mode: str) -> None:
        # ADBC's ingest is PostgreSQL's binary COPY from Arrow buffers: the fastest load path (about
        # 2 s per million rows, against 6.5 s for COPY of text and minutes for to_sql). The drop of a
        # replaced table, the load and its statistics share one pooled connection and one commit.
        with self._adbc() as conn, conn.cursor() as cur:
            if mode == "replace":
                cur.execute(f"DROP TABLE IF EXISTS {self.qualified(schema, table)}")
                mode = "create"
            cur.adbc_ingest(table, arrow, mode=mode, db_schema_name=schema)
            # Statistics now, in the loading transaction: the next step joins this table at once,
            # long before autovacuum would analyze it, and without statistics PostgreSQL guesses
            # row counts and distinct values, and picks sort-merge joins over text keys that cost
            # several times a hash join (collated comparisons). ANALYZE samples at most 30,000 rows.
            cur.execute(f"ANALYZE {self.qualified(schema, table)}")

    def _generic_write(self, arrow: pa.Table, schema: str, table: str, mode: str) -> None:
        frame = arrow.to_pandas()
        if_exists = {"create": "fail", "replace": "replace", "append": "append"}[mode]
        with self.connect() as conn:
            frame.to_sql(table, conn, schema=schema, if_exists=if_exists, index=False, chunksize=10_000)

    def publish(
        self,
        data: pd.DataFrame | pa.Table,
        schema: str,
        table: str,
        column_types: Mapping[str, ColumnType] | None = None,
        docs: TableDocs | None = None,
    ) -> int:
        """Write under a temporary name, then swap it in within one transaction.

        With ``docs``, on PostgreSQL the new table gets its key, indexes and comments before the swap."""
        staging_name = f"{table}__new"
        rows = self.write_table(data, schema, staging_name, mode="replace", column_types=column_types)
        self.publish_staged(schema, staging_name, table, docs=docs)
        return rows

    def publish_staged(self, schema: str, staging_name: str, table: str, docs: TableDocs | None = None) -> None:
        """Swap in ``schema.staging_name``, already written (and validated), as ``schema.table``;
        with ``docs``, on PostgreSQL it gets its key, indexes and comments first."""
        if docs is not None and self.dialect == "postgresql":
            self._document(schema, staging_name, docs, keyed=True, label=f"{schema}.{table}", staged=True)
        self.swap_in(schema, staging_name, table)

    def document(self, schema: str, table: str, docs: TableDocs) -> None:
        """Comments, and the key and indexes if it has no key yet, on an existing table (PostgreSQL only):
        for tables appended to rather than published."""
        if self.dialect != "postgresql" or not self.table_exists(schema, table):
            return
        with self.connect() as conn:
            keyed = not has_primary_key(conn, schema, table)
        self._document(schema, table, docs, keyed=keyed, label=f"{schema}.{table}", staged=False)

    def _document(
        self, schema: str, table: str, docs: TableDocs, *, keyed: bool, label: str, staged: bool
    ) -> None:
        import sqlalchemy as sa
        present = self.columns(schema, table)
        try:
            with self.connect() as conn:
                document_postgres_table(conn, schema, table, present, docs, keyed=keyed)
        except sa.exc.SQLAlchemyError as e:
            reason = str(getattr(e, "orig", None) or e).strip().rstrip(".")
            raise WarehouseError(
                f"could not add the key {list(docs.key)}, indexes or comments to {label}: {reason}. "
                + (f"The previous {label} stays in place; " if staged else "The rows are written; ")
                + "they must be unique on the key."
            ) from e

    def swap_in(self, schema: str, staging_name: str, table: str, attempts: int = 3) -> None:
        """Replace ``table`` by ``staging_name`` atomically (readers wait, never see a gap)."""
        self.in_publish_transaction(
            f"{schema}.{table}", lambda conn: self.rename_over(conn, schema, staging_name, table), attempts
        )

    def rename_over(self, conn: Connection, schema: str, new_table: str, table: str) -> None:
        """Inside the caller's transaction: drop ``schema.table`` and rename ``new_table`` to it."""
        import sqlalchemy as sa
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {self.qualified(schema, table)}"))
        conn.execute(sa.text(f"ALTER TABLE {self.qualified(schema, new_table)} RENAME TO {self.quote(table)}"))

    def in_publish_transaction(self, what: str, work: Callable[[Connection], None], attempts: int = 3) -> None:
        """Run ``work`` in one transaction that publishes ``what``, retried while a table stays locked.

        On PostgreSQL a rename needs an exclusive lock, which a BI query holding the table delays:
        the transaction waits at most 10 s for it, then is retried after a pause.
        """
        import sqlalchemy as sa
        for attempt in range(1, attempts + 1):
            try:
                with self.connect() as conn:
                    if self.dialect == "postgresql":
                        conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
                    work(conn)
                return
            except sa.exc.OperationalError as e:
                if attempt == attempts:
                    raise WarehouseError(f"could not publish {what}: a table stayed locked ({e.orig})") from e
                log.warning("publishing %s: locked, retrying (%s/%s)", what, attempt, attempts)
                time.sleep(2 * attempt)

    def publish_together(
        self,
        schema: str,
        tables: Mapping[str, pd.DataFrame | pa.Table],
        column_types: Mapping[str, Mapping[str, ColumnType]] | None = None,
        *,
        on_swapped: Callable[[str], None] | None = None,
        attempts: int = 3,
        already_written: Collection[str] = (),
    ) -> dict[str, int]:
        """Publish tables that belong together: all are swapped in within one transaction, or none.

        Each is first written under a temporary name (the slow part, outside the transaction); then
        one transaction drops the old tables and renames the new ones. A run killed while writing
        leaves the old tables untouched; one killed during the swap is rolled back by the database
        (DuckDB and PostgreSQL both run DDL inside transactions). ``on_swapped(table)`` is called
        inside the transaction after each swap, for tests that kill the process right there.
        ``already_written`` names tables whose new version was written (and validated) under the
        temporary name before: they are swapped in as they are.
        """
        rows = {
            table: len(data) if table in already_written else self.write_table(
                data, schema, f"{table}__new", mode="replace", column_types=(column_types or {}).get(table)
            )
            for table, data in tables.items()
        }

        def swap_all(conn: Connection) -> None:
            for table in tables:
                self.rename_over(conn, schema, f"{table}__new", table)
                if on_swapped is not None:
                    on_swapped(table)

        self.in_publish_transaction(f"{schema}.{', '.join(tables)}", swap_all, attempts)
        return rows

    def analyze(self, schema: str, table: str) -> None:
        """Refresh the planner's statistics of a table just filled in the warehouse (PostgreSQL only:
        DuckDB keeps its statistics as it writes). Bulk writes through :meth:`write_table` do this
        themselves; call it after ``CREATE TABLE ... AS`` or a large ``INSERT ... SELECT``."""
        if self.dialect == "postgresql":
            self.execute(f"ANALYZE {self.qualified(schema, table)}")

    def drop_table(self, schema: str, table: str) -> None:
        self.execute(f"DROP TABLE IF EXISTS {self.qualified(schema, table)}")

    def delete(self, schema: str, table: str, where: sa.ColumnElement[bool]) -> int:
        import sqlalchemy as sa
        if not self.table_exists(schema, table):
            return 0
        stmt = sa.delete(self.table(schema, table)).where(where)
        with self.connect() as conn:
            return deleted_rows(conn, stmt)


def deleted_rows(conn: Connection, statement: sa.Delete) -> int:
    """Run a DELETE and return how many rows it deleted, without counting them in a query of their own.

    DuckDB answers a DELETE with one row holding the count (its SQLAlchemy driver reports ``rowcount``
    -1); other drivers report ``rowcount``."""
    result = conn.execute(statement)
    if conn.dialect.name == "duckdb":
        return int(result.scalar_one())
    return int(result.rowcount)


def col(name: str) -> sa.ColumnClause[Any]:
    """A column reference that is always quoted (DuckDB reserves words SQLAlchemy does not know)."""
    import sqlalchemy as sa
    return sa.column(sa.quoted_name(name, True))


def _sql_type_for(arrow_type: pa.DataType) -> sa.types.TypeEngine[Any]:
    import pyarrow as pa
    import sqlalchemy as sa
    if pa.types.is_timestamp(arrow_type):
        return sa.DateTime(timezone=arrow_type.tz is not None)
    if pa.types.is_date(arrow_type):
        return sa.Date()
    if pa.types.is_floating(arrow_type):
        return sa.Float()
    if pa.types.is_integer(arrow_type):
        return sa.BigInteger()
    if pa.types.is_boolean(arrow_type):
        return sa.Boolean()
    return sa.Text()
