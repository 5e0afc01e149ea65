"""File connectors: CSV, Parquet and JSON lines, each read whole into Arrow."""

from __future__ import annotations

import codecs
import csv
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from crm_pipelines.config import ConnectorConfig
from crm_pipelines.ingest.errors import SourceContext, first_line
from crm_pipelines.ingest.json_records import json_lines_to_table

_PATH_HINT = "Check entities.{entity}.path in crm.yaml (relative paths start at the directory of crm.yaml)"


def check_file(path: Path, ctx: SourceContext) -> None:
    """Raise a :class:`SourceError` naming the path when it is missing or not a file."""
    if not path.exists():
        raise ctx.error(f"file not found: {path}", _PATH_HINT.format(entity=ctx.entity))
    if not path.is_file():
        raise ctx.error(f"not a file: {path}", _PATH_HINT.format(entity=ctx.entity))


def read_csv(path: Path, connector: ConnectorConfig, ctx: SourceContext) -> pa.Table:
    """Every column as text; empty cells are null, everything else (``NA``, ``null``) stays as written."""
    check_file(path, ctx)
    encoding = _codec_name(connector.encoding, ctx)
    header = _csv_header(path, connector.delimiter, encoding, ctx)
    read_options = pa_csv.ReadOptions(encoding=encoding, block_size=16 << 20)
    parse_options = pa_csv.ParseOptions(delimiter=connector.delimiter, newlines_in_values=True)
    convert_options = pa_csv.ConvertOptions(
        column_types=dict.fromkeys(header, pa.string()),
        strings_can_be_null=True,
        null_values=[""],
        quoted_strings_can_be_null=True,
    )
    try:
        return pa_csv.read_csv(
            path, read_options=read_options, parse_options=parse_options, convert_options=convert_options
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise _csv_error(path, connector, e, ctx) from None
    except OSError as e:
        raise ctx.error(f"cannot read {path}: {e.strerror or e}") from None


def _codec_name(encoding: str, ctx: SourceContext) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ctx.error(
            f"unknown encoding {encoding!r}",
            "Set connector.encoding to a Python codec name such as utf-8 or cp1252",
        ) from None


def _csv_header(path: Path, delimiter: str, encoding: str, ctx: SourceContext) -> list[str]:
    # The header is read separately because Arrow needs every column's name to read all as text.
    python_encoding = "utf-8-sig" if encoding == "utf-8" else encoding
    try:
        with path.open(encoding=python_encoding, newline="") as handle:
            header = next(csv.reader(handle, delimiter=delimiter), None)
    except UnicodeDecodeError as e:
        raise ctx.error(
            f"{path} is not {encoding} text (byte {e.start} of the header)",
            "Set connector.encoding to the file's encoding (e.g. cp1252 or latin-1)",
        ) from None
    except OSError as e:
        raise ctx.error(f"cannot read {path}: {e.strerror or e}") from None
    if not header:
        raise ctx.error(f"{path} is empty: a CSV file needs a header line naming its columns")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise ctx.error(
            f"{path}: the header repeats the column name(s) {duplicates}", "Column names must be unique"
        )
    return header


def _csv_error(path: Path, connector: ConnectorConfig, error: Exception, ctx: SourceContext):
    message = first_line(error)
    if isinstance(error, UnicodeDecodeError) or "UTF8" in message or "UTF-8" in message:
        return ctx.error(
            f"{path} is not {connector.encoding} text",
            "Set connector.encoding to the file's encoding (e.g. cp1252 or latin-1)",
        )
    if "parse error" in message and "Row #" not in message:
        # Multi-threaded parsing does not know row numbers; re-read serially to report where it broke.
        message = _serial_parse_error(path, connector) or message
    row = re.search(r"Row #(\d+)", message)
    where = f" at row {row.group(1)} (counting the header)" if row else ""
    detail = re.sub(r"^CSV parse error: (Row #\d+: )?", "", message)
    return ctx.error(
        f"{path} is not a well-formed CSV file{where}: {detail}",
        f"Check connector.delimiter ({connector.delimiter!r}) and the file's quoting",
    )


def _serial_parse_error(path: Path, connector: ConnectorConfig) -> str | None:
    try:
        pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(use_threads=False, encoding=connector.encoding),
            parse_options=pa_csv.ParseOptions(delimiter=connector.delimiter, newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(check_utf8=False, strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        return first_line(e)
    return None


def read_parquet(path: Path, ctx: SourceContext) -> pa.Table:
    check_file(path, ctx)
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ctx.error(f"{path} is not a readable Parquet file: {first_line(e)}") from None
    except OSError as e:
        raise ctx.error(f"cannot read {path}: {first_line(e)}") from None


def read_jsonl(path: Path, connector: ConnectorConfig, ctx: SourceContext) -> pa.Table:
    """One JSON object per line; nested values stay JSON text."""
    check_file(path, ctx)
    encoding = _codec_name(connector.encoding, ctx)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ctx.error(f"cannot read {path}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig" if encoding == "utf-8" else encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ctx.error(
            f"{path} is not {encoding} text (line {line})",
            "Set connector.encoding to the file's encoding (e.g. cp1252 or latin-1)",
        ) from None
    # Split on newlines only: str.splitlines would also split inside strings holding U+2028.
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return json_lines_to_table(lines, ctx, unit="line")
