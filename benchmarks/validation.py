"""Seconds and memory that the contracts take: in the warehouse (how runs validate) and, for reference,
by Great Expectations on pandas frames (how runs validated before).

    .venv/bin/python benchmarks/validation.py [--customers 100000] [--seed 0]

``--sql-rows N`` (default 10,000,000) validates a staged orders table of N rows in the warehouse
(``crm_pipelines.checks.sql``: aggregates, nothing read into Python), on a scratch DuckDB file or on
``--sql-url`` (e.g. PostgreSQL at 1,000,000 rows), and prints seconds and the validating process's
peak memory; on PostgreSQL it then runs the same suite through Great Expectations' own SQL data
source for comparison. ``--sql-only`` skips the rest. Run it under ``flock /tmp/crm-heavy.lock``.

Then clean staging frames (customers: 2.5 source records per person; orders: 10 per person; order
items: 2.5 per order; typed the way staging types them) are validated against their staging suites
twice: as a run does it (the frame written to a scratch DuckDB warehouse under a temporary name, the
suite compiled to SQL there) and by Great Expectations on the frame; seconds per table and in total,
plus what ``import great_expectations`` costs in a fresh interpreter (a run no longer pays it).

Then, unless ``--skip-nightly``, the end-to-end figures the targets are about: ``benchmarks/nightly.py``
runs ``crm_nightly`` on demo sources for the same number of people and prints what validation adds
to the run's wall time (target: at most 15%) and how long loading the Dagster definitions takes
(target: at most 2 s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crm_pipelines.checks.gx import validate
from crm_pipelines.checks.rules import SuiteSpec
from crm_pipelines.checks.sql import validate_in_warehouse
from crm_pipelines.checks.suites import staging_suite
from crm_pipelines.schema import ENTITIES
from crm_pipelines.warehouse import Warehouse, dispose_engines

AS_OF_END = dt.datetime(2025, 6, 30, 23, 59, 59, tzinfo=dt.UTC)
CURRENCIES = ("EUR", "USD", "CHF", "GBP")
START = pd.Timestamp("2020-01-01", tz="UTC")
SPAN_SECONDS = int((pd.Timestamp(AS_OF_END) - START).total_seconds())


def _ids(prefix: str, n: int) -> pd.Series:
    return (prefix + pd.Series(np.arange(n)).astype("str")).astype("str")


def _pick(rng: np.random.Generator, values: tuple[str, ...] | list[str], n: int) -> pd.Series:
    return pd.Series(np.asarray(values, dtype=object)[rng.integers(0, len(values), n)], dtype="str")


def _times(rng: np.random.Generator, n: int) -> pd.Series:
    seconds = rng.integers(0, SPAN_SECONDS, n)
    return pd.Series(START + pd.to_timedelta(seconds, unit="s")).astype("datetime64[us, UTC]")


def _sources(rng: np.random.Generator, n: int) -> pd.Series:
    return _pick(rng, ("crm", "shop", "support", "newsletter"), n)


def staged_customers(rng: np.random.Generator, n: int) -> pd.DataFrame:
    ids = _ids("c", n)
    digits = pd.Series(rng.integers(10_000_000, 999_999_999, n)).astype("str")
    phone = ("+49" + digits).where(rng.random(n) < 0.7)
    birth = pd.Series(pd.Timestamp("1940-01-01") + pd.to_timedelta(rng.integers(0, 25_000, n), unit="D"))
    created = _times(rng, n)
    frame = pd.DataFrame({
        "source": _sources(rng, n),
        "source_record_id": ids,
        "first_name": _pick(rng, ("Anna", "Ben", "Clara", "Jörg", "Zoë"), n),
        "last_name": _pick(rng, ("Müller", "Schmidt", "van der Berg", "Nguyen"), n),
        "email": ("user" + ids + "@" + _pick(rng, ("web.de", "gmx.de"), n)).where(rng.random(n) < 0.9),
        "phone": phone.astype("str"),
        "date_of_birth": birth.dt.date.where(rng.random(n) < 0.6),
        "gender": _pick(rng, ("female", "male", "other", "unknown"), n),
        "address_line1": "Hauptstraße " + pd.Series(rng.integers(1, 200, n)).astype("str"),
        "address_line2": pd.Series([None] * n, dtype="str"),
        "city": _pick(rng, ("Berlin", "Wien", "Zürich", "London"), n),
        "postcode": pd.Series(rng.integers(10_000, 99_999, n)).astype("str"),
        "region": pd.Series([None] * n, dtype="str"),
        "country": _pick(rng, ("DE", "AT", "CH", "GB"), n),
        "company": pd.Series([None] * n, dtype="str"),
        "created_at": created,
        "updated_at": created,
        "record_kind": _pick(rng, ("record",), n),
    })
    return frame


def staged_orders(rng: np.random.Generator, n: int, customers: int) -> pd.DataFrame:
    status = _pick(rng, ("completed",) * 8 + ("cancelled", "refunded"), n)
    refund = (status == "refunded").to_numpy()
    amount = rng.uniform(5, 500, n).round(2)
    amount[refund] *= -1
    currency = _pick(rng, CURRENCIES, n)
    return pd.DataFrame({
        "source": _pick(rng, ("shop", "billing"), n),
        "order_id": _ids("o", n),
        "source_customer_id": "c" + pd.Series(rng.integers(0, customers, n)).astype("str"),
        "ordered_at": _times(rng, n),
        "status": status,
        "currency": currency,
        "total_amount": amount,
        "total_amount_reporting": amount * 0.95,
        "is_refund": pd.array(refund, dtype="boolean"),
    })


def staged_items(rng: np.random.Generator, n: int, orders: int) -> pd.DataFrame:
    order_ids = "o" + pd.Series(rng.integers(0, orders, n)).astype("str")
    products = "p" + pd.Series(rng.integers(0, 5_000, n)).astype("str")
    quantity = rng.integers(1, 5, n)
    price = rng.uniform(1, 200, n).round(2)
    return pd.DataFrame({
        "source": _pick(rng, ("shop",), n),
        "item_id": _ids("i", n),
        "order_id": order_ids,
        "product_id": products,
        "product_name": "Product " + products,
        "category": _pick(rng, ("books", "garden", "toys", "food"), n),
        "quantity": pd.array(quantity, dtype="Int64"),
        "unit_price": price,
        "line_amount": quantity * price,
    })


def import_seconds() -> float:
    """``import great_expectations`` in a fresh interpreter, analytics off."""
    code = (
        "import os, time; os.environ['GX_ANALYTICS_ENABLED'] = 'false'; t = time.perf_counter(); "
        "import great_expectations; print(time.perf_counter() - t)"
    )
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                text=True).stdout.strip())


def million_by_ten(orders: pd.DataFrame) -> tuple[int, int, float]:
    """One validation of 1M order rows by 10 expectations of the staging suite."""
    frame = orders.iloc[:1_000_000]
    names = ("columns_present", "record_id_not_null", "unique_record_id", "no_future_ordered_at",
             "status_allowed", "currency_known", "refund_flag_set", "non_refund_total_not_negative",
             "refunded_orders_flagged", "type_total_amount")
    full = staging_suite("orders", as_of_end=AS_OF_END, currencies=CURRENCIES)
    suite = SuiteSpec("orders_10", full.check_name, tuple(full.rule(n) for n in names))
    outcome = validate(frame, suite)
    assert outcome.success, outcome.to_markdown()
    return len(frame), len(suite.rules), outcome.seconds


def sql_validation(rows: int, url: str | None) -> None:
    """Build the table in the warehouse, then validate it there, each step in a fresh process."""
    helper = Path(__file__).with_name("_sql_validation.py")
    with tempfile.TemporaryDirectory(prefix="crm-validation-") as scratch:
        url = url or f"duckdb:///{Path(scratch) / 'warehouse.duckdb'}"
        started = time.perf_counter()
        subprocess.run([sys.executable, str(helper), "build", url, str(rows)], check=True)
        print(f"built {rows:,} staged order rows in the warehouse in {time.perf_counter() - started:.1f} s")
        done = subprocess.run([sys.executable, str(helper), "validate", url], check=True, capture_output=True,
                              text=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"validated in SQL: {figures['rows']:,} rows x {figures['rules']} rules in {figures['seconds']:.2f} s, "
              f"peak memory of the validating process {figures['peak_rss_mb']:,} MB")
        print(f"  failed rules (planted offences): {figures['failed']}; samples: {figures['samples']}")
        if url.startswith("postgresql"):
            done = subprocess.run([sys.executable, str(helper), "gx", url], check=True, capture_output=True, text=True)
            gx = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"Great Expectations' SQL data source, same table: {gx['rules']} rules (no type rules: the "
                  f"project's type expectation has no SQL form) in {gx['seconds']:.2f} s after "
                  f"{gx['import_and_setup_seconds']:.2f} s of import and set-up, peak memory {gx['peak_rss_mb']:,} MB; "
                  f"failed: {gx['failed']}{'; errors: ' + str(gx['errors']) if gx['errors'] else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000, help="unified customers (people)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-nightly", action="store_true", help="only the per-table figures")
    parser.add_argument("--sql-rows", type=int, default=10_000_000, help="rows validated in the warehouse")
    parser.add_argument("--sql-url", help="warehouse for the SQL validation (default: a scratch DuckDB file)")
    parser.add_argument("--sql-only", action="store_true", help="only the validation in the warehouse")
    args = parser.parse_args()
    print(f"== validation in the warehouse ({args.sql_url or 'DuckDB'})")
    sql_validation(args.sql_rows, args.sql_url)
    if args.sql_only:
        return
    print("\n== Great Expectations on frames")
    rng = np.random.default_rng(args.seed)
    people = args.customers

    print(f"import great_expectations (fresh interpreter): {import_seconds():.2f} s")
    started = time.perf_counter()
    frames = {"customers": staged_customers(rng, int(people * 2.5))}
    frames["orders"] = staged_orders(rng, people * 10, int(people * 2.5))
    frames["order_items"] = staged_items(rng, int(len(frames["orders"]) * 2.5), len(frames["orders"]))
    print(f"built frames in {time.perf_counter() - started:.1f} s")

    # The first validation in a process also imports Great Expectations and sets up its context.
    warm = time.perf_counter()
    validate(frames["orders"].iloc[:10], staging_suite("orders", as_of_end=AS_OF_END, currencies=CURRENCIES))
    print(f"first validation in the process (import + context): {time.perf_counter() - warm:.2f} s")

    total = {"write": 0.0, "sql": 0.0, "gx": 0.0}
    print(f"{'table':<24}{'rows':>12}{'rules':>8}{'write s':>9}{'SQL s':>8}{'GX s':>8}")
    with tempfile.TemporaryDirectory(prefix="crm-validation-") as scratch:
        wh = Warehouse(f"duckdb:///{Path(scratch) / 'warehouse.duckdb'}")
        for entity, frame in frames.items():
            columns = ENTITIES[entity].staged_columns
            assert list(frame.columns) == [c.name for c in columns]
            suite = staging_suite(entity, as_of_end=AS_OF_END, currencies=CURRENCIES)
            started = time.perf_counter()
            wh.write_table(frame, "staging", f"{entity}__contract", column_types={c.name: c.dtype for c in columns})
            written = time.perf_counter() - started
            in_sql = validate_in_warehouse(wh, "staging", f"{entity}__contract", suite)
            outcome = validate(frame, suite)
            for name, result in (("SQL", in_sql), ("Great Expectations", outcome)):
                if not result.success:
                    raise SystemExit(f"synthetic {entity} should be clean ({name}):\n{result.to_markdown()}")
            total["write"] += written
            total["sql"] += in_sql.seconds
            total["gx"] += outcome.seconds
            print(f"{'staging.' + entity:<24}{len(frame):>12,}{len(suite.rules):>8}{written:>9.2f}"
                  f"{in_sql.seconds:>8.2f}{outcome.seconds:>8.2f}")
        dispose_engines()
    rows = sum(len(f) for f in frames.values())
    print(f"{'total':<24}{rows:>12,}{'':>8}{total['write']:>9.2f}{total['sql']:>8.2f}{total['gx']:>8.2f}")

    rows, rules, seconds = million_by_ten(frames["orders"])
    print(f"{rows:,} rows x {rules} expectations: {seconds:.2f} s")

    if not args.skip_nightly:
        del frames
        print("\n== end to end: crm_nightly with validation (benchmarks/nightly.py)")
        nightly = Path(__file__).with_name("nightly.py")
        subprocess.run([sys.executable, str(nightly), "--people", str(people)], check=True)


if __name__ == "__main__":
    main()
