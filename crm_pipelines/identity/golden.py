"""Survivorship: the golden record of each customer, and which record each field came from.

For each field, among the customer's records with a value: first the sources listed for that
field in ``field_priority`` (in that order), then the source's default priority (lower wins), then
the most recently updated record; source and record id break the last ties. The address is chosen
as one block: street, city, postcode, region and country come from the record that wins
``address_line1`` (falling back field by field only where that record lacks one), so a golden
record never pairs one record's street with another's city.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import duckdb
import pandas as pd
import pyarrow as pa

from crm_pipelines.identity.settings import GOLDEN_FIELDS
from crm_pipelines.schema import UNIFIED_CUSTOMER_COLUMNS

ADDRESS_BLOCK = ("address_line2", "city", "postcode", "region", "country")
LINEAGE_COLUMNS = ("customer_id", "field", "source", "source_record_id")
_UNRANKED = 1_000_000
_EMPTY_VALUES = {"gender": "('unknown', '')"}


_RECORD_ORDER = (
    "priority, coalesce(-epoch_us(updated_at), 9223372036854775807), source, source_record_id"
)
"""The order among a customer's records after the field's listed sources: the source's default
priority, the most recently updated first, then source and record id. Every record has its own
place in it (a key is one record), so it is numbered once per run (``golden_rank``) and each field
compares integers instead of a struct of five values, strings among them (golden records of the
100,000-people demo: 3.4-3.7 CPU seconds before, 3.0-3.2 after)."""


def _order_key(field: str, field_priority: Mapping[str, Sequence[str]]) -> str:
    listed = list(field_priority.get(field, ()))
    if not listed:
        return "g.golden_rank"
    rank = f"coalesce(nullif(list_position({listed!r}::VARCHAR[], r.source), 0), {_UNRANKED})"
    return f"struct_pack(k1 := {rank}, k2 := g.golden_rank)"


def _present(field: str) -> str:
    empty = _EMPTY_VALUES.get(field)
    value = f"CAST({field} AS VARCHAR)"
    return f"({field} IS NOT NULL AND trim({value}) <> ''" + (
        f" AND lower({value}) NOT IN {empty})" if empty else ")"
    )


GOLDEN_CHUNK_RECORDS = 500_000
"""Records whose customers are aggregated at once. The aggregation holds every field's candidate
values per customer: over all 2.16 million records of a million people it took 2.5 GB besides the
engine's tables, so customers are taken in ranges of their ids, each range's golden records and
lineage fetched (in order) before the next range is aggregated."""


def _customer_ranges(con: duckdb.DuckDBPyConnection, assignments: str, chunk_records: int) -> list[str]:
    """Conditions on ``a.customer_id`` splitting the customers into ranges of about ``chunk_records``
    records each, in id order (a customer is never split); the last range takes a null id too."""
    records = int(con.execute(f"SELECT count(*) FROM {assignments}").fetchall()[0][0])
    parts = max(1, -(-records // max(1, chunk_records)))
    bounds: list[str] = []
    if parts > 1:
        fractions = [i / parts for i in range(1, parts)]
        found = con.execute(
            f"SELECT quantile_disc(customer_id, $fractions) FROM {assignments}", {"fractions": fractions}
        ).fetchall()[0][0]
        bounds = sorted({b for b in found or () if b is not None})
    edges = [None, *bounds, None]
    conditions = []
    for low, high in itertools.pairwise(edges):
        terms = [f"a.customer_id >= {_literal(low)}"] if low is not None else []
        terms += [f"a.customer_id < {_literal(high)}"] if high is not None else []
        condition = " AND ".join(terms) or "true"
        conditions.append(condition if high is not None else f"({condition} OR a.customer_id IS NULL)")
    return conditions


def _literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def build_golden_records(
    con: duckdb.DuckDBPyConnection,
    assignments: str,
    field_priority: Mapping[str, Sequence[str]],
    chunk_records: int = GOLDEN_CHUNK_RECORDS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Golden records and lineage for the customers in ``assignments`` (unique_id, customer_id),
    ordered by customer_id (and field); computed for ranges of about ``chunk_records`` records at a
    time (see :data:`GOLDEN_CHUNK_RECORDS`), which changes nothing in the result."""
    aggregates = []
    for field in GOLDEN_FIELDS:
        aggregates.append(
            f"arg_min(struct_pack(v := {field}, s := source, r := source_record_id), "
            f'{_order_key(field, field_priority)}) FILTER (WHERE {_present(field)}) AS "{field}"'
        )
    block = ", ".join(f"{f} := {f}" for f in ("address_line1", *ADDRESS_BLOCK))
    aggregates.append(
        f"arg_min(struct_pack({block}, s := source, r := source_record_id), "
        f"{_order_key('address_line1', field_priority)}) "
        f"FILTER (WHERE {_present('address_line1')}) AS address"
    )
    # Address fields: the winning address record's value where it has one, else field by field.
    chosen = {}
    for field in GOLDEN_FIELDS:
        if field in ADDRESS_BLOCK:
            use_block = f"address.{field} IS NOT NULL AND trim(CAST(address.{field} AS VARCHAR)) <> ''"
            chosen[field] = (
                f'CASE WHEN {use_block} THEN address.{field} ELSE "{field}".v END',
                f'CASE WHEN {use_block} THEN address.s ELSE "{field}".s END',
                f'CASE WHEN {use_block} THEN address.r ELSE "{field}".r END',
            )
        else:
            chosen[field] = (f'"{field}".v', f'"{field}".s', f'"{field}".r')
    unified_columns = [c.name for c in UNIFIED_CUSTOMER_COLUMNS]
    select = ", ".join(f'{chosen[c][0]} AS "{c}"' if c in chosen else f'"{c}"' for c in unified_columns)
    lineage_parts = [
        f"SELECT customer_id, '{field}' AS field, {chosen[field][1]} AS source, "
        f"{chosen[field][2]} AS source_record_id "
        f"FROM golden_parts WHERE {chosen[field][0]} IS NOT NULL"
        for field in GOLDEN_FIELDS
    ]
    unified_parts: list[pa.Table] = []
    lineage_chunks: list[pa.Table] = []
    # Only the ranks: a copy of the records with them would hold every record twice (gigabytes at a
    # million people, beside the engine's other tables).
    con.execute(
        "CREATE OR REPLACE TEMP TABLE golden_ranks AS "
        f"SELECT unique_id, row_number() OVER (ORDER BY {_RECORD_ORDER}) AS golden_rank FROM records"
    )
    for condition in _customer_ranges(con, assignments, chunk_records):
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE golden_parts AS
            SELECT a.customer_id, {", ".join(aggregates)},
                   min(r.created_at) AS created_at, max(r.updated_at) AS updated_at,
                   count(*) AS record_count, string_agg(DISTINCT r.source, ',' ORDER BY r.source) AS sources
            FROM records AS r JOIN golden_ranks AS g USING (unique_id) JOIN {assignments} AS a USING (unique_id)
            WHERE {condition}
            GROUP BY a.customer_id
            """
        )
        unified_parts.append(con.execute(f"SELECT {select} FROM golden_parts ORDER BY customer_id").to_arrow_table())
        lineage_chunks.append(
            con.execute(" UNION ALL ".join(lineage_parts) + " ORDER BY customer_id, field").to_arrow_table()
        )
        con.execute("DROP TABLE golden_parts")
    con.execute("DROP TABLE golden_ranks")
    unified = _frame(unified_parts)
    del unified_parts
    lineage = _frame(lineage_chunks)
    del lineage_chunks
    unified["record_count"] = unified["record_count"].astype("int64")
    return unified, lineage[list(LINEAGE_COLUMNS)]


def _frame(chunks: list[pa.Table]) -> pd.DataFrame:
    """One frame of the ranges' results, in their order (as :func:`fetch_frame` would return it)."""
    return (chunks[0] if len(chunks) == 1 else pa.concat_tables(chunks)).to_pandas()
