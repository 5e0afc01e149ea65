"""What the loyalty and campaign marts need from core.orders, computed in the warehouse: one row per
customer (or per day) reaches Python, never the orders.

Definitions are those of :func:`crm_pipelines.analytics.activity.bounded_orders` and its users (the pandas
references the tests hold these queries equal to): orders of a customer placed up to the cutoff; a
purchase has a purchase status (``completed`` by default, trimmed and lower-cased) and is not a refund;
an order's revenue effect is the amount of a purchase, minus the absolute amount of a negative refund
record, else 0.

- :func:`regular_customers_select`: ``loyalty.regular_customers`` (purchases in the window up to the
  cutoff, per customer).
- :func:`daily_regulars_select`: ``loyalty.daily_loyalty_kpis``'s regular customers per day.
- :func:`window_outcomes_select`: ``campaign_performance.window_outcomes`` (each enrolled customer's
  purchases and net revenue within her measurement window).
- :func:`month_activity_select`: ``portfolio.month_activity`` (net revenue and purchase in the month).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm_pipelines.analytics.activity import DEFAULT_PURCHASE_STATUSES
from crm_pipelines.facts.orders import is_purchase
from crm_pipelines.facts.sql import as_bigint, as_float, bytewise, collated_back, day_of, instant, truthy
from crm_pipelines.schema import CORE
from crm_pipelines.warehouse import Warehouse


def order_effects(
    wh: Warehouse,
    cutoff: dt.datetime | pd.Timestamp,
    purchase_statuses: Iterable[str] = DEFAULT_PURCHASE_STATUSES,
    name: str = "order_effects",
) -> sa.Subquery:
    """Per order of a customer up to ``cutoff``: customer_id, ordered_at, day, purchase (0/1), revenue."""
    o = wh.table(CORE, "orders", ["customer_id", "ordered_at", "status", "is_refund", "total_amount_reporting"])
    amount = as_float(sa.func.coalesce(o.c.total_amount_reporting, 0.0))
    purchase = is_purchase(o, purchase_statuses)
    refund_back = sa.and_(truthy(o.c.is_refund), amount < 0)
    revenue = sa.case((purchase, amount), else_=0.0) - sa.case((refund_back, -amount), else_=0.0)
    return (
        sa.select(
            o.c.customer_id,
            o.c.ordered_at,
            day_of(o.c.ordered_at).label("day"),
            sa.case((purchase, 1), else_=0).label("purchase"),
            as_float(revenue).label("revenue"),
        )
        .where(o.c.customer_id.is_not(None), o.c.ordered_at.is_not(None), o.c.ordered_at <= instant(cutoff))
        .subquery(name)
    )


def regular_customers_select(
    wh: Warehouse,
    cutoff: dt.datetime | pd.Timestamp,
    window_days: int,
    min_purchases: int,
    *,
    unified_only: bool = True,
) -> sa.Select:
    """customer_id of every regular customer: ``min_purchases`` purchases after ``window_days`` days
    before the cutoff, up to it. ``unified_only=False`` skips the join to core.unified_customers, for
    callers that only test their own customers' membership."""
    orders = order_effects(wh, cutoff)
    since = instant(pd.Timestamp(cutoff) - pd.Timedelta(days=window_days))
    source: sa.FromClause = orders
    if unified_only:
        customers = wh.table(CORE, "unified_customers", ["customer_id"])
        source = orders.join(customers, customers.c.customer_id == orders.c.customer_id)
    customer = bytewise(orders.c.customer_id)
    return (
        sa.select(collated_back(customer).label("customer_id"))
        .select_from(source)
        .where(orders.c.purchase == 1, orders.c.ordered_at > since)
        .group_by(customer)
        .having(sa.func.count() >= min_purchases)
    )


