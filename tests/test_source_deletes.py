"""The nightly job on sources that misbehave or delete, on DuckDB and PostgreSQL.

Night 1 delivers an order of 1e12 and duplicate order keys; night 2 drops a person from a full export
and flags a person deleted in a cursor-mode source. After night 2 both people are gone from staging,
core and the marts, the removals are in ``audit.source_deletes``, and every raw row is accounted for.
"""

from __future__ import annotations

import pandas as pd

from crm_pipelines.config import config_from_dict
from crm_pipelines.definitions import build_definitions
from crm_pipelines.schema import AUDIT, CORE, MARTS, QUARANTINE, STAGING
from crm_pipelines.warehouse import Warehouse

CONTACTS = """contact_id,first_name,last_name,email,birth_date
C1,Anna,Schmidt,anna@example.com,1980-05-17
C2,Ben,Meyer,ben@example.com,1975-01-01
C3,Cleo,Wagner,cleo@example.com,1990-02-02
"""
ORDERS = """order_id,customer_id,created_at,status,currency,total
O1,C1,2026-01-10 12:00:00,completed,EUR,100.0
O2,C2,2026-01-11 12:00:00,completed,EUR,40.0
O3,C3,2026-01-12 12:00:00,completed,EUR,1e12
O4,C3,2026-01-13 12:00:00,completed,EUR,25.0
O4,C3,2026-01-13 12:00:00,completed,EUR,25.0
O5,C1,2026-01-14 12:00:00,completed,EUR,10.0
O5,C1,2026-01-14 12:00:00,cancelled,EUR,10.0
"""
SHOP = """id,first_name,last_name,email,updated_at,state
S1,Dora,Fischer,dora@example.com,2026-01-01 10:00:00,active
S2,Emil,Koch,emil@example.com,2026-01-02 10:00:00,active
"""
SHOP_DELETE = "S2,,,,2026-02-01 10:00:00,deleted\n"


def sources() -> list[dict]:
    return [
        {
            "name": "crm",
            "connector": {"type": "csv"},
            "entities": {
                "customers": {
                    "path": "contacts.csv",
                    "columns": {"source_record_id": "contact_id", "first_name": "first_name",
                                "last_name": "last_name", "email": "email", "date_of_birth": "birth_date"},
                },
                "orders": {
                    "path": "orders.csv",
                    "columns": {"order_id": "order_id", "source_customer_id": "customer_id",
                                "ordered_at": "created_at", "status": "status", "currency": "currency",
                                "total_amount": "total"},
                },
            },
        },
        {
            "name": "shop",
            "connector": {"type": "csv"},
            "entities": {
                "customers": {
                    "path": "shop.csv",
                    "columns": {"source_record_id": "id", "first_name": "first_name", "last_name": "last_name",
                                "email": "email", "updated_at": "updated_at"},
                    "incremental": {"mode": "cursor", "column": "updated_at"},
                    "deleted_flag": {"column": "state", "values": ["deleted"]},
                }
            },
        },
    ]


