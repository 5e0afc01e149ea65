"""The cached Splink parses answer exactly what Splink's own functions answer."""

import pytest
from splink.internals.input_column import InputColumn, SqlglotColumnTreeBuilder

import crm_pipelines.identity.splink_cache as splink_cache

_uncached_parse = SqlglotColumnTreeBuilder.from_raw_column_name_or_column_reference.__func__.__wrapped__
_uncached_sql = SqlglotColumnTreeBuilder.sql.fget.__wrapped__

NAMES = ["first_name", "first name", "group", "index", "coords['lat']", "arr[1]", "arr[-1]", "\"sur NAME\"['lat']"]


@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
@pytest.mark.parametrize("name", NAMES)
def test_input_column_names_match_splinks_own(name: str, dialect: str) -> None:
    column = InputColumn(name, sqlglot_dialect_str=dialect)
    again = InputColumn(name, sqlglot_dialect_str=dialect)
    assert column.col_builder == _uncached_parse(SqlglotColumnTreeBuilder, name, dialect)
    for builder in (
        column.col_builder,
        column.unquote().col_builder,
        column.quote().col_builder,
    ):
        assert builder.sql == _uncached_sql(builder)
    names = [column.name, *column.names_l_r, *column.l_r_names_as_l_r, *column.tf_name_l_r, *column.l_r_tf_names_as_l_r]
    assert names == [
        again.name,
        *again.names_l_r,
        *again.l_r_names_as_l_r,
        *again.tf_name_l_r,
        *again.l_r_tf_names_as_l_r,
    ]


def test_the_cache_tells_dialects_apart() -> None:
    builder = SqlglotColumnTreeBuilder.from_raw_column_name_or_column_reference("first_name", "duckdb")
    other = SqlglotColumnTreeBuilder.from_raw_column_name_or_column_reference("first_name", "postgres")
    assert builder.sqlglot_dialect == "duckdb"
    assert other.sqlglot_dialect == "postgres"


def test_a_name_that_does_not_parse_raises_every_time() -> None:
    for _ in range(2):
        with pytest.raises(ValueError, match="Could not parse input column"):
            SqlglotColumnTreeBuilder.from_raw_column_name_or_column_reference('a"b', "duckdb")


def test_columns_used_are_a_fresh_list_each_call() -> None:
    sql = 'l."email" = r."email" and l.dob = r.dob'
    first = splink_cache.columns_used_from_sql(sql, "duckdb")
    first.append("mutated")
    assert splink_cache.columns_used_from_sql(sql, "duckdb") == first[:-1]
