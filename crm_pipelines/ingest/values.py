"""Columnar value handling for ingestion: every value to text, and incremental columns to comparable values.

Raw tables keep what a source delivered, as text, so nothing is lost before staging decides on types.
Conversions run on whole Arrow arrays; only types Arrow cannot render (nested values, UUIDs,
invalid UTF-8 bytes) fall back to Python, one value at a time.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

TIMESTAMP_UTC = pa.timestamp("us", tz="UTC")

# An ISO 8601 date, optionally followed by a time and a zone; anything else is reported, not guessed.
_ISO_TIMESTAMP = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
# A zone only counts after a time: the "-03" of "2024-01-03" is the day.
_ZONE_SUFFIX = r"[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)$"
_INTEGER = r"^[+-]?\d+$"
# "2024-01-01 10:00:00.000000" -> "2024-01-01 10:00:00": Arrow pads fractions to the unit.
_ZERO_FRACTION = r"\.0+(Z?)$"
_NESTED = (
    pa.types.is_struct,
    pa.types.is_list,
    pa.types.is_large_list,
    pa.types.is_fixed_size_list,
    pa.types.is_map,
    pa.types.is_list_view,
    pa.types.is_large_list_view,
)


class ValueParseError(ValueError):
    """Some values of an incremental column are not timestamps or integers; the message shows a few."""


# -- everything to text ------------------------------------------------------------------------------
def stringify_table(table: pa.Table) -> pa.Table:
    """The table with every column as Arrow ``string``; nested values become JSON text."""
    columns = [stringify_column(column) for column in table.columns]
    return pa.Table.from_arrays(columns, names=table.column_names)


def stringify_column(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """One column as ``string``: numbers, dates and booleans by cast; timestamps as ISO text in UTC."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_string(kind):
        return column
    if isinstance(kind, pa.ExtensionType):  # e.g. arrow.uuid: its storage bytes are not its text
        return _python_text(column)
    if pa.types.is_timestamp(kind):
        if kind.tz is not None:
            column = column.cast(pa.timestamp(kind.unit, tz="UTC"))
        return pc.replace_substring_regex(column.cast(pa.string()), pattern=_ZERO_FRACTION, replacement=r"\1")
    if pa.types.is_time(kind):
        return pc.replace_substring_regex(column.cast(pa.string()), pattern=_ZERO_FRACTION, replacement="")
    if (
        pa.types.is_null(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_string_view(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_date(kind)
    ):
        return column.cast(pa.string())
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_binary_view(kind):
        try:
            return column.cast(pa.string())
        except pa.ArrowInvalid:  # not UTF-8: keep the bytes readable and lossless as hex
            return _python_text(column)
    if any(test(kind) for test in _NESTED):
        return _nested_to_json(column)
    return _python_text(column)


def _python_text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    return pa.array([python_value_text(v) for v in column.to_pylist()], pa.string())


def python_value_text(value: Any) -> str | None:
    """Text of one Python value as a raw table stores it (used where Arrow cannot convert)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.hex()
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ") + "Z"
        return value.isoformat(sep=" ")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _nested_to_json(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Structs, lists and maps as JSON text, rendered by DuckDB's vectorized ``to_json``."""
    frame = pa.table({"value": column})
    with duckdb.connect() as con:
        con.register("nested", frame)
        result = con.execute("SELECT to_json(value)::VARCHAR FROM nested").to_arrow_table()
    return result.column(0).combine_chunks().cast(pa.string())


def python_values_to_arrow(values: Sequence[Any]) -> pa.Array:
    """One column of Python values (a database driver's) as Arrow, typed where Arrow can infer it.

    JSON documents (dicts and lists) become JSON text as they are; columns whose values Arrow cannot
    agree on a type for (SQLite's dynamic typing, integers beyond 64 bits) become text one by one.
    """
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, dict | list | tuple):
        return pa.array([python_value_text(v) for v in values], pa.string())
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, TypeError):
        return pa.array([python_value_text(v) for v in values], pa.string())


