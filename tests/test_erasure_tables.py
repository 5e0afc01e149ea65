"""Erasure on a small hand-built warehouse, on DuckDB and PostgreSQL: which rows go, which stay.

Jane is erased by her email; Bob shares her phone (a household) and keeps it. The end-to-end test on demo
data is tests/test_erasure.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import sqlalchemy as sa
from test_erasure import _config

from crm_pipelines.erasure.execute import erase
from crm_pipelines.erasure.keys import key_hash, request_hashes
from crm_pipelines.ingest.loading import ingest_entity
from crm_pipelines.schema import AUDIT, CORE, MARTS, QUARANTINE, RAW, STAGING
from crm_pipelines.warehouse import Warehouse, dispose_engines

JANE = "jane.doe@example.com"
NOW = dt.datetime(2026, 6, 30, 12, tzinfo=dt.UTC)


def _frame(rows: list[tuple], columns: str) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns.split(), dtype="str")


TABLES = {
    (RAW, "crm__customers"): _frame(
        [("CRM-000001", "JANE", "DOE", "Jane.Doe@Example.com ", "030 1234567", "Hauptstr. 1", "Germany"),
         ("CRM-000002", "Bob", "Doe", "bob@example.com", "030 1234567", "Hauptstr. 1", "DE")],
        "contact_id first_name last_name email phone street country",
    ),
    (RAW, "shop__orders"): _frame([("9001", "42", "10"), ("9002", "43", "20")], "id customer_id total"),
    (RAW, "shop__order_items"): _frame([("1", "9001", "A"), ("2", "9002", "B")], "id order_id sku"),
    (RAW, "email__campaign_events"): _frame([("E1", "JANE.DOE@example.com"), ("E2", "bob@example.com")],
                                            "event_id email"),
    (RAW, "support__support_tickets"): _frame([("T1", "42", None), ("T2", None, JANE), ("T3", "43", None)],
                                              "ticket_id customer_ref requester_email"),
    (STAGING, "customers"): _frame(
        [("crm", "CRM-000001", "Jane", "Doe", JANE, "+49301234567", "Hauptstr. 1"),
         ("crm", "CRM-000002", "Bob", "Doe", "bob@example.com", "+49301234567", "Hauptstr. 1"),
         ("shop", "42", "Jane", "Doe", JANE, None, None),
         ("shop", "43", "Bob", "Doe", "bob@example.com", None, None),
         ("email", f"email:{JANE}", None, None, JANE, None, None)],
        "source source_record_id first_name last_name email phone address_line1",
    ),
    (STAGING, "orders"): _frame([("shop", "9001", "42"), ("shop", "9002", "43")], "source order_id source_customer_id"),
    (STAGING, "order_items"): _frame([("shop", "1", "9001"), ("shop", "2", "9002")], "source item_id order_id"),
    (STAGING, "support_tickets"): _frame(
        [("support", "T1", "42", None), ("support", "T2", None, JANE), ("support", "T3", "43", None)],
        "source ticket_id source_customer_id requester_email",
    ),
    (CORE, "customer_identity_map"): _frame(
        [("crm", "CRM-000001", "C1"), ("shop", "42", "C1"), ("email", f"email:{JANE}", "C1"),
         ("crm", "CRM-000002", "C2"), ("shop", "43", "C2")],
        "source source_record_id customer_id",
    ),
    (CORE, "identity_links"): _frame(
        [("crm", "CRM-000001", "shop", "42", '{"first_name": "Jane"}'),
         ("crm", "CRM-000002", "shop", "43", '{"first_name": "Bob"}')],
        "source_l source_record_id_l source_r source_record_id_r evidence",
    ),
    (CORE, "customer_id_history"): _frame([("C0", "C1")], "retired_customer_id merged_into_customer_id"),
    (CORE, "orders"): _frame([("C1", "shop", "9001"), ("C2", "shop", "9002")], "customer_id source order_id"),
    (CORE, "suppression_list"): _frame([("email", JANE, "unsubscribed"), ("email", "bob@example.com", "bounce")],
                                       "address_kind address reason"),
    (MARTS, "customer_360"): _frame([("C1", "Jane", JANE), ("C2", "Bob", "bob@example.com")],
                                    "customer_id first_name email"),
    (MARTS, "customer_segment_history"): _frame([("C0", "At Risk"), ("C2", "Champions")], "customer_id segment"),
    (QUARANTINE, "rejected_rows"): _frame(
        [("customers", "crm", None, json.dumps({"contact_id": None, "email": "JANE.DOE@EXAMPLE.COM"})),
         ("orders", "shop", "9003", json.dumps({"id": "9003", "customer_id": "42"})),
         ("orders", "shop", "9004", json.dumps({"id": "9004", "customer_id": "43"}))],
        "entity source record_id raw_values",
    ),
}


@pytest.fixture
def filled(warehouse: Warehouse) -> Warehouse:
    for (schema, table), frame in TABLES.items():
        warehouse.write_table(frame, schema, table, mode="create")
    return warehouse


def _counts(wh: Warehouse) -> dict[str, int]:
    return {f"{s}.{t}": wh.row_count(s, t) for s, t in TABLES}


def test_erasure_deletes_the_person_and_keeps_the_household(filled, tmp_path):
    wh = filled
    config = _config(tmp_path, wh.url)
    requested = request_hashes(emails=["Jane.Doe@Example.com"], config=config)
    before = _counts(wh)
    dry = erase(wh, config, requested, requested_by="DPO-1", dry_run=True)
    assert _counts(wh) == before and not wh.row_count(AUDIT, "erasure_tombstones")
    assert dry.plan.customer_ids == {"C0", "C1"} and dry.plan.phones == set()  # Bob shares the phone

    done = erase(wh, config, requested, requested_by="DPO-1", dry_run=False)
    assert done.rows_by_table == dry.rows_by_table
    deleted = {t: n for t, n in done.rows_by_table.items() if n}
    assert deleted == {
        "raw.crm__customers": 1, "raw.shop__orders": 1, "raw.shop__order_items": 1, "raw.email__campaign_events": 1,
        "raw.support__support_tickets": 2, "staging.customers": 3, "staging.orders": 1, "staging.order_items": 1,
        "staging.support_tickets": 2, "core.customer_identity_map": 3, "core.identity_links": 1,
        "core.customer_id_history": 1, "core.orders": 1, "core.suppression_list": 1, "marts.customer_360": 1,
        "marts.customer_segment_history": 1, "quarantine.rejected_rows": 2,
    }
    assert wh.read_table(STAGING, "customers")["phone"].tolist().count("+49301234567") == 1  # Bob's
    assert wh.read_table(QUARANTINE, "rejected_rows")["record_id"].tolist() == ["9004"]
    suppression = wh.read_table(CORE, "suppression_list")
    assert JANE not in set(suppression["address"]) and "bob@example.com" in set(suppression["address"])
    hashed = suppression.loc[suppression["address_kind"] == "email_sha256", "address"]
    assert done.tombstones.get("email") <= set(hashed)
    audit = wh.read_table(AUDIT, "erasures").sort_values("started_at")
    assert audit["dry_run"].tolist() == [True, False] and (audit["requested_by"] == "DPO-1").all()
    assert json.loads(audit["rows_by_table"].iloc[-1]) == deleted
    stored = " ".join(wh.read_table(AUDIT, "erasure_tombstones").astype("str").to_numpy().ravel())
    assert "jane" not in stored.lower() and "CRM-000001" not in stored

    # A rerun finds nothing left and adds no tombstone.
    tombstones = wh.row_count(AUDIT, "erasure_tombstones")
    again = erase(wh, config, requested, requested_by="DPO-1", dry_run=False)
    assert again.rows_deleted == 0 and wh.row_count(AUDIT, "erasure_tombstones") == tombstones


def test_ingest_drops_rows_of_erased_people(filled, tmp_path):
    """The same old export again: Jane's contact (by id) and her email event (by address) stay out."""
    wh = filled
    config = _config(tmp_path, wh.url)
    erase(wh, config, request_hashes(emails=[JANE], config=config), requested_by="DPO-1", dry_run=False)
    demo = tmp_path / "data" / "demo"
    demo.mkdir(parents=True)
    contacts = TABLES[(RAW, "crm__customers")].assign(email=["jane@new-provider.example", "bob@example.com"])
    for column in ("birth_date", "gender", "street2", "city", "zip", "state", "company", "loyalty_card"):
        contacts[column] = ""
    contacts["created_at"] = contacts["updated_at"] = "2026-01-01T00:00:00Z"
    contacts.to_csv(demo / "crm_contacts.csv", index=False)
    events = TABLES[(RAW, "email__campaign_events")].assign(
        campaign_id="C", event="open", occurred_at="2026-06-01T10:00:00Z"
    )
    events.to_csv(demo / "email_events.csv", index=False)
    until = dt.datetime(2026, 6, 30, 22, tzinfo=dt.UTC)
    for source, entity, table, column, kept in (
        ("crm", "customers", "crm__customers", "contact_id", ["CRM-000002"]),
        ("email", "campaign_events", "email__campaign_events", "event_id", ["E2"]),
    ):
        result = ingest_entity(wh, config, config.source(source), entity, until=until, batch_id="b2", now=NOW)
        assert (result.rows_read, result.rows_loaded, result.rows_erased) == (2, 1, 1)
        assert wh.read_table(RAW, table)[column].tolist() == kept
        state = wh.read_table(AUDIT, "ingest_state", where=sa.column("source") == source)
        assert state["rows_erased"].tolist() == [1]


