"""Validation outcomes as Dagster asset checks.

An asset declares its checks with :func:`check_specs` and yields the results from inside its own
body, after validating the frame and before swapping the table in: a table is published only when
no blocking rule failed. Contract breaks are ERROR-severity results; drift is WARN and never blocks.

Example, inside an asset declared with ``check_specs=check_specs(key, [STAGING_CONTRACT, DRIFT_CHECK])``::

    outcome = validate(frame, staging_suite("orders", as_of_end=cutoff, currencies=rates))
    findings = drift_findings(table_stats(frame), previous_stats)
    report = render_html_report([outcome], report_dir / "staging_orders.html",
                                drift={"staging.orders": findings})
    checks = [suite_check_result(outcome, asset_key=key, report_path=report),
              drift_check_result(findings, asset_key=key, report_path=report)]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from crm_pipelines.checks.drift import DriftFinding
from crm_pipelines.checks.gx import SuiteOutcome
from crm_pipelines.checks.suites import (
    CORE_CONTRACT,
    DRIFT_CHECK,
    MART_CONTRACT,
    RAW_CONTRACT,
    STAGING_CONTRACT,
)

CHECK_DESCRIPTIONS: dict[str, str] = {
    RAW_CONTRACT: "Volume contract, judged before the delivery replaces anything: not empty unless optional, "
    "and no more than checks.max_row_drop_pct fewer rows than the last good delivery.",
    STAGING_CONTRACT: "Staged rows are typed and normalized: ids unique per source, emails, E.164 phones, "
    "no future dates, amounts consistent with status, values in their allowed sets.",
    CORE_CONTRACT: "Every source record is mapped exactly once, customer ids are unique, no orphan rows.",
    MART_CONTRACT: "The mart's keys are unique and its values in their declared sets and ranges.",
    DRIFT_CHECK: "Row count and null rates did not move more than allowed since the previous run (warning).",
}

AssetKeyLike = dg.AssetKey | str | Sequence[str]


def check_specs(
    asset_key: AssetKeyLike,
    names: Iterable[str],
    blocking: bool = True,
) -> list[dg.AssetCheckSpec]:
    """Specs for the checks an asset runs in its body (``@asset(check_specs=...)``).

    ``blocking`` stops downstream assets when a check fails with ERROR severity. Drift only warns,
    so its spec is never blocking (the UI would otherwise label it so).
    """
    key = dg.AssetKey.from_coercible(asset_key)
    return [
        dg.AssetCheckSpec(
            name, asset=key, blocking=blocking and name != DRIFT_CHECK, description=CHECK_DESCRIPTIONS.get(name)
        )
        for name in names
    ]


def _report_metadata(report_path: str | os.PathLike[str] | None) -> dict[str, Any]:
    if report_path is None:
        return {}
    path = Path(report_path).resolve()
    return {"report": dg.MetadataValue.path(str(path)), "report_url": dg.MetadataValue.url(path.as_uri())}


def suite_check_result(
    outcome: SuiteOutcome,
    *,
    asset_key: AssetKeyLike | None = None,
    check_name: str | None = None,
    report_path: str | os.PathLike[str] | None = None,
) -> dg.AssetCheckResult:
    """One check result for one suite: ERROR if a blocking rule failed, else WARN when a warning did.

    Metadata names the failed rules with their unexpected counts and offending values (markdown and
    JSON), and links the HTML report.
    """
    failures = outcome.failures
    metadata: dict[str, Any] = {
        "suite": outcome.suite,
        "rows_validated": outcome.row_count,
        "rules_evaluated": len(outcome.results),
        "rules_failed": len(failures),
        "blocking_failures": len(outcome.blocking_failures),
        "unexpected_values": sum(r.unexpected_count or 0 for r in failures),
        "validation_seconds": round(outcome.seconds, 3),
        "summary": dg.MetadataValue.md(outcome.to_markdown()),
        "failed_rules": dg.MetadataValue.json([
            {
                "rule": r.rule,
                "severity": r.severity,
                "description": r.description,
                "unexpected_count": r.unexpected_count,
                "unexpected_percent": r.unexpected_percent,
                "sample": r.sample,
                "observed": r.observed,
                "error": r.error,
            }
            for r in failures
        ]),
        **_report_metadata(report_path),
    }
    return dg.AssetCheckResult(
        passed=outcome.success,
        asset_key=None if asset_key is None else dg.AssetKey.from_coercible(asset_key),
        check_name=check_name or outcome.check_name,
        severity=dg.AssetCheckSeverity.ERROR if outcome.blocking_failures else dg.AssetCheckSeverity.WARN,
        description=_description(outcome),
        metadata=metadata,
    )


def _description(outcome: SuiteOutcome) -> str:
    if outcome.success:
        return f"{outcome.suite}: all {len(outcome.results)} rules passed."
    names = ", ".join(r.rule for r in outcome.failures)
    return f"{outcome.suite}: failed rule(s): {names}."


def drift_check_result(
    findings: Sequence[DriftFinding],
    *,
    asset_key: AssetKeyLike | None = None,
    check_name: str = DRIFT_CHECK,
    report_path: str | os.PathLike[str] | None = None,
    current_stats: Mapping[str, Any] | None = None,
) -> dg.AssetCheckResult:
    """A WARN-severity result listing the drift findings (passed when there are none)."""
    lines = [f"- **{f.kind}**{f' `{f.column}`' if f.column else ''}: {f.message}" for f in findings]
    metadata: dict[str, Any] = {
        "findings": len(findings),
        "summary": dg.MetadataValue.md("\n".join(lines) or "No drift beyond the thresholds."),
        "details": dg.MetadataValue.json([f.to_dict() for f in findings]),
        **_report_metadata(report_path),
    }
    if current_stats is not None:
        metadata["row_count"] = int(current_stats.get("row_count", 0))
    return dg.AssetCheckResult(
        passed=not findings,
        asset_key=None if asset_key is None else dg.AssetKey.from_coercible(asset_key),
        check_name=check_name,
        severity=dg.AssetCheckSeverity.WARN,
        description=(findings[0].message if len(findings) == 1 else f"{len(findings)} drift findings")
        if findings else "No drift beyond the thresholds.",
        metadata=metadata,
    )


def check_results(
    outcomes: Iterable[SuiteOutcome],
    findings: Sequence[DriftFinding] | None = None,
    *,
    asset_key: AssetKeyLike | None = None,
    report_path: str | os.PathLike[str] | None = None,
) -> list[dg.AssetCheckResult]:
    """Results for an asset's suites, plus its drift check when ``findings`` is given."""
    results = [suite_check_result(o, asset_key=asset_key, report_path=report_path) for o in outcomes]
    if findings is not None:
        results.append(drift_check_result(findings, asset_key=asset_key, report_path=report_path))
    return results
