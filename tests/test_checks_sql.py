"""Suites compiled to SQL give what Great Expectations gives on the same data, on DuckDB and PostgreSQL.

Each expectation kind the suites use is run twice on one table: in the warehouse
(:func:`crm_pipelines.checks.sql.validate_in_warehouse`) and by Great Expectations on the table read
back as a pandas frame (:func:`crm_pipelines.checks.gx.validate`). Pass or fail, the unexpected count
and the unexpected percentage must agree, rule by rule.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from crm_pipelines.checks.drift import table_stats
from crm_pipelines.checks.gx import validate
from crm_pipelines.checks.rules import (
    Rule,
    SuiteSpec,
    between,
    columns_present,
    in_set,
    matches,
    not_null,
    row_count_at_least,
    typed,
    unique,
)
from crm_pipelines.checks.sql import SUPPORTED_EXPECTATIONS, table_stats_in_warehouse, validate_in_warehouse
from crm_pipelines.checks.suites import EMAIL_REGEX
from crm_pipelines.warehouse import Warehouse

SCHEMA = "checks_sql"
TYPES = {
    "id": "string",
    "source": "string",
    "email": "string",
    "status": "string",
    "amount": "float",
    "quantity": "integer",
    "is_refund": "boolean",
    "opened_at": "timestamp",
    "closed_at": "timestamp",
    "born_on": "date",
}
CUTOFF = pd.Timestamp("2025-06-30 23:59:59", tz="UTC")


def sample_frame() -> pd.DataFrame:
    """Twelve rows with at least one offence of each kind, and nulls where rules must skip them."""
    ts = lambda s: pd.Timestamp(s, tz="UTC") if s else pd.NaT  # noqa: E731
    rows = [
        # id,  source, email,             status,      amount, qty, is_refund, opened,        closed,        born
        ("1", "a", "ann@example.com", "completed", 10.0, 1, False, "2025-01-01", "2025-01-02", "1980-01-01"),
        ("2", "a", "bob@example", "completed", -5.0, 2, False, "2025-01-01", "2024-12-31", "1850-05-05"),
        ("2", "a", "BOB@EXAMPLE.COM", "refunded", -5.0, None, True, "2025-02-01", None, None),
        ("3", "b", None, "pending", None, 3, False, "2025-07-15", "2025-07-16", "2030-01-01"),
        ("3", "c", "c@d.org", "mystery", 7.5, 4, None, None, None, "1990-02-02"),
        (None, "c", "e@f.org", "cancelled", 0.0, 5, False, "2025-03-03", "2025-03-03", None),
        (None, "c", "e@f.org", "refunded", 2.0, 6, False, "2025-03-04", "2025-03-05", "2000-01-01"),
        ("4", None, " x@y.org", "completed", 1e6, 7, False, "2025-03-05", None, "2001-01-01"),
        ("5", "a", "x@y.org", None, 3.0, 8, True, "2025-04-01", "2025-04-01", "1999-12-31"),
        ("6", "a", "q@r.net", "completed", 4.0, 9, False, "2025-04-02", "2025-04-03", "1970-01-01"),
        ("7", "b", "s@t.net", "completed", 5.0, 10, False, "2025-04-03", "2025-04-01", "1960-06-06"),
        ("8", "b", "u@v.net", "completed", 6.0, 11, False, "2025-04-04", "2025-04-05", "1950-01-01"),
    ]
    frame = pd.DataFrame(rows, columns=list(TYPES))
    for c in ("opened_at", "closed_at"):
        frame[c] = frame[c].map(ts).astype("datetime64[us, UTC]")
    frame["born_on"] = pd.to_datetime(frame["born_on"]).dt.date
    # A naive timestamp column (no canonical type): an aware bound is compared in UTC.
    frame["seen_local"] = frame["closed_at"].dt.tz_convert(None) + pd.Timedelta(days=80)
    frame["quantity"] = frame["quantity"].astype("Int64")
    frame["is_refund"] = frame["is_refund"].astype("boolean")
    return frame


def every_kind(table: str) -> SuiteSpec:
    rules = [
        columns_present([*TYPES, "not_there"], table),
        row_count_at_least(1),
        Rule("row_count_is_99", "ExpectTableRowCountToEqual", {"value": 99}, "warn", "99 rows."),
        not_null("id"),
        not_null("email", severity="warn"),
        unique(["id"]),
        unique(["source", "id"], name="unique_source_id"),
        unique(["quantity"], name="unique_quantity"),
        in_set("status", ["completed", "cancelled", "refunded", "pending"]),
        in_set("source", ["a", "b", "c"], name="source_known"),
        matches("email", EMAIL_REGEX, "an email address"),
        between("amount", 0, 1000),
        between("quantity", 2, None, name="quantity_min"),
        between("opened_at", max_value=CUTOFF, name="no_future_opened_at"),
        between("born_on", pd.Timestamp("1900-01-01"), CUTOFF.tz_localize(None), name="born_plausible"),
        between("seen_local", max_value=CUTOFF, name="seen_local_not_future"),
        Rule("non_refund_amount", "ExpectColumnValuesToBeBetween", {"column": "amount", "min_value": 0}, "error",
             "Non-refunds are not negative.", row_condition=("is_refund", "==", False)),
        Rule("refunded_flagged", "ExpectColumnValuesToBeInSet", {"column": "is_refund", "value_set": [True]},
             "error", "Refunded orders are refunds.", row_condition=("status", "==", "refunded")),
        Rule("closed_after_opened", "ExpectColumnPairValuesAToBeGreaterThanB",
             {"column_A": "closed_at", "column_B": "opened_at", "or_equal": True,
              "ignore_row_if": "either_value_is_missing"}, "error", "Closed after opened."),
        *(typed(c, t) for c, t in TYPES.items()),
        Rule("type_amount_as_integer", "ExpectColumnValuesToHaveCanonicalType",
             {"column": "amount", "canonical_type": "integer"}, "warn", "amount holds integers."),
        Rule("type_email_as_date", "ExpectColumnValuesToHaveCanonicalType",
             {"column": "email", "canonical_type": "date"}, "warn", "email holds dates."),
    ]
    return SuiteSpec(table, "staging_contract", tuple(rules), "every expectation kind")


def test_every_expectation_kind_the_suites_use_has_a_sql_form():
    assert {r.expectation for r in every_kind("t").rules} == set(SUPPORTED_EXPECTATIONS)


def _plain(value) -> str:
    """A sample value's text, numbers as floats and dates as dates: the frame GX validates holds an integer
    column with nulls as floats, and dates as midnight datetimes (gx._prepare)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(float(value))
    return str(value).removesuffix("T00:00:00")


