"""What a user sees when a source is bad: a clear failure, or quarantine rows with reasons,
and counts that add up."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from crm_pipelines.config import config_from_dict
from crm_pipelines.definitions import build_definitions
from crm_pipelines.schema import AUDIT, QUARANTINE, RAW, STAGING
from crm_pipelines.warehouse import Warehouse

CONTACTS = """contact_id,first_name,last_name,email,phone,birth_date,country,updated_at
C1,Anna,Schmidt,ANNA@example.com ,030 1234567,1980-05-17,DE,2026-01-02 10:00:00
C2,Ben,Meyer,ben@@example,+49 30 7654321,1975-01-01,DE,2026-01-03 10:00:00
C3,Cleo,Wagner,cleo@example.com,12,1990-02-02,DE,2026-01-04 10:00:00
C4,Dora,Fischer,dora@example.com,+49 40 1234567,1850-01-01,DE,2026-01-05 10:00:00
,Nobody,Noid,no@example.com,,1970-01-01,DE,2026-01-06 10:00:00
C6,Emil,Koch,emil@example.com,+49 89 1234567,1985-03-03,Atlantis,2026-01-07 10:00:00
C7,Fritz,Lang,fritz@example.com,+49 89 7654321,1985-03-03,DE,2027-01-07 10:00:00
C1,Anna,Schmidt,anna@example.com,030 1234567,1980-05-17,DE,2026-01-08 10:00:00
"""

ORDERS = """order_id,customer_id,created_at,status,currency,total
O1,C1,2026-01-10 12:00:00,completed,EUR,100.0
O2,C1,2026-01-11 12:00:00,completed,XYZ,10.0
O3,C9,2026-01-12 12:00:00,completed,EUR,-5.0
O4,C1,not a date,completed,EUR,1.0
O5,C1,2026-01-13 12:00:00,refunded,EUR,-20.0
"""


ITEMS = """item_id,order_id,sku,qty,price
I1,O1,P1,2,50.0
I2,O2,P1,1,10.0
"""


def config_for(tmp_path, warehouse_url: str, sources: list[dict]):
    return config_from_dict(
        {
            "warehouse": {"url": warehouse_url},
            "as_of": "2026-06-30",
            "fx_rates": {"EUR": 1.0},
            "sources": sources,
        },
        tmp_path / "crm.yaml",
    )


def csv_sources(tmp_path) -> list[dict]:
    (tmp_path / "contacts.csv").write_text(CONTACTS)
    (tmp_path / "orders.csv").write_text(ORDERS)
    (tmp_path / "items.csv").write_text(ITEMS)
    return [
        {
            "name": "crm",
            "connector": {"type": "csv"},
            "entities": {
                "customers": {
                    "path": "contacts.csv",
                    "columns": {
                        "source_record_id": "contact_id",
                        "first_name": "first_name",
                        "last_name": "last_name",
                        "email": "email",
                        "phone": "phone",
                        "date_of_birth": "birth_date",
                        "country": "country",
                        "updated_at": "updated_at",
                    },
                },
                "orders": {
                    "path": "orders.csv",
                    "columns": {
                        "order_id": "order_id",
                        "source_customer_id": "customer_id",
                        "ordered_at": "created_at",
                        "status": "status",
                        "currency": "currency",
                        "total_amount": "total",
                    },
                },
                "order_items": {
                    "path": "items.csv",
                    "columns": {
                        "item_id": "item_id",
                        "order_id": "order_id",
                        "product_id": "sku",
                        "quantity": "qty",
                        "unit_price": "price",
                    },
                },
            },
        }
    ]


def run(config) -> dg.ExecuteInProcessResult:
    job = build_definitions(config).resolve_job_def("crm_nightly")
    return job.execute_in_process(raise_on_error=False)


def step_failures(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.event_specific_data.error.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]


def test_bad_rows_are_quarantined_with_reasons_and_counts_reconcile(tmp_path, duckdb_url):
    config = config_for(tmp_path, duckdb_url, csv_sources(tmp_path))
    result = run(config)
    wh = Warehouse(config.warehouse_url)
    quarantined = wh.read_table(QUARANTINE, "rejected_rows")
    staging = quarantined[quarantined["layer"] == STAGING]
    rules = dict(zip(staging["record_id"].fillna("<none>"), staging["rule"], strict=True))
    assert rules == {
        "C2": "invalid_email",
        "C3": "invalid_phone",
        "C4": "implausible_birth_date",
        "<none>": "missing_record_id",
        "C6": "unknown_country",
        "C7": "future_date",
        "O2": "unknown_currency",
        "O3": "negative_amount",
        "O4": "invalid_timestamp",
    }
    assert staging["reason"].str.len().gt(10).all()
    assert staging["raw_values"].str.contains('"').all()
    # Good rows flow on: Anna's email and phone are normalized; the refund stays (negative, flagged).
    customers = wh.read_table(STAGING, "customers")
    anna = customers[customers["source_record_id"] == "C1"].iloc[0]
    assert (anna["email"], anna["phone"]) == ("anna@example.com", "+49301234567")
    orders = wh.read_table(STAGING, "orders").set_index("order_id")
    assert sorted(orders.index) == ["O1", "O5"] and bool(orders.loc["O5", "is_refund"])
    # raw = staged + quarantined for every source and entity.
    recon = wh.read_table(AUDIT, "reconciliation")
    staged_recon = recon[recon["layer"] == STAGING].set_index("table_name")
    # C1 came twice: the later version is staged, the earlier one superseded. C2, C3, C4 and C6 only had a
    # malformed optional field: it is nulled (and quarantined as a field), the record is staged.
    assert staged_recon.loc["customers", ["rows_in", "rows_out", "rows_quarantined", "rows_superseded"]].tolist() == [
        8,
        5,
        2,
        1,
    ]
    fields_nulled = customers.set_index("source_record_id")
    assert fields_nulled.loc["C2", "email"] is None or pd.isna(fields_nulled.loc["C2", "email"])
    assert pd.isna(fields_nulled.loc["C6", "country"]) and fields_nulled.loc["C6", "first_name"]
    assert staged_recon.loc["orders", ["rows_in", "rows_out", "rows_quarantined"]].tolist() == [5, 2, 3]
    assert recon["reconciles"].all()
    assert wh.row_count(RAW, "crm__customers") == 8
    # An order line whose order was quarantined has no customer: an orphan, quarantined in core.
    core_rejects = quarantined[quarantined["layer"] == "core"]
    assert core_rejects[["entity", "record_id", "rule"]].values.tolist() == [["order_items", "I2", "orphan_row"]]
    assert wh.read_table("core", "order_items")["item_id"].tolist() == ["I1"]
    assert result.success, step_failures(result)


def test_missing_source_column_fails_with_a_clear_message(tmp_path, duckdb_url):
    sources = csv_sources(tmp_path)
    sources[0]["entities"]["orders"]["columns"]["total_amount"] = "order_total"
    result = run(config_for(tmp_path, duckdb_url, sources))
    assert not result.success
    message = " ".join(step_failures(result))
    assert "order_total" in message and "crm" in message and "orders.csv" in message


def test_unreachable_database_fails_with_a_clear_message(tmp_path, duckdb_url):
    sources = [
        {
            "name": "shop",
            "connector": {"type": "sql", "url": "mysql+pymysql://reader:s3cret@127.0.0.1:1/shop"},
            "entities": {
                "orders": {
                    "table": "orders",
                    "columns": {
                        "order_id": "id",
                        "source_customer_id": "customer_id",
                        "ordered_at": "created_at",
                        "total_amount": "total",
                    },
                    "defaults": {"status": "completed"},
                }
            },
        }
    ]
    result = run(config_for(tmp_path, duckdb_url, sources))
    assert not result.success
    message = " ".join(step_failures(result))
    assert "shop" in message and "127.0.0.1:1" in message and "s3cret" not in message
    assert "Traceback" not in message


@pytest.mark.parametrize("bad", [{"type": "csv"}, {"type": "sql"}])
def test_bad_connector_config_is_refused_before_running(tmp_path, bad):
    from crm_pipelines.config import ConfigError

    sources = csv_sources(tmp_path)
    sources[0]["connector"] = bad
    sources[0]["entities"]["customers"].pop("path")
    with pytest.raises(ConfigError, match=r"source 'crm'"):
        config_for(tmp_path, "duckdb:///x.duckdb", sources)
