"""The right to be forgotten: ``crm_erasure`` removes a person from every table and keeps them out.

End to end on a small demo, on DuckDB and PostgreSQL: a nightly, a dry run through the CLI (nothing
changes), the erasure by email, a scan of every cell of every table of every schema (and of the BI file)
for the person's values, then a re-ingest of the same old exports and another nightly: they stay gone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from test_nightly import END, run_nightly

from crm_pipelines.config import PROJECT_ROOT, config_from_dict
from crm_pipelines.definitions import build_definitions
from crm_pipelines.demo.generator import generate
from crm_pipelines.erasure.execute import erase
from crm_pipelines.erasure.keys import (
    EMAIL,
    PHONE,
    SOURCE_RECORD,
    ErasureKeyError,
    KeyHashes,
    key_hash,
    matching_rows,
    raw_key_columns,
    request_hashes,
)
from crm_pipelines.ingest.loading import reset_ingest_state
from crm_pipelines.schema import AUDIT, CORE, RAW, SOURCE_DELETE_COLUMNS, STAGING, raw_table_name
from crm_pipelines.staging_batches import STAGED_RECORDS, STAGED_RECORDS_COLUMNS
from crm_pipelines.warehouse import Warehouse, dispose_engines

DEMO_CONFIG = yaml.safe_load((PROJECT_ROOT / "crm.yaml").read_text())


def _config(root: Path, warehouse_url: str):
    data = {**DEMO_CONFIG, "warehouse": {"url": warehouse_url}, "as_of": END.isoformat()}
    (root / "crm.yaml").write_text(yaml.safe_dump(data))
    return config_from_dict(data, root / "crm.yaml")


def test_erasure_job_is_in_the_definitions(tmp_path):
    job = build_definitions(_config(tmp_path, "duckdb:///unused.duckdb")).resolve_job_def("crm_erasure")
    assert [node.name for node in job.nodes] == ["erase_people"]


# -- keys -----------------------------------------------------------------------------------------------
def test_request_keys_are_normalized_before_hashing(tmp_path):
    config = _config(tmp_path, "duckdb:///unused.duckdb")
    typed = request_hashes(
        emails=["  Jane.Doe@Example.COM "], phones=["030 1234567"], source_records=["shop: 42"], config=config
    )
    assert typed.get(EMAIL) == {key_hash("jane.doe@example.com")}
    assert typed.get(PHONE) == {key_hash("+49301234567")}
    assert typed.get(SOURCE_RECORD) == {key_hash("shop:42")}
    with pytest.raises(ErasureKeyError, match="not a valid email"):
        request_hashes(emails=["jane@"], config=config)
    with pytest.raises(ErasureKeyError, match="no source 'erp'"):
        request_hashes(source_records=["erp:1"], config=config)
    with pytest.raises(ErasureKeyError, match="SOURCE:ID"):
        request_hashes(source_records=["42"], config=config)


def test_raw_rows_are_recognized_by_their_normalized_keys(tmp_path):
    """A source's own columns and formats: upper-case emails, national phones, ids with blanks."""
    config = _config(tmp_path, "duckdb:///unused.duckdb")
    crm, shop = config.source("crm"), config.source("shop")
    tombstones = KeyHashes.of(
        [(EMAIL, key_hash("jane.doe@example.com")), (PHONE, key_hash("+49301234567")),
         (SOURCE_RECORD, key_hash("shop:42")), ("order", key_hash("shop:9001"))]
    )
    contacts = pd.DataFrame(
        {"contact_id": ["CRM-1", "CRM-2", "CRM-3", "CRM-4"],
         "email": ["JANE.DOE@example.com ", "john@example.com", None, "n/a"],
         "phone": [None, None, "030 123 4567", "030 123 4567"],
         "country": [None, None, "Germany", "AT"]},
        dtype="str",
    )
    erased = matching_rows(contacts, raw_key_columns(config, crm, "customers"), tombstones)
    assert erased.tolist() == [True, False, True, False]  # the Austrian number is another one
    orders = pd.DataFrame({"id": ["9001", "9002", "9003"], "customer_id": ["7", " 42", "8"]}, dtype="str")
    assert matching_rows(orders, raw_key_columns(config, shop, "orders"), tombstones).tolist() == [True, True, False]
    items = pd.DataFrame({"id": ["1", "2"], "order_id": ["9001", "9003"]}, dtype="str")
    assert matching_rows(items, raw_key_columns(config, shop, "order_items"), tombstones).tolist() == [True, False]
    tickets = pd.DataFrame({"ticket_id": ["T1", "T2"], "customer_ref": ["42", None],
                            "requester_email": [None, "Jane.Doe@Example.com"]}, dtype="str")
    support = config.source("support")
    assert matching_rows(tickets, raw_key_columns(config, support, "support_tickets"), tombstones).all()


