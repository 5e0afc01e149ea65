"""What the campaign marts need from core.campaign_events, computed in the warehouse: one row per customer
a source campaign sent to or held out, never the events themselves.

Definitions are those of :func:`crm_pipelines.analytics.campaigns.source_campaign_assignments` (the
pandas reference the tests hold this query equal to).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm_pipelines.analytics.campaigns import CONTROL, HOLDOUT_EVENT, TREATMENT, empty_assignments, is_member
from crm_pipelines.analytics.cycle_settings import CampaignSettings
from crm_pipelines.facts.sql import instant, text_value
from crm_pipelines.schema import CORE
from crm_pipelines.warehouse import Warehouse


def source_campaign_select(wh: Warehouse, campaign: CampaignSettings, cutoff: dt.datetime | pd.Timestamp) -> sa.Select:
    """Per customer of the campaign's ``sent`` and ``holdout`` events (within its dates, up to the
    cutoff): ``sent`` (any sent event) and ``enrolled_at`` (the first such event)."""
    e = wh.table(CORE, "campaign_events", ["customer_id", "campaign_id", "event_type", "occurred_at"])
    kind = text_value(e.c.event_type)
    conditions = [
        sa.cast(e.c.campaign_id, sa.String) == campaign.source_campaign_id,
        kind.in_(["sent", HOLDOUT_EVENT]),
        e.c.customer_id.is_not(None),
        e.c.occurred_at.is_not(None),
        e.c.occurred_at <= instant(cutoff),
    ]
    if campaign.start is not None:
        conditions.append(e.c.occurred_at >= instant(pd.Timestamp(campaign.start, tz="UTC")))
    if campaign.end is not None:
        conditions.append(e.c.occurred_at < instant(pd.Timestamp(campaign.end, tz="UTC") + pd.Timedelta(days=1)))
    return (
        sa.select(
            e.c.customer_id,
            (sa.func.max(sa.case((kind == "sent", 1), else_=0)) == 1).label("sent"),
            sa.func.min(e.c.occurred_at).label("enrolled_at"),
        )
        .where(*conditions)
        .group_by(e.c.customer_id)
        .order_by(sa.collate(sa.cast(e.c.customer_id, sa.String), "C"))
    )


def read_source_campaign_assignments(
    wh: Warehouse, campaign: CampaignSettings, loyalty_members: set[str], cutoff: dt.datetime | pd.Timestamp
) -> pd.DataFrame:
    """The assignment rows of a campaign run outside the project (``source_campaign_id``)."""
    rows = wh.query(source_campaign_select(wh, campaign, cutoff))
    if rows.empty:
        return empty_assignments()
    ids = rows["customer_id"].astype("str").to_numpy(dtype=object)
    frame = pd.DataFrame(
        {
            "campaign": campaign.name,
            "customer_id": pd.array(ids, dtype="str"),
            "campaign_group": pd.array(np.where(rows["sent"].astype(bool), TREATMENT, CONTROL), dtype="str"),
            "enrolled_at": pd.to_datetime(rows["enrolled_at"], utc=True).astype("datetime64[us, UTC]"),
            "assigned_by": "source",
            "loyalty_member": is_member(ids, loyalty_members),
        }
    )
    return frame
