"""The attributed core tables (orders, order lines, ...) are written and validated inside the warehouse;
on DuckDB a published table takes only the rows that changed, and ends up as a rewrite would write it.

The assets run with ``Warehouse.read_table`` and the Great Expectations frame validation made to fail,
so a pass proves no attributed table was read into Python: only the orphans, the counts and a
five-row preview come back. A broken contract keeps the previous table, moves the new version to
``quarantine`` and fails the blocking check.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from crm_pipelines.assets.core import build_attributed_asset
from crm_pipelines.checks.suites import CORE_CONTRACT
from crm_pipelines.config import WAREHOUSE_URL_ENV, config_from_dict
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import CORE, ENTITIES, IDENTITY_MAP_COLUMNS, QUARANTINE, STAGING, core_entity_columns
from crm_pipelines.warehouse import Warehouse

SOURCES = [
    {
        "name": "shop",
        "connector": {"type": "csv"},
        "entities": {
            "customers": {"path": "customers.csv", "columns": {"source_record_id": "id"}},
            "orders": {
                "path": "orders.csv",
                "columns": {"order_id": "id", "source_customer_id": "customer", "ordered_at": "at",
                            "total_amount": "total"},
                "defaults": {"status": "completed"},
            },
            "order_items": {
                "path": "items.csv",
                "columns": {"item_id": "id", "order_id": "order", "product_id": "sku", "quantity": "qty",
                            "unit_price": "price"},
            },
        },
    }
]
AT = pd.Timestamp("2025-05-01 10:00", tz="UTC")


@pytest.fixture(autouse=True)
def _own_warehouse(monkeypatch) -> None:
    monkeypatch.delenv(WAREHOUSE_URL_ENV, raising=False)


def _types(columns) -> dict[str, str]:
    return {c.name: c.dtype for c in columns}


def _load(wh: Warehouse, item_ids: list[str]) -> None:
    identity_map = pd.DataFrame(
        {"source": ["shop", "shop"], "source_record_id": ["K1", "K2"], "customer_id": ["C1", "C2"],
         "match_method": ["singleton", "singleton"], "match_probability": [1.0, 1.0]}
    )
    wh.write_table(identity_map, CORE, "customer_identity_map", column_types=_types(IDENTITY_MAP_COLUMNS))
    orders = pd.DataFrame(
        {"source": "shop", "order_id": ["O1", "O2", "O3"], "source_customer_id": ["K1", "K2", "K9"],
         "ordered_at": AT, "status": "completed", "currency": "EUR", "total_amount": [10.0, 20.0, 30.0],
         "total_amount_reporting": [10.0, 20.0, 30.0], "is_refund": False}
    )
    wh.write_table(orders, STAGING, "orders", column_types=_types(ENTITIES["orders"].staged_columns))
    items = pd.DataFrame(
        {"source": "shop", "item_id": item_ids, "order_id": ["O1", "O2", "O3"][: len(item_ids)],
         "product_id": "P1", "product_name": "Mug", "category": "Kitchen", "quantity": 1, "unit_price": 10.0,
         "line_amount": 10.0}
    )
    wh.write_table(items, STAGING, "order_items", column_types=_types(ENTITIES["order_items"].staged_columns))


def _materialize(tmp_path, warehouse_url: str, entities: list[str]) -> dg.ExecuteInProcessResult:
    config = config_from_dict(
        {"warehouse": {"url": warehouse_url}, "as_of": "2025-06-30", "sources": SOURCES}, tmp_path / "crm.yaml"
    )
    warehouse = WarehouseResource(url=warehouse_url)
    return dg.materialize(
        [build_attributed_asset(config, entity, warehouse.kind) for entity in entities],
        resources={"warehouse": warehouse},
        raise_on_error=False,
    )


def _contract(result: dg.ExecuteInProcessResult, entity: str) -> dg.AssetCheckEvaluation:
    (check,) = [
        e for e in result.get_asset_check_evaluations()
        if e.check_name == CORE_CONTRACT and e.asset_key.path[-1] == entity
    ]
    return check


def test_attributed_tables_are_validated_in_the_warehouse(tmp_path, warehouse_url, no_pandas_validation):
    wh = Warehouse(warehouse_url)
    _load(wh, ["I1", "I2", "I3"])
    result = _materialize(tmp_path, warehouse_url, ["orders", "order_items"])
    assert result.success
    for entity in ("orders", "order_items"):
        assert _contract(result, entity).passed
        materialization = result.asset_materializations_for_node(f"core__{entity}")[0]
        assert materialization.metadata["dagster/row_count"].value == 2
        assert materialization.metadata["rows_orphaned"].value == 1
        assert materialization.metadata["published"].value is True
    items = wh.query(f"SELECT item_id, customer_id FROM {wh.qualified(CORE, 'order_items')} ORDER BY item_id")
    assert items.values.tolist() == [["I1", "C1"], ["I2", "C2"]]
    assert not wh.table_exists(CORE, "order_items__new")


def test_a_broken_contract_keeps_the_previous_table_and_quarantines_the_new_one(
    tmp_path, warehouse_url, no_pandas_validation
):
    wh = Warehouse(warehouse_url)
    _load(wh, ["I1", "I2", "I3"])
    assert _materialize(tmp_path, warehouse_url, ["orders", "order_items"]).success
    # The same line id twice for one source breaks the contract's uniqueness rule.
    _load(wh, ["I1", "I1", "I3"])
    result = _materialize(tmp_path, warehouse_url, ["order_items"])
    check = _contract(result, "order_items")
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    kept = wh.query(f"SELECT item_id FROM {wh.qualified(CORE, 'order_items')} ORDER BY item_id")
    assert kept["item_id"].tolist() == ["I1", "I2"]
    rejected = wh.query(f"SELECT item_id FROM {wh.qualified(QUARANTINE, 'core__order_items__rejected')}")
    assert sorted(rejected["item_id"]) == ["I1", "I1"]
    assert not _leftovers(wh, "order_items")  # neither the new table nor the night's view and side tables
    assert [c.name for c in core_entity_columns("order_items")] == wh.columns(CORE, "order_items")


def _attributed(wh: Warehouse, entity: str) -> list[list]:
    names = [c.name for c in core_entity_columns(entity)]
    frame = wh.query(f"SELECT * FROM {wh.qualified(CORE, entity)}")[names]
    return sorted(frame.astype("string").fillna("<null>").values.tolist())


def _leftovers(wh: Warehouse, entity: str) -> list[str]:
    from crm_pipelines.attribution import change_names
    return [n for n in (f"{entity}__new", *change_names(entity)) if wh.table_exists(CORE, n)]


@pytest.fixture
def any_share(monkeypatch) -> None:
    """The tests' tables are a few rows: every change is a large share of them."""
    monkeypatch.setattr("crm_pipelines.attribution.REWRITE_SHARE", 10.0)