def test_an_erasure_clears_the_persons_record_ids_from_the_audit_tables(tmp_path, warehouse_url):
    """``audit.source_deletes`` and ``audit.staged_records`` name records by id: the erased person's
    customer records and orders leave both (also one only the request names, long gone from staging);
    others' stay."""
    config = _config(tmp_path, warehouse_url)
    wh = Warehouse(config.warehouse_url)
    wh.write_table(pd.DataFrame({"source": ["crm", "crm"], "source_record_id": ["C1", "C2"],
                                 "email": ["jane.doe@example.com", "max@example.com"], "phone": [None, None]}),
                   STAGING, "customers", column_types={"phone": "string"})
    wh.write_table(pd.DataFrame({"source": ["crm", "crm"], "source_record_id": ["C1", "C2"],
                                 "customer_id": ["K1", "K2"]}), CORE, "customer_identity_map")
    wh.write_table(pd.DataFrame({"source": ["shop", "shop"], "order_id": ["9001", "9002"],
                                 "customer_id": ["K1", "K2"]}), CORE, "orders")
    deleted = [("customers", "crm", "C1"), ("customers", "shop", "42"), ("orders", "shop", "9001"),
               ("customers", "crm", "C2"), ("orders", "shop", "9002"), ("support_tickets", "support", "C1")]
    wh.write_table(pd.DataFrame({
        "run_id": "r1", "recorded_at": pd.Timestamp("2026-06-01", tz="UTC"),
        "entity": [d[0] for d in deleted], "source": [d[1] for d in deleted], "record_id": [d[2] for d in deleted],
        "kind": "missing_from_delivery", "reason": "gone from the export",
    }), AUDIT, "source_deletes", column_types={c.name: c.dtype for c in SOURCE_DELETE_COLUMNS})
    wh.write_table(pd.DataFrame({
        "source": [d[1] for d in deleted], "entity": [d[0] for d in deleted], "record_id": [d[2] for d in deleted],
        "batch_id": "b1", "staged_at": pd.Timestamp("2026-06-01", tz="UTC"), "outcome": "staged",
    }), AUDIT, STAGED_RECORDS, column_types={c.name: c.dtype for c in STAGED_RECORDS_COLUMNS})

    request = request_hashes(emails=["Jane.Doe@example.com"], source_records=["shop:42"], config=config)
    result = erase(wh, config, request, requested_by="ticket DPO-2", dry_run=False)

    left = wh.read_table(AUDIT, "source_deletes")
    assert sorted(zip(left["entity"], left["source"], left["record_id"], strict=True)) == [
        ("customers", "crm", "C2"), ("orders", "shop", "9002"), ("support_tickets", "support", "C1")]
    assert result.rows_by_table["audit.source_deletes"] == 3
    index = wh.read_table(AUDIT, STAGED_RECORDS)
    assert sorted(zip(index["entity"], index["source"], index["record_id"], strict=True)) == [
        ("customers", "crm", "C2"), ("orders", "shop", "9002"), ("support_tickets", "support", "C1")]
    assert result.rows_by_table["audit.staged_records"] == 3


# -- end to end -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("erasure_demo")
    generate(root / "data" / "demo", people=200, seed=11, end_date=END)
    return root / "data"


def _all_tables(wh: Warehouse) -> list[tuple[str, str]]:
    rows = wh.query(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
        "AND table_schema NOT IN ('information_schema', 'pg_catalog')"
    )
    return sorted(zip(rows["table_schema"], rows["table_name"], strict=True))


def _row_counts(wh: Warehouse) -> dict[str, int]:
    return {f"{s}.{t}": wh.row_count(s, t) for s, t in _all_tables(wh)}


