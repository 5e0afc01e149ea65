"""Contracts (suites), Great Expectations validation, drift and the HTML report.

Great Expectations is imported once per session (module-scoped ``gx_ready`` fixture); every other
validation reuses its ephemeral context.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from crm_pipelines.checks.drift import drift_findings, table_stats
from crm_pipelines.checks.gx import validate
from crm_pipelines.checks.report import render_html_report
from crm_pipelines.checks.rules import Rule, SuiteSpec
from crm_pipelines.checks.suites import (
    CORE_CONTRACT,
    MART_CONTRACT,
    PROBABILITY,
    STAGING_CONTRACT,
    core_entity_suite,
    identity_map_suite,
    mart_suite,
    staging_suite,
    unified_customers_suite,
)
from crm_pipelines.schema import ENTITIES

CUTOFF = dt.datetime(2024, 6, 30, 23, 59, 59, tzinfo=dt.UTC)
CURRENCIES = ("EUR", "USD", "GBP")


def _ts(*values: str | None) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True, format="ISO8601")).astype("datetime64[us, UTC]")


def _str(*values: str | None) -> pd.Series:
    return pd.Series(list(values), dtype="str")


# Valid values for three rows, by column; the rest comes from the column's canonical type.
_VALID: dict[str, pd.Series] = {
    "email": _str("ada@example.com", "bob@shop.de", None),
    "requester_email": _str("ada@example.com", None, "carl@mail.org"),
    "phone": _str("+4930123456", None, "+447911123456"),
    "gender": _str("female", "male", "unknown"),
    "country": _str("DE", "GB", None),
    "record_kind": _str("record", "record", "referenced"),
    "status": _str("completed", "refunded", "pending"),
    "currency": _str("EUR", "USD", "EUR"),
    "total_amount": pd.Series([19.99, -5.0, 0.0]),
    "total_amount_reporting": pd.Series([19.99, -4.6, 0.0]),
    "is_refund": pd.array([False, True, False], dtype="boolean"),
    "consent_status": _str("subscribed", "unsubscribed", "pending"),
    "event_type": _str("sent", "open", "click"),
    "nps_score": pd.array([10, 0, None], dtype="Int64"),
    "satisfaction_score": pd.Series([5.0, 1.0, np.nan]),
    "quantity": pd.array([1, 3, 0], dtype="Int64"),
    "date_of_birth": pd.Series([dt.date(1985, 4, 1), dt.date(1900, 1, 1), None], dtype=object),
    "opened_at": _ts("2024-01-01T10:00", "2024-02-01T10:00", "2024-03-01T10:00"),
    "first_response_at": _ts("2024-01-01T11:00", None, "2024-03-01T10:00"),
    "resolved_at": _ts("2024-01-02T10:00", None, None),
}
_BY_TYPE = {
    "string": lambda name: _str(f"{name}-1", f"{name}-2", f"{name}-3"),
    "timestamp": lambda name: _ts("2024-01-01T08:00", "2024-05-31T23:00", "2024-06-30T23:59:59"),
    "date": lambda name: pd.Series([dt.date(2000, 1, 1)] * 3, dtype=object),
    "float": lambda name: pd.Series([1.5, 2.0, 0.0]),
    "integer": lambda name: pd.array([1, 2, 3], dtype="Int64"),
    "boolean": lambda name: pd.array([True, False, None], dtype="boolean"),
}


def clean_staging_frame(entity: str) -> pd.DataFrame:
    """Three valid rows of ``staging.<entity>``, typed the way staging types them."""
    columns: dict[str, Any] = {}
    for c in ENTITIES[entity].staged_columns:
        columns[c.name] = _VALID[c.name] if c.name in _VALID else _BY_TYPE[c.dtype](c.name)
    if entity == "support_tickets":
        columns["status"] = _str("resolved", "open", "closed")
    frame = pd.DataFrame(columns)
    frame["source"] = _str("shop", "shop", "crm")
    return frame


def _orders_suite() -> SuiteSpec:
    return staging_suite("orders", as_of_end=CUTOFF, currencies=CURRENCIES)


def _failed(outcome) -> set[str]:
    return {r.rule for r in outcome.failures}


@pytest.fixture(scope="module")
def gx_ready() -> None:
    """Pay Great Expectations' import and context set-up once."""
    validate(pd.DataFrame({"a": [1]}), SuiteSpec("warm_up", "none", (Rule(
        "a_present", "ExpectTableColumnsToMatchSet", {"column_set": ["a"]}, "error", "a is there"),)))