def run(config) -> None:
    result = build_definitions(config).resolve_job_def("crm_nightly").execute_in_process(raise_on_error=False)
    failures = [e.event_specific_data.error.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert result.success, failures


def records(wh: Warehouse, schema: str, table: str, column: str) -> set[str]:
    return set(wh.read_table(schema, table, columns=[column])[column].dropna())


def test_values_duplicates_and_deletes_through_the_nightly(tmp_path, warehouse_url):
    (tmp_path / "contacts.csv").write_text(CONTACTS)
    (tmp_path / "orders.csv").write_text(ORDERS)
    (tmp_path / "shop.csv").write_text(SHOP)
    config = config_from_dict(
        {"warehouse": {"url": warehouse_url}, "as_of": "2026-06-30", "fx_rates": {"EUR": 1.0},
         "checks": {"reports_dir": str(tmp_path / "runs")}, "sources": sources()},
        tmp_path / "crm.yaml",
    )
    wh = Warehouse(config.warehouse_url)

    # -- night 1: the 1e12 order and the conflicting O5 are quarantined; O4's repeat is only counted.
    run(config)
    quarantined = wh.read_table(QUARANTINE, "rejected_rows")
    orders_q = quarantined[(quarantined["layer"] == STAGING) & (quarantined["entity"] == "orders")]
    assert sorted(zip(orders_q["record_id"], orders_q["rule"], strict=True)) == [
        ("O3", "implausible_amount"), ("O5", "duplicate_key_conflict"), ("O5", "duplicate_key_conflict")
    ]
    assert "above checks.max_order_amount" in orders_q[orders_q["record_id"] == "O3"]["reason"].iloc[0]
    assert records(wh, STAGING, "orders", "order_id") == {"O1", "O2", "O4"}
    assert wh.read_table(STAGING, "orders")["total_amount"].max() == 100.0
    identity_map = wh.read_table(CORE, "customer_identity_map")
    gone = identity_map[identity_map["source_record_id"].isin(["C2", "S2"])]["customer_id"]
    assert len(set(gone)) == 2
    assert set(gone) <= records(wh, MARTS, "customer_360", "customer_id")
    assert wh.read_table(AUDIT, "source_deletes").empty

    # -- night 2: Ben (C2) and his order leave the full export; the shop flags Emil (S2) deleted.
    (tmp_path / "contacts.csv").write_text("\n".join(line for line in CONTACTS.splitlines() if "C2" not in line))
    (tmp_path / "orders.csv").write_text("\n".join(line for line in ORDERS.splitlines() if "C2" not in line))
    (tmp_path / "shop.csv").write_text(SHOP + SHOP_DELETE)
    run(config)
    customers = wh.read_table(STAGING, "customers")
    assert not customers["source_record_id"].isin(["C2", "S2"]).any()
    assert records(wh, STAGING, "orders", "order_id") == {"O1", "O4"}
    identity_map = wh.read_table(CORE, "customer_identity_map")
    assert not identity_map["source_record_id"].isin(["C2", "S2"]).any()
    assert not set(gone) & records(wh, CORE, "unified_customers", "customer_id")
    assert not set(gone) & records(wh, MARTS, "customer_360", "customer_id")
    assert "O2" not in records(wh, CORE, "orders", "order_id")

    deletes = wh.read_table(AUDIT, "source_deletes")
    assert sorted(zip(deletes["entity"], deletes["source"], deletes["record_id"], deletes["kind"], strict=True)) == [
        ("customers", "crm", "C2", "missing_from_delivery"),
        ("customers", "shop", "S2", "flagged_deleted"),
        ("orders", "crm", "O2", "missing_from_delivery"),
    ]
    recon = wh.read_table(AUDIT, "reconciliation")
    assert recon["reconciles"].all()
    last_run = recon.loc[recon["recorded_at"].idxmax(), "run_id"]
    latest = recon[(recon["layer"] == STAGING) & (recon["run_id"] == last_run)]
    assert set(latest["table_name"]) == {"customers", "orders"}
    shop = latest[latest["source"] == "shop"].iloc[0]
    assert [int(shop[c]) for c in ("rows_in", "rows_out", "rows_superseded", "rows_deleted")] == [3, 1, 1, 1]
    counted = recon["rows_out"] + recon["rows_quarantined"] + recon["rows_superseded"] + recon["rows_deleted"].fillna(0)
    assert (recon["rows_in"] == counted).all()
    assert pd.notna(latest["rows_deleted"]).all()


def test_an_existing_reconciliation_table_gains_rows_deleted(warehouse):
    from crm_pipelines.assets.staging import record_reconciliation
    from crm_pipelines.schema import RECONCILIATION_COLUMNS

    old_columns = [c for c in RECONCILIATION_COLUMNS if c.name != "rows_deleted"]
    warehouse.create_table(AUDIT, "reconciliation", old_columns)
    old = pd.DataFrame([{"run_id": "r0", "recorded_at": pd.Timestamp("2026-01-01", tz="UTC"), "layer": STAGING,
                         "table_name": "orders", "source": "crm", "rows_in": 2, "rows_out": 2, "rows_quarantined": 0,
                         "rows_superseded": 0, "reconciles": True}])
    types = {c.name: c.dtype for c in old_columns}
    warehouse.write_table(old, AUDIT, "reconciliation", mode="append", column_types=types)
    new = old.assign(run_id="r1", rows_in=3, rows_deleted=1)
    record_reconciliation(warehouse, new)
    table = warehouse.read_table(AUDIT, "reconciliation").set_index("run_id")
    assert table.loc["r1", "rows_deleted"] == 1 and pd.isna(table.loc["r0", "rows_deleted"])


def test_an_existing_staged_batches_table_gains_rows_deleted(warehouse):
    from crm_pipelines.staging_batches import STAGED_BATCHES, STAGED_BATCHES_COLUMNS, ensure_tables

    old_columns = [c for c in STAGED_BATCHES_COLUMNS if c.name != "rows_deleted"]
    warehouse.create_table(AUDIT, STAGED_BATCHES, old_columns)
    ensure_tables(warehouse, "orders")
    assert "rows_deleted" in warehouse.columns(AUDIT, STAGED_BATCHES)
    assert warehouse.table_exists(AUDIT, "source_deletes")