def _compare(wh: Warehouse, frame: pd.DataFrame, table: str) -> None:
    wh.write_table(frame, SCHEMA, table, column_types=TYPES)
    suite = every_kind(f"{SCHEMA}.{table}")
    in_sql = validate_in_warehouse(wh, SCHEMA, table, suite)
    by_gx = validate(wh.read_table(SCHEMA, table), suite)
    assert in_sql.row_count == by_gx.row_count == len(frame)
    for sql_result, gx_result in zip(in_sql.results, by_gx.results, strict=True):
        name = sql_result.rule
        assert sql_result.success == gx_result.success, (name, sql_result, gx_result)
        if gx_result.unexpected_count is not None:
            assert sql_result.unexpected_count == gx_result.unexpected_count, (name, sql_result, gx_result)
        gx_percent, sql_percent = gx_result.unexpected_percent, sql_result.unexpected_percent
        if gx_percent is not None and not math.isnan(gx_percent):
            assert sql_percent == pytest.approx(gx_percent), (name, sql_result, gx_result)
        if gx_result.sample and not sql_result.expectation.startswith("ExpectColumnPair"):
            assert sorted(map(_plain, sql_result.sample)) == sorted(map(_plain, gx_result.sample)), name
    assert in_sql.blocking_failures and [r.rule for r in in_sql.blocking_failures] == [
        r.rule for r in by_gx.blocking_failures
    ]


def test_sql_and_great_expectations_agree_rule_by_rule(warehouse):
    _compare(warehouse, sample_frame(), "every_kind")


def test_they_agree_on_an_empty_table(warehouse):
    _compare(warehouse, sample_frame().iloc[:0], "empty")


