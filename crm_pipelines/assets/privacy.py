"""Glue between the warehouse and the privacy logic: what the mart assets call to honour it."""

from __future__ import annotations

import pandas as pd

from crm_pipelines.analytics.suppression import suppression_list
from crm_pipelines.config import CrmConfig
from crm_pipelines.schema import CORE, STAGING
from crm_pipelines.warehouse import Warehouse

SUPPRESSION_TABLE = "suppression_list"


def address_suppression(
    config: CrmConfig, wh: Warehouse, subscriptions: pd.DataFrame, events: pd.DataFrame, as_of: pd.Timestamp
) -> pd.DataFrame:
    """The suppressed addresses (see :mod:`crm_pipelines.analytics.suppression`), published as
    ``core.suppression_list`` for other exports (SMS, ad audiences) to honour too."""
    columns = ["source", "source_record_id", "email", "phone"]
    records = (
        wh.read_table(STAGING, "customers", columns=columns)
        if wh.table_exists(STAGING, "customers")
        else pd.DataFrame({c: pd.Series(dtype="str") for c in columns})
    )
    customer_sources = {
        s.name: e.customer_source
        for s in config.sources
        for name, e in s.entities.items()
        if name in ("subscriptions", "campaign_events") and e.customer_source
    }
    suppressed = suppression_list(subscriptions, events, records, as_of, customer_sources)
    wh.publish(suppressed, CORE, SUPPRESSION_TABLE)
    return suppressed
