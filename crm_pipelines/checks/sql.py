"""Validate a warehouse table against a :class:`SuiteSpec` in SQL, without reading it into Python.

The suite's rules (the same declarations :mod:`crm_pipelines.checks.gx` hands to Great Expectations
for frames) compile to aggregates over the table: the counts of every null, set, range, regex, pair
and row-count rule come from **one** scan (``COUNT(*) FILTER (WHERE ...)``), each uniqueness rule
from one ``GROUP BY ... HAVING COUNT(*) > 1``, and only the rules that fail fetch a few offending
values with ``LIMIT``. Python receives one row of counts and at most ``sample_size`` values per
failed rule, whatever the table's size. The counts follow Great Expectations' definitions (nulls are
not evaluated by value rules; a uniqueness failure counts every row of a repeated key; percentages
are of the non-null values, of all rows for not-null rules), which tests check against the GX
pandas validation of the same data on DuckDB and PostgreSQL.

Every layer's contract runs here, on the new version of a table under its temporary name
(:mod:`crm_pipelines.assets.validation`). Why compiled SQL on PostgreSQL too, rather than Great
Expectations' SQL data source there: GX 1.24 fails every expectation on DuckDB (see STYLE.md), so
DuckDB needs this path anyway; GX's SQL data source works on PostgreSQL but computes one query per
metric (slower on a million rows, see README), costs its import (about 3 s) and a context per run,
and cannot run the project's canonical-type expectation, which has a pandas implementation only.
One path on both engines is one path to test and explain. :func:`crm_pipelines.checks.gx.validate`
stays as the reference the tests hold this module equal to.
"""

from __future__ import annotations

import datetime as dt
import operator
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from crm_pipelines.checks.gx import SAMPLE_SIZE, RuleResult, SuiteOutcome, _distinct, _jsonable
from crm_pipelines.checks.rules import Rule, SuiteSpec
from crm_pipelines.warehouse import Warehouse, col

if TYPE_CHECKING:
    import sqlalchemy as sa

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
# information_schema.columns.data_type spellings (DuckDB upper case, PostgreSQL lower case) per canonical type.
_INTEGER_TYPES = {"BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT", "UINTEGER", "USMALLINT",
                  "UTINYINT", "INT", "INT2", "INT4", "INT8"}
_FLOAT_TYPES = {"DOUBLE", "DOUBLE PRECISION", "REAL", "FLOAT", "FLOAT4", "FLOAT8", "NUMERIC", "DECIMAL"}
_CANONICAL_TYPES: dict[str, set[str]] = {
    "string": {"VARCHAR", "TEXT", "CHARACTER VARYING", "CHARACTER", "CHAR", "STRING"},
    "integer": _INTEGER_TYPES,
    "float": _FLOAT_TYPES | _INTEGER_TYPES,
    "boolean": {"BOOLEAN", "BOOL"},
    "timestamp": {"TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"},
    "date": {"DATE"},
}
_MAP_RULES = ("ExpectColumnValuesToBeInSet", "ExpectColumnValuesToMatchRegex", "ExpectColumnValuesToBeBetween",
              "ExpectColumnValuesToHaveCanonicalType")
_UNIQUE_RULES = ("ExpectColumnValuesToBeUnique", "ExpectCompoundColumnsToBeUnique")
SUPPORTED_EXPECTATIONS = frozenset({
    *_MAP_RULES, *_UNIQUE_RULES, "ExpectColumnValuesToNotBeNull", "ExpectColumnPairValuesAToBeGreaterThanB",
    "ExpectTableRowCountToBeBetween", "ExpectTableRowCountToEqual", "ExpectTableColumnsToMatchSet",
})


def column_types(wh: Warehouse, schema: str, table: str) -> dict[str, str]:
    """``{column: data type}`` as information_schema spells it (DECIMAL(18,2) -> DECIMAL), upper case."""
    return {name: str(kind).split("(")[0].strip().upper() for name, kind in wh.column_types(schema, table).items()}


