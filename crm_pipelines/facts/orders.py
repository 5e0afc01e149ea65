"""``core.purchases`` and ``core.customer_order_facts``: the one definition of a purchase, and the
per-customer order facts every mart and model reads.

A **purchase** is an order of a known customer, placed up to the run's cutoff, whose trimmed, lower-case
status is one of the configured ``purchase_statuses`` (``clv.purchase_statuses``, default ``completed``)
and that is not a refund. Every mart counts purchases this way: the customer 360's ``orders``, the RFM
frequency, the CLV models' frequency and the retention tables cannot disagree.

Customer order facts (one row per unified customer, zeros and NULLs for customers who never bought):
``orders`` (purchases), ``cancelled_orders``, ``refunded_orders``, ``gross_revenue`` (purchases' value),
``revenue`` (net: minus the absolute value of refund records with a negative total),
``average_order_value``, ``first_order_at``, ``last_order_at``, ``days_since_last_order``;
``purchase_days`` (distinct UTC days with a purchase), ``first_purchase_day``, ``last_purchase_day``
and ``repeat_value`` (value of the purchase days after the first): the (x, t_x, T) summary the CLV
models read (x = purchase_days - 1, t_x = last - first, T = as-of day - first); and the purchases in
the ``window_days`` before the as-of day (``orders_recent``) and in the window before that
(``orders_previous``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING

from crm_pipelines.facts.sql import (
    as_bigint,
    as_float,
    bytewise,
    collated_back,
    day_of,
    instant,
    month_of_day,
    ratio,
    text_value,
    truthy,
)
from crm_pipelines.schema import CORE
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

PURCHASES = "purchases"
CUSTOMER_ORDER_FACTS = "customer_order_facts"
CUSTOMER_CATEGORY_FACTS = "customer_category_facts"
ORDER_COLUMNS = ("customer_id", "source", "order_id", "ordered_at", "status", "total_amount_reporting", "is_refund")
PURCHASE_KEY = ("source", "order_id")
"""The columns naming one purchase (its order)."""
PURCHASE_COLUMNS = ("customer_id", "source", "order_id", "ordered_at", "purchase_day", "purchase_month", "amount")


def normalized_statuses(purchase_statuses: Iterable[str]) -> list[str]:
    statuses = sorted({s.strip().lower() for s in purchase_statuses})
    if not statuses:
        raise ValueError("purchase_statuses is empty: name at least one order status that counts as a purchase")
    return statuses


def is_purchase(orders: sa.TableClause, purchase_statuses: Iterable[str]) -> sa.ColumnElement[bool]:
    """The purchase predicate on a core.orders row (besides the cutoff)."""
    import sqlalchemy as sa
    return sa.and_(
        text_value(orders.c.status).in_(normalized_statuses(purchase_statuses)),
        sa.not_(truthy(orders.c.is_refund)),
    )


def core_orders(wh: Warehouse) -> sa.TableClause:
    return wh.table(CORE, "orders", ORDER_COLUMNS)


def purchases_select(wh: Warehouse, cutoff: dt.datetime | pd.Timestamp, purchase_statuses: Iterable[str]) -> sa.Select:
    """One row per purchase (see the module docstring) placed up to ``cutoff``."""
    import sqlalchemy as sa
    orders = core_orders(wh)
    day = day_of(orders.c.ordered_at)
    return sa.select(
        orders.c.customer_id,
        orders.c.source,
        orders.c.order_id,
        orders.c.ordered_at,
        day.label("purchase_day"),
        month_of_day(day).label("purchase_month"),
        as_float(sa.func.coalesce(orders.c.total_amount_reporting, 0.0)).label("amount"),
    ).where(
        orders.c.customer_id.is_not(None),
        orders.c.ordered_at.is_not(None),
        orders.c.ordered_at <= instant(cutoff),
        is_purchase(orders, purchase_statuses),
    )


def purchases_table(wh: Warehouse) -> sa.TableClause:
    return wh.table(CORE, PURCHASES, PURCHASE_COLUMNS)


def first_purchase_days(wh: Warehouse, last_day: int, name: str = "first_purchase_days") -> sa.Subquery:
    """One row per customer with a purchase day up to ``last_day``: ``customer_id`` and ``first_day``."""
    import sqlalchemy as sa
    p = purchases_table(wh)
    return (
        sa.select(p.c.customer_id, sa.func.min(p.c.purchase_day).label("first_day"))
        .where(p.c.purchase_day <= last_day)
        .group_by(p.c.customer_id)
        .subquery(name)
    )


def purchase_days_cte(wh: Warehouse, last_day: int | None = None, name: str = "purchase_days") -> sa.CTE:
    """One row per customer and purchase day (up to ``last_day``): ``customer_id``, ``day``, ``value``."""
    import sqlalchemy as sa
    p = purchases_table(wh)
    customer = bytewise(p.c.customer_id)
    stmt = sa.select(
        collated_back(customer).label("customer_id"), p.c.purchase_day.label("day"),
        sa.func.sum(p.c.amount).label("value"),
    )  # fmt: skip
    if last_day is not None:
        stmt = stmt.where(p.c.purchase_day <= last_day)
    return stmt.group_by(customer, p.c.purchase_day).cte(name)


def ranked_purchase_days(days: sa.CTE) -> sa.Subquery:
    """``days`` (customer_id, day, value) with ``nth``: the day's rank among the customer's purchase days."""
    import sqlalchemy as sa
    return sa.select(
        days.c.customer_id,
        days.c.day,
        days.c.value,
        sa.func.row_number().over(partition_by=bytewise(days.c.customer_id), order_by=days.c.day).label("nth"),
    ).subquery("ranked_days")


def day_summary_cte(days: sa.CTE, name: str = "day_summary") -> sa.CTE:
    """Per customer: purchase days, first and last day, total value and value after the first day."""
    import sqlalchemy as sa
    ranked = ranked_purchase_days(days)
    customer = bytewise(ranked.c.customer_id)
    return (
        sa.select(
            collated_back(customer).label("customer_id"),
            as_bigint(sa.func.count()).label("purchase_days"),
            as_bigint(sa.func.min(ranked.c.day)).label("first_purchase_day"),
            as_bigint(sa.func.max(ranked.c.day)).label("last_purchase_day"),
            as_float(sa.func.sum(sa.case((ranked.c.nth > 1, ranked.c.value), else_=0.0))).label("repeat_value"),
        )
        .group_by(customer)
        .cte(name)
    )


def customer_order_facts_select(
    wh: Warehouse,
    cutoff: dt.datetime | pd.Timestamp,
    as_of_day: int,
    window_days: int,
) -> sa.Select:
    """One row per core.unified_customers row: the order facts of the module docstring.

    Reads core.purchases (built with the same cutoff) for purchases and core.orders for cancellations,
    refunds and net revenue.
    """
    import sqlalchemy as sa
    customers = wh.table(CORE, "unified_customers", ["customer_id"])
    orders = core_orders(wh)
    p = purchases_table(wh)
    amount = sa.func.coalesce(orders.c.total_amount_reporting, 0.0)
    refund = truthy(orders.c.is_refund)
    customer = bytewise(orders.c.customer_id)
    order_counts = (
        sa.select(
            collated_back(customer).label("customer_id"),
            as_bigint(sa.func.sum(sa.case((text_value(orders.c.status) == "cancelled", 1), else_=0))).label(
                "cancelled_orders"
            ),
            as_bigint(sa.func.sum(sa.case((refund, 1), else_=0))).label("refunded_orders"),
            # Refunds are subtracted by their negative amount; a positive "refunded" order just never counted.
            as_float(sa.func.sum(sa.case((sa.and_(refund, amount < 0), amount), else_=0.0))).label("refunds"),
        )
        .where(orders.c.ordered_at.is_not(None), orders.c.ordered_at <= instant(cutoff))
        .group_by(customer)
        .cte("order_counts")
    )
    recent_start = as_of_day - window_days + 1
    purchase_stats = (
        sa.select(
            p.c.customer_id,
            as_bigint(sa.func.count()).label("orders"),
            as_float(sa.func.sum(p.c.amount)).label("gross_revenue"),
            sa.func.min(p.c.ordered_at).label("first_order_at"),
            sa.func.max(p.c.ordered_at).label("last_order_at"),
            as_bigint(sa.func.sum(sa.case((p.c.purchase_day >= recent_start, 1), else_=0))).label("orders_recent"),
            as_bigint(
                sa.func.sum(
                    sa.case(
                        (sa.and_(p.c.purchase_day < recent_start, p.c.purchase_day >= recent_start - window_days), 1),
                        else_=0,
                    )
                )
            ).label("orders_previous"),
        )
        .group_by(p.c.customer_id)
        .cte("purchase_stats")
    )
    days = day_summary_cte(purchase_days_cte(wh))
    orders_n = sa.func.coalesce(purchase_stats.c.orders, 0)
    gross = sa.func.coalesce(purchase_stats.c.gross_revenue, 0.0)
    return (
        sa.select(
            customers.c.customer_id,
            purchase_stats.c.first_order_at,
            purchase_stats.c.last_order_at,
            as_bigint(as_of_day - day_of(purchase_stats.c.last_order_at)).label("days_since_last_order"),
            as_bigint(orders_n).label("orders"),
            as_bigint(sa.func.coalesce(order_counts.c.cancelled_orders, 0)).label("cancelled_orders"),
            as_bigint(sa.func.coalesce(order_counts.c.refunded_orders, 0)).label("refunded_orders"),
            as_float(gross).label("gross_revenue"),
            as_float(gross + sa.func.coalesce(order_counts.c.refunds, 0.0)).label("revenue"),
            ratio(gross, orders_n).label("average_order_value"),
            as_bigint(sa.func.coalesce(purchase_stats.c.orders_recent, 0)).label("orders_recent"),
            as_bigint(sa.func.coalesce(purchase_stats.c.orders_previous, 0)).label("orders_previous"),
            as_bigint(sa.func.coalesce(days.c.purchase_days, 0)).label("purchase_days"),
            days.c.first_purchase_day,
            days.c.last_purchase_day,
            as_float(sa.func.coalesce(days.c.repeat_value, 0.0)).label("repeat_value"),
        )
        .select_from(
            customers.outerjoin(purchase_stats, purchase_stats.c.customer_id == customers.c.customer_id)
            .outerjoin(order_counts, order_counts.c.customer_id == customers.c.customer_id)
            .outerjoin(days, days.c.customer_id == customers.c.customer_id)
        )
    )


def customer_category_facts_select(wh: Warehouse) -> sa.Select:
    """One row per customer and category bought: ``lines``, the purchased order lines of that category.

    A line belongs to the purchase its (source, order_id) names (order ids are unique per source only);
    lines without a category are left out. Segments read the shop's core categories and add-on buyers
    from it, one row per customer and category instead of every order line.
    """
    import sqlalchemy as sa
    items = wh.table(CORE, "order_items", ["source", "order_id", "category"])
    p = wh.table(CORE, PURCHASES, ["customer_id", "source", "order_id"])
    customer, category = bytewise(p.c.customer_id), bytewise(items.c.category)
    return (
        sa.select(
            collated_back(customer).label("customer_id"), collated_back(category).label("category"),
            as_bigint(sa.func.count()).label("lines"),
        )
        .select_from(p.join(items, sa.and_(items.c.source == p.c.source, items.c.order_id == p.c.order_id)))
        .where(items.c.category.is_not(None), items.c.category != "")
        .group_by(customer, category)
    )  # fmt: skip