def test_a_published_table_takes_only_the_changed_rows_and_equals_a_rewrite(tmp_path, warehouse_url, any_share):
    from crm_pipelines.attribution import attribute

    wh = Warehouse(warehouse_url)
    _load(wh, ["I1", "I2", "I3"])
    assert _materialize(tmp_path, warehouse_url, ["orders", "order_items"]).success
    # I2 changes its product, I3 (whose order has no customer) is gone, I4 is new; O1 moves to customer
    # K2 (its line I1 follows it), O3 finds no customer still (an orphan again).
    _load(wh, ["I1", "I2", "I3"])
    wh.execute(f"UPDATE {wh.qualified(STAGING, 'orders')} SET source_customer_id = 'K2' WHERE order_id = 'O1'")
    items = wh.qualified(STAGING, "order_items")
    wh.execute(f"UPDATE {items} SET product_id = 'P2' WHERE item_id = 'I2'")
    wh.execute(f"UPDATE {items} SET item_id = 'I4', order_id = 'O2' WHERE item_id = 'I3'")
    result = _materialize(tmp_path, warehouse_url, ["orders", "order_items"])
    assert result.success
    published = {e: _attributed(wh, e) for e in ("orders", "order_items")}
    for entity in ("orders", "order_items"):
        metadata = result.asset_materializations_for_node(f"core__{entity}")[0].metadata
        assert metadata["published"].value is True
        if wh.dialect == "duckdb":
            assert (metadata["rows_written"].value, metadata["rows_replaced"].value) == (
                (1, 1) if entity == "orders" else (3, 2)
            )
        else:  # PostgreSQL rewrites the table
            assert "rows_written" not in metadata
        assert not _leftovers(wh, entity)
        # The same rows as attributing the staged rows afresh.
        wh.drop_table(CORE, entity)
        attribute(wh, config_from_dict({"sources": SOURCES}, tmp_path / "crm.yaml"), entity, entity)
        assert published[entity] == _attributed(wh, entity)
    assert [r[:2] for r in published["order_items"]] == [["C2", "shop"], ["C2", "shop"], ["C2", "shop"]]


def test_a_night_without_changes_writes_no_row(tmp_path, duckdb_url, any_share):
    wh = Warehouse(duckdb_url)
    _load(wh, ["I1", "I2", "I3"])
    assert _materialize(tmp_path, duckdb_url, ["orders", "order_items"]).success
    before = _attributed(wh, "order_items")
    result = _materialize(tmp_path, duckdb_url, ["orders", "order_items"])
    metadata = result.asset_materializations_for_node("core__order_items")[0].metadata
    assert (metadata["rows_written"].value, metadata["rows_replaced"].value) == (0, 0)
    assert metadata["rows_orphaned"].value == 1 and metadata["reconciles"].value is True
    assert _attributed(wh, "order_items") == before
    assert not _leftovers(wh, "order_items")


