"""Build the facts tables in the warehouse: each one query, written under a temporary name, swapped in.

Where no source delivers an entity, its core table is created empty with the canonical columns, so
the facts are still defined (zero counts) and marts need no special case for a missing source.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from crm_pipelines.facts.engagement import (
    CUSTOMER_ENGAGEMENT_FACTS,
    ENGAGEMENT_INPUTS,
    customer_engagement_facts_select,
)
from crm_pipelines.facts.orders import (
    CUSTOMER_CATEGORY_FACTS,
    CUSTOMER_ORDER_FACTS,
    PURCHASE_KEY,
    PURCHASES,
    customer_category_facts_select,
    customer_order_facts_select,
    purchases_select,
)
from crm_pipelines.facts.sql import PublishGate, publish_select
from crm_pipelines.schema import CORE, core_entity_columns
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa

FACT_TABLES = (PURCHASES, CUSTOMER_ORDER_FACTS, CUSTOMER_CATEGORY_FACTS, CUSTOMER_ENGAGEMENT_FACTS)


def utc_day(cutoff: dt.datetime | pd.Timestamp) -> int:
    """The UTC day number of an instant (naive values are read as UTC)."""
    import pandas as pd
    ts = pd.Timestamp(cutoff)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 86_400_000_000_000)


def ensure_core_inputs(wh: Warehouse, *entities: str) -> None:
    for entity in entities:
        wh.create_table(CORE, entity, core_entity_columns(entity))


def publish_query(
    wh: Warehouse, statement: sa.Select, name: str, gate: PublishGate | None = None, key: Sequence[str] = ()
) -> int:
    return publish_select(wh, statement, CORE, name, gate, key)


def build_purchases(
    wh: Warehouse, cutoff: dt.datetime | pd.Timestamp, purchase_statuses: Iterable[str],
    gate: PublishGate | None = None,
) -> int:
    ensure_core_inputs(wh, "orders")
    # A night changes few purchases of many: only those are written (see publish_select).
    return publish_query(wh, purchases_select(wh, cutoff, purchase_statuses), PURCHASES, gate, PURCHASE_KEY)


def build_customer_order_facts(
    wh: Warehouse, cutoff: dt.datetime | pd.Timestamp, window_days: int, gate: PublishGate | None = None
) -> int:
    """Needs core.purchases built with the same cutoff."""
    ensure_core_inputs(wh, "orders")
    statement = customer_order_facts_select(wh, cutoff, utc_day(cutoff), window_days)
    return publish_query(wh, statement, CUSTOMER_ORDER_FACTS, gate)


def build_customer_category_facts(wh: Warehouse, gate: PublishGate | None = None) -> int:
    """Needs core.purchases."""
    ensure_core_inputs(wh, "order_items")
    return publish_query(wh, customer_category_facts_select(wh), CUSTOMER_CATEGORY_FACTS, gate)


def build_customer_engagement_facts(
    wh: Warehouse, cutoff: dt.datetime | pd.Timestamp, gate: PublishGate | None = None
) -> int:
    ensure_core_inputs(wh, *ENGAGEMENT_INPUTS)
    return publish_query(wh, customer_engagement_facts_select(wh, cutoff), CUSTOMER_ENGAGEMENT_FACTS, gate)


def build_all(
    wh: Warehouse, cutoff: dt.datetime | pd.Timestamp, purchase_statuses: Iterable[str], window_days: int
) -> dict[str, int]:
    """Every facts table, in dependency order; rows per table."""
    return {
        PURCHASES: build_purchases(wh, cutoff, purchase_statuses),
        CUSTOMER_ORDER_FACTS: build_customer_order_facts(wh, cutoff, window_days),
        CUSTOMER_CATEGORY_FACTS: build_customer_category_facts(wh),
        CUSTOMER_ENGAGEMENT_FACTS: build_customer_engagement_facts(wh, cutoff),
    }
