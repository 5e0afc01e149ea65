"""Splink re-parses the same SQL many times: remember what it found.

On every prediction Splink (5.0) lists the columns the blocking rules read, to retain them, by
parsing each rule's SQL with sqlglot, several times per call; the rules never change within a run.
An incremental night spent about a second (a fifth of its matching) re-parsing the same sixteen
rules. The answer depends on the SQL text alone, so it is cached; callers get a list of their own.

Splink also builds an ``InputColumn`` for every column of every comparison each time it writes SQL
(about a thousand per night), parsing the column's name with sqlglot, and renders each name (plain,
``_l``/``_r``, ``tf_``, aliased) back to SQL through sqlglot. Both are pure functions of immutable
inputs: the parse of the name text in a dialect gives a frozen ``SqlglotColumnTreeBuilder``, and its
SQL depends on that builder's fields alone. Both are cached; the builders are frozen, so sharing one is
safe (Splink derives new ones with ``dataclasses.replace``).
"""

from __future__ import annotations

import functools

import splink.internals.settings as splink_settings
from splink.internals.input_column import SqlglotColumnTreeBuilder
from splink.internals.parse_sql import get_columns_used_from_sql


@functools.lru_cache(maxsize=512)
def _columns_used(sql: str, sqlglot_dialect: str | None, retain_table_prefix: bool) -> tuple[str, ...]:
    return tuple(get_columns_used_from_sql(sql, sqlglot_dialect, retain_table_prefix))


def columns_used_from_sql(sql: str, sqlglot_dialect: str | None = None, retain_table_prefix: bool = False) -> list[str]:
    """:func:`splink.internals.parse_sql.get_columns_used_from_sql`, remembered."""
    return list(_columns_used(sql, sqlglot_dialect, retain_table_prefix))


splink_settings.get_columns_used_from_sql = columns_used_from_sql

# Exceptions are not cached: a name that does not parse raises on every call, as before.
SqlglotColumnTreeBuilder.from_raw_column_name_or_column_reference = classmethod(
    functools.lru_cache(maxsize=4096)(SqlglotColumnTreeBuilder.from_raw_column_name_or_column_reference.__func__)
)
SqlglotColumnTreeBuilder.sql = property(functools.lru_cache(maxsize=8192)(SqlglotColumnTreeBuilder.sql.fget))