def test_a_published_table_the_change_cannot_trust_is_rewritten(tmp_path, duckdb_url, any_share):
    """Duplicate rows in the published table (which one hash matches once) or a column of another
    type: the table is written whole, as a first night's."""
    wh = Warehouse(duckdb_url)
    _load(wh, ["I1", "I2", "I3"])
    assert _materialize(tmp_path, duckdb_url, ["orders", "order_items"]).success
    expected = _attributed(wh, "order_items")
    table = wh.qualified(CORE, "order_items")
    wh.execute(f"INSERT INTO {table} SELECT * FROM {table} WHERE item_id = 'I1'")
    result = _materialize(tmp_path, duckdb_url, ["order_items"])
    assert "rows_written" not in result.asset_materializations_for_node("core__order_items")[0].metadata
    assert _attributed(wh, "order_items") == expected
    wh.execute(f"ALTER TABLE {table} ALTER quantity TYPE DOUBLE")
    result = _materialize(tmp_path, duckdb_url, ["order_items"])
    assert "rows_written" not in result.asset_materializations_for_node("core__order_items")[0].metadata
    assert wh.column_types(CORE, "order_items")["quantity"] == "BIGINT"
    assert _attributed(wh, "order_items") == expected and not _leftovers(wh, "order_items")


def test_a_change_of_many_rows_is_written_as_a_whole_table(tmp_path, duckdb_url, monkeypatch):
    wh = Warehouse(duckdb_url)
    _load(wh, ["I1", "I2", "I3"])
    assert _materialize(tmp_path, duckdb_url, ["orders", "order_items"]).success
    wh.execute(f"UPDATE {wh.qualified(STAGING, 'order_items')} SET product_id = 'P2' WHERE item_id = 'I2'")
    # I2's old and new version are two rows of the comparison: half of the two published rows changed.
    monkeypatch.setattr("crm_pipelines.attribution.REWRITE_SHARE", 0.4)
    metadata = _materialize(tmp_path, duckdb_url, ["order_items"]).asset_materializations_for_node(
        "core__order_items"
    )[0].metadata
    assert "rows_written" not in metadata
    monkeypatch.setattr("crm_pipelines.attribution.REWRITE_SHARE", 0.5)
    wh.execute(f"UPDATE {wh.qualified(STAGING, 'order_items')} SET product_id = 'P3' WHERE item_id = 'I2'")
    metadata = _materialize(tmp_path, duckdb_url, ["order_items"]).asset_materializations_for_node(
        "core__order_items"
    )[0].metadata
    assert (metadata["rows_written"].value, metadata["rows_replaced"].value) == (1, 1)
    assert [r[4] for r in _attributed(wh, "order_items")] == ["P1", "P3"]
    assert not _leftovers(wh, "order_items")


_KILLED_AFTER_THE_CHANGE = """
import json, os, signal, sys
from pathlib import Path
import crm_pipelines.attribution as attribution
from crm_pipelines.config import config_from_dict
from crm_pipelines.warehouse import Warehouse
url, sources, config_path = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
attribution.REWRITE_SHARE = 10.0  # the test's tables are a few rows: every change is a large share
result = attribution.attribute(
    Warehouse(url), config_from_dict({"sources": sources}, config_path), "order_items", "order_items__new",
    published="order_items",
)
assert result.published == "order_items", "the night did not take the change path"
os.kill(os.getpid(), signal.SIGKILL)  # after the night's change was written, before it was published
"""


def test_a_run_killed_before_publishing_its_change_keeps_the_table_and_the_next_run_clears_it(
    tmp_path, duckdb_url, any_share
):
    import json
    import signal
    import subprocess
    import sys

    from crm_pipelines.warehouse import dispose_engines

    wh = Warehouse(duckdb_url)
    _load(wh, ["I1", "I2", "I3"])
    assert _materialize(tmp_path, duckdb_url, ["orders", "order_items"]).success
    yesterday = _attributed(wh, "order_items")
    wh.execute(f"UPDATE {wh.qualified(STAGING, 'order_items')} SET product_id = 'P2' WHERE item_id = 'I2'")
    dispose_engines()  # DuckDB lets one process at a time open the file
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_THE_CHANGE, duckdb_url, json.dumps(SOURCES), str(tmp_path / "crm.yaml")],
        capture_output=True, text=True, timeout=300,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    wh = Warehouse(duckdb_url)
    assert _leftovers(wh, "order_items")  # the killed night's side tables are there ...
    assert _attributed(wh, "order_items") == yesterday  # ... and the published table is untouched
    result = _materialize(tmp_path, duckdb_url, ["order_items"])
    metadata = result.asset_materializations_for_node("core__order_items")[0].metadata
    assert result.success and (metadata["rows_written"].value, metadata["rows_replaced"].value) == (1, 1)
    assert [r[4] for r in _attributed(wh, "order_items")] == ["P1", "P2"]
    assert not _leftovers(wh, "order_items")