# -- suites as data -------------------------------------------------------------------------------
def test_suites_are_plain_data_and_name_their_rules() -> None:
    suite = _orders_suite()
    assert suite.check_name == STAGING_CONTRACT
    assert {"columns_present", "unique_record_id", "no_future_ordered_at", "currency_known",
            "non_refund_total_not_negative", "refunded_orders_flagged", "type_total_amount"} <= {
        r.name for r in suite.rules}
    assert suite.rule("currency_known").kwargs["value_set"] == ["EUR", "GBP", "USD"]
    assert suite.rule("non_refund_total_not_negative").columns == ("total_amount", "is_refund")
    assert suite.rule("refunded_orders_flagged").row_condition == ("status", "==", "refunded")
    customers = staging_suite("customers", as_of_end=CUTOFF)
    assert customers.rule("phone_e164").kwargs["regex"] == r"^\+[1-9]\d{6,14}$"
    assert customers.rule("email_format").severity == "error"
    with pytest.raises(ValueError, match="unique"):
        SuiteSpec("t", "c", (suite.rules[0], suite.rules[0]))
    with pytest.raises(ValueError, match="severity"):
        Rule("r", "ExpectColumnToExist", {"column": "a"}, "fatal", "")  # type: ignore[arg-type]


def test_a_spec_becomes_a_gx_suite(gx_ready: None) -> None:
    gx_suite = _orders_suite().to_gx_suite()
    assert gx_suite.name == "staging.orders"
    assert len(gx_suite.expectations) == len(_orders_suite().rules)
    assert {e.meta["rule"] for e in gx_suite.expectations} == {r.name for r in _orders_suite().rules}


# -- staging contract -----------------------------------------------------------------------------
@pytest.mark.parametrize("entity", list(ENTITIES))
def test_clean_staging_frames_pass(gx_ready: None, entity: str) -> None:
    suite = staging_suite(entity, as_of_end=CUTOFF, currencies=CURRENCIES)
    outcome = validate(clean_staging_frame(entity), suite)
    assert outcome.success, outcome.to_markdown()
    assert outcome.blocking_failures == []
    assert outcome.row_count == 3


def test_missing_column_is_named_and_rules_reading_it_fail(gx_ready: None) -> None:
    outcome = validate(clean_staging_frame("orders").drop(columns=["currency"]), _orders_suite())
    present = outcome.result("columns_present")
    assert not present.success and present.sample == ["currency"] and present.unexpected_count == 1
    assert _failed(outcome) == {"columns_present", "type_currency", "currency_known"}
    assert "currency" in outcome.result("currency_known").error


def test_wrong_type_shows_the_offending_values(gx_ready: None) -> None:
    frame = clean_staging_frame("orders").assign(total_amount=_str("19.99", "-5", "0"))
    outcome = validate(frame, _orders_suite())
    typed = outcome.result("type_total_amount")
    assert not typed.success and typed.blocking
    assert typed.sample == ["19.99", "-5", "0"] and typed.observed == "str"


def test_canonical_types_accept_every_faithful_spelling(gx_ready: None) -> None:
    rules = tuple(Rule(f"type_{c}", "ExpectColumnValuesToHaveCanonicalType",
                       {"column": c, "canonical_type": t}, "error", "")
                  for c, t in [("i", "integer"), ("f", "float"), ("d", "date"), ("b", "boolean"),
                               ("s", "string"), ("t", "timestamp")])
    suite = SuiteSpec("types", "types", rules)
    faithful = pd.DataFrame({
        "i": [1.0, np.nan, 3.0],  # integers with a null, as Arrow hands them back
        "f": pd.array([1, 2, None], dtype="Int64"),
        "d": pd.to_datetime(["2024-01-01", None, "2024-01-03"]),
        "b": pd.Series([True, None, False], dtype=object),
        "s": pd.Series(["a", None, "c"], dtype=object),
        "t": _ts("2024-01-01", None, "2024-01-03"),
    })
    assert validate(faithful, suite).success
    wrong = pd.DataFrame({
        "i": [1.0, 2.5, 3.0],
        "f": [True, False, True],
        "d": pd.to_datetime(["2024-01-01 13:30", None, "2024-01-03 00:00"]),
        "b": _str("yes", "no", None),
        "s": [1, 2, 3],
        "t": pd.to_datetime(["2024-01-01", None, "2024-01-03"]),  # naive: no time zone
    })
    outcome = validate(wrong, suite)
    assert _failed(outcome) == {r.name for r in rules}
    assert outcome.result("type_i").sample == [2.5]
    assert outcome.result("type_d").sample == ["2024-01-01T13:30:00"]


