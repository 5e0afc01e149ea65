"""Data contracts (Great Expectations suites declared as data), drift, and their asset checks.

``rules`` holds the plain-data rule and suite types and ``suites`` the contracts per layer; ``gx``
validates frames against them (importing Great Expectations only then); ``drift`` compares runs;
``report`` renders the HTML page; ``results``, the one module importing Dagster, turns outcomes
into ``AssetCheckResult``\\ s.
"""

from crm_pipelines.checks.drift import DriftFinding, drift_findings, table_stats
from crm_pipelines.checks.gx import RuleResult, SuiteOutcome, prepare_in_background, render_html_report, validate
from crm_pipelines.checks.rules import Rule, SuiteSpec
from crm_pipelines.checks.suites import (
    CORE_CONTRACT,
    DRIFT_CHECK,
    MART_CONTRACT,
    RAW_CONTRACT,
    STAGING_CONTRACT,
    core_entity_suite,
    identity_map_suite,
    mart_suite,
    raw_suite,
    staging_suite,
    unified_customers_suite,
)

__all__ = [
    "CORE_CONTRACT",
    "DRIFT_CHECK",
    "MART_CONTRACT",
    "RAW_CONTRACT",
    "STAGING_CONTRACT",
    "DriftFinding",
    "Rule",
    "RuleResult",
    "SuiteOutcome",
    "SuiteSpec",
    "core_entity_suite",
    "drift_findings",
    "identity_map_suite",
    "mart_suite",
    "prepare_in_background",
    "raw_suite",
    "render_html_report",
    "staging_suite",
    "table_stats",
    "unified_customers_suite",
    "validate",
]
