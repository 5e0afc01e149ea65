"""The facts built in the warehouse are validated there: their contract checks never read the table into pandas.

The facts assets run with the pandas paths (``Warehouse.read_table`` and the Great Expectations frame
validation) made to fail, so a pass proves the SQL path did the work. A broken contract keeps the
previous table, puts the new version in ``quarantine`` and fails the blocking check.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
from facts_support import core_frames_with_edges, load_core

from crm_pipelines.assets.facts import build_facts_assets
from crm_pipelines.checks.suites import CORE_CONTRACT
from crm_pipelines.config import WAREHOUSE_URL_ENV, config_from_dict
from crm_pipelines.facts.build import FACT_TABLES
from crm_pipelines.resources.run_window import RunWindowResource
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import CORE, QUARANTINE
from crm_pipelines.warehouse import Warehouse

AS_OF = "2025-06-30"
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
        },
    }
]


@pytest.fixture(autouse=True)
def _own_warehouse(monkeypatch) -> None:
    monkeypatch.delenv(WAREHOUSE_URL_ENV, raising=False)


def _materialize(tmp_path, warehouse_url: str) -> dg.ExecuteInProcessResult:
    config = config_from_dict(
        {"warehouse": {"url": warehouse_url}, "as_of": AS_OF, "sources": SOURCES}, tmp_path / "crm.yaml"
    )
    warehouse = WarehouseResource(url=warehouse_url)
    return dg.materialize(
        build_facts_assets(config, warehouse.kind),
        resources={"warehouse": warehouse, "run_window": RunWindowResource(as_of=AS_OF)},
        raise_on_error=False,
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        e.asset_key.path[-1]: e
        for e in result.get_asset_check_evaluations()
        if e.check_name == CORE_CONTRACT
    }


def test_facts_contracts_run_in_the_warehouse(tmp_path, warehouse_url, no_pandas_validation):
    wh = Warehouse(warehouse_url)
    load_core(wh, core_frames_with_edges())
    result = _materialize(tmp_path, warehouse_url)
    assert result.success
    checks = _checks(result)
    assert set(checks) == set(FACT_TABLES)
    for table, check in checks.items():
        assert check.passed, (table, check.metadata["summary"])
        assert check.metadata["rows_validated"].value == wh.row_count(CORE, table) > 0


def test_a_broken_facts_table_is_quarantined_not_published(tmp_path, duckdb_url, no_pandas_validation):
    wh = Warehouse(duckdb_url)
    frames = core_frames_with_edges()
    load_core(wh, frames)
    assert _materialize(tmp_path, duckdb_url).success
    published = wh.row_count(CORE, "purchases")
    # The same completed order delivered twice: core.purchases would hold it twice.
    orders = frames["orders"]
    twice = orders[orders["status"].str.strip().str.lower() == "completed"].head(1)
    frames["orders"] = pd.concat([orders, twice], ignore_index=True)
    load_core(wh, frames)

    result = _materialize(tmp_path, duckdb_url)

    assert not result.success
    check = _checks(result)["purchases"]
    assert not check.passed
    [failed] = check.metadata["failed_rules"].value
    assert failed["rule"] == "unique_key" and failed["unexpected_count"] == 2
    assert wh.row_count(CORE, "purchases") == published  # the previous version stays
    assert wh.row_count(QUARANTINE, "core__purchases__rejected") == published + 1
    assert not wh.table_exists(CORE, "purchases__new")
