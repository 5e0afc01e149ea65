"""The facts layer's day and month numbers are the same on DuckDB and PostgreSQL, whatever the session's
time zone, at the edges: the last microsecond of a day, before 1970, leap days, far years."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_pipelines.facts.build import utc_day
from crm_pipelines.facts.sql import compiled, day_of, month_of_day
from crm_pipelines.warehouse import Warehouse

EDGES = [
    "1969-12-31 23:59:59.999999+00:00",
    "1970-01-01 00:00:00+00:00",
    "1900-02-28 23:59:59.999999+00:00",
    "2024-02-29 23:59:59.999999+00:00",
    "2024-03-01 00:00:00+00:00",
    "2026-12-05 23:30:00-08:00",  # already the next UTC day
    "2026-12-31 23:59:59.999999+00:00",
    "2262-04-11 23:47:16.854775+00:00",
    "1677-09-21 00:12:43.145225+00:00",
]


def expected_month(day: int) -> int:
    date = pd.Timestamp("1970-01-01") + pd.Timedelta(days=day)
    return (date.year - 1970) * 12 + date.month - 1


def day_and_month_numbers(wh: Warehouse, stamps: list[pd.Timestamp]) -> list[tuple[int, int]]:
    table = pa.table({"i": pa.array(range(len(stamps)), pa.int64()),
                      "ts": pa.array(stamps, pa.timestamp("us", tz="UTC"))})  # fmt: skip
    wh.write_table(table, "core", "day_edges", mode="replace")
    t = wh.table("core", "day_edges", ["i", "ts"])
    day = day_of(t.c.ts)
    query = compiled(wh, sa.select(day.label("day"), month_of_day(day).label("month")).order_by(t.c.i))
    with wh.connect() as conn:
        if wh.dialect == "postgresql":  # the UTC day must not follow the session's zone
            conn.execute(sa.text("SET LOCAL TIME ZONE 'America/Los_Angeles'"))
        return [tuple(row) for row in conn.execute(sa.text(query))]


def test_day_and_month_numbers_at_the_edges(warehouse: Warehouse):
    stamps = [pd.Timestamp(s).tz_convert("UTC") for s in EDGES]
    got = day_and_month_numbers(warehouse, stamps)
    want = [(utc_day(ts), expected_month(utc_day(ts))) for ts in stamps]
    assert got == want


INSTANTS = st.integers(min_value=-9_000_000_000_000_000, max_value=9_000_000_000_000_000)  # microseconds


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(INSTANTS, min_size=1, max_size=40))
def test_day_and_month_numbers_of_any_instant(warehouse: Warehouse, micros):
    stamps = [pd.Timestamp(m * 1000, tz="UTC") for m in micros]
    got = day_and_month_numbers(warehouse, stamps)
    assert got == [(utc_day(ts), expected_month(utc_day(ts))) for ts in stamps]
