"""The asset that ends the nightly job sums up the run from its own events and the warehouse."""


import dagster as dg
import pandas as pd

from crm_pipelines.assets.run_summary import RUN_SUMMARY_KEY, build_run_summary_asset
from crm_pipelines.assets.validation import run_folder
from crm_pipelines.checks.drift import drift_findings
from crm_pipelines.checks.report import render_html_report
from crm_pipelines.checks.summary import RunSummary
from crm_pipelines.config import config_from_dict
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.warehouse import Warehouse

MART = dg.AssetKey(["marts", "crm_kpis"])


def _config(tmp_path, warehouse_url):
    return config_from_dict(
        {
            "warehouse": {"url": warehouse_url},
            "checks": {"reports_dir": str(tmp_path / "runs")},
            "sources": [{"name": "crm", "connector": {"type": "csv"},
                         "entities": {"customers": {"path": "c.csv", "columns": {"source_record_id": "id"}}}}],
        },
        tmp_path / "crm.yaml",
    )


def test_summary_names_tables_quarantine_warnings_and_reports(tmp_path, warehouse_url) -> None:
    config = _config(tmp_path, warehouse_url)
    wh = Warehouse(warehouse_url)

    @dg.asset(key=MART, check_specs=[dg.AssetCheckSpec("drift", asset=MART)])
    def crm_kpis(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        run_id = context.run.run_id
        quarantine = pd.DataFrame({"run_id": [run_id, run_id, "older-run"], "reason": ["a", "b", "c"]})
        wh.write_table(quarantine, "quarantine", "rejected_rows", mode="replace")
        findings = drift_findings({"row_count": 5, "null_rates": {}}, {"row_count": 50, "null_rates": {}}, 30, 0.1)
        render_html_report([], run_folder(config, run_id) / "marts.crm_kpis.html", drift={"marts.crm_kpis": findings})
        return dg.MaterializeResult(
            metadata={"dagster/table_name": "marts.crm_kpis", "dagster/row_count": 5},
            check_results=[dg.AssetCheckResult(check_name="drift", passed=False, severity=dg.AssetCheckSeverity.WARN)],
        )

    summary_asset = build_run_summary_asset(config, "duckdb", [MART])
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [crm_kpis, summary_asset], resources={"warehouse": WarehouseResource(url=warehouse_url)}, instance=instance
    )
    assert result.success
    meta = result.asset_materializations_for_node(summary_asset.op.name)[0].metadata
    assert meta["tables_published"].value == 1
    assert meta["rows_quarantined"].value == 2  # this run's rows only
    assert meta["checks_warned"].value == 1
    index = run_folder(config, result.run_id) / "index.html"
    assert meta["report_index"].value == str(index) and index.exists()
    logged = [e.user_message for e in instance.all_logs(result.run_id) if e.step_key == summary_asset.op.name]
    assert any("marts/crm_kpis:drift" in m and "rows quarantined in this run: 2" in m for m in logged), logged
    assert RUN_SUMMARY_KEY.path == ["audit", "run_summary"]


def test_summary_text_is_short_and_complete(tmp_path) -> None:
    summary = RunSummary("r1", {"marts.customer_360": 1200, "core.orders": 40_000}, 3, [], tmp_path / "index.html")
    text = summary.to_text()
    assert text.splitlines()[0] == "run r1: published 2 tables (1 marts, 1 core)"
    assert "40,000 rows" in text and "rows quarantined in this run: 3" in text
    assert "checks that warned: none" in text and str(tmp_path / "index.html") in text
    assert "| `core.orders` | 40,000 |" in summary.to_markdown()