def test_a_clean_table_passes(warehouse):
    frame = sample_frame().iloc[[0, 9, 11]]
    warehouse.write_table(frame, SCHEMA, "clean", column_types=TYPES)
    suite = SuiteSpec(f"{SCHEMA}.clean", "staging_contract", tuple(
        r for r in every_kind("x").rules
        if r.name not in ("columns_present", "row_count_is_99", "quantity_min", "type_amount_as_integer",
                          "type_email_as_date")
    ))
    outcome = validate_in_warehouse(warehouse, SCHEMA, "clean", suite)
    assert outcome.success, outcome.to_markdown()


def test_samples_are_offending_values_and_missing_columns_are_named(warehouse):
    warehouse.write_table(sample_frame(), SCHEMA, "samples", column_types=TYPES)
    suite = every_kind(f"{SCHEMA}.samples").with_rules(not_null("nowhere", name="absent_column"))
    outcome = validate_in_warehouse(warehouse, SCHEMA, "samples", suite, sample_size=2)
    assert outcome.result("columns_present").sample == ["not_there"]
    assert sorted(outcome.result("unique_id").sample) == ["2", "3"]
    assert outcome.result("status_allowed").sample == ["mystery"]
    assert len(outcome.result("email_format").sample) == 2  # LIMIT: two of the three offenders
    pair = outcome.result("closed_after_opened").sample
    assert {"closed_at", "opened_at"} == set(pair[0])
    assert outcome.result("type_email_as_date").observed in ("VARCHAR", "TEXT")
    absent = outcome.result("absent_column")
    assert not absent.success and "nowhere" in absent.error


def test_drift_stats_in_sql_equal_the_frame_stats(warehouse):
    frame = sample_frame()
    warehouse.write_table(frame, SCHEMA, "stats", column_types=TYPES)
    assert table_stats_in_warehouse(warehouse, SCHEMA, "stats") == table_stats(frame)
    assert validate_in_warehouse(warehouse, SCHEMA, "stats", every_kind("x")).table_stats == table_stats(frame)


def test_a_missing_table_is_a_clear_error(warehouse):
    with pytest.raises(ValueError, match="checks_sql.nothing_here.*does not exist"):
        validate_in_warehouse(warehouse, SCHEMA, "nothing_here", every_kind("x"))


def _identity_map_frame() -> pd.DataFrame:
    """An identity map with one offence of each kind its contract knows, and nulls it must skip."""
    return pd.DataFrame(
        {
            "source": ["crm", "crm", "shop", "shop", "email"],
            "source_record_id": ["1", "1", "7", "8", "x@y.org"],
            "customer_id": ["C1", "C1", None, "C2", "C3"],
            "match_method": ["seed", "email", "probabilistic", "telepathy", "singleton"],
            "match_probability": [1.0, 1.0, 1.5, 0.97, float("nan")],
            "cluster_flag": [None, None, "ambiguous", None, None],
        }
    )


def test_the_identity_map_suite_in_sql_agrees_with_great_expectations(warehouse):
    from crm_pipelines.checks.suites import identity_map_suite

    frame = _identity_map_frame()
    suite = identity_map_suite(staged_customer_count=6)
    warehouse.write_table(frame, SCHEMA, "identity_map")
    in_sql = validate_in_warehouse(warehouse, SCHEMA, "identity_map", suite)
    stats = table_stats_in_warehouse(warehouse, SCHEMA, "identity_map")
    by_gx = validate(frame, suite)
    assert in_sql.row_count == by_gx.row_count == len(frame)
    for sql_result, gx_result in zip(in_sql.results, by_gx.results, strict=True):
        assert sql_result.success == gx_result.success, (sql_result, gx_result)
        if gx_result.unexpected_count is not None:
            assert sql_result.unexpected_count == gx_result.unexpected_count, (sql_result, gx_result)
    failed = {r.rule for r in in_sql.blocking_failures}
    assert {"record_mapped_once", "every_record_mapped", "customer_id_not_null"} <= failed
    assert stats == table_stats(frame)
    assert in_sql.table_stats == stats  # counted on the validation's own scan
    warehouse.write_table(frame.iloc[[0, 4]], SCHEMA, "identity_map_clean")
    passing = validate_in_warehouse(warehouse, SCHEMA, "identity_map_clean", identity_map_suite(2))
    assert passing.success, passing.to_markdown()
