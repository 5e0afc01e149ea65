"""A staging or core version that breaks its contract, judged in the warehouse, is never published.

The contracts are made stricter than the data (a rule no order meets), the rest runs for real: the
rows are validated under their temporary name in the warehouse, the version is moved to
``quarantine`` from there, the published table stays as it was, and no temporary table is left.
"""

from __future__ import annotations

import dagster as dg
import pytest
from test_staging_incremental import CONTACTS, ITEMS, ORDERS, config_for

import crm_pipelines.assets.core as core_assets
import crm_pipelines.assets.staging as staging_assets
from crm_pipelines.checks.rules import in_set
from crm_pipelines.checks.suites import CORE_CONTRACT, STAGING_CONTRACT, core_entity_suite, staging_suite
from crm_pipelines.definitions import build_definitions
from crm_pipelines.schema import AUDIT, CORE, QUARANTINE, STAGING
from crm_pipelines.staging_batches import STAGED_BATCHES
from crm_pipelines.warehouse import Warehouse, dispose_engines

ONLY_CANCELLED = in_set("status", ["cancelled"], name="only_cancelled_orders")


def run(config, *groups: str) -> dg.ExecuteInProcessResult:
    job = dg.define_asset_job("layers", selection=dg.AssetSelection.groups(*groups),
                              executor_def=dg.in_process_executor)
    defs = dg.Definitions.merge(build_definitions(config), dg.Definitions(jobs=[job]))
    return defs.resolve_job_def("layers").execute_in_process(raise_on_error=False)


def contract(result: dg.ExecuteInProcessResult, table: str, check: str) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations()
                if e.asset_key.path[-1] == table and e.check_name == check)


@pytest.fixture
def config(tmp_path, warehouse_url):
    (tmp_path / "contacts.csv").write_text(CONTACTS)
    (tmp_path / "orders.csv").write_text(ORDERS)
    (tmp_path / "items.csv").write_text(ITEMS)
    yield config_for(tmp_path, warehouse_url)
    dispose_engines()


def test_staged_rows_that_break_the_contract_are_not_staged(config, monkeypatch):
    def stricter(entity, **kwargs):
        suite = staging_suite(entity, **kwargs)
        return suite.with_rules(ONLY_CANCELLED) if entity == "orders" else suite

    monkeypatch.setattr(staging_assets, "staging_suite", stricter)
    result = run(config, "raw", "staging")

    assert not result.success
    check = contract(result, "orders", STAGING_CONTRACT)
    assert not check.passed
    [failed] = check.metadata["failed_rules"].value
    assert failed["rule"] == "only_cancelled_orders" and failed["unexpected_count"] == 2
    assert failed["sample"] == ["completed"]
    wh = Warehouse(config.warehouse_url)
    assert wh.row_count(QUARANTINE, "staging__orders__rejected") == 2
    assert not wh.table_exists(STAGING, "orders__contract")
    assert not wh.table_exists(STAGING, "orders") or wh.row_count(STAGING, "orders") == 0
    batches = wh.read_table(AUDIT, STAGED_BATCHES)
    assert "orders" not in set(batches["entity"])  # retried next run

    monkeypatch.undo()
    assert run(config, "raw", "staging").success
    assert wh.row_count(STAGING, "orders") == 2


def test_a_core_table_that_breaks_its_contract_keeps_the_published_one(config, monkeypatch):
    assert run(config, "raw", "staging", "core").success
    wh = Warehouse(config.warehouse_url)
    published = wh.read_table(CORE, "orders").sort_values("order_id").reset_index(drop=True)

    def stricter(entity, **kwargs):
        suite = core_entity_suite(entity, **kwargs)
        return suite.with_rules(ONLY_CANCELLED) if entity == "orders" else suite

    monkeypatch.setattr(core_assets, "core_entity_suite", stricter)
    result = run(config, "core")

    assert not result.success
    check = contract(result, "orders", CORE_CONTRACT)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["rows_validated"].value == len(published)
    assert "only_cancelled_orders" in open(check.metadata["report"].value, encoding="utf-8").read()
    again = wh.read_table(CORE, "orders").sort_values("order_id").reset_index(drop=True)
    assert again.equals(published)
    assert wh.row_count(QUARANTINE, "core__orders__rejected") == len(published)
    assert not wh.table_exists(CORE, "orders__new")
    # Nothing downstream ran on the refused version.
    assert not any(m.asset_key.path[-1] == "order_items" for m in result.get_asset_materialization_events())
