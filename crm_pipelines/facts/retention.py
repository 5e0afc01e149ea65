"""``marts.retention_cohorts`` and ``marts.retention_summary`` as warehouse queries over core.purchases.

The definitions are those of :mod:`crm_pipelines.analytics.retention` (the pandas reference, which the
tests hold these queries equal to): purchases only, UTC calendar months, the month holding the as-of day
included but flagged ``period_complete = false`` unless the as-of day is its last day.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crm_pipelines.facts.orders import purchases_table
from crm_pipelines.facts.sql import as_bigint, as_float, bytewise, month_series, ratio
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
    # The customer ids never leave the query: grouped and joined under the byte order (see bytewise).
    customer = bytewise(p.c.customer_id)
    monthly = (
        sa.select(customer.label("customer_id"), p.c.purchase_month.label("month"),
                  sa.func.sum(p.c.amount).label("value"), *bounds)
        .where(p.c.purchase_day <= end_day)
        .group_by(customer, p.c.purchase_month)
        .cte("monthly")
    )  # fmt: skip
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
    monthly, _ = _monthly(wh, end_day, days=True)
    m = monthly.c
    # One pass along each customer's months with a purchase gives every per-month count: her first month
    # (new), a month right after one with a purchase (retained), and the month she becomes a repeat
    # customer, that of her second purchase day: her first month when it holds two purchase days (its
    # first and last differ), else her second month. The months come out of their aggregate sorted by
    # customer and month, so PostgreSQL runs the window without sorting again; the self-join of the
    # months, the join to the first months and their three aggregates took about 1 s at 100,000 people.
    by_customer = {"partition_by": m.customer_id, "order_by": m.month}
    two_days = m.first_day < m.last_day
    sequence = sa.select(
        m.month,
        sa.func.row_number().over(**by_customer).label("nth"),
        sa.func.lag(m.month).over(**by_customer).label("previous_month"),
        two_days.label("two_days"),
        sa.func.lag(two_days).over(**by_customer).label("first_two_days"),
    ).subquery("customer_months")
    q = sequence.c

    def count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.sum(sa.case((condition, 1), else_=0))

    counts = (
        sa.select(
            q.month,
            sa.func.count().label("active"),
            count_if(q.nth == 1).label("new"),
            count_if(sa.or_(sa.and_(q.nth == 1, q.two_days), sa.and_(q.nth == 2, sa.not_(q.first_two_days))))
            .label("repeats"),
            count_if(q.previous_month == q.month - 1).label("retained"),
        )
        .group_by(q.month)
        .subquery("month_counts")
    )  # fmt: skip
    months = month_series(first_month, as_of_month)
    per_month = (
        sa.select(
            months.c.month,
            *(as_bigint(sa.func.coalesce(counts.c[n], 0)).label(n) for n in ("active", "new", "repeats", "retained")),
        )
        .select_from(months.outerjoin(counts, counts.c.month == months.c.month))
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
