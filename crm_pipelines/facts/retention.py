"""``marts.retention_cohorts`` and ``marts.retention_summary`` as warehouse queries over core.purchases.

The definitions are those of :mod:`crm_pipelines.analytics.retention` (the pandas reference, which the
tests hold these queries equal to): purchases only, UTC calendar months, the month holding the as-of day
included but flagged ``period_complete = false`` unless the as-of day is its last day.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crm_pipelines.facts.orders import purchases_table
from crm_pipelines.facts.sql import as_bigint, as_float, month_series, ratio
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import sqlalchemy as sa


def month_start(month: sa.ColumnElement[int]) -> sa.ColumnElement:
    """The first day of a month number, as a date."""
    import sqlalchemy as sa
    year = sa.cast(sa.func.floor(as_float(month) / 12), sa.Integer) + 1970
    return sa.func.make_date(year, sa.cast(sa.func.mod(month, 12), sa.Integer) + 1, 1)


def _monthly(wh: Warehouse, end_day: int, days: bool = False) -> tuple[sa.CTE, sa.CTE]:
    """Per customer and month with a purchase: its value (and with ``days``, its first and last purchase
    day); and each customer's first month (cohort)."""
    import sqlalchemy as sa
    p = purchases_table(wh)
    bounds = (
        [sa.func.min(p.c.purchase_day).label("first_day"), sa.func.max(p.c.purchase_day).label("last_day")]
        if days
        else []
    )
    monthly = (
        sa.select(
            p.c.customer_id, p.c.purchase_month.label("month"), sa.func.sum(p.c.amount).label("value"), *bounds
        )
        .where(p.c.purchase_day <= end_day)
        .group_by(p.c.customer_id, p.c.purchase_month)
        .cte("monthly")
    )
    firsts = (
        sa.select(monthly.c.customer_id, sa.func.min(monthly.c.month).label("cohort"))
        .group_by(monthly.c.customer_id)
        .cte("first_months")
    )
    return monthly, firsts


def first_purchase_month(wh: Warehouse, end_day: int) -> int | None:
    """The month of the earliest purchase up to ``end_day``, or None without purchases."""
    import sqlalchemy as sa
    p = purchases_table(wh)
    stmt = sa.select(sa.func.min(p.c.purchase_month)).where(p.c.purchase_day <= end_day)
    with wh.connect() as conn:
        value = conn.execute(stmt).scalar()
    return None if value is None else int(value)


def _complete(month: sa.ColumnElement[int], as_of_month: int, as_of_month_complete: bool) -> sa.ColumnElement[bool]:
    import sqlalchemy as sa
    return sa.or_(month < as_of_month, sa.literal(as_of_month_complete))


def retention_cohorts_select(
    wh: Warehouse, end_day: int, first_month: int, as_of_month: int, as_of_month_complete: bool
) -> sa.Select:
    """Every cohort and every month from its first to the as-of month (the full triangle)."""
    import sqlalchemy as sa
    monthly, firsts = _monthly(wh, end_day)
    sizes = (
        sa.select(firsts.c.cohort, sa.func.count().label("cohort_size")).group_by(firsts.c.cohort).cte("cohort_sizes")
    )
    activity = (
        sa.select(
            firsts.c.cohort,
            monthly.c.month,
            sa.func.count().label("customers_active"),
            sa.func.sum(monthly.c.value).label("revenue"),
        )
        .select_from(monthly.join(firsts, firsts.c.customer_id == monthly.c.customer_id))
        .group_by(firsts.c.cohort, monthly.c.month)
        .cte("cohort_activity")
    )
    base = activity.alias("first_month_activity")
    months = month_series(first_month, as_of_month)
    active = sa.func.coalesce(activity.c.customers_active, 0)
    revenue = as_float(sa.func.coalesce(activity.c.revenue, 0.0))
    return (
        sa.select(
            month_start(sizes.c.cohort).label("cohort_month"),
            as_bigint(months.c.month - sizes.c.cohort).label("months_since_first"),
            month_start(months.c.month).label("activity_month"),
            as_bigint(sizes.c.cohort_size).label("cohort_size"),
            as_bigint(active).label("customers_active"),
            ratio(active, sizes.c.cohort_size).label("retention_rate"),
            revenue.label("revenue"),
            ratio(revenue, base.c.revenue).label("revenue_retention"),
            _complete(months.c.month, as_of_month, as_of_month_complete).label("period_complete"),
        )
        .select_from(
            sizes.join(months, months.c.month >= sizes.c.cohort)
            .outerjoin(activity, sa.and_(activity.c.cohort == sizes.c.cohort, activity.c.month == months.c.month))
            .join(base, sa.and_(base.c.cohort == sizes.c.cohort, base.c.month == sizes.c.cohort))
        )
        .order_by(sizes.c.cohort, months.c.month)
    )


