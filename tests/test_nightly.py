"""The whole Definitions load, and crm_nightly runs end to end on demo data, on DuckDB and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml
from cycle_checks import assert_cycle_marts

from crm_pipelines.bi_file import mart_tables
from crm_pipelines.checks.suites import DRIFT_CHECK
from crm_pipelines.config import PROJECT_ROOT, config_from_dict
from crm_pipelines.definitions import build_definitions
from crm_pipelines.demo.generator import generate
from crm_pipelines.explain import explain_from_warehouse
from crm_pipelines.schema import AUDIT, CORE, MARTS, QUARANTINE, RAW, STAGING, raw_table_name
from crm_pipelines.warehouse import Warehouse

END = dt.date(2026, 6, 30)
MARTS_PER_CUSTOMER = ("customer_360", "customer_segments", "customer_lifetime_value")
OTHER_MARTS = (
    "crm_kpis",
    "cross_sell_recommendations",
    "marketing_audiences",
    "retention_cohorts",
    "retention_summary",
    "churn_risk",
)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo_project")
    generate(root / "data" / "demo", people=400, seed=7, end_date=END)
    return root


def demo_config(root: Path, warehouse_url: str, as_of: dt.date = END):
    data = yaml.safe_load((PROJECT_ROOT / "crm.yaml").read_text())
    data["warehouse"] = {"url": warehouse_url}
    data["as_of"] = as_of.isoformat()
    return config_from_dict(data, root / "crm.yaml")


def test_definitions_module_loads():
    import crm_pipelines.definitions as module

    dg.Definitions.validate_loadable(module.defs)
    schedule = module.defs.get_schedule_def("crm_nightly_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.execution_timezone
    job = module.defs.resolve_job_def("crm_nightly")
    assert job is not None


def run_nightly(config) -> dg.ExecuteInProcessResult:
    defs = build_definitions(config)
    return defs.resolve_job_def("crm_nightly").execute_in_process(raise_on_error=False)


# What the first nightly publishes, model history included, on every warehouse.
FIRST_NIGHTLY_MARTS = {
    *MARTS_PER_CUSTOMER,
    *OTHER_MARTS,
    "clv_model_params",
    "clv_model_diagnostics",
    "churn_model_metrics",
    # Campaigns, portfolio, migrations and goals (crm.yaml declares the demo campaigns and goals).
    "campaign_assignments",
    "campaign_performance",
    "customer_segment_history",
    "customer_portfolio",
    "segment_migrations",
    "crm_goals",
}


@pytest.mark.slow
def test_nightly_job_end_to_end(demo_dir, warehouse_url):
    config = demo_config(demo_dir, warehouse_url)
    result = run_nightly(config)
    failures = [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert result.success, failures
    wh = Warehouse(config.warehouse_url)
    # The first run leaves no asset unmaterialized (the models it fitted inline are stored), and DuckDB
    # and PostgreSQL hold the same marts; on DuckDB they are also in the BI file.
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == set(build_definitions(config).resolve_all_asset_keys())
    assert set(mart_tables(wh)) == FIRST_NIGHTLY_MARTS
    if wh.dialect == "duckdb":
        with duckdb.connect(str(config.resolve_path(config.bi.marts_file)), read_only=True) as bi:
            views = bi.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")
            assert {r[0] for r in views.fetchall()} == FIRST_NIGHTLY_MARTS
    for source in config.sources:
        for entity in source.entities:
            assert wh.row_count(RAW, raw_table_name(source.name, entity)) > 0, (source.name, entity)
    for entity in (
        "customers",
        "orders",
        "order_items",
        "support_tickets",
        "subscriptions",
        "campaign_events",
        "survey_responses",
    ):
        assert wh.row_count(STAGING, entity) > 0, entity
    # Every raw row is staged, quarantined or superseded, and the audit says so.
    recon = wh.read_table(AUDIT, "reconciliation")
    assert len(recon) and recon["reconciles"].all()
    assert (recon["rows_in"] == recon["rows_out"] + recon["rows_quarantined"] + recon["rows_superseded"]).all()
    quarantined = wh.read_table(QUARANTINE, "rejected_rows")
    assert len(quarantined) > 0 and quarantined["reason"].notna().all()

    # The unified view: every staged customer record mapped once, fewer customers than records.
    staged_customers = wh.row_count(STAGING, "customers")
    identity_map = wh.read_table(CORE, "customer_identity_map")
    assert len(identity_map) == staged_customers
    assert not identity_map.duplicated(["source", "source_record_id"]).any()
    unified = wh.read_table(CORE, "unified_customers")
    assert 0 < len(unified) < staged_customers and unified["customer_id"].is_unique
    assert wh.row_count(CORE, "orders") > 0
    # Any customer can be explained: its records, the links that joined them, and their evidence.
    merged = identity_map.groupby("customer_id").size().idxmax()
    explanation = explain_from_warehouse(wh, merged)
    assert (
        explanation.startswith(f"# Customer {merged}") and "## Links" in explanation and "match weight" in explanation
    )
    # Every mart BI reads is there, one row per customer where promised.
    for mart in MARTS_PER_CUSTOMER:
        frame = wh.read_table(MARTS, mart, columns=["customer_id"])
        assert len(frame) == len(unified) and frame["customer_id"].is_unique, mart
    for mart in OTHER_MARTS:
        assert wh.row_count(MARTS, mart) > 0, mart
    cycle = assert_cycle_marts(wh, demo_dir / "data" / "demo")

    # A second run on the same day adds no duplicates to raw.
    before = {(s.name, t): wh.row_count(RAW, raw_table_name(s.name, t)) for s in config.sources for t in s.entities}
    ids_before = identity_map.set_index(["source", "source_record_id"])["customer_id"]
    rerun = run_nightly(config)
    assert rerun.success
    # The segment history's drift compares this month's snapshot with the first run's, not with the
    # thirteen months that run backfilled.
    history_drift = [
        e for e in rerun.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey([MARTS, "customer_segment_history"]) and e.check_name == DRIFT_CHECK
    ]
    assert [e.passed for e in history_drift] == [True], [e.description for e in history_drift]
    ids_after = wh.read_table(CORE, "customer_identity_map").set_index(["source", "source_record_id"])["customer_id"]
    assert ids_after.sort_index().equals(ids_before.sort_index()), "customer ids changed between identical runs"
    after = {(s.name, t): wh.row_count(RAW, raw_table_name(s.name, t)) for s in config.sources for t in s.entities}
    assert before == after
    # Nobody changes campaign group, and the month's snapshot is replaced, not appended.
    pd.testing.assert_frame_equal(wh.read_table(MARTS, "campaign_assignments"), cycle["assignments"])
    assert wh.row_count(MARTS, "customer_segment_history") == len(cycle["history"])
    assert_bi_safe_marts(wh)


def assert_bi_safe_marts(wh: Warehouse) -> None:
    """As a BI tool sees the published marts: one type per column name, created_at as the 360's time
    axis, and on PostgreSQL a primary key and comments on every mart (after two publishes)."""
    columns = wh.query(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = '{MARTS}' ORDER BY table_name, ordinal_position"
    )
    columns = columns[~columns["table_name"].str.endswith("__new")]
    types = columns.groupby("column_name")["data_type"].nunique()
    assert (types == 1).all(), columns[columns["column_name"].isin(types[types > 1].index)]
    c360 = columns.loc[columns["table_name"] == "customer_360", ["column_name", "data_type"]]
    temporal = c360.loc[c360["data_type"].str.lower().str.match("date|timestamp"), "column_name"]
    assert temporal.iloc[0] == "created_at"
    if wh.dialect != "postgresql":
        return
    keyed = wh.query(
        "SELECT table_name FROM information_schema.table_constraints "
        f"WHERE table_schema = '{MARTS}' AND constraint_type = 'PRIMARY KEY'"
    )
    assert set(columns["table_name"]) <= set(keyed["table_name"])
    uncommented = wh.query(
        "SELECT c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
        f"WHERE n.nspname = '{MARTS}' AND c.relkind = 'r' AND col_description(c.oid, a.attnum) IS NULL"
    )
    assert uncommented.empty, uncommented


def test_copy_of_demo_config_is_self_contained(demo_dir, tmp_path):
    # The bundled crm.yaml resolves every path against its own folder.
    shutil.copytree(demo_dir / "data", tmp_path / "data")
    config = demo_config(tmp_path, f"duckdb:///{tmp_path / 'wh.duckdb'}")
    for source in config.sources:
        for entity in source.entities.values():
            if entity.path:
                assert config.resolve_path(entity.path).exists(), entity.path


@pytest.mark.slow
def test_weekly_refit_stores_models_that_hold_up_on_demo_data(demo_dir, duckdb_url):
    config = demo_config(demo_dir, duckdb_url)
    defs = build_definitions(config)
    assert defs.resolve_job_def("crm_nightly").execute_in_process().success
    assert defs.resolve_job_def("crm_weekly_refit").execute_in_process().success
    wh = Warehouse(config.warehouse_url)
    params = wh.read_table(MARTS, "clv_model_params")
    assert {"r", "alpha", "a", "b", "p", "q", "gamma"} <= set(params["parameter"])
    metrics = wh.read_table(MARTS, "churn_model_metrics")
    assert metrics["roc_auc"].iloc[-1] >= 0.75, metrics[["roc_auc"]]
