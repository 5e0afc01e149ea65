"""The identity asset as the nightly runs it, on edge-sized nights, on DuckDB and PostgreSQL.

Staging is written straight into the warehouse, then ``identity_resolution`` is materialized night
after night: first run, one new contact who matches nobody, a reference no source delivers, all
records changed, nothing new. Every night must succeed and publish a consistent set of tables.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from crm_pipelines.assets.core import IDENTITY_TABLES, build_identity_asset
from crm_pipelines.config import config_from_dict
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import CORE, ENTITIES, STAGING
from crm_pipelines.warehouse import Warehouse

BASE = [
    ("crm", "1", "Anna", "Berg", "1980-01-01", "anna@mail.de"),
    ("shop", "s1", "Anna", "Berg", "1980-01-01", "anna@mail.de"),
    ("crm", "2", "Ben", "Adler", "1990-02-02", "ben@mail.de"),
]


def staged(rows) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=["source", "source_record_id", "first_name", "last_name", "date_of_birth", "email"]
    )
    frame["date_of_birth"] = pd.to_datetime(frame["date_of_birth"]).dt.date
    frame["record_kind"] = "record"
    frame["created_at"] = pd.Timestamp("2024-01-01", tz="UTC")
    frame["updated_at"] = pd.Timestamp("2024-01-01", tz="UTC")
    # Staging publishes every canonical column, most of them empty here.
    return frame.reindex(columns=[c.name for c in ENTITIES["customers"].staged_columns])


def night(config, url: str, customers: pd.DataFrame) -> dg.ExecuteInProcessResult:
    wh = Warehouse(url)
    wh.write_table(customers, STAGING, "customers", mode="replace")
    asset = build_identity_asset("duckdb", config)
    return dg.materialize([asset], resources={"warehouse": WarehouseResource(url=url)}, raise_on_error=False)


def consistent(wh: Warehouse, customers: pd.DataFrame) -> pd.DataFrame:
    identity_map = wh.read_table(CORE, "customer_identity_map")
    unified = wh.read_table(CORE, "unified_customers")
    assert len(identity_map) == len(customers.drop_duplicates(["source", "source_record_id"]))
    assert not identity_map.duplicated(["source", "source_record_id"]).any()
    assert set(identity_map["customer_id"]) == set(unified["customer_id"])
    return identity_map


@pytest.fixture
def config(tmp_path, warehouse_url):
    return config_from_dict(
        {
            "warehouse": {"url": warehouse_url},
            "checks": {"reports_dir": str(tmp_path / "runs")},
            "identity": {"model_path": str(tmp_path / "model.json")},
            "sources": [
                {
                    "name": "crm",
                    "connector": {"type": "csv"},
                    "entities": {"customers": {"path": "x.csv", "columns": {"source_record_id": "id"}}},
                }
            ],
        },
        tmp_path / "crm.yaml",
    )


def test_edge_sized_nights_never_fail(config, warehouse_url):
    wh = Warehouse(warehouse_url)
    nights = []
    customers = staged(BASE)
    nights.append(customers)
    # One new contact who matches nobody (the night that used to fail every run from then on).
    customers = pd.concat([customers, staged([("crm", "3", "Zora", "Quist", "1971-07-07", "zq@mail.de")])])
    nights.append(customers)
    # An order names a shop customer no source delivers: a reference stub of its own.
    stub = staged([("shop", "s404", None, None, None, None)]).assign(record_kind="referenced")
    stub["date_of_birth"] = None
    customers = pd.concat([customers, stub], ignore_index=True)
    nights.append(customers)
    # Every record changed (a bulk re-export with new timestamps and a corrected surname).
    customers = customers.assign(updated_at=pd.Timestamp("2024-02-01", tz="UTC"))
    customers.loc[customers["last_name"] == "Adler", "last_name"] = "Adler-Kim"
    nights.append(customers)
    nights.append(customers)  # nothing new
    maps = []
    for number, frame in enumerate(nights, start=1):
        result = night(config, warehouse_url, frame)
        failures = [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert result.success, (number, failures)
        maps.append(consistent(wh, frame).set_index(["source", "source_record_id"])["customer_id"])
    first, one_new = maps[0], maps[1]
    assert one_new[first.index].equals(first), "the new contact moved existing customers"
    assert one_new[("crm", "3")] not in set(first)
    assert maps[2][("shop", "s404")] not in set(maps[1])
    assert maps[1][("crm", "1")] == maps[1][("shop", "s1")]
    assert maps[4].sort_index().equals(maps[3].sort_index())
    for table in IDENTITY_TABLES:
        assert wh.table_exists(CORE, table), table


def test_first_night_with_a_single_record(config, warehouse_url):
    result = night(config, warehouse_url, staged(BASE[:1]))
    assert result.success
    identity_map = consistent(Warehouse(warehouse_url), staged(BASE[:1]))
    assert identity_map["match_method"].tolist() == ["singleton"]
    # Each stage is timed on its own: reading the fingerprints after resolving is not resolving.
    (materialization,) = [
        m
        for m in result.asset_materializations_for_node("identity_resolution")
        if m.asset_key.path[-1] == "customer_identity_map"
    ]
    stages = materialization.metadata["stage_seconds"].data
    assert list(stages)[0] == "read_staged" and list(stages)[-1] == "fingerprints"
    assert {"prepare", "score", "golden"} <= set(stages)
    assert stages["fingerprints"] < materialization.metadata["seconds"].value
    assert set(materialization.metadata["stage_peak_mb"].data) == set(stages)


def _sorted_rows(wh: Warehouse, schema: str, table: str) -> list[tuple]:
    frame = wh.read_table(schema, table).astype("string").fillna("<null>")
    return sorted(map(tuple, frame[sorted(frame.columns)].to_numpy().tolist()))


def test_incremental_night_writes_only_the_touched_customers(config, warehouse_url):
    """A new record for Ben rewrites Ben's rows only; the result equals publishing whole tables."""
    from crm_pipelines.assets.core import run_identity
    from crm_pipelines.table_changes import publish_changes

    people = [*BASE, ("crm", "4", "Clara", "Dorn", "1985-05-05", "clara@mail.de")]
    wh = Warehouse(warehouse_url)
    assert night(config, warehouse_url, staged(people)).success
    before = wh.read_table(CORE, "customer_identity_map").set_index(["source", "source_record_id"])
    if wh.dialect == "postgresql":  # the inserting transaction of each row: untouched rows keep theirs
        xmin_before = wh.query("SELECT source, source_record_id, xmin::text AS x FROM core.customer_identity_map")
    wh.write_table(staged([*people, ("shop", "s2", "Ben", "Adler", "1990-02-02", "ben@mail.de")]), STAGING, "customers")
    written = {}

    @dg.asset(name="identity_both_ways")
    def both_ways(context, warehouse: WarehouseResource):
        wh = warehouse.get_warehouse()
        _, tables, changes = run_identity(context, config, wh, full=False)
        assert changes is not None, "the second night must be incremental"
        # The whole tables as a full publish would write them: links, lineage, fingerprints and
        # matching state come back as the changed rows only (they are never read whole), so
        # yesterday's rows of untouched customers and records are added here.
        whole = dict(tables)
        for table in ("customer_record_fingerprints", "identity_match_records"):
            old, fresh = wh.read_table(CORE, table), tables[table]
            fresh_keys = set(zip(fresh["source"], fresh["source_record_id"], strict=True))
            kept = [k not in fresh_keys for k in zip(old["source"], old["source_record_id"], strict=True)]
            whole[table] = pd.concat([old[kept], fresh], ignore_index=True)
        scope = changes["customer_identity_map"].rows
        scope_keys = set(zip(scope["source"], scope["source_record_id"], strict=True))
        links = wh.read_table(CORE, "identity_links")
        kept = [k not in scope_keys for k in zip(links["source_l"], links["source_record_id_l"], strict=True)]
        whole["identity_links"] = pd.concat([links[kept], tables["identity_links"]], ignore_index=True)
        lineage = wh.read_table(CORE, "golden_lineage")
        affected = changes["golden_lineage"].replaced["customer_id"]
        whole["golden_lineage"] = pd.concat(
            [lineage[~lineage["customer_id"].isin(affected)], tables["golden_lineage"]], ignore_index=True
        )
        wh.publish_together("core_whole", whole)
        written.update(publish_changes(wh, CORE, changes, tables))

    assert dg.materialize([both_ways], resources={"warehouse": WarehouseResource(url=warehouse_url)}).success
    # Ben's customer (his crm record and the new shop one) is all the map, golden record and state change.
    assert written["customer_identity_map"] == 2
    assert written["unified_customers"] == 1
    assert written["customer_record_fingerprints"] == 1
    assert written["identity_match_records"] == 1
    assert written["identity_links"] == 1
    assert written["customer_id_history"] == 0
    after = wh.read_table(CORE, "customer_identity_map").set_index(["source", "source_record_id"])
    untouched = [("crm", "1"), ("shop", "s1"), ("crm", "4")]
    assert after.loc[untouched].sort_index().equals(before.loc[untouched].sort_index())
    assert after.loc[("shop", "s2"), "customer_id"] == after.loc[("crm", "2"), "customer_id"]
    if wh.dialect == "postgresql":
        xmin_after = wh.query("SELECT source, source_record_id, xmin::text AS x FROM core.customer_identity_map")
        merged = xmin_before.merge(xmin_after, on=["source", "source_record_id"], suffixes=("_before", "_after"))
        same = merged["x_before"] == merged["x_after"]
        assert sorted(merged.loc[same, "source_record_id"]) == ["1", "4", "s1"]
    for table in IDENTITY_TABLES:
        assert _sorted_rows(wh, CORE, table) == _sorted_rows(wh, "core_whole", table), table


