"""Read one entity of one source: pick the connector, check the mapped columns, filter incrementally."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pyarrow as pa
import pyarrow.compute as pc

from crm_pipelines.config import CrmConfig, EntitySourceConfig, SourceConfig
from crm_pipelines.ingest.errors import SourceContext, check_mapped_columns, mapped_source_columns
from crm_pipelines.ingest.files import read_csv, read_jsonl, read_parquet
from crm_pipelines.ingest.sql import read_sql, sql_location
from crm_pipelines.ingest.values import (
    Bounds,
    ValueParseError,
    incremental_mask,
    parse_integers,
    parse_timestamps,
    stringify_table,
)
from crm_pipelines.schema import RAW_METADATA_COLUMNS

_RESET_HINT = (
    "If the column or its format changed, reset the entity's incremental state "
    "(crm_pipelines.ingest.reset_ingest_state) to reload it"
)


@dataclass(frozen=True)
class SourceRead:
    """What one read of a source entity returned."""

    table: pa.Table
    """The selected rows, every column as text, in the source's own column names."""
    rows_read: int
    """Rows the source delivered before the exact incremental filter (pushed-down filters are looser)."""
    rows_without_value: int
    """Rows skipped because their incremental column was empty (cursor and daily modes only)."""
    incremental: pa.ChunkedArray | None
    """The incremental column of ``table`` parsed: UTC timestamps or int64; None without a column."""

    @property
    def columns(self) -> list[str]:
        return self.table.column_names


def read_source(
    config: CrmConfig, source: SourceConfig, entity: str, *, after: str | None, until: dt.datetime
) -> pa.Table:
    """The entity's rows as an all-string Arrow table.

    Only rows whose incremental column is above ``after`` (a cursor value as the source delivered
    it) and, for timestamps, at or before ``until`` (the run's as-of cutoff, timezone-aware) are
    returned. Without an incremental column every row is. Raises :class:`SourceError`.
    """
    return read_entity(config, source, entity, after=after, until=until).table


def read_entity(
    config: CrmConfig,
    source: SourceConfig,
    entity: str,
    *,
    until: dt.datetime,
    after: str | None = None,
    not_before: dt.datetime | None = None,
) -> SourceRead:
    """Like :func:`read_source`, with an inclusive lower bound ``not_before`` (daily windows) and counts."""
    if until.tzinfo is None:
        raise ValueError(f"until must be timezone-aware, got {until!r}")
    if entity not in source.entities:
        raise KeyError(f"source {source.name!r} has no entity {entity!r} (it has {sorted(source.entities)})")
    entity_config = source.entities[entity]
    ctx = SourceContext(source.name, entity, _location(config, source, entity_config))
    _check_timezone(entity_config, ctx)
    incremental = entity_config.incremental
    if incremental.mode == "daily" and incremental.cursor_type != "timestamp":
        raise ctx.error(
            "daily mode splits rows by day and needs a timestamp column",
            f"Set entities.{entity}.incremental.cursor_type: timestamp, or use mode: cursor",
        )
    column = incremental.column
    bounds = Bounds(
        column=column,
        cursor_type=incremental.cursor_type,
        after=_parse_cursor(after, entity_config, ctx) if after is not None and column else None,
        not_before=not_before,
        until=until if incremental.cursor_type == "timestamp" else None,
        keep_nulls=incremental.mode == "full",
    )
    api_cursor = after if incremental.mode == "cursor" else _api_lower_bound(not_before, entity_config)
    pieces: list[pa.Table] = []
    parsed_pieces: list[pa.ChunkedArray] = []
    rows_read = rows_without_value = 0
    for chunk in _chunks(config, source, entity_config, bounds, api_cursor, ctx):
        if not pieces:
            chunk = _check_columns(chunk, entity_config, ctx)
        rows_read += chunk.num_rows
        if column:
            parsed = _parse_column(chunk[column], entity_config, ctx)
            if not bounds.keep_nulls:
                rows_without_value += parsed.null_count
            mask = incremental_mask(parsed, bounds)
            # A first load (or a full one) usually keeps every row: then filtering would only copy them.
            if not pc.all(mask).as_py():
                chunk, parsed = chunk.filter(mask), parsed.filter(mask)
            parsed_pieces.append(parsed)
        pieces.append(stringify_table(chunk))
    table = pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]
    parsed_all = pa.chunked_array(
        [c for p in parsed_pieces for c in p.chunks], _parsed_type(incremental.cursor_type)
    )
    return SourceRead(
        table=table,
        rows_read=rows_read,
        rows_without_value=rows_without_value,
        incremental=parsed_all if column else None,
    )