def _person(wh: Warehouse) -> tuple[str, list[tuple[str, str]], dict[str, set[str]]]:
    """A customer with orders, tickets and email events (orders and events if nobody has all three):
    their email, their records, and the values no other customer holds (staged, and as exported)."""
    identity = wh.read_table(CORE, "customer_identity_map", columns=["source", "source_record_id", "customer_id"])
    customers = wh.read_table(STAGING, "customers")
    customers = customers.merge(identity, on=["source", "source_record_id"])
    with_email = set(customers.loc[customers["email"].notna(), "customer_id"])
    ordered = set(wh.read_table(CORE, "orders", columns=["customer_id"])["customer_id"]) & with_email
    mailed = set(wh.read_table(CORE, "campaign_events", columns=["customer_id"])["customer_id"])
    ticketed = set(wh.read_table(CORE, "support_tickets", columns=["customer_id"])["customer_id"])
    candidates = sorted(ordered & mailed & ticketed) or sorted(ordered & mailed)
    assert candidates, "no demo customer with orders and email events"
    customer_id = candidates[0]
    mine = customers[customers["customer_id"] == customer_id]
    others = customers[customers["customer_id"] != customer_id]
    values = {
        f: set(mine[f].dropna().astype("str")) - set(others[f].dropna().astype("str"))
        for f in ("email", "phone", "address_line1")
    }
    names = set(zip(mine["first_name"], mine["last_name"], strict=True))
    names -= set(zip(others["first_name"], others["last_name"], strict=True))
    values["names"] = {(f, n) for f, n in names if isinstance(f, str) and isinstance(n, str)}
    records = sorted(zip(mine["source"], mine["source_record_id"], strict=True))
    values["raw"] = _raw_values(wh, records)
    return str(mine["email"].dropna().iloc[0]), records, values


def _raw_values(wh: Warehouse, records: list[tuple[str, str]]) -> set[str]:
    """The person's values as the CRM and shop exports wrote them, but those other records also hold."""
    mine: set[str] = set()
    others: set[str] = set()
    for source, id_column in (("crm", "contact_id"), ("shop", "id")):
        ids = {r for s, r in records if s == source}
        rows = wh.read_table(RAW, raw_table_name(source, "customers"), columns=[id_column, "email", "phone", "street"])
        for row in rows.itertuples(index=False):
            found = {str(v).strip() for v in row[1:] if isinstance(v, str) and len(v.strip()) >= 6}
            (mine if getattr(row, id_column) in ids else others).update(found)
    return mine - others


def _leftovers(wh: Warehouse, records, values) -> list[str]:
    """Every table cell (cast to text) that still holds one of the person's values."""
    texts = {v.lower() for f in ("email", "phone", "address_line1", "raw") for v in values[f]}
    texts |= {r.lower() for _, r in records if not r.isdigit()}  # CRM-000123; shop ids are bare numbers
    found = []
    for schema, table in _all_tables(wh):
        columns = wh.columns(schema, table)
        cells = [sa.func.lower(sa.cast(sa.column(sa.quoted_name(c, True)), sa.String)) for c in columns]

        def holds(text: str, cells: list = cells) -> sa.ColumnElement[bool]:
            # The cell is the value, or holds it as a JSON string (raw_values, link evidence); containment
            # alone would find "hauptstr. 1" in "hauptstr. 12".
            return sa.or_(*(sa.or_(sa.func.trim(c) == text, c.contains(f'"{text}', autoescape=True)) for c in cells))

        for text in sorted(texts):
            if wh.row_count(schema, table, where=holds(text)):
                found.append(f"{schema}.{table}: {text}")
        for first, last in sorted(values["names"]):
            if wh.row_count(schema, table, where=sa.and_(holds(first.lower()), holds(last.lower()))):
                found.append(f"{schema}.{table}: name {first} {last}")
        shop_ids = [r for s, r in records if r.isdigit()]
        for suffix in ("", "_l", "_r"):
            if shop_ids and {f"source{suffix}", f"source_record_id{suffix}"} <= set(columns):
                keyed = sa.and_(
                    sa.column(f"source{suffix}") == "shop", sa.column(f"source_record_id{suffix}").in_(shop_ids)
                )
                if wh.row_count(schema, table, where=keyed):
                    found.append(f"{schema}.{table}: shop record")
    return found