def test_changes_are_found_in_the_warehouse(config, warehouse_url):
    """The night's new and changed records, the records that left staging and the staged rows of given
    keys come from SQL in the warehouse; old-style fingerprints make the night resolve everything."""
    from crm_pipelines.assets.identity_state import (
        changed_fingerprints,
        fingerprints,
        records_left_staging,
        staged_rows_of,
    )

    wh = Warehouse(warehouse_url)
    assert night(config, warehouse_url, staged(BASE)).success
    assert changed_fingerprints(wh).empty and records_left_staging(wh) == 0
    changed = [BASE[0], BASE[1], ("crm", "2", "Ben", "Adler-Neu", "1990-02-02", "ben@mail.de")]
    wh.write_table(staged([*changed, ("crm", "3", "Cleo", "Dorn", "1970-03-03", None)]), STAGING, "customers")
    fresh = changed_fingerprints(wh)
    assert list(zip(fresh["source"], fresh["source_record_id"], strict=True)) == [("crm", "2"), ("crm", "3")]
    current = fingerprints(wh).set_index(["source", "source_record_id"])["fingerprint"]
    assert fresh.set_index(["source", "source_record_id"])["fingerprint"].equals(
        current.loc[[("crm", "2"), ("crm", "3")]]
    )
    rows = staged_rows_of(wh, "customers", fresh)
    assert sorted(rows["last_name"]) == ["Adler-Neu", "Dorn"]
    assert not wh.table_exists(CORE, "identity_resolution__keys")
    wh.write_table(staged(BASE[1:]), STAGING, "customers")
    assert records_left_staging(wh) == 1
    old_style = wh.read_table(CORE, "customer_record_fingerprints").assign(fingerprint="12345678901234567")
    wh.write_table(old_style, CORE, "customer_record_fingerprints")
    assert changed_fingerprints(wh) is None