def retention_summary_select(
    wh: Warehouse, end_day: int, first_month: int, as_of_month: int, as_of_month_complete: bool
) -> sa.Select:
    """One row per month from the first purchase month to the as-of month."""
    import sqlalchemy as sa
    monthly, firsts = _monthly(wh, end_day, days=True)
    # A customer becomes a repeat customer in the month of her second purchase day: her first month when
    # it holds two purchase days (its first and last differ), else her next month with a purchase. Read
    # from the months, this spares joining every purchase to her first day again (at 100,000 people the
    # query took 0.21 CPU s against 0.23 s on DuckDB, 1.6 s against 1.9-2.0 s on PostgreSQL); ranking her
    # purchase days with a window cost twice that join on DuckDB.
    m, f = monthly.c, firsts.c
    repeat_month = sa.case(
        (sa.and_(m.month == f.cohort, m.first_day < m.last_day), m.month), (m.month > f.cohort, m.month)
    )
    repeat_starts = (
        sa.select(sa.func.min(repeat_month).label("month"))
        .select_from(monthly.join(firsts, f.customer_id == m.customer_id))
        .group_by(m.customer_id)
        .subquery("repeat_months")
    )
    repeats = (
        sa.select(repeat_starts.c.month, sa.func.count().label("n"))
        .where(repeat_starts.c.month.is_not(None))
        .group_by(repeat_starts.c.month)
        .cte("repeat_starts")
    )
    active = sa.select(monthly.c.month, sa.func.count().label("n")).group_by(monthly.c.month).cte("active")
    new = sa.select(firsts.c.cohort.label("month"), sa.func.count().label("n")).group_by(firsts.c.cohort).cte("new")
    before = monthly.alias("month_before")
    retained = (
        sa.select(monthly.c.month, sa.func.count().label("n"))
        .select_from(
            monthly.join(
                before, sa.and_(before.c.customer_id == monthly.c.customer_id, before.c.month == monthly.c.month - 1)
            )
        )
        .group_by(monthly.c.month)
        .cte("retained")
    )
    months = month_series(first_month, as_of_month)
    per_month = (
        sa.select(
            months.c.month,
            as_bigint(sa.func.coalesce(active.c.n, 0)).label("active"),
            as_bigint(sa.func.coalesce(new.c.n, 0)).label("new"),
            as_bigint(sa.func.coalesce(repeats.c.n, 0)).label("repeats"),
            as_bigint(sa.func.coalesce(retained.c.n, 0)).label("retained"),
        )
        .select_from(
            months.outerjoin(active, active.c.month == months.c.month)
            .outerjoin(new, new.c.month == months.c.month)
            .outerjoin(repeats, repeats.c.month == months.c.month)
            .outerjoin(retained, retained.c.month == months.c.month)
        )
        .cte("per_month")
    )
    running = sa.select(
        per_month,
        as_bigint(sa.func.sum(per_month.c.new).over(order_by=per_month.c.month)).label("acquired"),
        as_bigint(sa.func.sum(per_month.c.repeats).over(order_by=per_month.c.month)).label("repeat_customers"),
        as_bigint(sa.func.coalesce(sa.func.lag(per_month.c.active).over(order_by=per_month.c.month), 0)).label(
            "previous"
        ),
    ).cte("running")
    retention = ratio(running.c.retained, running.c.previous)
    return sa.select(
        month_start(running.c.month).label("period_month"),
        as_bigint(running.c.acquired - running.c.new).label("customers_acquired_before"),
        running.c.previous.label("active_previous_month"),
        running.c.active.label("active_customers"),
        running.c.new.label("new_customers"),
        as_bigint(running.c.active - running.c.new).label("returning_customers"),
        running.c.retained.label("retained_customers"),
        retention.label("retention_rate"),
        (1.0 - retention).label("churn_rate"),
        running.c.repeat_customers,
        ratio(running.c.repeat_customers, running.c.acquired).label("repeat_purchase_rate"),
        _complete(running.c.month, as_of_month, as_of_month_complete).label("period_complete"),
    ).order_by(running.c.month)
