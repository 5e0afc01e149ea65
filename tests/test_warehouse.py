"""The warehouse on DuckDB and PostgreSQL: bulk writes, appends with new columns, atomic publish."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_pipelines.schema import CUSTOMER_IDENTIFIERS_COLUMNS
from crm_pipelines.warehouse import Warehouse, WarehouseError


def frame(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [str(i) for i in range(n)],
            "amount": [float(i) * 1.5 for i in range(n)],
            "at": pd.to_datetime([f"2026-01-{i + 1:02d}" for i in range(n)], utc=True),
            "empty": [None] * n,
        }
    )


def test_write_read_roundtrip_keeps_types(warehouse):
    assert warehouse.write_table(frame(), "t", "roundtrip") == 3
    back = warehouse.read_table("t", "roundtrip").sort_values("id", ignore_index=True)
    assert back["id"].tolist() == ["0", "1", "2"]
    assert back["amount"].tolist() == [0.0, 1.5, 3.0]
    assert str(back["at"].dt.tz) in ("UTC", "Etc/UTC")
    assert back["empty"].isna().all()
    assert warehouse.columns("t", "roundtrip") == ["id", "amount", "at", "empty"]


def test_append_adds_new_columns_and_fills_missing(warehouse):
    warehouse.write_table(frame(2), "t", "appended")
    warehouse.write_table(pd.DataFrame({"id": ["9"], "new_col": ["x"]}), "t", "appended", mode="append")
    back = warehouse.read_table("t", "appended").sort_values("id", ignore_index=True)
    assert len(back) == 3
    assert back.loc[back["id"] == "9", "new_col"].item() == "x"
    assert back.loc[back["id"] == "9", "amount"].isna().item()


def test_publish_swaps_whole_table(warehouse):
    warehouse.publish(frame(3), "marts", "published")
    warehouse.publish(frame(1), "marts", "published")
    assert warehouse.row_count("marts", "published") == 1
    assert not warehouse.table_exists("marts", "published__new")


def test_create_table_types_and_delete(warehouse):
    warehouse.create_table("q", "ids", CUSTOMER_IDENTIFIERS_COLUMNS)
    assert warehouse.row_count("q", "ids") == 0
    rows = pd.DataFrame(
        {
            "source": ["a", "b"],
            "source_record_id": ["1", "2"],
            "identifier_type": ["card"] * 2,
            "identifier_value": ["X", "Y"],
        }
    )
    warehouse.write_table(rows, "q", "ids", mode="append")
    warehouse.delete("q", "ids", sa.column("source") == "a")
    assert warehouse.read_table("q", "ids")["source"].tolist() == ["b"]


def test_identifiers_are_quoted(warehouse):
    odd = pd.DataFrame({"select": [1], "Mixed Case": ["x"], "at": ["y"]})
    warehouse.write_table(odd, "odd schema", "from")
    assert warehouse.read_table("odd schema", "from", columns=["select", "Mixed Case", "at"]).shape == (1, 3)


def test_unreachable_warehouse_is_a_clear_error():
    wh = Warehouse("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    with pytest.raises(WarehouseError) as info:
        wh.ensure_schemas("x")
    assert "127.0.0.1:1" in str(info.value) and "secret" not in str(info.value)


def test_catalog_lookups_answer_as_information_schema(warehouse):
    """table_exists, columns and column_types (DuckDB asks pragma_table_info) agree with
    information_schema, for tables, views, odd names, the scratch database and what does not exist."""
    frame = pd.DataFrame(
        {
            "id": pd.array([1, 2], dtype="Int64"),
            "at": pd.to_datetime(["2026-01-01", "2026-01-02"], utc=True),
            "odd \"name\".x": ["a", "b"],
            "amount": [1.5, 2.5],
            "flag": [True, False],
        }
    )
    odd = 'we"ird.table'
    warehouse.write_table(frame, "staging", odd, mode="replace")
    view, source = warehouse.qualified("staging", "a_view"), warehouse.qualified("staging", odd)
    warehouse.execute(f"CREATE VIEW {view} AS SELECT * FROM {source}")
    scratch = warehouse.scratch_schema("staging")
    warehouse.write_table(frame[["id"]], scratch, "scratch_rows", mode="replace")
    cols = sa.table(
        "columns",
        *(sa.column(c) for c in ("table_schema", "table_name", "column_name", "data_type", "ordinal_position")),
        schema="information_schema",
    )
    for schema, table in (("staging", odd), ("staging", "a_view"), (scratch, "scratch_rows")):
        stmt = (
            sa.select(cols.c.column_name, cols.c.data_type)
            .where(warehouse.in_schema(cols, schema), cols.c.table_name == table)
            .order_by(cols.c.ordinal_position)
        )
        with warehouse.connect() as conn:
            expected = {name: kind for name, kind in conn.execute(stmt)}
        assert expected and warehouse.column_types(schema, table) == expected, (schema, table)
        assert warehouse.columns(schema, table) == list(expected)
        assert warehouse.table_exists(schema, table)
    for schema, table in (("staging", "missing"), ("no_such_schema", "a_view"), (scratch, "no_such_table")):
        assert not warehouse.table_exists(schema, table)
        assert warehouse.columns(schema, table) == [] and warehouse.column_types(schema, table) == {}


def _batch_sizes(data) -> list[int]:
    import pyarrow as pa

    batches = data.to_batches() if isinstance(data, pa.Table) else list(data)
    return [b.num_rows for b in batches]


def test_duckdb_gets_row_group_batches_from_one_long_batch_or_many_short_ones():
    import pyarrow as pa

    from crm_pipelines.warehouse import DUCKDB_ROW_GROUP_ROWS as size
    from crm_pipelines.warehouse import duckdb_row_groups

    rows = 2 * size + 5
    table = pa.table({"id": pa.array(range(rows)), "text": pa.array([str(i) for i in range(rows)])})
    one_batch = table.combine_chunks()
    assert _batch_sizes(duckdb_row_groups(one_batch)) == [size, size, 5]
    short = pa.Table.from_batches(one_batch.to_batches(max_chunksize=1024))
    gathered = duckdb_row_groups(short)
    assert isinstance(gathered, pa.RecordBatchReader)
    gathered = gathered.read_all()
    assert _batch_sizes(gathered) == [size, size, 5]
    assert gathered.equals(table)
    # Blocks near a row group's size (a CSV file's), and anything within one row group, stay as they are.
    blocks = pa.Table.from_batches(one_batch.to_batches(max_chunksize=size // 2 + 1))
    assert duckdb_row_groups(blocks) is blocks
    small = pa.Table.from_batches(one_batch.slice(0, size).to_batches(max_chunksize=10))
    assert duckdb_row_groups(small) is small


def test_a_table_of_short_batches_is_written_whole_and_in_order(warehouse):
    import pyarrow as pa

    from crm_pipelines.warehouse import DUCKDB_ROW_GROUP_ROWS

    rows = DUCKDB_ROW_GROUP_ROWS + 3000
    table = pa.table({"n": pa.array(range(rows), pa.int64()), "s": pa.array([f"v{i}" for i in range(rows)])})
    short = pa.Table.from_batches(table.to_batches(max_chunksize=1024))
    assert warehouse.write_table(short, "t", "short_batches") == rows
    warehouse.write_table(short.slice(0, 2048), "t", "short_batches", mode="append")
    back = warehouse.query_arrow('SELECT n, s FROM "t"."short_batches" ORDER BY n, s')
    assert back.num_rows == rows + 2048
    assert back["s"].to_pylist()[:4] == ["v0", "v0", "v1", "v1"]
    assert sorted(back["n"].to_pylist()) == sorted([*range(rows), *range(2048)])


def test_arrow_batches_stream_a_select_in_order_and_in_batches_of_the_size_asked(warehouse):
    import pyarrow as pa

    table = pa.table({"n": pa.array(range(2500), pa.int64()), "s": pa.array([f"v{i}" for i in range(2500)])})
    warehouse.write_table(table, "t", "streamed")
    stmt = sa.select(sa.column("n"), sa.column("s")).select_from(warehouse.table("t", "streamed")).order_by(
        sa.column("n").desc()
    )
    batches = list(warehouse.arrow_batches(stmt, 1000))
    assert all(b.num_rows <= 1000 for b in batches) and sum(b.num_rows for b in batches) == 2500
    back = pa.Table.from_batches(batches)
    assert back["n"].to_pylist() == list(range(2499, -1, -1))
    assert back["s"].to_pylist()[:2] == ["v2499", "v2498"]