def test_a_nights_complete_version_is_built_in_the_warehouse(config, warehouse_url):
    """The map and golden records a night validates, built in the warehouse from yesterday's tables
    and the changed rows, equal the complete frames written whole, column types included; a Ben
    record that changed, a new one, and a merge of Clara's two customers are in the change."""
    from crm_pipelines.assets.core import run_identity
    from crm_pipelines.assets.identity_state import changed_version_view, drop_changed_version
    from crm_pipelines.schema import IDENTITY_MAP_COLUMNS, UNIFIED_CUSTOMER_COLUMNS

    people = [*BASE, ("crm", "4", "Clara", "Dorn", "1985-05-05", "clara@mail.de")]
    people.append(("shop", "s4", "Clara", "Dorn", "1985-05-05", None))
    wh = Warehouse(warehouse_url)
    assert night(config, warehouse_url, staged(people)).success
    later = [*people[:2], ("crm", "2", "Ben", "Adler", "1990-02-02", "ben.adler@mail.de"), *people[3:]]
    later.append(("shop", "s2", "Ben", "Adler", "1990-02-02", "ben.adler@mail.de"))
    wh.write_table(staged(later), STAGING, "customers")
    types = {
        "customer_identity_map": {c.name: c.dtype for c in IDENTITY_MAP_COLUMNS},
        "unified_customers": {c.name: c.dtype for c in UNIFIED_CUSTOMER_COLUMNS},
    }

    @dg.asset(name="identity_in_warehouse")
    def in_warehouse(context, warehouse: WarehouseResource):
        wh = warehouse.get_warehouse()
        _, tables, changes = run_identity(context, config, wh, full=False)
        assert changes is not None, "the second night must be incremental"
        for table in types:
            view = changed_version_view(wh, CORE, table, changes[table])
            assert view == f"{table}__night", table
            wh.write_table(tables[table], CORE, f"{table}__whole", column_types=types[table])

    assert dg.materialize([in_warehouse], resources={"warehouse": WarehouseResource(url=warehouse_url)}).success
    for table in types:
        assert wh.column_types(CORE, f"{table}__night") == wh.column_types(CORE, f"{table}__whole"), table
        assert _sorted_rows(wh, CORE, f"{table}__night") == _sorted_rows(wh, CORE, f"{table}__whole"), table
    assert len(wh.read_table(CORE, "customer_identity_map__night")) == 6
    drop_changed_version(wh, CORE, "customer_identity_map")
    assert not wh.table_exists(CORE, "customer_identity_map__night_rows")
    assert wh.column_types(CORE, "customer_identity_map__night") == {}


