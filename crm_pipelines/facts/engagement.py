"""``core.customer_engagement_facts``: per customer, service, survey and email activity up to the cutoff.

One row per unified customer: ``tickets_opened``; ``tickets_resolved`` (``resolved_at`` set and not
after the cutoff, or, without ``resolved_at``, a resolved or closed status); ``avg_satisfaction`` over
the rated tickets; ``survey_responses``; ``latest_nps`` (the score of the most recent scored answer,
ties broken by the highest response id); ``campaign_opens`` and ``campaign_clicks``.
A source that delivers no such entity gives zeros (and NULL averages).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import TYPE_CHECKING

from crm_pipelines.facts.sql import as_bigint, as_float, instant, text_value
from crm_pipelines.schema import CORE
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

CUSTOMER_ENGAGEMENT_FACTS = "customer_engagement_facts"
ENGAGEMENT_INPUTS = ("support_tickets", "survey_responses", "campaign_events")
COUNT_COLUMNS = (
    "tickets_opened",
    "tickets_resolved",
    "survey_responses",
    "campaign_opens",
    "campaign_clicks",
)


def _count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    import sqlalchemy as sa
    return as_bigint(sa.func.sum(sa.case((condition, 1), else_=0)))


def _tickets(wh: Warehouse, cutoff: sa.ColumnElement) -> sa.CTE:
    import sqlalchemy as sa
    t = wh.table(CORE, "support_tickets", ["customer_id", "opened_at", "resolved_at", "status", "satisfaction_score"])
    resolved = sa.case(
        (t.c.resolved_at.is_not(None), t.c.resolved_at <= cutoff),
        else_=text_value(t.c.status).in_(["resolved", "closed"]),
    )
    return (
        sa.select(
            t.c.customer_id,
            as_bigint(sa.func.count()).label("tickets_opened"),
            _count_if(resolved).label("tickets_resolved"),
            as_float(sa.func.avg(t.c.satisfaction_score)).label("avg_satisfaction"),
        )
        .where(t.c.opened_at.is_not(None), t.c.opened_at <= cutoff)
        .group_by(t.c.customer_id)
        .cte("ticket_facts")
    )


def _surveys(wh: Warehouse, cutoff: sa.ColumnElement) -> sa.CTE:
    import sqlalchemy as sa
    s = wh.table(CORE, "survey_responses", ["customer_id", "responded_at", "nps_score", "response_id"])
    latest_first = sa.case((s.c.nps_score.is_not(None), 0), else_=1)
    ranked = (
        sa.select(
            s.c.customer_id,
            s.c.nps_score,
            sa.func.row_number()
            .over(
                partition_by=s.c.customer_id,
                order_by=(latest_first, s.c.responded_at.desc(), s.c.response_id.desc()),
            )
            .label("newest"),
        )
        .where(s.c.responded_at.is_not(None), s.c.responded_at <= cutoff)
        .subquery("ranked_answers")
    )
    return (
        sa.select(
            ranked.c.customer_id,
            as_bigint(sa.func.count()).label("survey_responses"),
            as_bigint(sa.func.max(sa.case((ranked.c.newest == 1, sa.func.round(ranked.c.nps_score))))).label(
                "latest_nps"
            ),
        )
        .group_by(ranked.c.customer_id)
        .cte("survey_facts")
    )


def _events(wh: Warehouse, cutoff: sa.ColumnElement) -> sa.CTE:
    import sqlalchemy as sa
    e = wh.table(CORE, "campaign_events", ["customer_id", "occurred_at", "event_type"])
    kind = text_value(e.c.event_type)
    return (
        sa.select(
            e.c.customer_id,
            _count_if(kind == "open").label("campaign_opens"),
            _count_if(kind == "click").label("campaign_clicks"),
        )
        .where(e.c.occurred_at.is_not(None), e.c.occurred_at <= cutoff)
        .group_by(e.c.customer_id)
        .cte("event_facts")
    )


def customer_engagement_facts_select(
    wh: Warehouse, cutoff: dt.datetime | pd.Timestamp, present: Collection[str] = ENGAGEMENT_INPUTS
) -> sa.Select:
    """One row per core.unified_customers row; ``present`` names the core tables that exist."""
    import sqlalchemy as sa
    customers = wh.table(CORE, "unified_customers", ["customer_id"])
    limit = instant(cutoff)
    builders = {"support_tickets": _tickets, "survey_responses": _surveys, "campaign_events": _events}
    parts = {name: builders[name](wh, limit) for name in ENGAGEMENT_INPUTS if name in present}
    joined = customers
    for part in parts.values():
        joined = joined.outerjoin(part, part.c.customer_id == customers.c.customer_id)

    def value(name: str, table: str, count: bool = True) -> sa.ColumnElement:
        if table not in parts:
            return sa.cast(sa.literal(0), sa.BigInteger) if count else sa.null()
        column = parts[table].c[name]
        return as_bigint(sa.func.coalesce(column, 0)) if count else column

    return sa.select(
        customers.c.customer_id,
        value("tickets_opened", "support_tickets").label("tickets_opened"),
        value("tickets_resolved", "support_tickets").label("tickets_resolved"),
        as_float(value("avg_satisfaction", "support_tickets", count=False)).label("avg_satisfaction"),
        value("survey_responses", "survey_responses").label("survey_responses"),
        as_bigint(value("latest_nps", "survey_responses", count=False)).label("latest_nps"),
        value("campaign_opens", "campaign_events").label("campaign_opens"),
        value("campaign_clicks", "campaign_events").label("campaign_clicks"),
    ).select_from(joined)
