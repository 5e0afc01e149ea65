"""Rules and suites as plain data, and helpers that build the common rules.

A :class:`SuiteSpec` is a named list of :class:`Rule`\\ s; each rule names a Great Expectations
expectation class and its arguments, a severity and a sentence a person can act on. Nothing here
imports Great Expectations: :mod:`crm_pipelines.checks.gx` turns a spec into a GX
``ExpectationSuite`` only when a frame is validated.

Severity ``error`` marks a contract break: the table must not be published. ``warn`` marks something
a person should look at, which does not stop the run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core import ExpectationSuite

Severity = Literal["error", "warn"]
SEVERITIES: tuple[Severity, ...] = ("error", "warn")
ROW_CONDITION_OPERATORS = ("==", "!=", "<", "<=", ">", ">=")

Bound: TypeAlias = "float | int | pd.Timestamp | None"

# Expectation arguments that name the columns a rule reads.
_COLUMN_KWARGS = ("column", "column_A", "column_B")


@dataclass(frozen=True)
class Rule:
    """One expectation of a suite, with the severity of its failure and what it means."""

    name: str
    """Unique within its suite, stable across runs: ``email_format``, ``unique_record_id``."""
    expectation: str
    """Great Expectations expectation class name, e.g. ``ExpectColumnValuesToMatchRegex``."""
    kwargs: Mapping[str, Any]
    severity: Severity
    description: str
    row_condition: tuple[str, str, Any] | None = None
    """Evaluate only rows where ``(column, operator, value)`` holds, e.g. ``("is_refund", "==", False)``;
    operators: == != < <= > >=."""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(
                f"rule {self.name!r}: severity must be one of {SEVERITIES}, not {self.severity!r}"
            )
        if not self.name:
            raise ValueError("a rule needs a name")
        if self.row_condition is not None and self.row_condition[1] not in ROW_CONDITION_OPERATORS:
            raise ValueError(
                f"rule {self.name!r}: row_condition operator must be one of {ROW_CONDITION_OPERATORS}"
            )

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns the rule reads; it cannot be evaluated on a frame missing one of them.

        ``column_set`` of a columns-present rule is not included: naming missing columns is its job.
        """
        names: list[str] = [self.kwargs[k] for k in _COLUMN_KWARGS if k in self.kwargs]
        if "column_list" in self.kwargs:
            names.extend(self.kwargs["column_list"])
        if self.row_condition is not None:
            names.append(self.row_condition[0])
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class SuiteSpec:
    """A named data contract for one table: the rules its frame must satisfy."""

    name: str
    """The table the suite describes, e.g. ``staging.orders``."""
    check_name: str
    """The Dagster asset check that reports it (``staging_contract``, ...)."""
    rules: tuple[Rule, ...]
    description: str = ""

    def __post_init__(self) -> None:
        names = [r.name for r in self.rules]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"suite {self.name!r}: rule names must be unique, repeated: {repeated}")

    def rule(self, name: str) -> Rule:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(f"suite {self.name!r} has no rule {name!r}; rules: {[r.name for r in self.rules]}")

    def with_rules(self, *rules: Rule) -> SuiteSpec:
        """A copy with ``rules`` added (a mart adding its own rules to a generic suite)."""
        return replace(self, rules=(*self.rules, *rules))

    def with_columns_changed(self, renamed: Mapping[str, str], dropped: Iterable[str]) -> SuiteSpec:
        """The suite for the table once columns are renamed and dropped (the marts' personal-data
        policy): rules on a dropped column go, the others name the new columns."""
        gone = set(dropped)
        if not renamed and not gone:
            return self
        rules = []
        for rule in self.rules:
            if gone & set(rule.columns):
                continue
            kwargs = dict(rule.kwargs)
            for key in _COLUMN_KWARGS:
                if key in kwargs:
                    kwargs[key] = renamed.get(kwargs[key], kwargs[key])
            for key in ("column_list", "column_set"):
                if key in kwargs:
                    kwargs[key] = [renamed.get(c, c) for c in kwargs[key] if c not in gone]
            condition = rule.row_condition
            if condition is not None:
                condition = (renamed.get(condition[0], condition[0]), *condition[1:])
            rules.append(replace(rule, kwargs=kwargs, row_condition=condition))
        return replace(self, rules=tuple(rules))

    def to_gx_suite(self) -> ExpectationSuite:
        """The Great Expectations suite (imports Great Expectations on first use)."""
        from crm_pipelines.checks.gx import build_gx_suite

        return build_gx_suite(self)


