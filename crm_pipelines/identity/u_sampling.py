"""Splink's u estimation by random sampling, with the name comparisons counted over distinct names.

Splink draws a seeded sample of records (about 2,450 for three million pairs), joins it with itself
and evaluates each comparison's levels on all three million pairs. The two name comparisons cost
most of that (the most of the first night's training at 100,000 people, and the same at any size),
yet a sample of 2,450 records holds only a few hundred distinct given names and surnames.

A name comparison's levels read the field's own value (and, for a given name, the full names it is
short for, which follow from the name), except the two swap levels, which read the other name field
too. So the counts come in two parts, with the comparison's own SQL:

- every pair of records by the pair of their distinct values, the other field left NULL (so neither
  swap level can hold): n_a * n_b pairs for two values, n_a * (n_a - 1) / 2 within one;
- then the few record pairs where a swap level can hold (each record's name within one typo of the
  other's other name: what both swap levels require) move from that level to their real one.

The first part assumes a level does not depend on which record of a pair is on the left, true of
the name levels (equality, edit distances, Jaro-Winkler, shared list members). Only the counting
changes: Splink still draws the sample, turns counts into u probabilities and records them, and
counts the other comparisons itself. ``tests/test_identity_training.py`` checks the u values equal
Splink's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import splink.internals.estimate_u as splink_estimate_u

_splink_counts = splink_estimate_u._accumulate_u_counts_from_chunk_and_check_min_count


def _counter(swap_partners: Mapping[str, str], near_sql: Callable[[str, str], str]) -> Callable[..., bool]:
    def counts(**kwargs: Any) -> bool:
        """A drop-in for Splink's per-chunk counting (splink 5.0); anything but a name comparison over
        the one whole-sample chunk of a deduplication is left to Splink."""
        comparison = kwargs["comparison"]
        partner = swap_partners.get(comparison.output_column_name)
        if (
            partner is None
            or kwargs["link_type"] != "dedupe_only"
            or kwargs["split_sqls"]
            or kwargs["rhs_num_chunks"] != 1
            or kwargs.get("probe_percent_of_max_pairs") is not None
            or kwargs["min_count_per_level"] is not None
        ):
            return _splink_counts(**kwargs)
        rows = kwargs["db_api"]._execute_sql_against_backend(
            _counts_sql(comparison, partner, kwargs["df_sample"].physical_name, kwargs, near_sql)
        )
        kwargs["counts_accumulator"].update_from_chunk_counts(
            [{"comparison_vector_value": value, "m_count": 0.0, "u_count": count} for value, count in rows.fetchall()]
        )
        return False

    return counts


def _counts_sql(
    comparison: Any, partner: str, sample: str, kwargs: Mapping[str, Any], near_sql: Callable[[str, str], str]
) -> str:
    field = comparison.output_column_name
    uid = kwargs["unique_id_input_column"].unquote().name
    columns = [c.unquote().name for c in comparison._input_columns_used_by_case_statement]
    own = [c for c in columns if c != partner]
    case = comparison._case_statement.rsplit(" as ", 1)[0]
    case_by_value = case.replace(f'"{partner}_l"', "NULL::VARCHAR").replace(f'"{partner}_r"', "NULL::VARCHAR")
    own_values = ", ".join(f'"{c}"' for c in own)
    by_value = ", ".join(
        [f'l."{c}" AS "{c}_l", r."{c}" AS "{c}_r"' for c in own]
        + [f'NULL::VARCHAR AS "{partner}_l", NULL::VARCHAR AS "{partner}_r"']
    )
    by_record = ", ".join(f'l."{c}" AS "{c}_l", r."{c}" AS "{c}_r"' for c in columns)
    return f"""
        WITH value_counts AS MATERIALIZED (
            SELECT {own_values}, count(*) AS n, row_number() OVER () AS v FROM {sample} GROUP BY ALL
        ),
        value_pairs AS (
            SELECT {by_value}, l.n * r.n AS pairs FROM value_counts AS l JOIN value_counts AS r ON l.v < r.v
            UNION ALL
            SELECT {by_value}, l.n * (l.n - 1) // 2 FROM value_counts AS l JOIN value_counts AS r ON l.v = r.v
            WHERE l.n > 1
        ),
        near AS MATERIALIZED (
            SELECT x, y FROM (SELECT DISTINCT "{field}" AS x FROM {sample} WHERE "{field}" IS NOT NULL)
            CROSS JOIN (SELECT DISTINCT "{partner}" AS y FROM {sample} WHERE "{partner}" IS NOT NULL)
            WHERE {near_sql("x", "y")}
        ),
        swap_pairs AS (
            SELECT {by_record} FROM {sample} AS l
            JOIN near AS a ON a.x = l."{field}"
            JOIN {sample} AS r ON r."{partner}" = a.y
            JOIN near AS b ON b.x = r."{field}" AND b.y = l."{partner}"
            WHERE l."{uid}" < r."{uid}"
        ),
        swap_records AS (
            SELECT {case} AS real, {case_by_value} AS by_value
            FROM swap_pairs
        )
        SELECT gamma, sum(pairs)::DOUBLE FROM (
            SELECT {case} AS gamma, pairs FROM value_pairs
            UNION ALL SELECT by_value, -1 FROM swap_records
            UNION ALL SELECT real, 1 FROM swap_records
        ) GROUP BY gamma
    """


@contextmanager
def names_counted_by_distinct_values(
    swap_partners: Mapping[str, str], near_sql: Callable[[str, str], str]
) -> Iterator[None]:
    """Within it, ``estimate_u_using_random_sampling`` counts the comparisons named in
    ``swap_partners`` (comparison -> the other name field its swap levels read) by distinct names;
    ``near_sql(a, b)``: the SQL both swap levels require of each record's name and the other's other name."""
    splink_estimate_u._accumulate_u_counts_from_chunk_and_check_min_count = _counter(swap_partners, near_sql)
    try:
        yield
    finally:
        splink_estimate_u._accumulate_u_counts_from_chunk_and_check_min_count = _splink_counts
