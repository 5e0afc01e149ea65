"""Validation in the warehouse (crm_pipelines.checks.sql) of a big staged orders table: seconds and peak memory.

    .venv/bin/python benchmarks/_sql_validation.py build URL ROWS    # the table, generated in the warehouse
    .venv/bin/python benchmarks/_sql_validation.py validate URL      # one validation; prints a JSON line
    .venv/bin/python benchmarks/_sql_validation.py gx URL            # the same suite by Great Expectations'
                                                                     # own SQL data source (PostgreSQL)

``benchmarks/validation.py --sql-rows`` runs both, each in a fresh process, so the peak memory printed
is the validating process's own (DuckDB's buffers included, since DuckDB runs in that process). The
table has every column of ``staging.orders`` and a few offences (one duplicated id per 100,000 rows,
one unknown currency per 1,000,000), so the failed rules fetch their samples as they would in a run.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import sys
import time

from crm_pipelines.checks.sql import validate_in_warehouse
from crm_pipelines.checks.suites import staging_suite
from crm_pipelines.warehouse import Warehouse

SCHEMA = "bench_validation"
TABLE = "orders"
AS_OF_END = dt.datetime(2025, 6, 30, 23, 59, 59, tzinfo=dt.UTC)
CURRENCIES = ("EUR", "USD", "CHF", "GBP")

_SELECT = """
SELECT
  CASE i % 4 WHEN 0 THEN 'crm' WHEN 1 THEN 'shop' WHEN 2 THEN 'support' ELSE 'newsletter' END AS source,
  'o' || CAST(CASE WHEN i % 100000 = 7 THEN i - 4 ELSE i END AS VARCHAR) AS order_id,
  'c' || CAST(i % {customers} AS VARCHAR) AS source_customer_id,
  CAST('2020-01-01 00:00:00+00' AS TIMESTAMP WITH TIME ZONE) + (i % 170000000) * INTERVAL '1 second' AS ordered_at,
  CASE i % 10 WHEN 0 THEN 'refunded' WHEN 1 THEN 'cancelled' ELSE 'completed' END AS status,
  CASE WHEN i % 1000000 = 3 THEN 'XYZ' WHEN i % 4 = 0 THEN 'EUR' WHEN i % 4 = 1 THEN 'USD'
       WHEN i % 4 = 2 THEN 'CHF' ELSE 'GBP' END AS currency,
  CAST(CASE WHEN i % 10 = 0 THEN -(i % 500) ELSE i % 500 + 0.5 END AS DOUBLE PRECISION) AS total_amount,
  CAST(CASE WHEN i % 10 = 0 THEN -(i % 500) ELSE i % 500 + 0.5 END AS DOUBLE PRECISION) AS total_amount_reporting,
  i % 10 = 0 AS is_refund
FROM generate_series(1, {rows}) AS g(i)
"""


def build(url: str, rows: int) -> None:
    wh = Warehouse(url)
    wh.ensure_schemas(SCHEMA)
    wh.drop_table(SCHEMA, TABLE)
    select = _SELECT.format(rows=int(rows), customers=max(1, int(rows) // 10))
    wh.execute(f"CREATE TABLE {wh.qualified(SCHEMA, TABLE)} AS {select}")
    if wh.dialect == "postgresql":
        wh.execute(f"ANALYZE {wh.qualified(SCHEMA, TABLE)}")


def validate(url: str) -> dict:
    wh = Warehouse(url)
    suite = staging_suite("orders", as_of_end=AS_OF_END, currencies=CURRENCIES)
    started = time.perf_counter()
    outcome = validate_in_warehouse(wh, SCHEMA, TABLE, suite)
    seconds = time.perf_counter() - started
    return {
        "rows": outcome.row_count,
        "rules": len(outcome.results),
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "failed": {r.rule: r.unexpected_count for r in outcome.failures},
        "samples": {r.rule: r.sample[:3] for r in outcome.failures},
    }


def validate_with_gx_sql(url: str) -> dict:
    """The same suite run by Great Expectations' SQL data source on the table (for comparison on
    PostgreSQL; GX 1.24 fails on DuckDB). The canonical-type rules are left out: the project's type
    expectation has a pandas implementation only."""
    import os

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    started = time.perf_counter()
    import great_expectations as gx

    from crm_pipelines.checks.gx import build_gx_suite

    imported = time.perf_counter() - started
    spec = staging_suite("orders", as_of_end=AS_OF_END, currencies=CURRENCIES)
    rules = [r for r in spec.rules if r.expectation != "ExpectColumnValuesToHaveCanonicalType"]
    suite = build_gx_suite(spec, rules)
    context = gx.get_context(mode="ephemeral")
    source = context.data_sources.add_sql("warehouse", connection_string=Warehouse(url).engine.url.render_as_string(
        hide_password=False))
    batch = source.add_table_asset("orders", table_name=TABLE, schema_name=SCHEMA).add_batch_definition_whole_table(
        "whole").get_batch()
    begun = time.perf_counter()
    result = batch.validate(suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": 10})
    seconds = time.perf_counter() - begun
    failed = {r.expectation_config.meta["rule"]: (r.result or {}).get("unexpected_count")
              for r in result.results if not r.success}
    errors = [r.exception_info.get("exception_message") for r in result.results
              if (r.exception_info or {}).get("raised_exception")]
    return {
        "rules": len(rules), "seconds": round(seconds, 2), "import_and_setup_seconds": round(imported, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "failed": failed, "errors": errors[:3],
    }


if __name__ == "__main__":
    command, url, *rest = sys.argv[1:]
    if command == "build":
        build(url, int(rest[0]))
    elif command == "gx":
        print(json.dumps(validate_with_gx_sql(url), default=str))
    else:
        print(json.dumps(validate(url)))