def test_failed_erasure_rolls_back_and_a_rerun_finishes_it(filled, tmp_path):
    """A delete the database refuses (here a foreign key) fails the erasure: every table is as it was,
    the tombstones (committed first) already keep Jane out of ingests, and a rerun completes the job."""
    wh = filled
    config = _config(tmp_path, wh.url)
    wh.execute(f"CREATE TABLE {wh.qualified(MARTS, 'people')} (customer_id VARCHAR PRIMARY KEY)")
    wh.execute(f"INSERT INTO {wh.qualified(MARTS, 'people')} VALUES ('C1'), ('C2')")
    wh.execute(
        f"CREATE TABLE {wh.qualified(MARTS, 'zz_referrals')} "
        f"(ref VARCHAR REFERENCES {wh.qualified(MARTS, 'people')} (customer_id))"
    )
    wh.execute(f"INSERT INTO {wh.qualified(MARTS, 'zz_referrals')} VALUES ('C1')")
    before = _counts(wh)
    requested = request_hashes(emails=[JANE], config=config)
    with pytest.raises(sa.exc.SQLAlchemyError):
        erase(wh, config, requested, requested_by="DPO-1", dry_run=False)
    assert _counts(wh) == before and wh.row_count(MARTS, "people") == 2
    assert wh.row_count(AUDIT, "erasure_tombstones") > 0 and wh.row_count(AUDIT, "erasures") == 0

    wh.drop_table(MARTS, "zz_referrals")
    done = erase(wh, config, requested, requested_by="DPO-1", dry_run=False)
    assert done.rows_by_table["marts.people"] == 1 and done.rows_by_table["staging.customers"] == 3


