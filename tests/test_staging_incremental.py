"""Incremental staging: a second nightly stages only the new raw batches, keeps unchanged records as
they were, and ends exactly where a from-scratch staging of the same raw data ends."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from crm_pipelines.config import config_from_dict
from crm_pipelines.definitions import build_definitions
from crm_pipelines.schema import AUDIT, ENTITIES, QUARANTINE, STAGING
from crm_pipelines.staging.references import referenced_customers
from crm_pipelines.staging_batches import STAGED_BATCHES, STAGED_RECORDS, plan_staging, rules_fingerprint
from crm_pipelines.warehouse import Warehouse, dispose_engines

HEADER = "contact_id,first_name,last_name,email,phone,birth_date,country,updated_at\n"
CONTACTS = HEADER + """C1,Anna,Schmidt,anna@example.com,030 1234567,1980-05-17,DE,2026-01-02 10:00:00
C2,Ben,Meyer,ben@@example,+49 30 7654321,1975-01-01,DE,2026-01-03 10:00:00
C3,Cleo,Wagner,cleo@example.com,+49 40 7654321,1990-02-02,DE,2026-01-04 10:00:00
,Nobody,Noid,no@example.com,,1970-01-01,DE,2026-01-05 10:00:00
C5,Emil,Koch,emil@example.com,+49 89 1234567,1985-03-03,DE,2026-01-06 10:00:00
C6,Fritz,Lang,fritz@example.com,+49 89 7654321,1985-03-03,DE,2026-01-07 10:00:00
C1,Anna,Schmidt,ANNA@example.com,030 1234567,1980-05-17,DE,2026-01-08 10:00:00
"""
# The second night: Emil moved (a new version), Cleo's new email is malformed, Gina is new, and one more
# row has no id; Fritz and Anna did not change. O1's new version has an unknown currency, O2's is fixed.
CONTACTS_NEW = """C5,Emil,Koch,emil@example.com,+49 89 1234567,1985-03-03,AT,2026-02-01 10:00:00
C3,Cleo,Wagner,cleo@@example,+49 40 7654321,1990-02-02,DE,2026-02-02 10:00:00
C7,Gina,Roth,gina@example.com,+49 30 1111111,1999-09-09,DE,2026-02-03 10:00:00
,Nobody,Again,no2@example.com,,1970-01-01,DE,2026-02-04 10:00:00
"""
ORDERS = """order_id,customer_id,created_at,status,currency,total
O1,C1,2026-01-10 12:00:00,completed,EUR,100.0
O2,C1,2026-01-11 12:00:00,completed,XYZ,10.0
O3,C9,2026-01-12 12:00:00,completed,EUR,5.0
"""
ORDERS_NEW = """O1,C1,2026-02-10 12:00:00,completed,XYZ,100.0
O2,C1,2026-02-11 12:00:00,completed,EUR,10.0
O4,C7,2026-02-12 12:00:00,completed,EUR,7.5
O5,,2026-02-13 12:00:00,completed,EUR,3.0
"""
ITEMS = """item_id,order_id,sku,qty,price
I1,O1,P1,2,50.0
I2,O2,P1,1,10.0
"""
ITEMS_NEW = "I3,O4,P2,1,7.5\n"


def sources() -> list[dict]:
    cursor = {"mode": "cursor", "column": None}
    return [{
        "name": "crm",
        "connector": {"type": "csv"},
        "entities": {
            "customers": {
                "path": "contacts.csv",
                "incremental": {**cursor, "column": "updated_at"},
                "columns": {
                    "source_record_id": "contact_id", "first_name": "first_name", "last_name": "last_name",
                    "email": "email", "phone": "phone", "date_of_birth": "birth_date", "country": "country",
                    "updated_at": "updated_at",
                },
            },
            "orders": {
                "path": "orders.csv",
                "incremental": {**cursor, "column": "created_at"},
                "columns": {
                    "order_id": "order_id", "source_customer_id": "customer_id", "ordered_at": "created_at",
                    "status": "status", "currency": "currency", "total_amount": "total",
                },
            },
            "order_items": {  # full mode: every delivery replaces the raw table
                "path": "items.csv",
                "columns": {
                    "item_id": "item_id", "order_id": "order_id", "product_id": "sku", "quantity": "qty",
                    "unit_price": "price",
                },
            },
        },
    }]


def config_for(tmp_path, url: str, fx_rates: dict | None = None, as_of: str = "2026-06-30", created: bool = False):
    data = sources()
    if created:
        data[0]["entities"]["customers"]["columns"]["created_at"] = "created_at"
    return config_from_dict(
        {"warehouse": {"url": url}, "as_of": as_of, "fx_rates": fx_rates or {"EUR": 1.0}, "sources": data},
        tmp_path / "crm.yaml",
    )


def stage(config) -> dg.ExecuteInProcessResult:
    defs = build_definitions(config)
    job = dg.define_asset_job(
        "stage_only", selection=dg.AssetSelection.groups("raw", "staging"), executor_def=dg.in_process_executor
    )
    defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    result = defs.resolve_job_def("stage_only").execute_in_process(raise_on_error=False)
    failures = [e.event_specific_data.error.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert result.success, failures
    return result


def staged_once(tmp_path, url: str):
    """The first deliveries (contacts, orders, items) staged once: (config, warehouse)."""
    (tmp_path / "contacts.csv").write_text(CONTACTS)
    (tmp_path / "orders.csv").write_text(ORDERS)
    (tmp_path / "items.csv").write_text(ITEMS)
    config = config_for(tmp_path, url)
    stage(config)
    return config, Warehouse(config.warehouse_url)


def snapshot(wh: Warehouse) -> dict[str, pd.DataFrame]:
    """The staged tables and staging quarantine, in a stable order, without run stamps."""
    out = {}
    for entity in ("customers", "orders", "order_items", "customer_identifiers"):
        frame = wh.read_table(STAGING, entity)
        out[entity] = frame.sort_values(list(frame.columns)).reset_index(drop=True).astype("string")
    quarantine = wh.read_table(QUARANTINE, "rejected_rows")
    quarantine = quarantine[quarantine["layer"] == STAGING].drop(columns=["run_id", "rejected_at"])
    out["quarantine"] = quarantine.sort_values(list(quarantine.columns)).reset_index(drop=True).astype("string")
    return out


def latest_reconciliation(wh: Warehouse) -> pd.DataFrame:
    recon = wh.read_table(AUDIT, "reconciliation")
    recon = recon[recon["layer"] == STAGING]
    return recon[recon["run_id"] == recon.sort_values("recorded_at")["run_id"].iloc[-1]].set_index("table_name")


def assert_stubs_match_pandas(config, wh: Warehouse) -> None:
    """The stubs kept in SQL are the ones the pure function derives from the staged tables."""
    customers = wh.read_table(STAGING, "customers")
    records = customers[customers["record_kind"] != "referenced"].reset_index(drop=True)
    expected = referenced_customers(config, {"orders": wh.read_table(STAGING, "orders")}, records)
    stubs = customers[customers["record_kind"] == "referenced"]
    columns = ["source", "source_record_id", "email", "created_at"]
    def ordered(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[columns].sort_values(columns[:2]).reset_index(drop=True).astype("string")

    pd.testing.assert_frame_equal(ordered(stubs), ordered(expected))


@pytest.fixture
def warehouse_url_clean(warehouse_url):
    yield warehouse_url
    dispose_engines()


def test_second_nightly_stages_only_new_batches_and_equals_a_restage(tmp_path, warehouse_url_clean):
    (tmp_path / "contacts.csv").write_text(CONTACTS)
    (tmp_path / "orders.csv").write_text(ORDERS)
    (tmp_path / "items.csv").write_text(ITEMS)
    config = config_for(tmp_path, warehouse_url_clean)
    first = stage(config)
    wh = Warehouse(config.warehouse_url)
    index_before = wh.read_table(AUDIT, STAGED_RECORDS).set_index(["entity", "record_id"])

    (tmp_path / "contacts.csv").write_text(CONTACTS + CONTACTS_NEW)
    (tmp_path / "orders.csv").write_text(ORDERS + ORDERS_NEW)
    (tmp_path / "items.csv").write_text(ITEMS + ITEMS_NEW)
    second = stage(config)

    batches = wh.read_table(AUDIT, STAGED_BATCHES)
    staged_now = batches[batches["run_id"] == second.run_id].set_index("entity")
    # Cursor sources: only the appended rows; the full-mode source: its whole new delivery.
    assert staged_now.loc["customers", "rows"] == 4 and staged_now.loc["orders", "rows"] == 4
    assert staged_now.loc["order_items", "rows"] == 3
    assert set(batches["batch_id"]) == {first.run_id, second.run_id}
    assert (staged_now["batch_id"] == second.run_id).all()
    assert len(batches[(batches["entity"] == "order_items")]) == 1  # the replaced delivery's batch is gone

    index_after = wh.read_table(AUDIT, STAGED_RECORDS).set_index(["entity", "record_id"])
    for key in [("customers", "C1"), ("customers", "C2"), ("customers", "C6"), ("orders", "O3")]:
        assert index_after.loc[key, "batch_id"] == first.run_id, key
        assert index_after.loc[key, "staged_at"] == index_before.loc[key, "staged_at"], key
    changed = [("customers", "C5"), ("customers", "C3"), ("customers", "C7")]
    for key in [*changed, ("orders", "O1"), ("orders", "O2"), ("orders", "O4")]:
        assert index_after.loc[key, "batch_id"] == second.run_id, key
    assert index_after.loc[("orders", "O1"), "outcome"] == "quarantined"

    customers = wh.read_table(STAGING, "customers").set_index("source_record_id")
    assert customers.loc["C5", "country"] == "AT" and pd.isna(customers.loc["C3", "email"])
    assert customers.loc["C9", "record_kind"] == "referenced"  # named by an order only
    quarantine = wh.read_table(QUARANTINE, "rejected_rows")
    quarantine = quarantine[quarantine["layer"] == STAGING]
    keyed = quarantine.dropna(subset=["record_id"])
    assert not keyed.duplicated(["entity", "source", "record_id", "rule", "column_name"]).any()
    rules = keyed.set_index(["entity", "record_id"])["rule"]
    assert rules[("customers", "C3")] == "invalid_email" and rules[("orders", "O1")] == "unknown_currency"
    assert rules[("orders", "O5")] == "missing_required"  # no customer named
    assert ("orders", "O2") not in set(zip(keyed["entity"], keyed["record_id"], strict=True))  # fixed version
    assert len(quarantine[quarantine["rule"] == "missing_record_id"]) == 2

    recon = latest_reconciliation(wh)
    assert recon["reconciles"].all(), recon
    assert recon.loc["customers", ["rows_in", "rows_out", "rows_quarantined", "rows_superseded"]].tolist() == [
        11, 6, 2, 3,
    ]
    assert recon.loc["orders", ["rows_in", "rows_out", "rows_quarantined", "rows_superseded"]].tolist() == [7, 3, 2, 2]
    incremental = snapshot(wh)
    assert_stubs_match_pandas(config, wh)

    # From scratch on the same raw data: forget every staged batch, and stage again.
    wh.execute(f"DELETE FROM {wh.qualified(AUDIT, STAGED_BATCHES)}")
    third = stage(config)
    full = wh.read_table(AUDIT, STAGED_BATCHES)
    assert set(full["run_id"]) == {third.run_id}
    for name, frame in snapshot(wh).items():
        pd.testing.assert_frame_equal(frame, incremental[name], obj=name)
    assert latest_reconciliation(wh)["reconciles"].all()

    # A night without new rows stages nothing and keeps every count.
    fourth = stage(config)
    batches = wh.read_table(AUDIT, STAGED_BATCHES)
    assert not (batches["run_id"] == fourth.run_id).any() or set(
        batches.loc[batches["run_id"] == fourth.run_id, "entity"]
    ) == {"order_items"}
    for name, frame in snapshot(wh).items():
        pd.testing.assert_frame_equal(frame, incremental[name], obj=name)
    assert latest_reconciliation(wh)["reconciles"].all()


def test_changed_staging_rules_force_a_full_restage(tmp_path, duckdb_url):
    config, wh = staged_once(tmp_path, duckdb_url)
    cutoff = pd.Timestamp("2026-06-30 23:59:59.999999", tz="UTC").to_pydatetime()
    same = plan_staging(wh, config, "orders", rules_fingerprint(config, "orders"), cutoff)
    assert not same.full and same.batches == []

    richer = config_for(tmp_path, duckdb_url, fx_rates={"EUR": 1.0, "XYZ": 0.5})
    assert rules_fingerprint(richer, "orders") != rules_fingerprint(config, "orders")
    changed = plan_staging(wh, richer, "orders", rules_fingerprint(richer, "orders"), cutoff)
    assert changed.full and "rules" in changed.reason and len(changed.batches) == 1
    # A restage is no first run: what audit.staged_records holds of the entity is cleared first.
    assert not same.first and not changed.first
    earlier = plan_staging(wh, config, "orders", rules_fingerprint(config, "orders"), cutoff - pd.Timedelta(days=1))
    assert earlier.full and "as-of" in earlier.reason

    stage(richer)  # the restage judges O2 again: XYZ now has a rate
    orders = wh.read_table(STAGING, "orders")
    assert sorted(orders["order_id"]) == ["O1", "O2", "O3"]
    assert set(ENTITIES) >= {"orders"}


def test_a_later_as_of_judges_time_bound_quarantine_again(tmp_path, duckdb_url):
    """A record quarantined as from the future is staged once the as-of end passes its time."""
    contacts = HEADER.replace("\n", ",created_at\n")
    contacts += "C1,Anna,Schmidt,anna@example.com,,,DE,2026-01-02 10:00:00,2026-01-01 10:00:00\n"
    contacts += "C2,Ben,Meyer,ben@example.com,,,DE,2026-01-01 10:00:00,2026-07-04 10:00:00\n"
    contacts += "C2,Ben,Meyer,ben@example.com,,,DE,2026-01-03 10:00:00,2026-07-05 10:00:00\n"
    (tmp_path / "contacts.csv").write_text(contacts)
    (tmp_path / "orders.csv").write_text(ORDERS)
    (tmp_path / "items.csv").write_text(ITEMS)
    stage(config_for(tmp_path, duckdb_url, created=True))
    wh = Warehouse(duckdb_url)
    quarantine = wh.read_table(QUARANTINE, "rejected_rows")
    assert quarantine.set_index("record_id").loc["C2", "rule"] == "future_date"

    later = config_for(tmp_path, duckdb_url, as_of="2026-07-10", created=True)
    stage(later)
    customers = wh.read_table(STAGING, "customers").set_index("source_record_id")
    assert customers.loc["C2", "created_at"] == pd.Timestamp("2026-07-05 10:00:00", tz="UTC")  # the newest version
    quarantine = wh.read_table(QUARANTINE, "rejected_rows")
    assert "C2" not in set(quarantine.loc[quarantine["layer"] == STAGING, "record_id"])
    assert latest_reconciliation(wh)["reconciles"].all()
    customers_batches = wh.read_table(AUDIT, STAGED_BATCHES).query("entity == 'customers'")
    assert len(customers_batches) == 1  # judged again, not a new batch


def _materialized(result: dg.ExecuteInProcessResult, entity: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey([STAGING, entity])]
    metadata = event.materialization.metadata
    names = ("rows_staged_this_run", "rows_quarantined_this_run", "summary", "quarantined_by_rule", "dagster/row_count")
    return {name: metadata[name].value for name in names}


def _without_batch_ids(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    quarantine = tables["quarantine"]
    reason = quarantine["reason"].str.replace(r"\(batch [0-9a-f-]+\)", "(batch)", regex=True)
    return {**tables, "quarantine": quarantine.assign(reason=reason)}


def test_a_batch_staged_in_parts_stages_what_the_whole_batch_stages(tmp_path, warehouse_url_clean, monkeypatch):
    """Parts split by a hash of the record id: a record's versions (its id padded with the whitespace
    staging trims) fall in one part, and every count, row and quarantine reason equals a whole staging."""
    import crm_pipelines.assets.staging as staging_assets
    import crm_pipelines.staging_parts as staging_parts

    assert staging_parts.PYTHON_WHITESPACE == "".join(c for c in map(chr, range(0x110000)) if c.isspace())

    orders = ORDERS + "".join(f"O{n},C1,2026-01-{n:02d} 08:00:00,completed,EUR,{n}.5\n" for n in range(10, 31))
    orders += "\u00a0O1\u3000,C1,2026-01-20 12:00:00,completed,EUR,120.0\n"  # O1's newer version
    orders += "O3,C9,2026-01-12 12:00:00,completed,EUR,5.0\n"  # an identical repeat
    orders += "O10 ,C1,2026-01-10 08:00:00,completed,EUR,11.0\n"  # a conflicting one
    orders += ",C1,2026-01-21 12:00:00,completed,EUR,1.0\nn/a,C1,2026-01-22 12:00:00,completed,EUR,1.0\n"
    items = ITEMS + "".join(f"I{n},O{n},P{n % 3},{n % 4 + 1},{n}.0\n" for n in range(10, 31))
    items += "\u2003I1,O1,P1,3,50.0\nI12,O12,P0,-1,12.0\n"
    (tmp_path / "contacts.csv").write_text(CONTACTS)
    (tmp_path / "orders.csv").write_text(orders)
    (tmp_path / "items.csv").write_text(items)
    config = config_for(tmp_path, warehouse_url_clean)

    reads: list[tuple[str, int, int, int]] = []

    def read_parts(wh, source, entity, batch_id, parts):
        for part, raw in enumerate(staging_parts.read_batch_parts(wh, source, entity, batch_id, parts)):
            # Streamed parts (DuckDB) are the parts one query per part reads, rows in the same order.
            pd.testing.assert_frame_equal(raw, staging_parts.read_batch_part(wh, source, entity, batch_id, part, parts))
            reads.append((entity, part, parts, len(raw)))
            yield raw

    monkeypatch.setattr(staging_assets, "read_batch_parts", read_parts)
    monkeypatch.setattr(staging_parts, "PART_ROWS", 5)
    parted = stage(config)
    wh = Warehouse(config.warehouse_url)
    by_entity = {e: [r for r in reads if r[0] == e] for e in ("orders", "order_items", "customers")}
    assert len(by_entity["orders"]) == 6 and sum(r[3] for r in by_entity["orders"]) == 29
    assert len(by_entity["order_items"]) == 5 and sum(r[3] for r in by_entity["order_items"]) == 25
    assert all(r[3] < 15 for r in reads if r[0] != "customers")  # split, not one part holding all
    assert len(by_entity["customers"]) == 1  # customers are never split
    snapshot_parted, batches_parted = _without_batch_ids(snapshot(wh)), wh.read_table(AUDIT, STAGED_BATCHES)
    recon_parted = latest_reconciliation(wh)
    staged_orders = wh.read_table(STAGING, "orders").set_index("order_id")
    assert staged_orders.loc["O1", "total_amount"] == 120.0 and "O10" not in staged_orders.index

    wh.execute(f"DELETE FROM {wh.qualified(AUDIT, STAGED_BATCHES)}")
    monkeypatch.setattr(staging_parts, "PART_ROWS", 1_000_000)
    reads.clear()
    whole = stage(config)
    assert {r[2] for r in reads} == {1}
    for name, frame in _without_batch_ids(snapshot(wh)).items():  # items (full mode) were ingested again
        pd.testing.assert_frame_equal(frame, snapshot_parted[name], obj=name)
    counts = ["source", "entity", "rows", "rows_staged", "rows_quarantined", "rows_superseded", "rows_deleted"]
    batches_whole = wh.read_table(AUDIT, STAGED_BATCHES)
    pd.testing.assert_frame_equal(
        batches_whole[counts].sort_values("entity").reset_index(drop=True),
        batches_parted[counts].sort_values("entity").reset_index(drop=True),
    )
    recon = ["rows_in", "rows_out", "rows_quarantined", "rows_superseded", "rows_deleted", "reconciles"]
    pd.testing.assert_frame_equal(latest_reconciliation(wh)[recon], recon_parted[recon])
    for entity in ("orders", "order_items"):
        assert _materialized(whole, entity) == _materialized(parted, entity), entity


def test_read_records_finds_a_batchs_records_by_trimmed_id(tmp_path, warehouse_url_clean):
    """Re-judging reads the raw rows of named records from one batch (ids compared trimmed, as staged)."""
    from crm_pipelines.schema import RAW, raw_table_name
    from crm_pipelines.staging_batches import read_records

    config = config_for(tmp_path, warehouse_url_clean)
    wh = Warehouse(warehouse_url_clean)
    raw = pd.DataFrame({
        "order_id": ["O1", " O2 ", "O3", "O1", "O4", "O10"],
        "total": ["1", "2", "3", "4", "5", "6"],
        "_batch_id": ["b1", "b1", "b1", "b2", "b1", "b1"],
    })
    wh.write_table(raw, RAW, raw_table_name("crm", "orders"))
    source = config.source("crm")
    found = read_records(wh, source, "orders", "b1", ["O1", "O2", "O4", "O9"])
    assert sorted(found["total"]) == ["1", "2", "5"]
    assert read_records(wh, source, "orders", "b2", ["O1"])["total"].tolist() == ["4"]
    assert read_records(wh, source, "orders", "b1", []).empty


def test_staging_adds_the_columns_an_older_staged_batches_table_lacks(warehouse_url_clean):
    from crm_pipelines.staging_batches import STAGED_BATCHES_COLUMNS, ensure_tables

    wh = Warehouse(warehouse_url_clean)
    older = [c for c in STAGED_BATCHES_COLUMNS if c.name != "rows_deleted"]
    wh.create_table(AUDIT, STAGED_BATCHES, older)
    ensure_tables(wh, "orders")
    assert wh.columns(AUDIT, STAGED_BATCHES) == [c.name for c in older] + ["rows_deleted"]
    ensure_tables(wh, "orders")
    assert wh.columns(AUDIT, STAGED_BATCHES) == [c.name for c in older] + ["rows_deleted"]


@pytest.mark.postgres
def test_a_first_staging_leaves_planner_statistics_on_postgres(tmp_path, postgres_url):
    """Staged rows arrive by INSERT ... SELECT into tables created empty: without an ANALYZE after them,
    PostgreSQL plans the next steps' joins for empty tables (a nested loop that ran for minutes)."""
    config, wh = staged_once(tmp_path, postgres_url)
    for schema, table in [(STAGING, "customers"), (STAGING, "customer_identifiers"), (STAGING, "orders"),
                          (QUARANTINE, "rejected_rows"), (AUDIT, STAGED_RECORDS)]:
        stats = wh.query(
            "SELECT c.reltuples AS estimate FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            f"WHERE n.nspname = '{schema}' AND c.relname = '{table}'"
        )
        rows = wh.row_count(schema, table)
        # Analyzed empty, PostgreSQL estimates 0 rows; never analyzed, -1.
        assert float(stats["estimate"].iloc[0]) == rows, (schema, table, rows)
    assert wh.row_count(STAGING, "customers") > 0
    dispose_engines()
