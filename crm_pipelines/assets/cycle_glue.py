"""What the existing marts take from the campaign and loyalty work: held-out customers removed from the
marketing export, campaign audiences added, loyalty columns in customer_360 and crm_kpis.

Imported by :mod:`crm_pipelines.assets.marts`, so it imports no asset module itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crm_pipelines.analytics.activity import core_frame
from crm_pipelines.assets.core import IDENTITY_MAP
from crm_pipelines.config import CrmConfig
from crm_pipelines.schema import CORE, MARTS, STAGING
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd

CAMPAIGN_ASSIGNMENTS = "campaign_assignments"


def loyalty_members(wh: Warehouse, config: CrmConfig) -> set[str]:
    """Customers holding a loyalty identifier (computed in the warehouse); empty before identities exist."""
    from crm_pipelines.analytics.loyalty import loyalty_members_query

    if not (wh.table_exists(STAGING, "customer_identifiers") and wh.table_exists(CORE, IDENTITY_MAP)):
        return set()
    identifiers = wh.table(
        STAGING, "customer_identifiers", ["source", "source_record_id", "identifier_type", "identifier_value"]
    )
    identity_map = wh.table(CORE, IDENTITY_MAP, ["source", "source_record_id", "customer_id"])
    members = wh.query(loyalty_members_query(identifiers, identity_map, config.loyalty))
    return set(members["customer_id"].astype("str"))


def core_orders(wh: Warehouse) -> pd.DataFrame:
    return wh.read_table(CORE, "orders") if wh.table_exists(CORE, "orders") else core_frame("orders")


def campaign_audiences(
    wh: Warehouse, config: CrmConfig, audiences: pd.DataFrame, as_of: pd.Timestamp
) -> tuple[pd.DataFrame, int]:
    """marts.marketing_audiences with campaigns (see ``campaigns.with_campaigns``), and the number of
    customers held out of it."""
    from crm_pipelines.analytics.campaigns import empty_assignments, open_holdouts, with_campaigns

    if wh.table_exists(MARTS, CAMPAIGN_ASSIGNMENTS):
        assignments = wh.read_table(MARTS, CAMPAIGN_ASSIGNMENTS)
    else:
        assignments = empty_assignments()
    holdouts = open_holdouts(config.campaigns, assignments, as_of)
    return with_campaigns(audiences, assignments, holdouts, config.campaigns, as_of), int(
        holdouts["customer_id"].nunique()
    )


def loyalty_frame(wh: Warehouse, config: CrmConfig, customers: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """customer_id, loyalty_member, regular_customer (joins customer_360)."""
    from crm_pipelines.analytics.loyalty import loyalty_columns

    return loyalty_columns(customers, core_orders(wh), loyalty_members(wh, config), as_of, config.loyalty)


def with_loyalty_kpis(wh: Warehouse, config: CrmConfig, kpis: pd.DataFrame) -> pd.DataFrame:
    """crm_kpis with loyalty_members and regular_customers per day."""
    import pandas as pd

    from crm_pipelines.analytics.loyalty import daily_loyalty_kpis

    if kpis.empty:
        return kpis.assign(loyalty_members=pd.Series(dtype="int64"), regular_customers=pd.Series(dtype="int64"))
    customers = wh.read_table(CORE, "unified_customers", columns=["customer_id"])
    dates = kpis["kpi_date"] if "kpi_date" in kpis else kpis["date"]  # read in SQL with the mart's names
    daily = daily_loyalty_kpis(dates, core_orders(wh), customers, loyalty_members(wh, config), config.loyalty)
    return pd.concat([kpis, daily], axis=1)