def daily_regulars_select(wh: Warehouse, first_day: int, last_day: int, window_days: int, k: int) -> sa.Select:
    """Regular customers per day number from ``first_day`` to ``last_day``: customers with ``k`` purchases
    in the ``window_days`` days up to the day. Each purchase j with k-1 earlier ones of its customer makes
    her regular on the days [day_j, day_(j-k+1) + window), cut at her next such interval; the count per
    day is the running sum of those intervals' starts minus their ends."""
    end = pd.Timestamp(last_day + 1, unit="D", tz="UTC") - pd.Timedelta(microseconds=1)
    orders = order_effects(wh, end)
    customers = wh.table(CORE, "unified_customers", ["customer_id"])
    # A purchase more than the window before the first day only starts intervals that end before it
    # (each ends by its (k-1)-th earlier purchase's day + window): the output never sees them, so the
    # window passes below skip the older history (the tests hold this to the reference).
    purchases = (
        sa.select(orders.c.customer_id, orders.c.day)
        .select_from(orders.join(customers, customers.c.customer_id == orders.c.customer_id))
        .where(orders.c.purchase == 1, orders.c.day >= first_day - window_days)
        .subquery("regular_purchases")
    )
    p = purchases.c
    by_day = {"partition_by": bytewise(p.customer_id), "order_by": p.day}
    kth_last = sa.func.lag(p.day, k - 1).over(**by_day) if k > 1 else p.day
    # The next interval's start is the next purchase's day, read in the same window as the stop: along
    # a customer's purchases by day the stops never decrease and the k-1 first (without one) come first,
    # so this is the order of her intervals by (begin, stop), and DuckDB sorts her purchases once.
    spans = sa.select(
        p.customer_id,
        p.day.label("begin"),
        (kth_last + window_days).label("stop"),
        sa.func.lead(p.day).over(**by_day).label("next_begin"),
    ).subquery("regular_spans")
    s = spans.c
    # Of intervals starting the same day, the last (the latest stop) is the one kept.
    clipped = (
        sa.select(s.begin, sa.case((s.next_begin < s.stop, s.next_begin), else_=s.stop).label("stop"))
        .where(s.stop.is_not(None))
        # Materialized: the deltas below read the intervals twice and are read twice themselves; as a
        # subquery DuckDB computed the window above four times, most of the query's time.
        .cte("regular_intervals")
        .prefix_with("MATERIALIZED")
    )
    c = clipped.c
    valid = c.stop > c.begin
    deltas = sa.union_all(
        sa.select(c.begin.label("day"), sa.literal(1).label("delta")).where(valid),
        sa.select(c.stop.label("day"), sa.literal(-1).label("delta")).where(valid),
    ).subquery("regular_deltas")
    before = (
        sa.select(as_bigint(sa.func.coalesce(sa.func.sum(deltas.c.delta), 0)).label("n"))
        .where(deltas.c.day < first_day)
        .scalar_subquery()
    )
    per_day = (
        sa.select(deltas.c.day, sa.func.sum(deltas.c.delta).label("delta"))
        .where(deltas.c.day >= first_day, deltas.c.day <= last_day)
        .group_by(deltas.c.day)
        .subquery("regular_day_deltas")
    )
    days = sa.func.generate_series(first_day, last_day).table_valued("day").render_derived(name="kpi_days")
    running = sa.func.sum(sa.func.coalesce(per_day.c.delta, 0)).over(order_by=days.c.day, rows=(None, 0))
    return (
        sa.select(days.c.day, as_bigint(before + running).label("regular_customers"))
        .select_from(days.outerjoin(per_day, per_day.c.day == days.c.day))
        .order_by(days.c.day)
    )


def read_daily_regulars(wh: Warehouse, dates: pd.Series, window_days: int, k: int) -> np.ndarray:
    """Regular customers on each day of ``dates`` (days, as ``crm_kpis.kpi_date``)."""
    days = pd.to_datetime(dates).to_numpy(dtype="datetime64[D]").astype("int64")
    if not len(days):
        return np.zeros(0, dtype="int64")
    lo, hi = int(days.min()), int(days.max())
    counts = wh.query(daily_regulars_select(wh, lo, hi, window_days, k))
    per_day = pd.Series(counts["regular_customers"].astype("int64").to_numpy(), index=counts["day"].astype("int64"))
    return per_day.reindex(days).fillna(0).to_numpy(dtype="int64")


def window_outcomes_select(
    wh: Warehouse, campaign: str, within_days: int, cutoff: dt.datetime | pd.Timestamp, assignments: str
) -> sa.Select:
    """Per enrolled customer of ``campaign`` (in ``marts.<assignments>``) with orders in her window (from
    her enrolment day for ``within_days`` days, up to the cutoff): converted (0/1) and net revenue."""
    orders = order_effects(wh, cutoff)
    a = wh.table("marts", assignments, ["campaign", "customer_id", "enrolled_at"])
    start = day_of(a.c.enrolled_at)
    return (
        sa.select(
            a.c.customer_id,
            sa.func.max(orders.c.purchase).label("converted"),
            as_float(sa.func.sum(orders.c.revenue)).label("revenue"),
        )
        .select_from(a.join(orders, orders.c.customer_id == a.c.customer_id))
        .where(a.c.campaign == campaign, orders.c.day >= start, orders.c.day < start + within_days)
        .group_by(a.c.customer_id)
    )


def month_activity_select(wh: Warehouse, month_start_day: int, until: dt.datetime | pd.Timestamp) -> sa.Select:
    """Per customer with orders from ``month_start_day`` up to ``until``: net revenue and purchased (0/1)."""
    orders = order_effects(wh, until)
    return (
        sa.select(
            orders.c.customer_id,
            as_float(sa.func.sum(orders.c.revenue)).label("revenue"),
            sa.func.max(orders.c.purchase).label("bought"),
        )
        .where(orders.c.day >= month_start_day)
        .group_by(orders.c.customer_id)
    )


