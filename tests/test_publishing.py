"""A table is swapped in only when its blocking checks pass; otherwise yesterday's stays and the run fails."""

import dagster as dg
import pandas as pd

from crm_pipelines.assets.publishing import publish_checked, rejected_table_name, replace_from_staged
from crm_pipelines.assets.validation import validate_table, validated_check_specs
from crm_pipelines.checks.suites import MART_CONTRACT, mart_suite
from crm_pipelines.config import config_from_dict
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.schema import AUDIT, MARTS, QUARANTINE
from crm_pipelines.warehouse import Warehouse, col

KEY = dg.AssetKey([MARTS, "scores"])


def scores_asset(frame: pd.DataFrame, config) -> dg.AssetsDefinition:
    @dg.asset(key=KEY, check_specs=validated_check_specs(KEY, MART_CONTRACT))
    def scores(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
        wh = warehouse.get_warehouse()
        suite = mart_suite(
            "marts.scores",
            columns=["customer_id", "churn_probability"],
            ranges={"churn_probability": (0, 1)},
            unique_keys=[["customer_id"]],
            not_null_columns=["customer_id"],
        )
        checks = validate_table(context, config, wh, KEY, "marts.scores", frame, suite)
        return publish_checked(context, wh, MARTS, "scores", frame, checks, staged=True)

    @dg.asset(deps=[KEY])
    def downstream() -> None:
        return None

    return [scores, downstream]


def test_failed_blocking_check_keeps_the_published_table(tmp_path, warehouse_url):
    config = config_from_dict(
        {
            "warehouse": {"url": warehouse_url},
            "checks": {"reports_dir": str(tmp_path / "runs")},
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
    resources = {"warehouse": WarehouseResource(url=config.warehouse_url)}
    good = pd.DataFrame({"customer_id": ["a", "b", "c"], "churn_probability": [0.1, 0.5, 0.9]})
    first = dg.materialize(scores_asset(good, config), resources=resources)
    assert first.success

    bad = pd.DataFrame({"customer_id": ["a", "a", "d"], "churn_probability": [0.2, 1.7, 0.3]})
    second = dg.materialize(scores_asset(bad, config), resources=resources, raise_on_error=False)
    assert not second.success
    evaluations = second.get_asset_check_evaluations()
    contract = next(e for e in evaluations if e.check_name == MART_CONTRACT)
    assert not contract.passed and contract.severity == dg.AssetCheckSeverity.ERROR
    failed = {r["rule"] for r in contract.metadata["failed_rules"].value}
    assert any("churn_probability" in r for r in failed) and any("unique" in r for r in failed), failed
    # downstream did not run on the bad version
    assert not any(m.asset_key == dg.AssetKey("downstream") for m in second.get_asset_materialization_events())

    wh = Warehouse(config.warehouse_url)
    published = wh.read_table(MARTS, "scores").sort_values("customer_id")
    assert published["customer_id"].tolist() == ["a", "b", "c"]
    rejected = wh.read_table(QUARANTINE, rejected_table_name(MARTS, "scores"))
    assert sorted(rejected["customer_id"]) == ["a", "a", "d"]
    # The version was validated in the warehouse under its temporary name, and moved from there.
    assert not wh.table_exists(MARTS, "scores__new")
    assert contract.metadata["rows_validated"].value == 3
    # Stats for drift are kept only for versions that were published.
    assert wh.row_count(AUDIT, "table_stats") == 1
    report = contract.metadata["report"].value
    assert "churn_probability" in open(report, encoding="utf-8").read()


def test_rows_replaced_from_a_staged_copy_equal_a_delete_and_append(warehouse_url):
    wh = Warehouse(warehouse_url)
    history = pd.DataFrame(
        {"month_index": [1, 1, 2, 2], "customer_id": ["a", "b", "a", "b"], "value": [1.0, 2.0, 3.0, 4.0]}
    )
    # The month replaced by the staged copy, written in another column order: columns are matched by name.
    staged = pd.DataFrame({"value": [5.0, None, 7.0], "customer_id": ["a", "c", "d"], "month_index": [2, 2, 2]})
    wh.write_table(history, MARTS, "history", mode="replace")
    wh.write_table(staged, MARTS, "history__new", mode="replace")

    assert replace_from_staged(wh, MARTS, "history__new", "history", col("month_index").in_([2]))

    got = wh.read_table(MARTS, "history").sort_values(["month_index", "customer_id"], ignore_index=True)
    expected = pd.concat([history[history["month_index"] == 1], staged[list(history.columns)]], ignore_index=True)
    pd.testing.assert_frame_equal(got, expected.sort_values(["month_index", "customer_id"], ignore_index=True),
                                  check_dtype=False)  # fmt: skip
    assert not wh.table_exists(MARTS, "history__new")
    # Columns that differ from the table's, or no table yet: nothing is done, the caller writes the rows.
    wh.write_table(staged.assign(extra=1), MARTS, "history__new", mode="replace")
    assert not replace_from_staged(wh, MARTS, "history__new", "history", col("month_index").in_([2]))
    assert not replace_from_staged(wh, MARTS, "history__new", "missing", col("month_index").in_([2]))
    assert wh.row_count(MARTS, "history") == 5
