"""Validation outcomes as Dagster asset checks: severity, metadata, and use from inside an asset."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pandas as pd
import pytest

from crm_pipelines.checks.drift import drift_findings, table_stats
from crm_pipelines.checks.gx import validate
from crm_pipelines.checks.report import render_html_report
from crm_pipelines.checks.results import check_results, check_specs, drift_check_result, suite_check_result
from crm_pipelines.checks.rules import Rule, SuiteSpec
from crm_pipelines.checks.suites import DRIFT_CHECK, STAGING_CONTRACT, staging_suite

CUTOFF = dt.datetime(2024, 6, 30, tzinfo=dt.UTC)
KEY = dg.AssetKey(["staging", "orders"])


def _orders(
    currency: tuple[str, str] = ("EUR", "USD"), customer: tuple[str, str] = ("c1", "c2")
) -> pd.DataFrame:
    return pd.DataFrame({
        "source": pd.Series(["shop", "shop"], dtype="str"),
        "order_id": pd.Series(["o1", "o2"], dtype="str"),
        "source_customer_id": pd.Series(list(customer), dtype="str"),
        "ordered_at": pd.to_datetime(["2024-01-01", "2024-02-01"], utc=True),
        "status": pd.Series(["completed", "refunded"], dtype="str"),
        "currency": pd.Series(list(currency), dtype="str"),
        "total_amount": [10.0, -2.0],
        "total_amount_reporting": [10.0, -1.8],
        "is_refund": pd.array([False, True], dtype="boolean"),
    })


def _suite() -> SuiteSpec:
    return staging_suite("orders", as_of_end=CUTOFF, currencies=["EUR", "USD"]).with_rules(
        Rule("customer_given", "ExpectColumnValuesToMatchRegex",
             {"column": "source_customer_id", "regex": "^c"}, "warn", "Shop customer ids start with c."))


@pytest.fixture(scope="module")
def outcomes():
    """One clean, one warning-only and one blocking outcome (Great Expectations imported once)."""
    suite = _suite()
    return {
        "clean": validate(_orders(), suite),
        "warn": validate(_orders(customer=("c1", "x2")), suite),
        "blocking": validate(_orders(currency=("EUR", "XYZ")), suite),
    }


def test_check_specs_declare_blocking_checks() -> None:
    specs = check_specs(["staging", "orders"], [STAGING_CONTRACT, DRIFT_CHECK])
    assert [s.name for s in specs] == [STAGING_CONTRACT, DRIFT_CHECK]
    assert all(s.asset_key == KEY for s in specs)
    assert specs[0].blocking and "E.164" in specs[0].description
    assert not specs[1].blocking, "drift only warns: the UI must not label it blocking"
    assert not check_specs(KEY, [STAGING_CONTRACT], blocking=False)[0].blocking


def test_contract_break_is_an_error_with_actionable_metadata(outcomes, tmp_path) -> None:
    report = render_html_report(list(outcomes.values()), tmp_path / "validation.html")
    result = suite_check_result(outcomes["blocking"], asset_key=KEY, report_path=report)
    assert result.passed is False
    assert result.severity == dg.AssetCheckSeverity.ERROR
    assert result.check_name == STAGING_CONTRACT and result.asset_key == KEY
    assert "currency_known" in result.description
    meta = result.metadata
    assert meta["blocking_failures"].value == 1 and meta["unexpected_values"].value == 1
    failed = meta["failed_rules"].value
    assert [f["rule"] for f in failed] == ["currency_known"]
    assert failed[0]["sample"] == ["XYZ"] and failed[0]["severity"] == "error"
    assert "currency_known" in meta["summary"].value and "XYZ" in meta["summary"].value
    assert meta["report"].value == str(report.resolve())
    assert meta["report_url"].value.startswith("file://")


def test_warnings_only_and_clean_outcomes(outcomes) -> None:
    warn = suite_check_result(outcomes["warn"], asset_key=KEY)
    assert warn.passed is False and warn.severity == dg.AssetCheckSeverity.WARN
    assert warn.metadata["failed_rules"].value[0]["sample"] == ["x2"]
    assert "report" not in warn.metadata
    clean = suite_check_result(outcomes["clean"])
    assert clean.passed is True and clean.metadata["rules_failed"].value == 0
    assert clean.asset_key is None  # a single-asset body may leave the key out


def test_drift_is_a_warning() -> None:
    previous, current = {"row_count": 100, "null_rates": {}}, {"row_count": 50, "null_rates": {}}
    findings = drift_findings(current, previous, 20, 0.1)
    result = drift_check_result(findings, asset_key=KEY)
    assert result.passed is False and result.severity == dg.AssetCheckSeverity.WARN
    assert result.check_name == DRIFT_CHECK and result.metadata["findings"].value == 1
    assert result.metadata["details"].value[0]["kind"] == "row_count"
    assert "dropped by 50.0%" in result.description
    assert drift_check_result([], asset_key=KEY).passed is True


def test_asset_publishes_only_after_validation(outcomes, tmp_path) -> None:
    """The pattern assets follow: validate inside the body, yield the results, publish only if clean."""
    published: list[str] = []
    frames = {"good": _orders(), "bad": _orders(currency=("EUR", "XYZ"))}

    def build(name: str) -> dg.AssetsDefinition:
        key = dg.AssetKey(["staging", name])

        @dg.asset(key=key, check_specs=check_specs(key, [STAGING_CONTRACT, DRIFT_CHECK]))
        def _asset() -> dg.MaterializeResult:
            frame = frames[name]
            outcome = validate(frame, _suite())
            stats = table_stats(frame)
            findings = drift_findings(stats, {**stats, "row_count": 4}, 30, 0.1)
            report = render_html_report([outcome], tmp_path / f"{name}.html")
            if not outcome.blocking_failures:
                published.append(name)
            return dg.MaterializeResult(check_results=check_results([outcome], findings, report_path=report))

        return _asset

    result = dg.materialize([build("good"), build("bad")], raise_on_error=False)
    assert published == ["good"]
    evaluations = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
    assert evaluations["good", STAGING_CONTRACT].passed
    bad = evaluations["bad", STAGING_CONTRACT]
    assert not bad.passed and bad.severity == dg.AssetCheckSeverity.ERROR
    assert bad.metadata["failed_rules"].value[0]["sample"] == ["XYZ"]
    drift = evaluations["bad", DRIFT_CHECK]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