def _bi_leftovers(path: Path, values) -> list[str]:
    if not path.exists():
        return []
    texts = {v.lower() for f in ("email", "phone", "address_line1") for v in values[f]}
    found = []
    with duckdb.connect(str(path), read_only=True) as bi:
        tables = bi.execute("SELECT table_schema, table_name FROM information_schema.tables "
                            "WHERE table_type = 'BASE TABLE'").fetchall()
        for schema, table in tables:
            frame = bi.execute(f'SELECT * FROM "{schema}"."{table}"').fetch_arrow_table().to_pandas()
            cells = frame.astype("str").apply(lambda c: c.str.lower().str.strip())
            for text in texts:
                if any(cells[c].eq(text).any() for c in cells.columns):
                    found.append(f"{schema}.{table}: {text}")
    return found


def _erase(config, **run_config) -> dict:
    result = build_definitions(config).resolve_job_def("crm_erasure").execute_in_process(
        run_config={"ops": {"erase_people": {"config": run_config}}}, raise_on_error=False
    )
    assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return result.output_for_node("erase_people")


def _cli_dry_run(root: Path, email: str) -> str:
    env = {**os.environ, "CRM_CONFIG": str(root / "crm.yaml"), "DAGSTER_HOME": str(root / "dagster_home")}
    (root / "dagster_home").mkdir(exist_ok=True)
    (root / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    done = subprocess.run(
        [sys.executable, "-m", "crm_pipelines.erase", "--email", email.upper(), "--requested-by", "ticket DPO-1",
         "--dry-run"],
        env=env, capture_output=True, text=True, timeout=300, cwd=root,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_erased_person_is_gone_from_every_table_and_stays_gone(demo_data, tmp_path, warehouse_url):
    shutil.copytree(demo_data, tmp_path / "data")
    config = _config(tmp_path, warehouse_url)
    assert run_nightly(config).success
    wh = Warehouse(config.warehouse_url)
    email, records, values = _person(wh)
    assert _leftovers(wh, records, values), "the scan finds the person before the erasure"
    bi_file = config.resolve_path(config.bi.marts_file)

    # A dry run through the CLI, recorded in DAGSTER_HOME, changes nothing but its audit row.
    counts = _row_counts(wh)
    dispose_engines()  # DuckDB: the CLI's process needs the file
    output = _cli_dry_run(tmp_path, email)
    assert "DRY RUN" in output and "staging.customers" in output and email not in output
    after = _row_counts(wh)
    assert after.pop("audit.erasures") == counts.pop("audit.erasures", 0) + 1
    assert after.pop("audit.erasure_tombstones") == counts.pop("audit.erasure_tombstones", 0) == 0
    assert after == counts
    assert list((tmp_path / "dagster_home").rglob("runs.db")), "the CLI's run is recorded in DAGSTER_HOME"

    summary = _erase(config, key_hashes=[f"email:{key_hash(email)}"], requested_by="ticket DPO-1")
    assert summary["customers"] >= 1 and summary["rows_by_table"]["staging.customers"] >= 1
    assert summary["rows_by_table"]["core.orders"] >= 1 and summary["rows_by_table"]["core.campaign_events"] >= 1
    assert _leftovers(wh, records, values) == []
    assert _bi_leftovers(bi_file, values) == []
    audit = wh.read_table(AUDIT, "erasures").sort_values("started_at")
    row = audit.iloc[-1]
    assert row["requested_by"] == "ticket DPO-1" and not row["dry_run"] and row["rows_deleted"] > 0
    assert json.loads(row["requested_key_hashes"]) == [f"email:{key_hash(email)}"]
    assert json.loads(row["rows_by_table"])["staging.customers"] >= 1
    assert bool(audit.iloc[0]["dry_run"])
    tombstones = wh.read_table(AUDIT, "erasure_tombstones")
    assert key_hash(email) in set(tombstones["key_hash"]) and len(tombstones["key_hash"].iloc[0]) == 64

    # The old exports again, from scratch: nothing of the person comes back, and raw still reconciles.
    for source in config.sources:
        for entity in source.entities:
            reset_ingest_state(wh, source.name, entity)
    result = run_nightly(config)
    assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert _leftovers(wh, records, values) == []
    assert _bi_leftovers(bi_file, values) == []
    state = wh.read_table(AUDIT, "ingest_state")
    assert state["rows_erased"].fillna(0).sum() > 0, state
    recon = wh.read_table(AUDIT, "reconciliation")
    assert recon["reconciles"].all()
    suppression = wh.read_table(CORE, "suppression_list")
    assert key_hash(email) in set(suppression.loc[suppression["address_kind"] == "email_sha256", "address"])
