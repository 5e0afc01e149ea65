"""``marts.customer_360`` as one warehouse query: the golden profile, the order and engagement facts,
the categories bought, marketing consent, and the per-customer marts (segments, CLV, churn risk).

Definitions are those of :func:`crm_pipelines.analytics.customer360.customer_360` (the pandas
reference the tests hold this query equal to); consent follows
:func:`crm_pipelines.analytics.audiences.marketing_consent` for ``consent_status`` and ``consent_at``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa

from crm_pipelines.facts.activity import regular_customers_select
from crm_pipelines.facts.engagement import CUSTOMER_ENGAGEMENT_FACTS
from crm_pipelines.facts.orders import CUSTOMER_CATEGORY_FACTS, CUSTOMER_ORDER_FACTS
from crm_pipelines.facts.sql import as_bigint, bytewise, collated_back, instant, text_value
from crm_pipelines.schema import CORE, MARTS, STAGING, UNIFIED_CUSTOMER_COLUMNS, Column, ColumnType
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    from crm_pipelines.analytics.cycle_settings import LoyaltySettings

ORDER_COLUMNS_360 = (
    "first_order_at", "last_order_at", "days_since_last_order", "orders", "cancelled_orders", "refunded_orders",
    "gross_revenue", "revenue", "average_order_value",
)  # fmt: skip
ENGAGEMENT_COLUMNS_360 = (
    "tickets_opened", "tickets_resolved", "avg_satisfaction", "survey_responses", "latest_nps", "campaign_opens",
    "campaign_clicks",
)  # fmt: skip
AGE_BANDS = ((24, "<25"), (34, "25-34"), (44, "35-44"), (54, "45-54"), (64, "55-64"))
MAX_PLAUSIBLE_AGE = 120


def age_expression(born: sa.ColumnElement, as_of: pd.Timestamp) -> sa.ColumnElement[int]:
    """Completed years at the as-of day; NULL when unknown, in the future or implausibly old."""
    month, day = sa.extract("month", born), sa.extract("day", born)
    before_birthday = sa.case((sa.or_(month > as_of.month, sa.and_(month == as_of.month, day > as_of.day)), 1), else_=0)
    age = as_bigint(as_of.year - sa.extract("year", born) - before_birthday)
    return sa.case((sa.and_(age >= 0, age <= MAX_PLAUSIBLE_AGE), age), else_=sa.null())


def age_band_expression(age: sa.ColumnElement[int]) -> sa.ColumnElement[str]:
    return sa.case(
        (age.is_(None), "unknown"), *((age <= upper, band) for upper, band in AGE_BANDS), else_="65+"
    )


def categories_cte(wh: Warehouse) -> sa.CTE:
    """Per customer: the distinct categories of purchased lines, sorted by code point, joined by ", ".

    Read from core.customer_category_facts (one row per customer and category bought, built from the
    same purchased lines) instead of joining every purchase to its order lines again: at 100,000 people
    that join and its DISTINCT were most of the 360's query."""
    facts = wh.table(CORE, CUSTOMER_CATEGORY_FACTS, ["customer_id", "category"])
    if wh.dialect == "duckdb":
        # DuckDB sorts an aggregate's ORDER BY per group, several times slower than sorting each
        # customer's list; VARCHAR compares byte-wise, and UTF-8's byte order is code point order.
        joined = sa.func.array_to_string(sa.func.list_sort(sa.func.list(facts.c.category)), sa.literal(", "))
    else:
        joined = sa.aggregate_order_by(
            sa.func.string_agg(facts.c.category, sa.literal(", ")), sa.collate(facts.c.category, "C")
        )
    customer = bytewise(facts.c.customer_id)
    return sa.select(collated_back(customer).label("customer_id"), joined.label("categories")).group_by(customer).cte(
        "categories"
    )