def test_duplicate_record_id(gx_ready: None) -> None:
    frame = clean_staging_frame("orders")
    frame.loc[2, ["source", "order_id"]] = ["shop", "order_id-1"]
    outcome = validate(frame, _orders_suite())
    assert _failed(outcome) == {"unique_record_id"}
    result = outcome.result("unique_record_id")
    assert result.unexpected_count == 2
    assert result.sample == [{"source": "shop", "order_id": "order_id-1"}]


def test_future_timestamp(gx_ready: None) -> None:
    frame = clean_staging_frame("orders")
    frame["ordered_at"] = _ts("2024-01-01", "2024-07-01T00:00:01", "2024-06-30T23:59:59")
    outcome = validate(frame, _orders_suite())
    assert _failed(outcome) == {"no_future_ordered_at"}
    assert outcome.result("no_future_ordered_at").sample == ["2024-07-01T00:00:01+00:00"]


def test_birth_dates_before_1900_and_in_the_future(gx_ready: None) -> None:
    frame = clean_staging_frame("customers")
    frame["date_of_birth"] = pd.Series([dt.date(1899, 12, 31), dt.date(2030, 1, 1), dt.date(1970, 1, 1)])
    outcome = validate(frame, staging_suite("customers", as_of_end=CUTOFF))
    assert _failed(outcome) == {"date_of_birth_plausible"}
    assert outcome.result("date_of_birth_plausible").sample == ["1899-12-31T00:00:00", "2030-01-01T00:00:00"]
    assert isinstance(frame["date_of_birth"].iloc[0], dt.date)  # the caller's frame is untouched


def test_dates_written_as_text_fail_their_type_and_range_rules(gx_ready: None) -> None:
    frame = clean_staging_frame("customers")
    frame["date_of_birth"] = _str("1985-04-01", None, "1899-01-01")
    outcome = validate(frame, staging_suite("customers", as_of_end=CUTOFF))
    assert _failed(outcome) == {"type_date_of_birth", "date_of_birth_plausible"}
    typed = outcome.result("type_date_of_birth")
    assert typed.observed == "str" and typed.sample == ["1985-04-01", "1899-01-01"]
    assert outcome.result("date_of_birth_plausible").error  # text cannot be compared with a date


def test_malformed_email_and_phone(gx_ready: None) -> None:
    frame = clean_staging_frame("customers")
    frame["email"] = _str("ada@example.com", "bob(at)shop.de", "two words@x.de")
    frame["phone"] = _str("+4930123456", "030 123456", "+012345678")
    outcome = validate(frame, staging_suite("customers", as_of_end=CUTOFF))
    assert _failed(outcome) == {"email_format", "phone_e164"}
    assert outcome.result("email_format").sample == ["bob(at)shop.de", "two words@x.de"]
    assert outcome.result("phone_e164").sample == ["030 123456", "+012345678"]


def test_negative_amount_on_a_completed_order(gx_ready: None) -> None:
    frame = clean_staging_frame("orders")
    frame["total_amount"] = [19.99, -5.0, -12.5]  # row 2 is completed, not a refund
    outcome = validate(frame, _orders_suite())
    assert _failed(outcome) == {"non_refund_total_not_negative"}
    assert outcome.result("non_refund_total_not_negative").sample == [-12.5]


def test_refunded_order_must_be_flagged(gx_ready: None) -> None:
    frame = clean_staging_frame("orders")
    frame["is_refund"] = pd.array([False, False, False], dtype="boolean")
    frame["total_amount"] = [19.99, 5.0, 0.0]
    outcome = validate(frame, _orders_suite())
    assert _failed(outcome) == {"refunded_orders_flagged"}
    assert outcome.result("refunded_orders_flagged").sample == [False]


