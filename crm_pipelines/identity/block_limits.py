"""Bound the pairs a broad blocking rule makes, so scoring grows about linearly with the records.

A rule compares every pair of records sharing its key: a block of n records makes n(n-1)/2 pairs,
so the few largest blocks (common names in one postal region, a common surname's first letters
with a birth year) grow with the square of the records and dominate the run at a million records.
Each rule but the strong identifiers (email, phone and declared identifiers, which
``shared_value_limit`` bounds already) therefore skips blocks of more than
``identity.max_block_size`` records: their pairs are left to the other rules, which split the same
people by other keys (a birth date, a postcode, a city). Every record of a block has the same size,
so the rule checks it on both sides of the join, and DuckDB filters the records out before joining.

The sizes are columns ``block_size_<n>`` of ``match_records``, counted over all records (on an
incremental night too, so a block does not escape the cap by arriving a few records a night).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

BLOCK_SIZE_PREFIX = "block_size_"


@dataclass(frozen=True)
class BlockKey:
    """The SQL expressions over ``match_records`` whose equal values make one block of a rule."""

    keys: tuple[str, ...]
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or " + ".join(self.keys)


def size_column(index: int) -> str:
    return f"{BLOCK_SIZE_PREFIX}{index}"


def capped_rule_sql(rule_sql: str, index: int, max_block_size: int) -> str:
    """``rule_sql`` restricted to blocks of at most ``max_block_size`` records."""
    column = size_column(index)
    cap = int(max_block_size)
    return f"({rule_sql}) AND l.{column} <= {cap} AND r.{column} <= {cap}"


def add_block_sizes(con: duckdb.DuckDBPyConnection, block_keys: Sequence[BlockKey | None]) -> None:
    """Add each keyed rule's block size to ``match_records`` (NULL where a key value is missing).

    ``block_keys`` is aligned with the prediction rules; ``None`` marks a rule that is never capped.
    Columns from an earlier call are replaced.
    """
    existing = [
        row[0]
        for row in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'match_records' "
            "AND starts_with(column_name, $prefix)",
            {"prefix": BLOCK_SIZE_PREFIX},
        ).fetchall()
    ]
    sizes = []
    for index, block in enumerate(block_keys):
        if block is None:
            continue
        keys = ", ".join(block.keys)
        present = " AND ".join(f"({key}) IS NOT NULL" for key in block.keys)
        sizes.append(
            f"CASE WHEN {present} THEN count(*) OVER (PARTITION BY {keys}) END::INTEGER AS {size_column(index)}"
        )
    if not sizes and not existing:
        return
    exclude = f"EXCLUDE ({', '.join(existing)})" if existing else ""
    columns = ", ".join([f"* {exclude}", *sizes])
    con.execute(f"CREATE OR REPLACE TABLE match_records AS SELECT {columns} FROM match_records ORDER BY unique_id")


def oversized_blocks(
    con: duckdb.DuckDBPyConnection, block_keys: Sequence[BlockKey | None], max_block_size: int
) -> dict[str, dict[str, int]]:
    """Per capped rule with oversized blocks: how many blocks, their records, and the pairs not made.

    The pairs are an upper bound for the swapped-name rules, whose block (the unordered pair of
    names) makes pairs only across its two orders.
    """
    found: dict[str, dict[str, int]] = {}
    for index, block in enumerate(block_keys):
        if block is None:
            continue
        column = size_column(index)
        blocks, records, pairs = con.execute(
            f"""
            SELECT count(*), coalesce(sum(n), 0), coalesce(sum(n * (n - 1) // 2), 0)
            FROM (SELECT {', '.join(block.keys)}, any_value({column})::BIGINT AS n FROM match_records
                  WHERE {column} > $cap GROUP BY ALL)
            """,
            {"cap": int(max_block_size)},
        ).fetchall()[0]
        if blocks:
            found[block.name] = {"blocks": int(blocks), "records": int(records), "pairs_skipped": int(pairs)}
    return found