# -- incremental columns -----------------------------------------------------------------------------
def parse_timestamps(
    column: pa.ChunkedArray | pa.Array, timestamp_format: str | None, timezone: str
) -> pa.ChunkedArray | pa.Array:
    """Timestamps in UTC (``timestamp[us, UTC]``) from typed or text values.

    Text is read with ``timestamp_format`` when set, else as ISO 8601; values without a zone are in
    ``timezone``. Dates count as midnight UTC, so a date keeps its day. Raises :class:`ValueParseError`.
    """
    kind = column.type
    if pa.types.is_timestamp(kind):
        if kind.tz is None:
            return _assume_zone(column.cast(pa.timestamp("us")), timezone)
        return column.cast(TIMESTAMP_UTC)
    if pa.types.is_date(kind):
        return column.cast(pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC"))
    if pa.types.is_null(kind):
        return column.cast(TIMESTAMP_UTC)
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
        raise ValueParseError(
            f"holds {kind} values, not timestamps (set incremental.cursor_type: integer for numeric cursors)"
        )
    text = _blank_as_null(column)
    if timestamp_format:
        parsed = pc.strptime(text, format=timestamp_format, unit="us", error_is_null=True)
        _raise_on_unparsed(text, parsed, f"timestamps in the format {timestamp_format!r}")
        if parsed.type.tz is None:
            return _assume_zone(parsed, timezone)
        return parsed.cast(TIMESTAMP_UTC)
    iso = pc.match_substring_regex(text, _ISO_TIMESTAMP)
    _raise_on_unparsed(text, pc.if_else(iso, text, None), "ISO 8601 timestamps (set timestamp_format)")
    zoned = pc.fill_null(pc.match_substring_regex(text, _ZONE_SUFFIX), False)
    try:
        with_zone = pc.if_else(zoned, text, None).cast(TIMESTAMP_UTC)
        local = _assume_zone(pc.if_else(zoned, None, text).cast(pa.timestamp("us")), timezone)
    except pa.ArrowInvalid as e:  # the shape is ISO but the value is not a date (month 13, ...)
        raise ValueParseError(str(e).split(" as a scalar")[0]) from None
    return pc.if_else(zoned, with_zone, local)


def parse_integers(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Integer cursor values (``int64``) from typed or text values; raises :class:`ValueParseError`."""
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_null(kind):
        return column.cast(pa.int64())
    if pa.types.is_decimal(kind) or pa.types.is_floating(kind):
        try:
            return column.cast(pa.int64())
        except pa.ArrowInvalid:
            raise ValueParseError(f"holds fractional {kind} values, not integers") from None
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
        raise ValueParseError(f"holds {kind} values, not integers")
    text = _blank_as_null(column)
    matches = pc.match_substring_regex(text, _INTEGER)
    _raise_on_unparsed(text, pc.if_else(matches, text, None), "integers")
    try:
        return text.cast(pa.int64())
    except pa.ArrowInvalid:
        raise ValueParseError("holds integers beyond the 64-bit range") from None


def _assume_zone(naive: pa.ChunkedArray | pa.Array, timezone: str) -> pa.ChunkedArray | pa.Array:
    if timezone == "UTC":
        return naive.cast(TIMESTAMP_UTC)
    # A wall-clock time skipped by a DST change moves forward; a repeated one takes its first instance.
    local = pc.assume_timezone(naive, timezone, ambiguous="earliest", nonexistent="latest")
    return local.cast(TIMESTAMP_UTC)


def _blank_as_null(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    text = pc.utf8_trim_whitespace(column.cast(pa.string()))
    return pc.if_else(pc.equal(text, ""), None, text)


def _raise_on_unparsed(text: Any, parsed: Any, expected: str) -> None:
    failed = pc.and_(pc.is_valid(text), pc.is_null(parsed))
    count = pc.sum(failed).as_py() or 0
    if count:
        examples = pc.filter(text, failed).slice(0, 3).to_pylist()
        raise ValueParseError(f"{count} value(s) are not {expected}, e.g. {examples}")


# -- incremental filters ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bounds:
    """Which rows of a source entity a run wants, by its incremental column.

    ``after`` is exclusive (the highest cursor loaded so far), ``not_before`` inclusive (the first
    instant of a daily window), ``until`` inclusive (the run's as-of cutoff; timestamps only).
    """

    column: str | None
    cursor_type: str = "timestamp"
    after: dt.datetime | int | None = None
    not_before: dt.datetime | None = None
    until: dt.datetime | None = None
    keep_nulls: bool = True
    """Keep rows without a value in ``column`` (full loads); incremental loads cannot place them."""

    @property
    def filters(self) -> bool:
        return self.column is not None and (
            self.after is not None
            or self.not_before is not None
            or self.until is not None
            or not self.keep_nulls
        )


def incremental_mask(parsed: pa.ChunkedArray | pa.Array, bounds: Bounds) -> pa.ChunkedArray | pa.Array:
    """True for the rows ``bounds`` selects, given the parsed incremental column."""
    if bounds.cursor_type == "integer":
        wanted = pc.greater(parsed, bounds.after) if bounds.after is not None else pc.is_valid(parsed)
    else:
        wanted = pc.is_valid(parsed)
        if bounds.after is not None:
            wanted = pc.and_(wanted, pc.greater(parsed, _utc_scalar(bounds.after)))
        if bounds.not_before is not None:
            wanted = pc.and_(wanted, pc.greater_equal(parsed, _utc_scalar(bounds.not_before)))
        if bounds.until is not None:
            wanted = pc.and_(wanted, pc.less_equal(parsed, _utc_scalar(bounds.until)))
    if bounds.keep_nulls:
        return pc.or_(pc.fill_null(wanted, False), pc.is_null(parsed))
    return pc.fill_null(wanted, False)


def _utc_scalar(moment: Any) -> pa.Scalar:
    if not isinstance(moment, dt.datetime) or moment.tzinfo is None:
        raise ValueError(f"expected a timezone-aware datetime, got {moment!r}")
    return pa.scalar(moment.astimezone(dt.UTC), TIMESTAMP_UTC)