def consent_cte(wh: Warehouse, cutoff: sa.ColumnElement) -> sa.CTE:
    """Per customer: consent_status and consent_at (see crm_pipelines.analytics.audiences)."""
    s = wh.table(CORE, "subscriptions", ["customer_id", "consent_status", "consent_at"])
    e = wh.table(CORE, "campaign_events", ["customer_id", "event_type", "occurred_at"])
    status = text_value(s.c.consent_status)
    dated = s.c.consent_at.is_not(None)
    signals = sa.union_all(
        sa.select(
            s.c.customer_id,
            sa.case((status == "subscribed", "in"), (status == "unsubscribed", "out"), else_="pending").label("kind"),
            s.c.consent_at.label("at"),
        ).where(status.in_(["subscribed", "unsubscribed", "pending"]), sa.or_(~dated, s.c.consent_at <= cutoff)),
        sa.select(e.c.customer_id, sa.literal("out").label("kind"), e.c.occurred_at.label("at")).where(
            text_value(e.c.event_type) == "unsubscribe", e.c.occurred_at.is_not(None), e.c.occurred_at <= cutoff
        ),
    ).subquery("consent_signals")

    def latest(kind: str) -> sa.ColumnElement:
        return sa.func.max(sa.case((signals.c.kind == kind, signals.c.at)))

    def any_of(kind: str, undated: bool = False) -> sa.ColumnElement:
        condition = signals.c.kind == kind
        if undated:
            condition = sa.and_(condition, signals.c.at.is_(None))
        return sa.func.max(sa.case((condition, 1), else_=0)) == 1

    customer = bytewise(signals.c.customer_id)
    per_customer = (
        sa.select(
            collated_back(customer).label("customer_id"),
            any_of("in").label("has_in"),
            latest("in").label("last_in"),
            any_of("out").label("has_out"),
            any_of("out", undated=True).label("undated_out"),
            latest("out").label("last_out"),
            any_of("pending").label("has_pending"),
            latest("pending").label("last_pending"),
        )
        .group_by(customer)
        .subquery("consent_per_customer")
    )
    c = per_customer.c
    # An undated withdrawal wins over every opt-in; an undated opt-in counts only without any withdrawal.
    subscribed = sa.and_(
        c.has_in,
        sa.or_(~c.has_out, sa.and_(~c.undated_out, c.last_in.is_not(None), c.last_out < c.last_in)),
    )
    withdrawn = sa.and_(c.has_out, ~subscribed)
    return sa.select(
        c.customer_id,
        sa.case((subscribed, "subscribed"), (withdrawn, "unsubscribed"), (c.has_pending, "pending"), else_="unknown")
        .label("consent_status"),
        sa.case(
            (subscribed, c.last_in),
            (withdrawn, sa.case((c.undated_out, sa.null()), else_=c.last_out)),
            else_=c.last_pending,
        ).label("consent_at"),
    ).cte("consent")  # fmt: skip


def customer_360_select(
    wh: Warehouse,
    cutoff: dt.datetime | pd.Timestamp,
    extras: Sequence[tuple[str, Sequence[str]]] = (),
) -> sa.Select:
    """One row per core.unified_customers row. ``extras``: (marts table, columns to leave out) joined on
    customer_id, in order; a column the 360 already has is not repeated."""
    as_of = pd.Timestamp(cutoff)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    present = wh.columns(CORE, "unified_customers")
    profile_names = [c.name for c in UNIFIED_CUSTOMER_COLUMNS if c.name in present]
    customers = wh.table(CORE, "unified_customers", profile_names)
    orders = wh.table(CORE, CUSTOMER_ORDER_FACTS, ["customer_id", *ORDER_COLUMNS_360])
    engagement = wh.table(CORE, CUSTOMER_ENGAGEMENT_FACTS, ["customer_id", *ENGAGEMENT_COLUMNS_360])
    categories = categories_cte(wh)
    consent = consent_cte(wh, instant(cutoff))

    columns: list[sa.ColumnElement] = []
    age = age_expression(customers.c.date_of_birth, as_of) if "date_of_birth" in profile_names else None
    for name in profile_names:
        columns.append(customers.c[name])
        if name == "date_of_birth":
            columns += [age.label("age"), age_band_expression(age).label("age_band")]
    if age is None:
        missing = sa.cast(sa.null(), sa.BigInteger)
        columns[1:1] = [missing.label("age"), sa.literal("unknown").label("age_band")]
    columns += [orders.c[n] for n in ORDER_COLUMNS_360]
    columns += [categories.c.categories]
    columns += [engagement.c[n] for n in ENGAGEMENT_COLUMNS_360]
    columns += [
        sa.func.coalesce(consent.c.consent_status, "unknown").label("marketing_consent"),
        consent.c.consent_at,
    ]
    joined = (
        customers.join(orders, orders.c.customer_id == customers.c.customer_id)
        .join(engagement, engagement.c.customer_id == customers.c.customer_id)
        .outerjoin(categories, categories.c.customer_id == customers.c.customer_id)
        .outerjoin(consent, consent.c.customer_id == customers.c.customer_id)
    )
    taken = {c.key for c in columns} | {"customer_id"}
    for table, leave_out in extras:
        names = [n for n in wh.columns(MARTS, table) if n not in taken and n not in leave_out]
        extra = wh.table(MARTS, table, ["customer_id", *names]).alias(f"extra_{table}")
        joined = joined.outerjoin(extra, extra.c.customer_id == customers.c.customer_id)
        columns += [extra.c[n] for n in names]
        taken |= set(names)
    return sa.select(*columns).select_from(joined)


