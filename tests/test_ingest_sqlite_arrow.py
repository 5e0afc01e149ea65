"""SQLite sources are read by the ADBC driver straight into Arrow, with the same text as the row-by-row path.

The driver types each column by its first rows and refuses a later value of another type (SQLite's
dynamic typing allows that); such a table is read row by row instead, with no row lost or repeated.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

import crm_pipelines.ingest.sql as sql_connector
from crm_pipelines.config import config_from_dict
from crm_pipelines.ingest.connectors import read_entity

UNTIL = dt.datetime(2024, 3, 31, 23, 59, tzinfo=dt.UTC)
ROWS = 3_000
# The driver types a column by its first batch; tests of a later batch set the batch size to this.
FIRST_BATCH = 1_024


def _database(path: Path, odd_last_row: bool) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER, buyer TEXT, placed DATETIME, total NUMERIC(12, 2), note)")
        rows = [
            # NUMERIC stores whole amounts as integers: the column mixes integers and reals.
            (i, f"C{i % 97}", f"2024-03-{1 + i % 28:02d} 10:{i % 60:02d}:00", 10 if i % 3 else 12.5, i)
            for i in range(1, ROWS + 1)
        ]
        if odd_last_row:
            rows.append((ROWS + 1, None, "2024-03-29 10:00:00", 7.25, "not a number"))
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", rows)


def _config(tmp_path: Path, **incremental):
    entity = {
        "table": "orders",
        "columns": {"order_id": "id", "source_customer_id": "buyer", "ordered_at": "placed",
                    "total_amount": "total"},
        "defaults": {"status": "completed"},
        **({"incremental": incremental} if incremental else {}),
    }
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    data = {"sources": [{"name": "shop", "connector": {"type": "sql", "url": url}, "entities": {"orders": entity}}]}
    return config_from_dict(data, tmp_path / "crm.yaml")


def _read_both(monkeypatch, config, after=None, batch_rows=FIRST_BATCH):
    # batch_rows is also the chunk size of the row-by-row path, which does not change its text.
    monkeypatch.setattr(sql_connector, "CHUNK_ROWS", batch_rows)
    row_by_row_calls = []
    stream = sql_connector._stream

    def counted_stream(*args, **kwargs):
        row_by_row_calls.append(1)
        return stream(*args, **kwargs)

    monkeypatch.setattr(sql_connector, "_stream", counted_stream)
    fast = read_entity(config, config.sources[0], "orders", until=UNTIL, after=after)
    used_row_by_row = bool(row_by_row_calls)
    monkeypatch.setattr(sql_connector, "_sqlite_arrow", lambda *args: None)
    reference = read_entity(config, config.sources[0], "orders", until=UNTIL, after=after)
    return fast, reference, used_row_by_row


@pytest.mark.parametrize("incremental", [{}, {"mode": "cursor", "column": "placed"}])
def test_a_sqlite_table_is_read_into_arrow_with_the_row_by_row_text(tmp_path, monkeypatch, incremental):
    _database(tmp_path / "shop.db", odd_last_row=False)
    config = _config(tmp_path, **incremental)
    after = "2024-03-20 00:00:00" if incremental else None
    fast, reference, used_row_by_row = _read_both(monkeypatch, config, after)
    assert not used_row_by_row
    assert fast.table.equals(reference.table)
    assert (fast.rows_read, fast.rows_without_value) == (reference.rows_read, reference.rows_without_value)
    assert 0 < fast.table.num_rows <= ROWS
    assert set(fast.table["total"].to_pylist()) == {"10", "12.5"}


@pytest.mark.parametrize("batch_rows", [FIRST_BATCH, sql_connector.CHUNK_ROWS], ids=["later batch", "first batch"])
def test_a_column_that_changes_type_late_is_read_row_by_row(tmp_path, monkeypatch, batch_rows):
    # In a later batch the driver refuses the value; within its first batch it turns the column into
    # text of its own format, which the check after the read finds.
    _database(tmp_path / "shop.db", odd_last_row=True)
    fast, reference, used_row_by_row = _read_both(monkeypatch, _config(tmp_path), batch_rows=batch_rows)
    assert used_row_by_row
    assert fast.table.equals(reference.table)
    assert fast.table.num_rows == ROWS + 1
    assert fast.table["note"].to_pylist()[-2:] == [str(ROWS), "not a number"]


@pytest.mark.parametrize("late_value", [1e20, 12, b"\xff\x00"], ids=["real", "integer", "blob"])
def test_a_text_column_holding_another_kind_late_is_read_row_by_row(tmp_path, monkeypatch, late_value):
    # The driver returns such a column as text and converts the late value in its own way (1e20 as
    # '1.0e+20', where the row-by-row path writes '1e+20'; a blob as invalid text).
    _database(tmp_path / "shop.db", odd_last_row=False)
    with sqlite3.connect(tmp_path / "shop.db") as conn:
        conn.execute("UPDATE orders SET note = 'n' || id")
        conn.execute("INSERT INTO orders VALUES (?, 'C1', '2024-03-29 10:00:00', 7.25, ?)", (ROWS + 1, late_value))
    fast, reference, used_row_by_row = _read_both(monkeypatch, _config(tmp_path))
    assert used_row_by_row
    assert fast.table.equals(reference.table)
    assert fast.table.num_rows == ROWS + 1


def test_a_column_null_in_the_first_batch_then_numbers_keeps_the_fast_path(tmp_path, monkeypatch):
    _database(tmp_path / "shop.db", odd_last_row=False)
    with sqlite3.connect(tmp_path / "shop.db") as conn:
        conn.execute("UPDATE orders SET note = NULL WHERE id <= 2000")  # NULL first: the driver reads integers
    fast, reference, used_row_by_row = _read_both(monkeypatch, _config(tmp_path))
    assert not used_row_by_row
    assert fast.table.equals(reference.table)


def test_a_sqlite_read_comes_in_batches_of_the_chunk_size(tmp_path, monkeypatch):
    # The DuckDB warehouse writes batches of its row-group size without gathering them again.
    _database(tmp_path / "shop.db", odd_last_row=False)
    config = _config(tmp_path)
    monkeypatch.setattr(sql_connector, "CHUNK_ROWS", 1_000)
    read = read_entity(config, config.sources[0], "orders", until=UNTIL)
    assert [b.num_rows for b in read.table.to_batches()] == [1_000, 1_000, 1_000]
    assert sql_connector.CHUNK_ROWS == 1_000
    from crm_pipelines.warehouse import DUCKDB_ROW_GROUP_ROWS

    monkeypatch.undo()
    assert sql_connector.CHUNK_ROWS == DUCKDB_ROW_GROUP_ROWS