# -- rule helpers ---------------------------------------------------------------------------------
def columns_present(columns: Sequence[str], table: str) -> Rule:
    return Rule(
        "columns_present",
        "ExpectTableColumnsToMatchSet",
        {"column_set": list(columns), "exact_match": False},
        "error",
        f"{table} has every contract column ({len(columns)}); extra columns are allowed.",
    )


def not_null(column: str, severity: Severity = "error", name: str | None = None) -> Rule:
    return Rule(
        name or f"{column}_not_null",
        "ExpectColumnValuesToNotBeNull",
        {"column": column},
        severity,
        f"Every row has a {column}.",
    )


def unique(columns: Sequence[str], severity: Severity = "error", name: str | None = None) -> Rule:
    """One row per value of ``columns`` (nulls in a single column are not counted as duplicates)."""
    cols = list(columns)
    label = ", ".join(cols)
    if len(cols) == 1:
        return Rule(name or f"unique_{cols[0]}", "ExpectColumnValuesToBeUnique", {"column": cols[0]},
                    severity, f"No two rows share a {label}.")
    return Rule(name or "unique_" + "_".join(cols), "ExpectCompoundColumnsToBeUnique", {"column_list": cols},
                severity, f"No two rows share the same ({label}).")


def in_set(column: str, values: Iterable[Any], severity: Severity = "error", name: str | None = None) -> Rule:
    allowed = sorted(set(values), key=str)
    return Rule(
        name or f"{column}_allowed",
        "ExpectColumnValuesToBeInSet",
        {"column": column, "value_set": allowed},
        severity,
        f"{column} is one of {', '.join(map(str, allowed))} (or null).",
    )


def matches(
    column: str, regex: str, what: str, severity: Severity = "error", name: str | None = None
) -> Rule:
    return Rule(
        name or f"{column}_format",
        "ExpectColumnValuesToMatchRegex",
        {"column": column, "regex": regex},
        severity,
        f"{column} is {what} (or null).",
    )


def between(
    column: str,
    min_value: Bound = None,
    max_value: Bound = None,
    severity: Severity = "error",
    name: str | None = None,
    description: str | None = None,
) -> Rule:
    if min_value is None and max_value is None:
        raise ValueError(f"between({column!r}): give min_value, max_value or both")
    kwargs: dict[str, Any] = {"column": column}
    if min_value is not None:
        kwargs["min_value"] = min_value
    if max_value is not None:
        kwargs["max_value"] = max_value
    if description is None:
        low = "" if min_value is None else f">= {min_value}"
        high = "" if max_value is None else f"<= {max_value}"
        description = f"{column} is {' and '.join(p for p in (low, high) if p)} (or null)."
    return Rule(name or f"{column}_range", "ExpectColumnValuesToBeBetween", kwargs, severity, description)


def typed(column: str, canonical_type: str) -> Rule:
    return Rule(
        f"type_{column}",
        "ExpectColumnValuesToHaveCanonicalType",
        {"column": column, "canonical_type": canonical_type},
        "error",
        f"{column} holds {canonical_type} values.",
    )


def row_count_at_least(minimum: int, severity: Severity = "error") -> Rule:
    return Rule(
        "row_count",
        "ExpectTableRowCountToBeBetween",
        {"min_value": minimum},
        severity,
        f"The table has at least {minimum} row(s).",
    )