def test_erased_addresses_stay_suppressed_by_hash(filled, tmp_path):
    from crm_pipelines.analytics.suppression import without_suppressed
    from crm_pipelines.assets.privacy import with_erased_addresses

    wh = filled
    config = _config(tmp_path, wh.url)
    erase(wh, config, request_hashes(emails=[JANE], config=config), requested_by="DPO-1", dry_run=False)
    plain = pd.DataFrame(
        {"address_kind": ["email"], "address": ["bob@example.com"], "reason": ["bounce"], "source": ["email"],
         "suppressed_since": pd.to_datetime(["2026-06-01T00:00:00Z"], utc=True)}
    ).astype({c: "str" for c in ("address_kind", "address", "reason", "source")})
    suppressed = with_erased_addresses(plain, wh)
    assert suppressed["address_kind"].tolist() == ["email", "email_sha256"]
    assert str(suppressed["suppressed_since"].dtype).startswith("datetime64") and JANE not in set(suppressed["address"])
    wh.publish(suppressed, CORE, "suppression_list")  # as the nightly publishes it
    audiences = pd.DataFrame({"customer_id": ["C1", "C2", "C3"], "email": [" Jane.Doe@Example.com", "bob@example.com",
                                                                            "carol@example.com"]})
    assert without_suppressed(audiences, suppressed)["customer_id"].tolist() == ["C3"]


def test_cli_dry_run_then_erasure_recorded_in_dagster_home(filled, tmp_path):
    """``python -m crm_pipelines.erase`` in its own process: the run lands in DAGSTER_HOME, whose run
    storage holds the key's hash, never the key."""
    wh = filled
    _config(tmp_path, wh.url)  # writes tmp_path/crm.yaml
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "CRM_CONFIG": str(tmp_path / "crm.yaml"), "DAGSTER_HOME": str(home)}
    before = _counts(wh)
    dispose_engines()  # DuckDB: the command's process needs the file
    wh.dispose()
    command = [sys.executable, "-m", "crm_pipelines.erase", "--email", "JANE.DOE@example.com",
               "--requested-by", "DPO-7"]
    dry = subprocess.run([*command, "--dry-run"], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "DRY RUN" in dry.stdout and "staging.customers" in dry.stdout and _counts(wh) == before
    wh.dispose()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "deleted" in done.stdout and wh.row_count(STAGING, "customers") == 2
    runs = home / "history" / "runs.db"
    assert runs.exists()
    stored = runs.read_bytes().lower()
    assert b"jane" not in stored and key_hash(JANE).encode() in stored
    bad = subprocess.run([*command[:3], "--email", "jane@", "--requested-by", "x"], env=env,
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert bad.returncode == 2 and "not a valid email" in bad.stderr
