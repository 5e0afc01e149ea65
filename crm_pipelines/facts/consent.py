"""Marketing consent per customer as one warehouse query, so no mart holds subscriptions or campaign
events in Python.

Definitions are those of :func:`crm_pipelines.analytics.audiences.marketing_consent` (the pandas
reference the tests hold this query equal to): the latest opt-in against the latest withdrawal (an
undated withdrawal wins, an undated opt-in counts only without any withdrawal), the exported address
(the email of the latest opt-in record, else the golden email), and bounces after the latest opt-in,
by the address or, for a bounce without one, by the customer.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import sqlalchemy as sa

from crm_pipelines.facts.sql import instant, text_value
from crm_pipelines.schema import CORE
from crm_pipelines.warehouse import Warehouse

CONSENT_COLUMNS = (
    "customer_id", "consent_status", "consent_at", "withdrawn_at", "email", "email_bounced", "exportable",
    "exclusion_reason",
)  # fmt: skip


def normalized_email(column: sa.ColumnElement) -> sa.ColumnElement[str]:
    """Trimmed, lower-case address; NULL when empty."""
    return sa.func.nullif(text_value(column), "")


def _flag(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    return sa.func.max(sa.case((condition, 1), else_=0)) == 1


def consent_select(wh: Warehouse, cutoff: dt.datetime | pd.Timestamp) -> sa.Select:
    """One row per core.unified_customers row, with the columns of ``marketing_consent``."""
    limit = instant(cutoff)
    has_email = "email" in wh.columns(CORE, "unified_customers")
    customers = wh.table(CORE, "unified_customers", ["customer_id", *(["email"] if has_email else [])])
    golden_email = normalized_email(customers.c.email) if has_email else sa.cast(sa.null(), sa.String)
    s = wh.table(CORE, "subscriptions", ["customer_id", "subscription_id", "consent_status", "consent_at", "email"])
    e = wh.table(CORE, "campaign_events", ["customer_id", "event_type", "occurred_at", "email"])
    known_customer = sa.select(customers.c.customer_id).scalar_subquery()

    status = text_value(s.c.consent_status)
    signals = sa.union_all(
        sa.select(
            s.c.customer_id,
            sa.case((status == "subscribed", "in"), (status == "unsubscribed", "out"), else_="pending").label("kind"),
            s.c.consent_at.label("at"),
        ).where(status.in_(["subscribed", "unsubscribed", "pending"]),
                sa.or_(s.c.consent_at.is_(None), s.c.consent_at <= limit)),
        sa.select(e.c.customer_id, sa.literal("out").label("kind"), e.c.occurred_at.label("at")).where(
            text_value(e.c.event_type) == "unsubscribe", e.c.occurred_at.is_not(None), e.c.occurred_at <= limit
        ),
    ).subquery("consent_signals")  # fmt: skip
    g = signals.c
    per_customer = (
        sa.select(
            g.customer_id,
            _flag(g.kind == "in").label("has_in"),
            sa.func.max(sa.case((g.kind == "in", g.at))).label("last_in"),
            _flag(g.kind == "out").label("has_out"),
            _flag(sa.and_(g.kind == "out", g.at.is_(None))).label("undated_out"),
            sa.func.max(sa.case((g.kind == "out", g.at))).label("last_out"),
            _flag(g.kind == "pending").label("has_pending"),
            sa.func.max(sa.case((g.kind == "pending", g.at))).label("last_pending"),
        )
        .group_by(g.customer_id)
        .cte("consent_per_customer")
    )

    # The address of the latest opt-in record that has one (undated records rank below dated ones).
    opt_in_email = normalized_email(s.c.email)
    ranked = (
        sa.select(
            s.c.customer_id,
            opt_in_email.label("email"),
            sa.func.row_number()
            .over(
                partition_by=s.c.customer_id,
                order_by=(s.c.consent_at.desc().nulls_last(),
                          sa.collate(sa.cast(s.c.subscription_id, sa.String), "C").desc()),
            )
            .label("newest"),
        )
        .where(status == "subscribed", opt_in_email.is_not(None),
               sa.or_(s.c.consent_at.is_(None), s.c.consent_at <= limit))
        .subquery("opt_in_addresses")
    )  # fmt: skip
    latest_address = sa.select(ranked.c.customer_id, ranked.c.email).where(ranked.c.newest == 1).cte("opt_in_email")

    # Bounces of known customers' events: by address, and by customer where the event has no address.
    bounce = sa.and_(
        text_value(e.c.event_type) == "bounce", e.c.occurred_at.is_not(None), e.c.occurred_at <= limit,
        e.c.customer_id.in_(known_customer),
    )  # fmt: skip
    bounce_email = normalized_email(e.c.email)
    by_address = (
        sa.select(bounce_email.label("email"), sa.func.max(e.c.occurred_at).label("bounced_at"))
        .where(bounce, bounce_email.is_not(None))
        .group_by(bounce_email)
        .cte("address_bounces")
    )
    by_customer = (
        sa.select(e.c.customer_id, sa.func.max(e.c.occurred_at).label("bounced_at"))
        .where(bounce, bounce_email.is_(None))
        .group_by(e.c.customer_id)
        .cte("customer_bounces")
    )

    c = per_customer.c
    has_in, has_out = sa.func.coalesce(c.has_in, sa.false()), sa.func.coalesce(c.has_out, sa.false())
    undated_out = sa.func.coalesce(c.undated_out, sa.false())
    subscribed = sa.and_(
        has_in, sa.or_(~has_out, sa.and_(~undated_out, c.last_in.is_not(None), c.last_out < c.last_in))
    )
    withdrawn = sa.and_(has_out, ~subscribed)
    pending = sa.func.coalesce(c.has_pending, sa.false())
    per_row = (
        sa.select(
            customers.c.customer_id,
            sa.case((subscribed, "subscribed"), (withdrawn, "unsubscribed"), (pending, "pending"), else_="unknown")
            .label("consent_status"),
            sa.case(
                (subscribed, c.last_in),
                (withdrawn, sa.case((undated_out, sa.null()), else_=c.last_out)),
                else_=c.last_pending,
            ).label("consent_at"),
            sa.case((undated_out, sa.null()), else_=c.last_out).label("withdrawn_at"),
            sa.func.coalesce(latest_address.c.email, golden_email).label("email"),
            subscribed.label("subscribed"),
            withdrawn.label("withdrawn"),
            pending.label("pending"),
            c.last_in,
            by_customer.c.bounced_at.label("customer_bounced_at"),
        )
        .select_from(
            customers.outerjoin(per_customer, per_customer.c.customer_id == customers.c.customer_id)
            .outerjoin(latest_address, latest_address.c.customer_id == customers.c.customer_id)
            .outerjoin(by_customer, by_customer.c.customer_id == customers.c.customer_id)
        )
        .subquery("consent_rows")
    )  # fmt: skip
    r = per_row.c
    bounced_at = sa.case(
        (by_address.c.bounced_at.is_(None), r.customer_bounced_at),
        (r.customer_bounced_at.is_(None), by_address.c.bounced_at),
        (r.customer_bounced_at > by_address.c.bounced_at, r.customer_bounced_at),
        else_=by_address.c.bounced_at,
    )
    # An undated opt-in (last_in NULL) is older than every bounce.
    bounced = sa.and_(bounced_at.is_not(None), sa.or_(r.last_in.is_(None), bounced_at > r.last_in))
    exportable = sa.and_(r.subscribed, r.email.is_not(None), ~bounced)
    return sa.select(
        r.customer_id,
        r.consent_status,
        r.consent_at,
        r.withdrawn_at,
        r.email,
        sa.and_(bounced, r.subscribed).label("email_bounced"),
        exportable.label("exportable"),
        sa.case(
            (exportable, sa.null()), (r.withdrawn, "withdrawn"), (sa.and_(~r.subscribed, r.pending), "pending"),
            (~r.subscribed, "no_consent"), (r.email.is_(None), "no_email"), else_="bounced",
        ).label("exclusion_reason"),
    ).select_from(per_row.outerjoin(by_address, by_address.c.email == r.email))  # fmt: skip


def read_consent(wh: Warehouse, cutoff: dt.datetime | pd.Timestamp, exportable_only: bool = False) -> pd.DataFrame:
    """``marketing_consent`` computed in the warehouse: one row per customer (or per exportable one),
    in customer_id order, with the reference's dtypes."""
    statement = consent_select(wh, cutoff).subquery("consent")
    query = sa.select(*statement.c)
    if exportable_only:
        query = query.where(statement.c.exportable)
    frame = wh.query(query.order_by(statement.c.customer_id))
    return frame.assign(
        customer_id=frame["customer_id"].astype("str"),
        consent_status=frame["consent_status"].astype("str"),
        consent_at=pd.to_datetime(frame["consent_at"], utc=True).astype("datetime64[us, UTC]"),
        withdrawn_at=pd.to_datetime(frame["withdrawn_at"], utc=True).astype("datetime64[us, UTC]"),
        email=frame["email"].astype("str"),
        email_bounced=frame["email_bounced"].astype(bool),
        exportable=frame["exportable"].astype(bool),
        exclusion_reason=frame["exclusion_reason"].astype("str"),
    )[list(CONSENT_COLUMNS)]