def _bound(value: Any, data_type: str) -> Any:
    """A rule's bound as a Python value comparable with the column (instants aligned as gx._prepare does)."""
    import pandas as pd
    if not isinstance(value, (dt.date, pd.Timestamp)):
        return value
    stamp = pd.Timestamp(value)
    if data_type == "DATE" and stamp == stamp.normalize() and stamp.tzinfo is None:
        return stamp.date()
    if data_type in _CANONICAL_TYPES["timestamp"]:
        return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).to_pydatetime()
    return (stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp).to_pydatetime()


class _Compiler:
    """The SQL conditions of one suite's rules on one table."""

    def __init__(self, wh: Warehouse, types: Mapping[str, str]):
        self.wh = wh
        self.types = types

    def condition(self, rule: Rule) -> sa.ColumnElement[bool]:
        import sqlalchemy as sa
        if rule.row_condition is None:
            return sa.true()
        column, op, value = rule.row_condition
        return _OPERATORS[op](col(column), value)

    def regex(self, column: sa.ColumnElement[Any], pattern: str) -> sa.ColumnElement[bool]:
        import sqlalchemy as sa
        text = sa.cast(column, sa.String)
        if self.wh.dialect == "duckdb":  # DuckDB's ~ is a full match; regexp_matches searches, as GX does
            return sa.func.regexp_matches(text, pattern)
        return text.regexp_match(pattern)

    def value_ok(self, rule: Rule) -> sa.ColumnElement[bool] | None:
        """For value rules: the condition a non-null value must meet (None: the column type decides)."""
        import sqlalchemy as sa
        kw = rule.kwargs
        c = col(kw["column"]) if "column" in kw else None
        if rule.expectation == "ExpectColumnValuesToBeInSet":
            return c.in_(list(kw["value_set"]))
        if rule.expectation == "ExpectColumnValuesToMatchRegex":
            return self.regex(c, kw["regex"])
        if rule.expectation == "ExpectColumnValuesToBeBetween":
            kind = self.types.get(kw["column"], "")
            parts = []
            if kw.get("min_value") is not None:
                low = _bound(kw["min_value"], kind)
                parts.append(c > low if kw.get("strict_min") else c >= low)
            if kw.get("max_value") is not None:
                high = _bound(kw["max_value"], kind)
                parts.append(c < high if kw.get("strict_max") else c <= high)
            return sa.and_(*parts)
        if rule.expectation == "ExpectColumnValuesToHaveCanonicalType":
            kind, wanted = self.types.get(kw["column"], ""), kw["canonical_type"]
            if wanted == "integer" and kind in _FLOAT_TYPES - _INTEGER_TYPES:
                return c == sa.func.floor(c)  # whole numbers stored as floats still hold integers
            return sa.true() if kind in _CANONICAL_TYPES[wanted] else sa.false()
        if rule.expectation == "ExpectColumnPairValuesAToBeGreaterThanB":
            a, b = col(kw["column_A"]), col(kw["column_B"])
            return a >= b if kw.get("or_equal") else a > b
        raise AssertionError(rule.expectation)

    def domain(self, rule: Rule) -> sa.ColumnElement[bool]:
        """Rows a rule evaluates (GX's nonnull/unignored rows under the row condition)."""
        import sqlalchemy as sa
        cond = self.condition(rule)
        kw = rule.kwargs
        if rule.expectation in (*_MAP_RULES, "ExpectColumnValuesToBeUnique"):
            return sa.and_(cond, col(kw["column"]).isnot(None))
        if rule.expectation == "ExpectColumnPairValuesAToBeGreaterThanB":
            a, b = col(kw["column_A"]), col(kw["column_B"])
            ignore = kw.get("ignore_row_if", "both_values_are_missing")
            if ignore == "either_value_is_missing":
                return sa.and_(cond, a.isnot(None), b.isnot(None))
            if ignore == "both_values_are_missing":
                return sa.and_(cond, sa.or_(a.isnot(None), b.isnot(None)))
            return cond
        if rule.expectation == "ExpectCompoundColumnsToBeUnique":
            columns = [col(c) for c in kw["column_list"]]
            ignore = kw.get("ignore_row_if", "all_values_are_missing")
            if ignore == "all_values_are_missing":
                return sa.and_(cond, sa.or_(*(c.isnot(None) for c in columns)))
            if ignore == "any_value_is_missing":
                return sa.and_(cond, *(c.isnot(None) for c in columns))
            return cond
        return cond

    def unexpected(self, rule: Rule) -> sa.ColumnElement[bool]:
        import sqlalchemy as sa
        if rule.expectation == "ExpectColumnValuesToNotBeNull":
            return sa.and_(self.condition(rule), col(rule.kwargs["column"]).is_(None))
        return sa.and_(self.domain(rule), sa.not_(self.value_ok(rule)))

    def key_columns(self, rule: Rule) -> list[str]:
        kw = rule.kwargs
        return list(kw["column_list"]) if "column_list" in kw else [kw["column"]]


