"""The attributed core tables (orders, order lines, ...) are written and validated inside the warehouse.

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
    assert not wh.table_exists(CORE, "order_items__new")
    assert [c.name for c in core_entity_columns("order_items")] == wh.columns(CORE, "order_items")
