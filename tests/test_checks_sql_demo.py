"""Every contract of a nightly run, compiled to SQL, judges the demo data as Great Expectations does.

``crm_nightly`` runs once per warehouse on a small demo. Each time a contract is validated in the
warehouse (staging rows, core entities, identity tables, facts, marts), the table it validated is
also read back and validated by Great Expectations on pandas, as it was validated before; and again
on a damaged copy (repeated rows, a row of nulls, rows of out-of-range values), so the comparison
covers failing rules too. Pass or fail and the unexpected counts must agree rule by rule. Great
Expectations runs only here: the run itself never imports it.
"""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass

import pytest
from test_nightly import END, demo_config

import crm_pipelines.assets.staging as staging_assets
import crm_pipelines.assets.validation as validation
from crm_pipelines.checks.gx import SuiteOutcome, validate
from crm_pipelines.checks.rules import SuiteSpec
from crm_pipelines.checks.sql import column_types
from crm_pipelines.definitions import build_definitions
from crm_pipelines.demo.generator import generate
from crm_pipelines.warehouse import Warehouse, dispose_engines

# Per information_schema type: values no contract allows (too small, too large), as SQL literals.
_TEXT = ("'zz not a value'", "'ZZ'")
_BAD_VALUES = {
    "VARCHAR": _TEXT, "TEXT": _TEXT, "CHARACTER VARYING": _TEXT,
    "BIGINT": ("-1000000", "1000000000"), "INTEGER": ("-1000", "1000000"),
    "DOUBLE": ("-1000000", "1000000000"), "DOUBLE PRECISION": ("-1000000", "1000000000"),
    "FLOAT": ("-1000000", "1000000000"), "REAL": ("-1000000", "1000000000"),
    "DECIMAL": ("-1000000", "1000000000"), "NUMERIC": ("-1000000", "1000000000"),
    "BOOLEAN": ("false", "true"),
    "DATE": ("CAST('1800-01-01' AS DATE)", "CAST('2999-01-01' AS DATE)"),
    "TIMESTAMP WITH TIME ZONE": ("CAST('1800-01-01 00:00:00+00' AS TIMESTAMP WITH TIME ZONE)",
                                 "CAST('2999-01-01 00:00:00+00' AS TIMESTAMP WITH TIME ZONE)"),
    "TIMESTAMP": ("CAST('1800-01-01 00:00:00' AS TIMESTAMP)", "CAST('2999-01-01 00:00:00' AS TIMESTAMP)"),
}


@dataclass
class Comparison:
    table: str
    damaged: bool
    in_sql: SuiteOutcome
    by_gx: SuiteOutcome


def damaged_copy(wh: Warehouse, schema: str, table: str) -> str:
    """``schema.table`` plus three repeated rows, a row of nulls and two rows of out-of-range values."""
    name = f"{table}__damaged"
    types = column_types(wh, schema, table)
    source, target = wh.qualified(schema, table), wh.qualified(schema, name)
    columns = ", ".join(wh.quote(c) for c in types)
    wh.drop_table(schema, name)
    wh.execute(f"CREATE TABLE {target} AS SELECT * FROM {source}")
    wh.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {source} LIMIT 3")
    wh.execute(f"INSERT INTO {target} ({columns}) VALUES ({', '.join('NULL' for _ in types)})")
    for side in (0, 1):
        values = ", ".join(_BAD_VALUES.get(kind, ("NULL", "NULL"))[side] for kind in types.values())
        wh.execute(f"INSERT INTO {target} ({columns}) VALUES ({values})")
    return name


def recording_validator(comparisons: list[Comparison]):
    real = validation.validate_rows

    def validate_rows(wh: Warehouse, schema: str, table: str, suite: SuiteSpec) -> SuiteOutcome:
        outcome = real(wh, schema, table, suite)
        comparisons.append(Comparison(suite.name, False, outcome, validate(wh.read_table(schema, table), suite)))
        broken = damaged_copy(wh, schema, table)
        comparisons.append(Comparison(suite.name, True, real(wh, schema, broken, suite),
                                      validate(wh.read_table(schema, broken), suite)))
        wh.drop_table(schema, broken)
        return outcome

    return validate_rows


@pytest.fixture(scope="module")
def nightly_comparisons(module_warehouse: Warehouse, tmp_path_factory) -> list[Comparison]:
    root = tmp_path_factory.mktemp("checks_demo")
    generate(root / "data" / "demo", people=250, seed=11, end_date=END)
    url = module_warehouse.url
    comparisons: list[Comparison] = []
    patch = pytest.MonkeyPatch()
    spy = recording_validator(comparisons)
    patch.setattr(validation, "validate_rows", spy)
    patch.setattr(staging_assets, "validate_rows", spy)
    patch.delenv("CRM_WAREHOUSE_URL", raising=False)
    try:
        defs = build_definitions(demo_config(root, url))
        result = defs.resolve_job_def("crm_nightly").execute_in_process(raise_on_error=False)
    finally:
        patch.undo()
        dispose_engines()
    assert result.success
    # Every temporary version was swapped in, or dropped: none is left behind.
    names = module_warehouse.query(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema NOT IN ('information_schema', 'pg_catalog')"
    )
    leftovers = [f"{a}.{b}" for a, b in zip(names["table_schema"], names["table_name"], strict=True)
                 if b.endswith(("__new", "__contract", "__damaged"))]
    assert not leftovers, leftovers
    return comparisons


def test_every_layer_was_validated_in_the_warehouse(nightly_comparisons):
    tables = {c.table for c in nightly_comparisons}
    for expected in ("staging.customers", "staging.orders", "core.customer_identity_map", "core.unified_customers",
                     "core.orders", "core.order_items", "core.purchases", "marts.customer_360",
                     "marts.customer_segments", "marts.churn_risk", "marts.campaign_assignments"):
        assert expected in tables, sorted(tables)


def test_sql_and_great_expectations_agree_on_every_suite(nightly_comparisons):
    disagreements = []
    damaged_failures = 0
    for c in nightly_comparisons:
        assert c.in_sql.row_count == c.by_gx.row_count, c.table
        for sql_result, gx_result in zip(c.in_sql.results, c.by_gx.results, strict=True):
            same = sql_result.success == gx_result.success
            if gx_result.unexpected_count is not None:
                same = same and sql_result.unexpected_count == gx_result.unexpected_count
            gx_pct, sql_pct = gx_result.unexpected_percent, sql_result.unexpected_percent
            if gx_pct is not None and not math.isnan(gx_pct):
                same = same and sql_pct == pytest.approx(gx_pct)
            if not same:
                disagreements.append((c.table, c.damaged, sql_result, gx_result))
        if c.damaged:
            damaged_failures += len(c.in_sql.blocking_failures)
        else:
            assert not c.in_sql.blocking_failures, (c.table, c.in_sql.to_markdown())
    assert not disagreements, disagreements
    assert damaged_failures > 3 * len({c.table for c in nightly_comparisons})  # the damage broke rules


def test_a_run_never_imports_great_expectations(tmp_path):
    """The contracts need no Great Expectations at run time (it costs seconds to import)."""
    code = (
        "import sys\n"
        "import crm_pipelines.assets.validation, crm_pipelines.assets.staging, crm_pipelines.assets.marts\n"
        "import crm_pipelines.checks.sql, crm_pipelines.checks.report\n"
        "assert 'great_expectations' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