def test_unknown_currency_and_status(gx_ready: None) -> None:
    frame = clean_staging_frame("orders")
    frame["currency"] = _str("EUR", "XYZ", "eur")
    frame["status"] = _str("completed", "refunded", "shipped")
    outcome = validate(frame, _orders_suite())
    assert _failed(outcome) == {"currency_known", "status_allowed"}
    assert outcome.result("currency_known").sample == ["XYZ", "eur"]
    assert outcome.result("status_allowed").sample == ["shipped"]
    # Without configured currencies, a currency only has to look like an ISO code.
    outcome = validate(frame, staging_suite("orders", as_of_end=CUTOFF))
    assert outcome.result("currency_known").sample == ["eur"]


def test_scores_and_allowed_values_of_other_entities(gx_ready: None) -> None:
    surveys = clean_staging_frame("survey_responses")
    surveys["nps_score"] = pd.array([11, -1, 7], dtype="Int64")
    outcome = validate(surveys, staging_suite("survey_responses", as_of_end=CUTOFF))
    assert _failed(outcome) == {"nps_score_range"}
    assert outcome.result("nps_score_range").sample == [11, -1]

    tickets = clean_staging_frame("support_tickets")
    tickets["satisfaction_score"] = [0.0, 6.0, 3.0]
    tickets["resolved_at"] = _ts("2023-12-31", None, None)
    outcome = validate(tickets, staging_suite("support_tickets", as_of_end=CUTOFF))
    assert _failed(outcome) == {"satisfaction_score_range", "resolved_at_not_before_opened_at"}
    assert outcome.result("resolved_at_not_before_opened_at").sample == [
        ["2023-12-31T00:00:00", "2024-01-01T10:00:00"]]
    assert outcome.result("satisfaction_score_range").sample == [0.0, 6.0]

    events = clean_staging_frame("campaign_events").assign(event_type=_str("sent", "opened", "click"))
    consent = clean_staging_frame("subscriptions").assign(consent_status=_str("yes", "pending", None))
    assert validate(events, staging_suite("campaign_events", as_of_end=CUTOFF)).result(
        "event_type_allowed").sample == ["opened"]
    assert validate(consent, staging_suite("subscriptions", as_of_end=CUTOFF)).result(
        "consent_status_allowed").sample == ["yes"]


# -- core and marts --------------------------------------------------------------------------
def test_identity_map_maps_every_record_once(gx_ready: None) -> None:
    identity = pd.DataFrame({
        "source": _str("shop", "shop", "crm"),
        "source_record_id": _str("1", "2", "1"),
        "customer_id": _str("C1", "C2", "C1"),
        "match_method": _str("seed", "singleton", "email"),
        "match_probability": [1.0, 1.0, 0.98],
    })
    suite = identity_map_suite(staged_customer_count=3)
    assert suite.check_name == CORE_CONTRACT
    assert validate(identity, suite).success
    twice = pd.concat([identity, identity.iloc[[0]]], ignore_index=True)
    outcome = validate(twice, suite)
    assert _failed(outcome) == {"record_mapped_once", "every_record_mapped"}
    assert outcome.result("record_mapped_once").sample == [{"source": "shop", "source_record_id": "1"}]
    assert outcome.result("every_record_mapped").observed == 4


def test_unified_customers_and_orphan_orders(gx_ready: None) -> None:
    from crm_pipelines.schema import UNIFIED_CUSTOMER_COLUMNS, core_entity_columns

    customers = pd.DataFrame({c.name: _str("a", "b", "c") for c in UNIFIED_CUSTOMER_COLUMNS})
    customers["customer_id"] = _str("C1", "C2", "C1")
    customers["record_count"] = [1, 2, 1]
    outcome = validate(customers, unified_customers_suite())
    assert _failed(outcome) == {"unique_customer_id"}
    assert outcome.result("unique_customer_id").sample == ["C1"]

    orders = clean_staging_frame("orders").assign(customer_id=_str("C1", None, "C2"))
    assert set(orders.columns) == {c.name for c in core_entity_columns("orders")}
    outcome = validate(orders, core_entity_suite("orders"))
    assert _failed(outcome) == {"customer_attributed"}
    assert outcome.result("customer_attributed").blocking
    tickets = clean_staging_frame("support_tickets").assign(customer_id=_str("C1", None, "C2"))
    outcome = validate(tickets, core_entity_suite("support_tickets"))
    assert _failed(outcome) == {"customer_attributed"} and outcome.blocking_failures == []