def _location(config: CrmConfig, source: SourceConfig, entity: EntitySourceConfig) -> str:
    kind = source.connector.type
    if kind == "sql":
        return sql_location(config.source_url(source) or "", entity)
    if kind == "http":
        from crm_pipelines.ingest.http_api import http_location
        return http_location(source.connector, entity)
    return str(config.resolve_path(entity.path or ""))


def _chunks(
    config: CrmConfig,
    source: SourceConfig,
    entity: EntitySourceConfig,
    bounds: Bounds,
    api_cursor: str | None,
    ctx: SourceContext,
) -> Iterator[pa.Table]:
    connector = source.connector
    if connector.type == "sql":
        yield from read_sql(config.source_url(source) or "", entity, bounds, ctx)
    elif connector.type == "http":
        # httpx is imported only for API sources (about 50 ms of every night's first raw step otherwise).
        from crm_pipelines.ingest.http_api import read_http
        yield read_http(connector, entity, api_cursor, ctx)
    else:
        path = config.resolve_path(entity.path or "")
        if connector.type == "csv":
            yield read_csv(path, connector, ctx)
        elif connector.type == "parquet":
            yield read_parquet(path, ctx)
        else:
            yield read_jsonl(path, connector, ctx)


def _check_columns(chunk: pa.Table, entity: EntitySourceConfig, ctx: SourceContext) -> pa.Table:
    if chunk.num_columns == 0 and chunk.num_rows == 0:
        # No records at all (an empty JSON file or API): nothing to check, keep the mapped columns.
        return pa.table({name: pa.array([], pa.string()) for name in mapped_source_columns(entity)})
    check_mapped_columns(ctx, entity, chunk.column_names)
    reserved = [name for name in chunk.column_names if name in RAW_METADATA_COLUMNS]
    if reserved:
        raise ctx.error(
            f"the source has column(s) {reserved}, names the raw layer reserves for lineage",
            "Rename them in the source (or in a SQL query)",
        )
    return chunk


def _check_timezone(entity: EntitySourceConfig, ctx: SourceContext) -> None:
    try:
        ZoneInfo(entity.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ctx.error(
            f"unknown timezone {entity.timezone!r}",
            f"Set entities.{ctx.entity}.timezone to an IANA name such as Europe/Berlin",
        ) from None


def _parse_column(column: pa.ChunkedArray, entity: EntitySourceConfig, ctx: SourceContext) -> pa.ChunkedArray:
    incremental = entity.incremental
    try:
        if incremental.cursor_type == "integer":
            parsed = parse_integers(column)
        else:
            parsed = parse_timestamps(column, entity.timestamp_format, entity.timezone)
    except (ValueParseError, pa.ArrowInvalid) as e:
        raise ctx.error(
            f"incremental column {incremental.column!r} {e}",
            f"Fix entities.{ctx.entity}.timestamp_format, timezone or incremental.cursor_type in crm.yaml",
        ) from None
    return parsed if isinstance(parsed, pa.ChunkedArray) else pa.chunked_array([parsed])


def _parse_cursor(after: str, entity: EntitySourceConfig, ctx: SourceContext) -> dt.datetime | int:
    """The stored cursor (text as the source delivered it) as a comparable value."""
    value = pa.array([after], pa.string())
    incremental = entity.incremental
    try:
        if incremental.cursor_type == "integer":
            return parse_integers(value)[0].as_py()
        try:
            parsed = parse_timestamps(value, entity.timestamp_format, entity.timezone)
        except ValueParseError:
            if not entity.timestamp_format:
                raise
            # Cursors of typed database columns are stored as ISO text whatever the source's format.
            parsed = parse_timestamps(value, None, entity.timezone)
        return parsed[0].as_py()
    except (ValueParseError, pa.ArrowInvalid) as e:
        raise ctx.error(f"the stored cursor {after!r} cannot be compared: it {e}", _RESET_HINT) from None


def _api_lower_bound(not_before: dt.datetime | None, entity: EntitySourceConfig) -> str | None:
    """A daily window's start for an API's cursor parameter, a day early so no zone cuts rows off."""
    if not_before is None:
        return None
    moment = not_before - dt.timedelta(days=1)
    if entity.timestamp_format:
        return moment.astimezone(ZoneInfo(entity.timezone)).strftime(entity.timestamp_format)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parsed_type(cursor_type: str) -> pa.DataType:
    return pa.int64() if cursor_type == "integer" else pa.timestamp("us", tz="UTC")


def max_cursor(read: SourceRead, column: str) -> str | None:
    """The incremental column's text in the row holding its highest value (None without rows)."""
    if read.incremental is None or read.table.num_rows == 0:
        return None
    highest = pc.max(read.incremental)
    if not highest.is_valid:
        return None
    position = pc.index(read.incremental, highest).as_py()
    return read.table[column][position].as_py()