def test_a_change_that_cannot_apply_is_not_staged(warehouse_url):
    """No published table, or one whose columns differ: nothing is written, the caller validates the frame."""
    from crm_pipelines.assets.identity_state import changed_version_view
    from crm_pipelines.table_changes import TableChange

    wh = Warehouse(warehouse_url)
    rows = pd.DataFrame({"customer_id": ["c1"], "email": ["a@b.de"]})
    wh.drop_table(CORE, "stage_probe")
    assert changed_version_view(wh, CORE, "stage_probe", TableChange(rows, key=("customer_id",))) is None
    wh.write_table(rows.assign(extra=1), CORE, "stage_probe")
    assert changed_version_view(wh, CORE, "stage_probe", TableChange(rows, key=("customer_id",))) is None
    assert not wh.table_exists(CORE, "stage_probe__night_rows")
    wh.drop_table(CORE, "stage_probe")


def test_replaced_golden_records_keep_the_warehouses_time_zone():
    """Yesterday's golden records come back zone-aware, resolution's are naive UTC: the complete table
    keeps one typed column (not Python objects) and the same instants."""
    from crm_pipelines.assets.identity_state import replace_affected

    previous = pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "created_at": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 11:00"]).tz_localize("Etc/UTC"),
        }
    )
    fresh = pd.DataFrame({"customer_id": ["C2"], "created_at": pd.to_datetime(["2024-03-01 12:30"])})
    complete = replace_affected(previous, fresh, previous["customer_id"] == "C2")
    assert complete["created_at"].dtype == previous["created_at"].dtype
    assert complete["customer_id"].tolist() == ["C1", "C2"]
    assert complete["created_at"].iloc[1] == pd.Timestamp("2024-03-01 12:30", tz="UTC")
    assert replace_affected(None, fresh, pd.Series(dtype=bool)) is fresh
