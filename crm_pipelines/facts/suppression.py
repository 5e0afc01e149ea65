"""The address-level suppression list as one warehouse query: one row per suppressed address reaches
Python, never the subscriptions or the campaign events.

Definitions are those of :func:`crm_pipelines.analytics.suppression.suppression_list` (the pandas
reference the tests hold this query equal to). Which lists are SMS lists is decided in Python on their
distinct names (a regular expression with word boundaries, which DuckDB and PostgreSQL spell
differently), and the names are passed to the query as a list.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

import pandas as pd
import sqlalchemy as sa

from crm_pipelines.analytics.suppression import SMS_LIST, SUPPRESSION_COLUMNS
from crm_pipelines.facts.consent import normalized_email
from crm_pipelines.facts.sql import instant, text_value
from crm_pipelines.schema import CORE, STAGING
from crm_pipelines.warehouse import Warehouse


def sms_lists(wh: Warehouse, subscriptions: str = "subscriptions", schema: str = CORE) -> list[str]:
    """The distinct list names of the subscriptions that name an SMS or text-message list."""
    s = wh.table(schema, subscriptions, ["list_name"])
    names = wh.query(sa.select(s.c.list_name).where(s.c.list_name.is_not(None)).distinct())["list_name"]
    pattern = re.compile(SMS_LIST)
    return sorted(n for n in names.astype("str") if pattern.search(n.lower()))


def _record_lookup(
    wh: Warehouse, frame: sa.TableClause, column: str, lookups: dict[str, sa.CTE]
) -> tuple[sa.CTE | None, sa.ColumnElement]:
    """The staged customer record each row names, and its ``column``; NULL where no such table or column
    exists. One lookup per column serves every table of the query (``lookups`` keeps them): it is a
    materialized CTE, so the staged customers are grouped once, not once per table that reads them
    (three times for the e-mail lookups). Its address is normalized (trimmed, lower-case, NULL when
    empty) once per record here, not again on every row that takes it."""
    if not wh.table_exists(STAGING, "customers") or "source_customer_id" not in frame.c:
        return None, sa.cast(sa.null(), sa.String)
    if column not in lookups:
        records = wh.table(STAGING, "customers", ["source", "source_record_id", "email", "phone"])
        lookups[column] = (
            sa.select(
                records.c.source,
                records.c.source_record_id,
                normalized_email(sa.func.max(records.c[column])).label("address"),
            )
            .where(records.c[column].is_not(None))
            .group_by(records.c.source, records.c.source_record_id)
            .cte(f"records_{column}")
            .prefix_with("MATERIALIZED")
        )
    lookup = lookups[column]
    return lookup, lookup.c.address


def _mapped_source(source: sa.ColumnElement, customer_sources: Mapping[str, str]) -> sa.ColumnElement[str]:
    if not customer_sources:
        return source
    return sa.case(*((source == name, target) for name, target in sorted(customer_sources.items())), else_=source)


def _with_record(
    wh: Warehouse, frame: sa.TableClause, customer_sources: Mapping[str, str], column: str, lookups: dict[str, sa.CTE]
) -> tuple[sa.FromClause, sa.ColumnElement]:
    lookup, address = _record_lookup(wh, frame, column, lookups)
    if lookup is None:
        return frame, address
    joined = frame.outerjoin(
        lookup,
        sa.and_(
            lookup.c.source == _mapped_source(frame.c.source, customer_sources),
            lookup.c.source_record_id == frame.c.source_customer_id,
        ),
    )
    return joined, address


def suppression_select(
    wh: Warehouse,
    cutoff: dt.datetime | pd.Timestamp,
    customer_sources: Mapping[str, str] | None = None,
    sms: list[str] | None = None,
) -> sa.Select:
    """One row per suppressed address: address_kind, address, reason, source, suppressed_since."""
    sources = dict(customer_sources or {})
    limit = instant(cutoff)
    s_columns = ["source", "consent_status", "consent_at", "email", "list_name"]
    if "source_customer_id" in wh.columns(CORE, "subscriptions"):
        s_columns.append("source_customer_id")
    s = wh.table(CORE, "subscriptions", s_columns)
    e_columns = ["source", "event_type", "occurred_at", "email"]
    if "source_customer_id" in wh.columns(CORE, "campaign_events"):
        e_columns.append("source_customer_id")
    e = wh.table(CORE, "campaign_events", e_columns)

    lookups: dict[str, sa.CTE] = {}
    status = text_value(s.c.consent_status)
    s_known = sa.or_(s.c.consent_at.is_(None), s.c.consent_at <= limit)
    s_from, s_record_email = _with_record(wh, s, sources, "email", lookups)
    s_email = sa.func.coalesce(normalized_email(s.c.email), s_record_email)

    def subscription_signals(from_: sa.FromClause, kind: str, address: sa.ColumnElement, *where) -> list[sa.Select]:
        out = []
        for wanted, direction in (("subscribed", "in"), ("unsubscribed", "out")):
            out.append(
                sa.select(
                    sa.literal(direction).label("direction"),
                    sa.literal(kind).label("address_kind"),
                    address.label("address"),
                    sa.literal(wanted).label("reason"),
                    s.c.source,
                    s.c.consent_at.label("at"),
                )
                .select_from(from_)
                .where(s_known, status == wanted, address.is_not(None), *where)
            )
        return out

    parts = subscription_signals(s_from, "email", s_email)
    if sms:
        p_from, s_record_phone = _with_record(wh, s, sources, "phone", lookups)
        parts += subscription_signals(p_from, "phone", s_record_phone, s.c.list_name.in_(sorted(set(sms))))
    e_kind = text_value(e.c.event_type)
    e_from, e_record_email = _with_record(wh, e, sources, "email", lookups)
    e_email = sa.func.coalesce(normalized_email(e.c.email), e_record_email)
    parts.append(
        sa.select(
            sa.literal("out").label("direction"),
            sa.literal("email").label("address_kind"),
            e_email.label("address"),
            e_kind.label("reason"),
            e.c.source,
            e.c.occurred_at.label("at"),
        )
        .select_from(e_from)
        .where(
            e.c.occurred_at.is_not(None), e.c.occurred_at <= limit, e_kind.in_(["unsubscribe", "bounce"]),
            e_email.is_not(None),
        )
    )  # fmt: skip
    signals = sa.union_all(*parts).cte("address_signals")
    g = signals.c
    opt_ins = (
        sa.select(g.address_kind, g.address, sa.func.max(g.at).label("latest_in"))
        .where(g.direction == "in")
        .group_by(g.address_kind, g.address)
        .cte("address_opt_ins")
    )
    # The latest withdrawal (an undated one is the latest); ties go to the greatest reason, then source.
    ranked = (
        sa.select(
            g.address_kind,
            g.address,
            g.reason,
            g.source,
            g.at,
            sa.func.row_number()
            .over(
                partition_by=(g.address_kind, g.address),
                order_by=(
                    g.at.desc().nulls_first(),
                    sa.collate(g.reason, "C").desc(),
                    sa.collate(sa.cast(g.source, sa.String), "C").desc(),
                ),
            )
            .label("latest"),
        )
        .where(g.direction == "out")
        .subquery("address_withdrawals")
    )
    r = ranked.c
    joined = ranked.outerjoin(
        opt_ins, sa.and_(opt_ins.c.address_kind == r.address_kind, opt_ins.c.address == r.address)
    )
    suppressed = sa.or_(
        r.at.is_(None),  # an undated withdrawal
        opt_ins.c.latest_in.is_(None),  # no opt-in, or only undated ones: older than every withdrawal
        r.at >= opt_ins.c.latest_in,
    )
    return (
        sa.select(r.address_kind, r.address, r.reason, r.source, r.at.label("suppressed_since"))
        .select_from(joined)
        .where(r.latest == 1, suppressed)
    )


def read_suppression_list(
    wh: Warehouse, cutoff: dt.datetime | pd.Timestamp, customer_sources: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """``suppression_list`` computed in the warehouse, in the reference's order and dtypes."""
    frame = wh.query(suppression_select(wh, cutoff, customer_sources, sms_lists(wh)))
    frame = frame.assign(
        suppressed_since=pd.to_datetime(frame["suppressed_since"], utc=True).astype("datetime64[us, UTC]")
    )[list(SUPPRESSION_COLUMNS)]
    frame = frame.astype({c: "str" for c in SUPPRESSION_COLUMNS[:-1]})
    return frame.sort_values(["address_kind", "address"], ignore_index=True)