def read_window_outcomes(
    wh: Warehouse, assignments_table: str, rows: pd.DataFrame, within_days: int, cutoff: dt.datetime | pd.Timestamp
) -> pd.DataFrame:
    """``window_outcomes`` of one campaign's assignment ``rows`` (as read from ``marts.<assignments_table>``)."""
    campaign = str(rows["campaign"].iloc[0])
    found = wh.query(window_outcomes_select(wh, campaign, within_days, cutoff, assignments_table))
    found = found.set_index(found["customer_id"].astype("str"))
    ids = rows["customer_id"].astype("str")
    converted = found["converted"].reindex(ids).fillna(0).to_numpy(dtype="int64") > 0
    revenue = found["revenue"].reindex(ids).fillna(0.0).to_numpy(dtype="float64")
    return rows.assign(converted=converted, revenue=revenue)


def read_month_activity(
    wh: Warehouse, customers: pd.DataFrame, month: pd.Timestamp, until: dt.datetime | pd.Timestamp
) -> tuple[np.ndarray, np.ndarray]:
    """``month_activity``: per row of ``customers``, net revenue and whether she purchased in the month."""
    start_day = int(pd.Timestamp(month).as_unit("us").asm8.view("int64")) // 86_400_000_000
    found = wh.query(month_activity_select(wh, start_day, until))
    found = found.set_index(found["customer_id"].astype("str"))
    ids = customers["customer_id"].astype("str")
    revenue = found["revenue"].reindex(ids).fillna(0.0).to_numpy(dtype="float64")
    bought = found["bought"].reindex(ids).fillna(0).to_numpy(dtype="int64") > 0
    return revenue, bought


def rfm_inputs_select(wh: Warehouse, cutoff: dt.datetime | pd.Timestamp, growth_window_days: int) -> sa.Select:
    """Per customer with orders up to ``cutoff``: purchases, net revenue, the last purchase day, and
    purchases in the last ``growth_window_days`` days and in the same span before (``segments.rfm_scores``)."""
    orders = order_effects(wh, cutoff)
    age = utc_day_number(cutoff) - orders.c.day
    return sa.select(orders.c.customer_id, *rfm_input_columns(orders, age, growth_window_days)).group_by(
        orders.c.customer_id
    )


def rfm_input_columns(
    orders: sa.FromClause,
    age: sa.ColumnElement[int],
    growth_window_days: int,
    within: sa.ColumnElement[bool] | None = None,
) -> list[sa.ColumnElement]:
    """Aggregates over :func:`order_effects` rows whose age in days (before the cutoff) is ``age``:
    ``frequency``, ``monetary``, ``last_purchase_day``, ``orders_recent`` and ``orders_previous``; with
    ``within``, over the rows where it holds (the others add 0, or nothing to the maximum), so one pass
    over the orders can give them for several cutoffs."""
    import sqlalchemy as sa
    bought = orders.c.purchase == 1 if within is None else sa.and_(within, orders.c.purchase == 1)

    def purchases_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return as_bigint(sa.func.sum(sa.case((sa.and_(bought, condition), 1), else_=0)))

    def only_within(value: sa.ColumnElement, zero: int | float) -> sa.ColumnElement:
        return value if within is None else sa.case((within, value), else_=zero)

    return [
        as_bigint(sa.func.sum(only_within(orders.c.purchase, 0))).label("frequency"),
        as_float(sa.func.sum(only_within(orders.c.revenue, 0.0))).label("monetary"),
        as_bigint(sa.func.max(sa.case((bought, orders.c.day)))).label("last_purchase_day"),
        purchases_if(age < growth_window_days).label("orders_recent"),
        purchases_if(sa.and_(age >= growth_window_days, age < 2 * growth_window_days)).label("orders_previous"),
    ]


def utc_day_number(cutoff: dt.datetime | pd.Timestamp) -> int:
    ts = pd.Timestamp(cutoff)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.as_unit("us").asm8.view("int64")) // 86_400_000_000


def read_rfm_scores(
    wh: Warehouse, customers: pd.DataFrame, as_of: dt.datetime | pd.Timestamp, growth_window_days: int = 180
) -> pd.DataFrame:
    """``segments.rfm_scores`` with the per-customer inputs counted in the warehouse."""
    from crm_pipelines.analytics.segments import scored_rfm

    found = wh.query(rfm_inputs_select(wh, as_of, growth_window_days))
    found = found.set_index(found["customer_id"].astype("str"))
    ids = customers["customer_id"].astype("str")

    def column(name: str, dtype: str, fill: float = 0) -> np.ndarray:
        return found[name].reindex(ids).fillna(fill).to_numpy(dtype=dtype)

    last = found["last_purchase_day"].reindex(ids)
    recency = np.where(last.notna(), utc_day_number(as_of) - last.fillna(0).to_numpy(dtype="int64"), -1)
    return scored_rfm(
        customers,
        recency.astype("int64"),
        column("frequency", "int64"),
        column("monetary", "float64", 0.0),
        column("orders_recent", "int64"),
        column("orders_previous", "int64"),
    )