def _sql_type(dtype: ColumnType) -> sa.types.TypeEngine:
    """The type a frame column declared ``dtype`` gets when publishing writes it (Arrow on DuckDB,
    ADBC's COPY on PostgreSQL): text, bigint, double, timestamptz, date, boolean."""
    return {
        "string": sa.Text(),
        "integer": sa.BigInteger(),
        "float": sa.Double(),
        "timestamp": sa.DateTime(timezone=True),
        "date": sa.Date(),
        "boolean": sa.Boolean(),
    }[dtype]


def _typed(value: sa.ColumnElement, dtype: ColumnType) -> sa.ColumnElement:
    typed = sa.cast(value, _sql_type(dtype))
    if dtype == "float":
        # A frame written from pandas stores NaN as null; both engines hold NaN equal to itself.
        typed = sa.func.nullif(typed, sa.cast(sa.literal("NaN"), sa.Double()))
    return typed


def _member(customer_id: sa.ColumnElement, customers: sa.Select | None) -> sa.ColumnElement[bool]:
    if customers is None:
        return sa.false()
    return sa.func.coalesce(customer_id.in_(customers), sa.false())


def loyalty_members_select(wh: Warehouse, settings: LoyaltySettings) -> sa.Select | None:
    """customer_id of every loyalty member; None before the identity tables exist (nobody is one)."""
    from crm_pipelines.analytics.loyalty import loyalty_members_query

    if not (wh.table_exists(STAGING, "customer_identifiers") and wh.table_exists(CORE, "customer_identity_map")):
        return None
    identifiers = wh.table(
        STAGING, "customer_identifiers", ["source", "source_record_id", "identifier_type", "identifier_value"]
    )
    identity_map = wh.table(CORE, "customer_identity_map", ["source", "source_record_id", "customer_id"])
    return loyalty_members_query(identifiers, identity_map, settings)


def customer_360_mart_select(
    wh: Warehouse,
    cutoff: dt.datetime | pd.Timestamp,
    extras: Sequence[tuple[str, Sequence[str]]],
    loyalty: LoyaltySettings,
    columns: Sequence[Column],
    renames: Mapping[str, str],
) -> sa.Select:
    """marts.customer_360 as published with every personal-data column kept, built in the warehouse:
    :func:`customer_360_select` with the loyalty_member and regular_customer flags, the mart's names
    (``renames``), and the declared ``columns`` first, in their order and cast to their types, as
    publishing a frame of it writes them; the columns not declared follow unchanged."""
    view = customer_360_select(wh, cutoff, extras).subquery("view")
    # The view's customers are the unified ones: their membership needs no join to core.unified_customers.
    regular = regular_customers_select(
        wh, cutoff, loyalty.regular_window_days, loyalty.regular_min_purchases, unified_only=False
    )
    named: dict[str, sa.ColumnElement] = {renames.get(c.key, c.key): c for c in view.c}
    named["loyalty_member"] = _member(view.c.customer_id, loyalty_members_select(wh, loyalty))
    named["regular_customer"] = _member(view.c.customer_id, regular)
    declared = [c for c in columns if c.name in named]
    rest = [n for n in named if n not in {c.name for c in declared}]
    return sa.select(
        *(_typed(named[c.name], c.dtype).label(c.name) for c in declared), *(named[n].label(n) for n in rest)
    )