def _percent(count: int, total: int) -> float | None:
    return count / total * 100.0 if total else None


def validate_in_warehouse(
    wh: Warehouse, schema: str, table: str, suite: SuiteSpec, *, sample_size: int = SAMPLE_SIZE
) -> SuiteOutcome:
    """Validate ``schema.table`` against ``suite`` in the warehouse; the outcome is as from ``gx.validate``."""
    import sqlalchemy as sa
    started = time.perf_counter()
    types = column_types(wh, schema, table)
    if not types:
        raise ValueError(f"validating {schema}.{table} against {suite.name}: the table does not exist")
    compiler = _Compiler(wh, types)
    source = wh.table(schema, table)
    errors: dict[str, str] = {}
    for rule in suite.rules:
        absent = [c for c in rule.columns if c not in types]
        if rule.expectation not in SUPPORTED_EXPECTATIONS:
            errors[rule.name] = f"not evaluated: {rule.expectation} has no SQL form (validate the frame instead)"
        elif absent:
            errors[rule.name] = f"not evaluated: column(s) {', '.join(absent)} missing from {schema}.{table}"
    runnable = [r for r in suite.rules if r.name not in errors]

    # The drift statistics' non-null counts ride on the same scan (table_stats_in_warehouse's figures).
    aggregates: dict[str, sa.ColumnElement[Any]] = {"rows": sa.func.count()}
    aggregates.update({f"n{j}": sa.func.count(col(c)) for j, c in enumerate(types)})
    for i, rule in enumerate(runnable):
        if rule.expectation in ("ExpectTableColumnsToMatchSet",):
            continue
        aggregates[f"d{i}"] = sa.func.count().filter(compiler.domain(rule))
        if rule.expectation not in (*_UNIQUE_RULES, "ExpectTableRowCountToBeBetween", "ExpectTableRowCountToEqual"):
            aggregates[f"u{i}"] = sa.func.count().filter(compiler.unexpected(rule))
    with wh.connect() as conn:
        counts = dict(conn.execute(sa.select(*(e.label(k) for k, e in aggregates.items())).select_from(source))
                      .one()._mapping)
        for i, rule in enumerate(runnable):
            if rule.expectation in _UNIQUE_RULES:
                keys = [col(c) for c in compiler.key_columns(rule)]
                repeated = (sa.select(sa.func.count().label("n")).select_from(source)
                            .where(compiler.domain(rule)).group_by(*keys).having(sa.func.count() > 1).subquery())
                counts[f"u{i}"] = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(repeated.c.n), 0))).scalar_one()
        by_rule = {r.name: _result(conn, compiler, source, types, r, i, counts, sample_size)
                   for i, r in enumerate(runnable)}
    results = tuple(
        by_rule.get(r.name) or RuleResult(r.name, r.severity, r.description, r.expectation, False,
                                          error=errors[r.name])
        for r in suite.rules
    )
    return SuiteOutcome(suite.name, suite.check_name, suite.description, int(counts["rows"]), results,
                        time.perf_counter() - started,
                        table_stats=_stats(int(counts["rows"]), {c: counts[f"n{j}"] for j, c in enumerate(types)}))