def test_mart_suite_declares_sets_ranges_and_keys(gx_ready: None) -> None:
    suite = mart_suite(
        "marts.customer_segments",
        allowed_values={"segment": ["Champions", "At Risk"]},
        ranges={"p_alive": PROBABILITY, "clv": (0, None), "retention_rate": (0, 1)},
        unique_keys=[["customer_id"]],
    )
    assert suite.check_name == MART_CONTRACT
    good = pd.DataFrame({"customer_id": _str("C1", "C2"), "segment": _str("Champions", "At Risk"),
                         "p_alive": [0.2, 1.0], "clv": [0.0, 150.0], "retention_rate": [0.5, np.nan]})
    assert validate(good, suite).success
    bad = pd.DataFrame({"customer_id": _str("C1", "C1"), "segment": _str("Champions", "Lost"),
                        "p_alive": [1.2, 0.5], "clv": [-3.0, 1.0], "retention_rate": [0.5, 1.5]})
    outcome = validate(bad, suite)
    assert _failed(outcome) == {"unique_customer_id", "segment_allowed", "p_alive_range", "clv_range",
                                "retention_rate_range"}
    assert outcome.result("p_alive_range").sample == [1.2]
    assert outcome.result("segment_allowed").sample == ["Lost"]


# -- drift ------------------------------------------------------------------------------------------
def test_table_stats() -> None:
    stats = table_stats(pd.DataFrame({"a": [1, None, 3, None], "b": _str("x", "y", "z", "w")}))
    assert stats == {"row_count": 4, "null_rates": {"a": 0.5, "b": 0.0}}
    assert json.loads(json.dumps(stats)) == stats
    assert table_stats(pd.DataFrame({"a": []})) == {"row_count": 0, "null_rates": {"a": 0.0}}


def test_drift_on_a_row_drop_and_null_rates() -> None:
    previous = {"row_count": 1000, "null_rates": {"email": 0.02, "phone": 0.3, "old": 0.0}}
    current = {"row_count": 500, "null_rates": {"email": 0.25, "phone": 0.35, "new": 0.1}}
    findings = drift_findings(current, previous, max_row_change_pct=20, max_null_rate_increase=0.1)
    by_kind = {(f.kind, f.column): f for f in findings}
    assert set(by_kind) == {("row_count", None), ("null_rate", "email"), ("column_added", "new"),
                            ("column_removed", "old")}
    assert "dropped by 50.0%" in by_kind["row_count", None].message
    assert by_kind["null_rate", "email"].previous == 0.02 and by_kind["null_rate", "email"].current == 0.25
    assert drift_findings(current, previous, max_row_change_pct=50, max_null_rate_increase=0.3) == [
        f for f in findings if f.kind.startswith("column")]
    assert drift_findings(current, None, 10, 0.1) == []


# -- reporting ----------------------------------------------------------------------------------
def test_markdown_and_html_report_name_the_failed_rule(gx_ready: None, tmp_path) -> None:
    frame = clean_staging_frame("orders").assign(currency=_str("EUR", "XYZ", "EUR"))
    outcome = validate(frame, _orders_suite())
    clean = validate(clean_staging_frame("survey_responses"),
                     staging_suite("survey_responses", as_of_end=CUTOFF))
    assert "currency_known" in outcome.to_markdown() and '["XYZ"]' in outcome.to_markdown()
    assert clean.to_markdown().endswith("passed.")
    drift = drift_findings({"row_count": 10, "null_rates": {}}, {"row_count": 100, "null_rates": {}}, 50, 0.1)
    path = render_html_report([outcome, clean], tmp_path / "run" / "validation.html", run_id="run-1",
                              drift={"staging.orders": drift})
    html = path.read_text(encoding="utf-8")
    assert path.exists() and "<html" in html
    assert "currency_known" in html and "XYZ" in html and "FAILED" in html and "PASSED" in html
    assert "dropped by 90.0%" in html and "run-1" in html
    assert json.dumps(outcome.to_dict())  # JSON-safe for metadata and audit tables
