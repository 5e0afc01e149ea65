"""SQL connector: a table or a SELECT of any SQLAlchemy database, streamed in chunks into Arrow.

The incremental filter is pushed down to the database where that is safe, as bound parameters on
a column quoted by SQLAlchemy; it is deliberately loose (a day of margin wherever time zones or
text comparison could cut too much) because the exact filter runs afterwards on Arrow arrays.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import gc
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from crm_pipelines.config import EntitySourceConfig
from crm_pipelines.ingest.errors import (
    SourceContext,
    check_mapped_columns,
    display_sql_url,
    first_line,
)
from crm_pipelines.ingest.values import Bounds, python_values_to_arrow
from crm_pipelines.warehouse import DUCKDB_ROW_GROUP_ROWS

CHUNK_ROWS = DUCKDB_ROW_GROUP_ROWS
"""Rows per chunk read: one row group of the DuckDB warehouse, which then writes each chunk as it is."""
CONNECT_TIMEOUT_SECONDS = 10
_SOURCE_ALIAS = "crm_source"
_ISO_DATE_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}")
_MARGIN = dt.timedelta(days=1)
_URL_HINT = "Check connector.url in crm.yaml, that the server runs, and that it accepts these credentials"


def sql_location(url: str, entity: EntitySourceConfig) -> str:
    what = f"table {entity.table}" if entity.table else "query"
    return f"{what} at {display_sql_url(url)}"


def read_sql(
    url: str, entity: EntitySourceConfig, bounds: Bounds, ctx: SourceContext, chunk_rows: int | None = None
) -> Iterator[pa.Table]:
    """Yield the entity's rows as Arrow tables of at most ``chunk_rows`` rows (default :data:`CHUNK_ROWS`;
    at least one table)."""
    chunk_rows = chunk_rows or CHUNK_ROWS
    engine = _create_engine(url, ctx)
    try:
        with _connect(engine, ctx) as conn:
            source = _source(entity, bounds.column)
            names = _column_names(conn, source, entity, ctx)
            check_mapped_columns(ctx, entity, names)
            statement = sa.select(sa.text("*")).select_from(source)
            if bounds.filters and bounds.column:
                column = source.c[bounds.column]
                sample = _sample_value(conn, source, column, ctx)
                condition = pushdown_condition(column, sample, bounds, entity)
                if condition is not None:
                    statement = statement.where(condition)
            fast = _sqlite_arrow(engine, statement, names, chunk_rows) if engine.dialect.name == "sqlite" else None
            if fast is not None:
                yield from _slices(fast, chunk_rows)
            else:
                yield from _stream(conn, statement, names, chunk_rows, ctx)
    finally:
        engine.dispose()


def _sqlite_arrow(engine: Engine, statement: sa.Select[Any], names: list[str], batch_rows: int) -> pa.Table | None:
    """The statement's rows read by the ADBC SQLite driver straight into Arrow, in batches of
    ``batch_rows`` rows (the driver's default is 1,024), or None to read them row by row instead.

    The driver skips the Python tuple per row (about 4x faster), but it types each column by its
    first values and refuses a later value of another type (SQLite's dynamic typing allows that), so
    any failure falls back to the row-by-row path, which types such a column as text; both give
    the same text once :func:`~crm_pipelines.ingest.values.stringify_table` ran. The whole result is
    read before anything is returned, so a fallback never repeats rows.
    """
    database = engine.url.database
    if not database or database == ":memory:":
        return None
    try:
        import adbc_driver_sqlite.dbapi as adbc_sqlite
        from adbc_driver_sqlite import StatementOptions as adbc_sqlite_options

        sql = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
        uri = f"file:{urllib.parse.quote(str(Path(database).resolve()))}?mode=ro"
        with adbc_sqlite.connect(uri) as conn, conn.cursor() as cursor:
            cursor.adbc_statement.set_options(**{adbc_sqlite_options.BATCH_ROWS.value: str(batch_rows)})
            cursor.execute(sql)
            table = cursor.fetch_arrow_table()
            if table.column_names != names or table.num_rows == 0:
                return None
            # Within its first batch the driver turns a column holding numbers and text into text
            # of its own format (3.5 becomes '3.500000e+00'): such columns go row by row.
            check = _foreign_values_sql(engine, sql, table.schema)
            if check is not None:
                cursor.execute(check)
                if cursor.fetchone()[0]:
                    return None
    except Exception:  # noqa: BLE001 - any driver or compilation problem: the row-by-row path decides
        return None
    return table


def _foreign_values_sql(engine: Engine, sql: str, schema: pa.Schema) -> str | None:
    """One row, one flag: whether a text or blob column of the driver's result holds a value of another
    kind (integers and reals count as one); None when every column came back as numbers.

    Only these columns need looking at: the driver types a column by its first batch (all NULL reads as
    integers) and refuses a later value that does not fit that type, so a column it returned as
    integers or reals holds numbers only. Asking whether any row breaks the rule stops at the first
    one, and costs about half the per-column count of distinct kinds over the whole result.
    """
    quote = engine.dialect.identifier_preparer.quote
    conditions = []
    for field in schema:
        if pa.types.is_int64(field.type) or pa.types.is_float64(field.type):
            continue
        own = "'text'" if pa.types.is_string(field.type) else "'blob'" if pa.types.is_binary(field.type) else None
        kinds = ", ".join(k for k in ("'integer'", "'real'", "'text'", "'blob'") if k != own)
        conditions.append(f"typeof({quote(field.name)}) IN ({kinds})")
    if not conditions:
        return None
    return f"SELECT EXISTS (SELECT 1 FROM ({sql}) WHERE {' OR '.join(conditions)})"


def _slices(table: pa.Table, chunk_rows: int) -> Iterator[pa.Table]:
    for start in range(0, table.num_rows, chunk_rows):
        yield table.slice(start, chunk_rows)


def _create_engine(url: str, ctx: SourceContext) -> Engine:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ctx.error(
            "connector.url is not a valid SQLAlchemy URL", "Use dialect+driver://user:password@host/database"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        if not path.is_file():
            # SQLite would silently create an empty database here; a missing file is a mistake.
            raise ctx.error(f"SQLite database file not found: {path}", "Check connector.url in crm.yaml")
    connect_args: dict[str, Any] = {}
    if backend in ("mysql", "mariadb", "postgresql"):
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    try:
        return sa.create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
    except (sa.exc.NoSuchModuleError, ImportError) as e:
        raise ctx.error(
            f"no SQLAlchemy driver for {parsed.drivername!r}: {first_line(e)}",
            "Install the driver package or fix the dialect in connector.url",
        ) from None


def _connect(engine: Engine, ctx: SourceContext) -> Connection:
    try:
        return engine.connect()
    except sa.exc.DBAPIError as e:
        raise ctx.error(
            f"cannot connect to {display_sql_url(engine.url)}: {first_line(e.orig or e)}", _URL_HINT
        ) from None


def _source(entity: EntitySourceConfig, incremental_column: str | None) -> sa.FromClause:
    """The entity's rows as a FROM clause; only the incremental column needs to be declared."""
    declared = [sa.column(incremental_column)] if incremental_column else []
    if entity.table:
        schema, _, name = entity.table.rpartition(".")
        return sa.table(name, *declared, schema=schema or None)
    query = (entity.query or "").strip().rstrip(";")
    # The query is the user's own SQL; escaping colons stops SQLAlchemy reading ":x" as a parameter.
    return sa.text(query.replace(":", r"\:")).columns(*declared).subquery(_SOURCE_ALIAS)


def _column_names(
    conn: Connection, source: sa.FromClause, entity: EntitySourceConfig, ctx: SourceContext
) -> list[str]:
    if entity.table:
        _check_table_exists(conn, entity.table, ctx)
    try:
        result = conn.execute(sa.select(sa.text("*")).select_from(source).limit(0))
        names = list(result.keys())
        result.close()
    except sa.exc.DBAPIError as e:
        _rollback(conn)
        what = f"table {entity.table}" if entity.table else "the query"
        field = "table" if entity.table else "query"
        raise ctx.error(
            f"cannot read {what}: {first_line(e.orig or e)}",
            f"Check entities.{ctx.entity}.{field} in crm.yaml",
        ) from None
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ctx.error(
            f"the result has the column name(s) {repeated} more than once", "Give them distinct aliases"
        )
    return names


def _check_table_exists(conn: Connection, qualified: str, ctx: SourceContext) -> None:
    schema, _, name = qualified.rpartition(".")
    try:
        inspector = sa.inspect(conn)
        if inspector.has_table(name, schema=schema or None):
            return
        known = inspector.get_table_names(schema=schema or None)
    except (sa.exc.DBAPIError, NotImplementedError):
        return  # some dialects cannot reflect; the first SELECT will report a missing table instead
    listed = ", ".join(sorted(known)[:20]) + (", ..." if len(known) > 20 else "")
    raise ctx.error(
        f"table {qualified} does not exist in {display_sql_url(conn.engine.url)}"
        + (f" (tables there: {listed})" if known else " (no tables there)"),
        f"Check entities.{ctx.entity}.table in crm.yaml",
    )


def _sample_value(
    conn: Connection, source: sa.FromClause, column: sa.ColumnClause, ctx: SourceContext
) -> Any:
    """One non-null value of the incremental column: its Python type tells how the database stores it."""
    try:
        return conn.execute(
            sa.select(column).select_from(source).where(column.is_not(None)).limit(1)
        ).scalar()
    except sa.exc.DBAPIError as e:
        _rollback(conn)
        raise ctx.error(f"cannot read column {column.name}: {first_line(e.orig or e)}") from None


def pushdown_condition(
    column: sa.ColumnClause, sample: Any, bounds: Bounds, entity: EntitySourceConfig
) -> sa.ColumnElement[bool] | None:
    """A WHERE condition that keeps at least the rows ``bounds`` selects, or None when none is safe."""
    conditions: list[sa.ColumnElement[bool]] = []
    if bounds.cursor_type == "integer":
        # Only a numeric column compares like the cursor: as text, "9" sorts after "10".
        numeric = isinstance(sample, int | decimal.Decimal) and not isinstance(sample, bool)
        if numeric and isinstance(bounds.after, int):
            conditions.append(column > bounds.after)
    else:
        conditions = _timestamp_conditions(column, sample, bounds, entity)
    if not conditions:
        return None
    condition = sa.and_(*conditions)
    return sa.or_(condition, column.is_(None)) if bounds.keep_nulls else condition


def _timestamp_conditions(
    column: sa.ColumnClause, sample: Any, bounds: Bounds, entity: EntitySourceConfig
) -> list[sa.ColumnElement[bool]]:
    lower = bounds.after if isinstance(bounds.after, dt.datetime) else bounds.not_before
    upper = bounds.until
    conditions: list[sa.ColumnElement[bool]] = []
    if isinstance(sample, dt.datetime) and sample.tzinfo is not None:
        # A zone-aware column (PostgreSQL timestamptz) compares exactly with aware parameters.
        if isinstance(bounds.after, dt.datetime):
            conditions.append(column > bounds.after)
        if bounds.not_before is not None:
            conditions.append(column >= bounds.not_before)
        if upper is not None:
            conditions.append(column <= upper)
    elif isinstance(sample, dt.datetime):
        # Naive values are wall-clock times in the entity's timezone; a day of margin covers DST folds.
        zone = ZoneInfo(entity.timezone)
        if lower is not None:
            conditions.append(column >= (lower.astimezone(zone) - _MARGIN).replace(tzinfo=None))
        if upper is not None:
            conditions.append(column <= (upper.astimezone(zone) + _MARGIN).replace(tzinfo=None))
    elif isinstance(sample, dt.date):
        if lower is not None:
            conditions.append(column >= (lower - _MARGIN).date())
        if upper is not None:
            conditions.append(column <= (upper + _MARGIN).date())
    elif isinstance(sample, str) and _sortable_text(sample, entity.timestamp_format):
        # ISO text sorts like time; comparing on whole dates a day apart covers any zone offset.
        if lower is not None:
            conditions.append(column >= (lower - _MARGIN).date().isoformat())
        if upper is not None:
            conditions.append(column < (upper + 2 * _MARGIN).date().isoformat())
    return conditions


def _sortable_text(sample: str, timestamp_format: str | None) -> bool:
    iso_like = timestamp_format is None or timestamp_format.startswith("%Y-%m-%d")
    return iso_like and bool(_ISO_DATE_PREFIX.match(sample.strip()))


def _stream(
    conn: Connection, statement: sa.Select[Any], names: list[str], chunk_rows: int, ctx: SourceContext
) -> Iterator[pa.Table]:
    yielded = False
    try:
        result = conn.execution_options(stream_results=True, max_row_buffer=chunk_rows).execute(statement)
        while True:
            with _gc_paused():
                rows = result.fetchmany(chunk_rows)
                table = rows_to_table(rows, names) if rows else None
                del rows
            if table is None:
                break
            yielded = True
            yield table
    except sa.exc.DBAPIError as e:
        _rollback(conn)
        raise ctx.error(f"reading failed: {first_line(e.orig or e)}") from None
    if not yielded:
        yield pa.table({name: pa.array([], pa.string()) for name in names})


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a chunk's row tuples exist.

    A chunk allocates millions of tuples that hold no cycles; left on, the collector rescans them
    again and again, which costs about a third of the read time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def rows_to_table(rows: list[Any], names: list[str]) -> pa.Table:
    """Database rows (tuples) as an Arrow table, one column at a time."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
    return pa.Table.from_arrays([python_values_to_arrow(values) for values in columns], names=names)


def _rollback(conn: Connection) -> None:
    try:
        conn.rollback()
    except sa.exc.DBAPIError:
        pass