def _result(conn: sa.Connection, compiler: _Compiler, source: sa.TableClause, types: Mapping[str, str],
            rule: Rule, i: int, counts: Mapping[str, Any], sample_size: int) -> RuleResult:
    kw = rule.kwargs
    base = {"rule": rule.name, "severity": rule.severity, "description": rule.description,
            "expectation": rule.expectation}
    if rule.expectation == "ExpectTableColumnsToMatchSet":
        missing = [c for c in kw["column_set"] if c not in types]
        extra = [c for c in types if c not in kw["column_set"]] if kw.get("exact_match", True) else []
        return RuleResult(**base, success=not missing and not extra, unexpected_count=len(missing),
                          sample=missing, observed=list(types) if extra else None)
    rows = int(counts[f"d{i}"])
    if rule.expectation in ("ExpectTableRowCountToBeBetween", "ExpectTableRowCountToEqual"):
        if rule.expectation == "ExpectTableRowCountToEqual":
            ok = rows == kw["value"]
        else:
            ok = (kw.get("min_value") is None or rows >= kw["min_value"]) and (
                kw.get("max_value") is None or rows <= kw["max_value"])
        return RuleResult(**base, success=ok, observed=rows)
    unexpected = int(counts[f"u{i}"])
    sample: list[Any] = []
    if unexpected and rule.expectation == "ExpectColumnValuesToNotBeNull":
        sample = [None]  # as GX reports it: the offending value is the null
    elif unexpected:
        sample = _sample(conn, compiler, source, rule, sample_size)
    observed = types[kw["column"]] if rule.expectation == "ExpectColumnValuesToHaveCanonicalType" else None
    return RuleResult(**base, success=unexpected == 0, unexpected_count=unexpected,
                      unexpected_percent=_percent(unexpected, rows), sample=sample, observed=observed)


def _sample(conn: sa.Connection, compiler: _Compiler, source: sa.TableClause, rule: Rule, size: int) -> list[Any]:
    """Up to ``size`` distinct offending values (rows as dicts for multi-column rules)."""
    import sqlalchemy as sa
    if rule.expectation in _UNIQUE_RULES:
        names = compiler.key_columns(rule)
        keys = [col(c) for c in names]
        stmt = (sa.select(*keys).select_from(source).where(compiler.domain(rule)).group_by(*keys)
                .having(sa.func.count() > 1).limit(size))
    elif rule.expectation == "ExpectColumnPairValuesAToBeGreaterThanB":
        names = [rule.kwargs["column_A"], rule.kwargs["column_B"]]
        stmt = sa.select(*(col(c) for c in names)).select_from(source).where(compiler.unexpected(rule)).limit(size)
    else:
        names = [rule.kwargs["column"]]
        stmt = (sa.select(col(names[0])).select_from(source).where(compiler.unexpected(rule))
                .distinct().limit(size))
    rows = conn.execute(stmt).all()
    values = [r[0] if len(names) == 1 else dict(zip(names, r, strict=True)) for r in rows]
    return _distinct(_jsonable(values), size)


def table_stats_in_warehouse(wh: Warehouse, schema: str, table: str, where: Any = None) -> dict[str, Any]:
    """:func:`crm_pipelines.checks.drift.table_stats` of a warehouse table (of its rows matching
    ``where``, a SQLAlchemy condition, when given), from one aggregate query."""
    import sqlalchemy as sa
    columns = wh.columns(schema, table)
    stmt = sa.select(sa.func.count().label("rows"), *(sa.func.count(col(c)) for c in columns)).select_from(
        wh.table(schema, table))
    if where is not None:
        stmt = stmt.where(where)
    with wh.connect() as conn:
        rows, *present = conn.execute(stmt).one()
    return _stats(int(rows), dict(zip(columns, present, strict=True)))


def _stats(rows: int, non_null: Mapping[str, Any]) -> dict[str, Any]:
    rates = {c: round((rows - int(n)) / rows, 6) if rows else 0.0 for c, n in non_null.items()}
    return {"row_count": rows, "null_rates": rates}
