"""Incremental loads into the raw layer, on DuckDB and on PostgreSQL (the ``warehouse`` fixture)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_pipelines.config import CrmConfig, config_from_dict
from crm_pipelines.ingest.contracts import SourceContractError
from crm_pipelines.ingest.errors import SourceError
from crm_pipelines.ingest.loading import IngestResult, ingest_entity, read_ingest_state, reset_ingest_state
from crm_pipelines.schema import RAW_METADATA_COLUMNS
from crm_pipelines.warehouse import Warehouse

NOW = dt.datetime(2024, 3, 10, 2, 0, tzinfo=dt.UTC)
START = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def day_end(day: int) -> dt.datetime:
    """The as-of cutoff at the end of 2024-03-<day> (UTC)."""
    return dt.datetime(2024, 3, day, 23, 59, 59, 999999, tzinfo=dt.UTC)


def write_customers(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = [",".join(columns)] + [",".join(str(row.get(c, "")) for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def customer(i: int, hours: float, **extra: Any) -> dict[str, Any]:
    updated = START + dt.timedelta(hours=hours)
    return {"id": f"C{i:03d}", "email": f"c{i}@example.com", "updated": updated.isoformat(), **extra}


def csv_config(tmp_path: Path, mode: str = "cursor", **incremental: Any) -> CrmConfig:
    entity = {
        "path": "customers.csv",
        "columns": {"source_record_id": "id", "email": "email", "updated_at": "updated"},
        "incremental": {"mode": mode, "column": "updated", **incremental},
    }
    data = {"sources": [{"name": "crm", "connector": {"type": "csv"}, "entities": {"customers": entity}}]}
    return config_from_dict(data, tmp_path / "crm.yaml")


def ingest(
    warehouse: Warehouse, config: CrmConfig, until: dt.datetime, batch: str, entity: str = "customers"
) -> IngestResult:
    return ingest_entity(warehouse, config, config.sources[0], entity, until=until, batch_id=batch, now=NOW)


def raw(warehouse: Warehouse, table: str) -> pd.DataFrame:
    return warehouse.read_table("raw", table)


def test_cursor_mode_appends_only_new_rows(warehouse, tmp_path):
    config = csv_config(tmp_path)
    rows = [customer(i, hours=i) for i in range(1, 21)]
    write_customers(tmp_path / "customers.csv", rows)

    first = ingest(warehouse, config, day_end(9), "b1")
    assert (first.rows_read, first.rows_loaded, first.raw_rows_total) == (20, 20, 20)
    assert first.table == "crm__customers" and first.mode == "cursor"
    assert first.columns == ["id", "email", "updated"]
    assert (first.cursor_before, first.cursor_after) == (None, "2024-03-01T20:00:00+00:00")

    rows += [customer(i, hours=30 + i) for i in range(21, 24)]
    write_customers(tmp_path / "customers.csv", rows)
    second = ingest(warehouse, config, day_end(9), "b2")
    assert (second.rows_loaded, second.raw_rows_total) == (3, 23)
    assert (second.cursor_before, second.cursor_after) == (first.cursor_after, "2024-03-03T05:00:00+00:00")

    again = ingest(warehouse, config, day_end(9), "b3")
    assert (again.rows_loaded, again.raw_rows_total) == (0, 23)
    assert again.cursor_after == second.cursor_after

    table = raw(warehouse, "crm__customers")
    assert len(table) == 23 and table["id"].is_unique
    assert list(table.columns) == ["id", "email", "updated", *RAW_METADATA_COLUMNS]
    assert table.groupby("_batch_id").size().to_dict() == {"b1": 20, "b2": 3}
    assert set(table["_source"]) == {"crm"} and table["_partition_date"].isna().all()
    assert {pd.Timestamp(v).tz_convert("UTC") for v in table["_ingested_at"]} == {pd.Timestamp(NOW)}

    state = read_ingest_state(warehouse, "crm", "customers")
    assert state is not None and (state.mode, state.cursor_value) == ("cursor", second.cursor_after)
    stored = warehouse.read_table("audit", "ingest_state")
    assert stored[["rows_loaded", "batch_id"]].to_dict("records") == [{"rows_loaded": 0, "batch_id": "b3"}]


def test_as_of_cutoff_holds_back_later_rows(warehouse, tmp_path):
    config = csv_config(tmp_path)
    write_customers(tmp_path / "customers.csv", [customer(i, hours=24 * i) for i in range(5)])  # days 1..5
    early = ingest(warehouse, config, day_end(3), "b1")
    assert early.rows_loaded == 3 and early.cursor_after == "2024-03-03T00:00:00+00:00"
    late = ingest(warehouse, config, day_end(5), "b2")
    assert late.rows_loaded == 2 and late.raw_rows_total == 5


def test_source_gaining_a_column_widens_the_raw_table(warehouse, tmp_path):
    config = csv_config(tmp_path)
    rows = [customer(i, hours=i) for i in range(1, 4)]
    write_customers(tmp_path / "customers.csv", rows)
    ingest(warehouse, config, day_end(9), "b1")
    rows.append(customer(4, hours=10, segment="vip"))
    write_customers(tmp_path / "customers.csv", rows)
    result = ingest(warehouse, config, day_end(9), "b2")
    assert result.rows_loaded == 1 and "segment" in result.columns
    table = raw(warehouse, "crm__customers").sort_values("id")
    assert table["segment"].isna().tolist() == [True, True, True, False]
    assert table["segment"].iloc[3] == "vip"


def test_failed_read_changes_neither_raw_nor_state(warehouse, tmp_path):
    config = csv_config(tmp_path)
    write_customers(tmp_path / "customers.csv", [customer(i, hours=i) for i in range(1, 6)])
    first = ingest(warehouse, config, day_end(9), "b1")
    (tmp_path / "customers.csv").write_text("id,email\nC999,x@example.com\n")  # the cursor column is gone
    with pytest.raises(SourceError, match=r"\['updated'\] named in crm.yaml are not in the data"):
        ingest(warehouse, config, day_end(9), "b2")
    assert warehouse.row_count("raw", "crm__customers") == 5
    assert read_ingest_state(warehouse, "crm", "customers").cursor_value == first.cursor_after


def test_reset_state_rebuilds_instead_of_duplicating(warehouse, tmp_path):
    config = csv_config(tmp_path)
    write_customers(tmp_path / "customers.csv", [customer(i, hours=i) for i in range(1, 6)])
    ingest(warehouse, config, day_end(9), "b1")
    reset_ingest_state(warehouse, "crm", "customers")
    result = ingest(warehouse, config, day_end(9), "b2")
    assert (result.rows_loaded, result.raw_rows_total, result.cursor_before) == (5, 5, None)


def test_dropped_raw_table_is_rebuilt_from_the_source(warehouse, tmp_path):
    config = csv_config(tmp_path)
    write_customers(tmp_path / "customers.csv", [customer(i, hours=i) for i in range(1, 6)])
    ingest(warehouse, config, day_end(9), "b1")
    warehouse.drop_table("raw", "crm__customers")
    result = ingest(warehouse, config, day_end(9), "b2")
    assert (result.rows_loaded, result.raw_rows_total) == (5, 5)


def test_full_mode_replaces_the_table(warehouse, tmp_path):
    config = csv_config(tmp_path, mode="full")
    write_customers(tmp_path / "customers.csv", [customer(i, hours=i) for i in range(1, 6)])
    assert ingest(warehouse, config, day_end(9), "b1").raw_rows_total == 5
    write_customers(tmp_path / "customers.csv", [customer(i, hours=i, tier="gold") for i in (2, 3, 4)])
    result = ingest(warehouse, config, day_end(9), "b2")
    assert (result.rows_loaded, result.raw_rows_total) == (3, 3)
    table = raw(warehouse, "crm__customers")
    assert sorted(table["id"]) == ["C002", "C003", "C004"] and set(table["tier"]) == {"gold"}
    assert set(table["_batch_id"]) == {"b2"}


def test_volume_contract_refuses_a_shrunken_or_empty_delivery(warehouse, tmp_path):
    config = csv_config(tmp_path, mode="full")
    write_customers(tmp_path / "customers.csv", [customer(i, hours=i) for i in range(1, 7)])
    ingest(warehouse, config, day_end(9), "b1")
    state = read_ingest_state(warehouse, "crm", "customers")
    header_only = "id,email,updated\n"
    for rows, refused in (([customer(i, hours=i) for i in (1, 2, 3)], 3), (None, 0)):
        if rows is None:
            (tmp_path / "customers.csv").write_text(header_only)
        else:
            write_customers(tmp_path / "customers.csv", rows)
        with pytest.raises(SourceContractError, match=r"source 'crm'.*customers\.csv.*6"):
            ingest(warehouse, config, day_end(9), "b2")
        kept = raw(warehouse, "crm__customers")
        assert len(kept) == 6 and set(kept["_batch_id"]) == {"b1"}
        assert read_ingest_state(warehouse, "crm", "customers") == state
        assert warehouse.row_count("quarantine", "crm__customers__delivery") == refused
    log = warehouse.read_table("quarantine", "rejected_deliveries")
    assert log["rows_delivered"].tolist() == [3, 0] and (log["rows_replaced"] == 6).all()
    # An entity declared optional may deliver nothing.
    data = config.model_dump(mode="json")
    data["sources"][0]["entities"]["customers"]["optional"] = True
    optional = config_from_dict(data, tmp_path / "crm.yaml")
    assert ingest(warehouse, optional, day_end(9), "b3").raw_rows_total == 0


# -- daily mode ----------------------------------------------------------------------------------------
def write_events(path: Path, events: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def event(i: int, day: int, hour: int, kind: str = "open") -> dict[str, Any]:
    return {"id": f"E{i}", "type": kind, "at": f"2024-03-{day:02d}T{hour:02d}:30:00+01:00", "meta": {"c": i}}


def events_config(tmp_path: Path, lookback_days: int = 1) -> CrmConfig:
    entity = {
        "path": "events.jsonl",
        "columns": {"event_id": "id", "event_type": "type", "occurred_at": "at"},
        "incremental": {"mode": "daily", "column": "at", "lookback_days": lookback_days},
    }
    data = {
        "sources": [{"name": "mail", "connector": {"type": "jsonl"}, "entities": {"campaign_events": entity}}]
    }
    return config_from_dict(data, tmp_path / "crm.yaml")


def test_daily_mode_replaces_its_window(warehouse, tmp_path):
    config = events_config(tmp_path)
    path = tmp_path / "events.jsonl"
    # Two events a day on days 1..4, at 00:30 and 12:30 (+01:00): the first is on the previous UTC day.
    events = [event(10 * d + k, d, hour) for d in range(1, 5) for k, hour in ((1, 0), (2, 12))]
    write_events(path, events)

    first = ingest(warehouse, config, day_end(3), "b1", "campaign_events")
    assert (first.rows_loaded, first.raw_rows_total) == (7, 7)  # E42 (2024-03-04 11:30 UTC) comes later
    assert first.window == (dt.date(2024, 2, 29), dt.date(2024, 3, 3))
    table = raw(warehouse, "mail__campaign_events")
    days = dict(zip(table["id"], pd.to_datetime(table["_partition_date"]).dt.date, strict=True))
    assert days["E31"] == dt.date(2024, 3, 2) and days["E32"] == dt.date(2024, 3, 3)
    assert json.loads(table.set_index("id").loc["E11", "meta"]) == {"c": 11}

    rerun = ingest(warehouse, config, day_end(3), "b2", "campaign_events")
    assert rerun.window == (dt.date(2024, 3, 3), dt.date(2024, 3, 3))
    assert (rerun.rows_loaded, rerun.raw_rows_total) == (2, 7), "re-running the day replaces it"

    # A late correction of day 3 and a new day: the next run reloads day 3 and day 4.
    events[5] = {**events[5], "type": "click"}  # E32, day 3
    write_events(path, events)
    nxt = ingest(warehouse, config, day_end(4), "b3", "campaign_events")
    assert nxt.window == (dt.date(2024, 3, 3), dt.date(2024, 3, 4))
    assert (nxt.rows_loaded, nxt.raw_rows_total) == (3, 8)
    table = raw(warehouse, "mail__campaign_events")
    assert table["id"].is_unique and table.set_index("id").loc["E32", "type"] == "click"
    assert read_ingest_state(warehouse, "mail", "campaign_events").loaded_through == dt.date(2024, 3, 4)


def test_daily_backfill_of_an_earlier_day(warehouse, tmp_path):
    config = events_config(tmp_path, lookback_days=0)
    write_events(tmp_path / "events.jsonl", [event(d, d, 12) for d in range(1, 6)])
    assert ingest(warehouse, config, day_end(5), "b1", "campaign_events").raw_rows_total == 5
    backfill = ingest(warehouse, config, day_end(2), "b2", "campaign_events")
    assert backfill.window == (dt.date(2024, 3, 2), dt.date(2024, 3, 2))
    assert (backfill.rows_loaded, backfill.raw_rows_total) == (1, 5)
    assert read_ingest_state(warehouse, "mail", "campaign_events").loaded_through == dt.date(2024, 3, 5)


# -- a database source ---------------------------------------------------------------------------------
def test_sqlite_source_with_an_integer_cursor(warehouse, tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE orders (id INTEGER, buyer TEXT, placed TEXT, total REAL)"))
        insert = sa.text("INSERT INTO orders VALUES (:id, :buyer, :placed, :total)")
        conn.execute(
            insert,
            [{"id": i, "buyer": f"C{i}", "placed": "2024-03-01", "total": i * 1.5} for i in range(1, 11)],
        )
    entity = {
        "table": "orders",
        "columns": {
            "order_id": "id",
            "source_customer_id": "buyer",
            "ordered_at": "placed",
            "total_amount": "total",
        },
        "defaults": {"status": "completed"},
        "incremental": {"mode": "cursor", "column": "id", "cursor_type": "integer"},
    }
    data = {
        "sources": [
            {"name": "shop", "connector": {"type": "sql", "url": url}, "entities": {"orders": entity}}
        ]
    }
    config = config_from_dict(data, tmp_path / "crm.yaml")
    first = ingest(warehouse, config, day_end(9), "b1", "orders")
    assert (first.rows_loaded, first.cursor_after) == (10, "10")
    with engine.begin() as conn:
        conn.execute(
            insert, [{"id": i, "buyer": "C1", "placed": "2024-03-02", "total": 2.0} for i in (11, 12, 13)]
        )
    engine.dispose()
    second = ingest(warehouse, config, day_end(9), "b2", "orders")
    assert (second.rows_read, second.rows_loaded, second.raw_rows_total) == (3, 3, 13)
    assert second.cursor_after == "13"
    assert raw(warehouse, "shop__orders")["total"].tolist()[-3:] == ["2"] * 3


def test_lineage_columns_share_one_block_and_keep_the_source_batches():
    import pyarrow as pa

    from crm_pipelines.ingest.loading import constant_column, with_lineage
    from crm_pipelines.schema import RAW_BATCH_ID, RAW_INGESTED_AT, RAW_PARTITION_DATE, RAW_SOURCE

    column = constant_column(pa.scalar("run-1", pa.string()), [5, 5, 2])
    assert [len(chunk) for chunk in column.chunks] == [5, 5, 2]
    assert column.chunks[0].buffers()[2].address == column.chunks[2].buffers()[2].address
    assert column.to_pylist() == ["run-1"] * 12
    assert constant_column(pa.scalar("x"), []).to_pylist() == []
    at = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)
    ids = pa.chunked_array([[str(i) for i in range(7)], ["7", "8"], ["9"]])
    table = with_lineage(pa.table({"id": ids}), "shop", at, "run-1")
    assert [batch.num_rows for batch in table.to_batches()] == [7, 2, 1]
    assert table.column_names == ["id", RAW_SOURCE, RAW_INGESTED_AT, RAW_BATCH_ID, RAW_PARTITION_DATE]
    assert table[RAW_SOURCE].to_pylist() == ["shop"] * 10
    assert table[RAW_INGESTED_AT].to_pylist() == [at] * 10
    assert table[RAW_BATCH_ID].to_pylist() == ["run-1"] * 10
    assert table[RAW_PARTITION_DATE].null_count == 10 and table[RAW_PARTITION_DATE].type == pa.date32()
    assert with_lineage(pa.table({"id": pa.array([], pa.string())}), "shop", at, "run-1").num_rows == 0
