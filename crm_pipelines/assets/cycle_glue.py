"""What the existing marts take from the campaign and loyalty work: held-out customers removed from the
marketing export, campaign audiences added, loyalty columns in customer_360 and crm_kpis.

Imported by :mod:`crm_pipelines.assets.marts`, so it imports no asset module itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crm_pipelines.assets.core import IDENTITY_MAP
from crm_pipelines.config import CrmConfig
from crm_pipelines.schema import CORE, MARTS, STAGING
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

CAMPAIGN_ASSIGNMENTS = "campaign_assignments"


def _loyalty_members_select(wh: Warehouse, config: CrmConfig) -> sa.Select | None:
    """The distinct customer ids holding a loyalty identifier; None before identities exist."""
    from crm_pipelines.analytics.loyalty import loyalty_members_query

    if not (wh.table_exists(STAGING, "customer_identifiers") and wh.table_exists(CORE, IDENTITY_MAP)):
        return None
    identifiers = wh.table(
        STAGING, "customer_identifiers", ["source", "source_record_id", "identifier_type", "identifier_value"]
    )
    identity_map = wh.table(CORE, IDENTITY_MAP, ["source", "source_record_id", "customer_id"])
    return loyalty_members_query(identifiers, identity_map, config.loyalty)


def loyalty_member_ids(wh: Warehouse, config: CrmConfig) -> pd.Series:
    """Customers holding a loyalty identifier, each once, as text (computed in the warehouse); empty
    before identities exist."""
    import pandas as pd

    statement = _loyalty_members_select(wh, config)
    if statement is None:
        return pd.Series([], dtype="str", name="customer_id")
    # The query is DISTINCT already; dropping duplicates again keeps the set semantics whatever it returns.
    return wh.query(statement)["customer_id"].astype("str").drop_duplicates().reset_index(drop=True)


def loyalty_members(wh: Warehouse, config: CrmConfig) -> set[str]:
    """:func:`loyalty_member_ids` as a set."""
    return set(loyalty_member_ids(wh, config))


def loyalty_members_among_customers(wh: Warehouse, config: CrmConfig) -> int:
    """How many loyalty members are core.unified_customers (the size of the intersection of the two id
    sets), counted in the warehouse: neither id list comes to Python."""
    import sqlalchemy as sa

    members = _loyalty_members_select(wh, config)
    if members is None:
        return 0
    m = members.subquery("loyalty_members")
    customers = wh.table(CORE, "unified_customers", ["customer_id"])
    known = sa.select(sa.func.count()).select_from(m).where(m.c.customer_id.in_(sa.select(customers.c.customer_id)))
    return int(wh.query(known).iloc[0, 0])


def segment_audiences(wh: Warehouse) -> pd.DataFrame:
    """marts.customer_segments' customer_id and the audience columns present: all that audiences and
    campaign enrolment read of it (the other dozen columns are scores and figures)."""
    from crm_pipelines.analytics.audiences import AUDIENCE_COLUMNS

    present = wh.columns(MARTS, "customer_segments")
    columns = ["customer_id", *(c for c in AUDIENCE_COLUMNS if c in present)]
    return wh.read_table(MARTS, "customer_segments", columns=columns)


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
    """customer_id, loyalty_member, regular_customer (joins customer_360), as ``loyalty.loyalty_columns``
    with the regular customers counted in the warehouse."""
    import pandas as pd

    from crm_pipelines.analytics.isin import isin
    from crm_pipelines.facts.activity import regular_customers_select
    from crm_pipelines.facts.build import ensure_core_inputs

    ensure_core_inputs(wh, "orders")
    settings = config.loyalty
    regular = wh.query(
        regular_customers_select(wh, as_of, settings.regular_window_days, settings.regular_min_purchases)
    )
    ids = customers["customer_id"].astype("str")
    # Arrow's hash lookup, not pandas' isin or Python sets: both cost a Python object per id.
    return pd.DataFrame(
        {
            "customer_id": ids.to_numpy(),
            "loyalty_member": isin(ids, loyalty_member_ids(wh, config)),
            "regular_customer": isin(ids, regular["customer_id"].astype("str")),
        }
    )


def with_loyalty_kpis(wh: Warehouse, config: CrmConfig, kpis: pd.DataFrame) -> pd.DataFrame:
    """crm_kpis with loyalty_members and regular_customers per day, as ``loyalty.daily_loyalty_kpis``
    with the regular customers counted in the warehouse."""
    import pandas as pd

    from crm_pipelines.facts.activity import read_daily_regulars
    from crm_pipelines.facts.build import ensure_core_inputs

    if kpis.empty:
        return kpis.assign(loyalty_members=pd.Series(dtype="int64"), regular_customers=pd.Series(dtype="int64"))
    dates = kpis["kpi_date"] if "kpi_date" in kpis else kpis["date"]  # read in SQL with the mart's names
    ensure_core_inputs(wh, "orders")
    settings = config.loyalty
    members = loyalty_members_among_customers(wh, config)
    regulars = read_daily_regulars(wh, dates, settings.regular_window_days, settings.regular_min_purchases)
    daily = pd.DataFrame({"loyalty_members": members, "regular_customers": regulars}, index=dates.index)
    return pd.concat([kpis, daily], axis=1)
