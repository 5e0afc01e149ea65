"""The per-customer (frequency, recency, T, monetary value) summary the BTYD models fit on, read from
the warehouse: one row per customer with a purchase, never the orders themselves.

Same conventions as :func:`crm_pipelines.analytics.clv.summary.summary_from_orders` (the reference the
tests hold these queries equal to): purchase days, not orders; monetary value is the mean value of the
repeat purchase days; times in ``time_unit_days``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from crm_pipelines.facts.orders import (
    CUSTOMER_ORDER_FACTS,
    PURCHASES,
    day_summary_cte,
    first_purchase_days,
    purchase_days_cte,
    purchases_table,
)
from crm_pipelines.facts.sql import as_bigint, as_float, period_of
from crm_pipelines.schema import CORE
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

SUMMARY_COLUMNS = ("customer_id", "frequency", "recency", "T", "monetary_value")


def _summary_columns(days: sa.ColumnElement, first: sa.ColumnElement, last: sa.ColumnElement,
                     repeat_value: sa.ColumnElement, end_day: int, time_unit_days: float) -> list:
    import sqlalchemy as sa
    repeats = days - 1
    return [
        as_bigint(repeats).label("frequency"),
        (as_float(last - first) / time_unit_days).label("recency"),
        (as_float(end_day - first) / time_unit_days).label("T"),
        sa.case((repeats > 0, as_float(repeat_value) / as_float(repeats)), else_=0.0).label("monetary_value"),
    ]  # fmt: skip


def without_purchases(wh: Warehouse) -> bool:
    # Before the first nightly run there is no core.purchases: nobody has bought anything yet.
    return not wh.table_exists(CORE, PURCHASES)


def _empty(*extra: str) -> pd.DataFrame:
    import pandas as pd
    return pd.DataFrame(
        {c: pd.Series(dtype="str" if c == "customer_id" else "float64") for c in (*SUMMARY_COLUMNS, *extra)}
    )


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    # Sorted in Python: the warehouse's collation need not be code-point order.
    if frame.empty:  # an empty result carries no types
        frame = frame.astype({"recency": "float64", "T": "float64", "monetary_value": "float64"})
    frame = frame.astype({"customer_id": "str", "frequency": "int64"})
    return frame.sort_values("customer_id", kind="stable").reset_index(drop=True)


def clv_summary_from_facts(wh: Warehouse, as_of_day: int, time_unit_days: float) -> pd.DataFrame:
    """The summary as of ``as_of_day`` from core.customer_order_facts (built for that day)."""
    import sqlalchemy as sa
    if not wh.table_exists(CORE, CUSTOMER_ORDER_FACTS):
        return _empty()
    f = wh.table(
        CORE, CUSTOMER_ORDER_FACTS, ["customer_id", "purchase_days", "first_purchase_day", "last_purchase_day",
                                     "repeat_value"],
    )  # fmt: skip
    stmt = sa.select(
        f.c.customer_id,
        *_summary_columns(
            f.c.purchase_days, f.c.first_purchase_day, f.c.last_purchase_day, f.c.repeat_value, as_of_day,
            time_unit_days,
        ),
    ).where(f.c.purchase_days > 0)  # fmt: skip
    return _sorted(wh.query(stmt))


def clv_summary_from_purchases(wh: Warehouse, as_of_day: int, time_unit_days: float) -> pd.DataFrame:
    """The summary as of ``as_of_day`` aggregated from core.purchases by one query with the day as its
    parameter (for the weekly refit, which runs before the night's facts are rebuilt)."""
    import sqlalchemy as sa
    if without_purchases(wh):
        return _empty()
    summary = day_summary_cte(purchase_days_cte(wh, as_of_day))
    stmt = sa.select(
        summary.c.customer_id,
        *_summary_columns(
            summary.c.purchase_days, summary.c.first_purchase_day, summary.c.last_purchase_day,
            summary.c.repeat_value, as_of_day, time_unit_days,
        ),
    )  # fmt: skip
    return _sorted(wh.query(stmt))


def purchase_day_periods_select(wh: Warehouse, bounds: Sequence[int]) -> sa.Select:
    """One row per customer and period (of ``bounds``, ascending) with purchase days up to the last:
    ``purchase_days``, the ``first_purchase_day`` and ``last_purchase_day`` among them, and
    ``repeat_value``, the value of those after the customer's very first purchase day (the repeat
    purchases the CLV summary's monetary value averages)."""
    import sqlalchemy as sa
    p = purchases_table(wh)
    last = int(bounds[-1])
    firsts = first_purchase_days(wh, last)
    dated = (
        sa.select(p.c.customer_id, period_of(wh, p.c.purchase_day, bounds).label("period"),
                  p.c.purchase_day.label("day"), p.c.amount, firsts.c.first_day)
        .select_from(p.join(firsts, firsts.c.customer_id == p.c.customer_id))
        .where(p.c.purchase_day <= last)
        .subquery("purchase_periods")
    )  # fmt: skip
    return sa.select(
        dated.c.customer_id,
        dated.c.period,
        as_bigint(sa.func.count(sa.distinct(dated.c.day))).label("purchase_days"),
        as_bigint(sa.func.min(dated.c.day)).label("first_purchase_day"),
        as_bigint(sa.func.max(dated.c.day)).label("last_purchase_day"),
        as_float(sa.func.sum(sa.case((dated.c.day > dated.c.first_day, dated.c.amount), else_=0.0))).label(
            "repeat_value"
        ),
    ).group_by(dated.c.customer_id, dated.c.period)


def clv_summaries_at_days(wh: Warehouse, as_of_days: list[int], time_unit_days: float) -> pd.DataFrame:
    """:func:`clv_summary_from_purchases` as of each day of ``as_of_days``, by one query (column
    ``end_day`` names the as-of day; rows sorted by it, then customer_id).

    The query sums each customer's purchase days per period between the days
    (:func:`purchase_day_periods_select`), so each purchase day lands in one row; the summaries are read
    off the running totals by ``analytics.segment_backfill.clv_summaries``."""
    import pandas as pd

    from crm_pipelines.analytics.segment_backfill import PeriodRows, clv_summaries, period_bounds, texts
    if without_purchases(wh) or not as_of_days:
        return _empty("end_day").astype({"end_day": "int64"})
    ends = sorted(set(as_of_days))
    bounds = period_bounds(ends)
    table = wh.query_arrow(purchase_day_periods_select(wh, bounds))
    # Positions in code-point order of the ids: each day's customers come sorted by customer_id.
    positions, ids = pd.factorize(table["customer_id"].to_pandas().astype("str"), sort=True)
    rows = PeriodRows.from_arrow(table, positions.astype("int64"), len(bounds))
    parts = [
        pd.DataFrame({"end_day": end_day, "customer_id": texts(ids, customer), **summary})
        for end_day, (customer, summary) in zip(
            ends, clv_summaries(rows, len(ids), bounds, ends, time_unit_days), strict=True
        )
    ]
    frame = pd.concat(parts, ignore_index=True)[["end_day", *SUMMARY_COLUMNS]]
    return frame.astype({"end_day": "int64", "customer_id": "str", "frequency": "int64", "recency": "float64",
                         "T": "float64", "monetary_value": "float64"})  # fmt: skip


def clv_calibration_summary(
    wh: Warehouse, as_of_day: int, calibration_day: int, time_unit_days: float
) -> pd.DataFrame:
    """The summary of the calibration period (purchase days up to ``calibration_day``) with the holdout
    columns for (calibration_day, as_of_day]: ``frequency_holdout``, ``monetary_value_holdout``,
    ``duration_holdout``; computed from core.purchases with the cutoff as a parameter."""
    import sqlalchemy as sa
    if calibration_day >= as_of_day:
        raise ValueError(f"the calibration end (day {calibration_day}) must be before the as-of day ({as_of_day})")
    if without_purchases(wh):
        return _empty("frequency_holdout", "monetary_value_holdout", "duration_holdout")
    days = purchase_days_cte(wh, as_of_day)
    calibration = sa.select(days).where(days.c.day <= calibration_day).cte("calibration_days")
    summary = day_summary_cte(calibration, "calibration_summary")
    holdout = (
        sa.select(
            days.c.customer_id,
            sa.func.count().label("n"),
            sa.func.avg(days.c.value).label("mean_value"),
        )
        .where(days.c.day > calibration_day)
        .group_by(days.c.customer_id)
        .cte("holdout")
    )
    stmt = sa.select(
        summary.c.customer_id,
        *_summary_columns(
            summary.c.purchase_days, summary.c.first_purchase_day, summary.c.last_purchase_day,
            summary.c.repeat_value, calibration_day, time_unit_days,
        ),
        as_bigint(sa.func.coalesce(holdout.c.n, 0)).label("frequency_holdout"),
        as_float(sa.func.coalesce(holdout.c.mean_value, 0.0)).label("monetary_value_holdout"),
        sa.literal(float(as_of_day - calibration_day) / time_unit_days).label("duration_holdout"),
    ).select_from(summary.outerjoin(holdout, holdout.c.customer_id == summary.c.customer_id))  # fmt: skip
    return _sorted(wh.query(stmt)).astype({"frequency_holdout": "int64"})
