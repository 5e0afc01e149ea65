"""Glue between the warehouse and the privacy logic: what the mart assets call to honour it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from crm_pipelines.config import CrmConfig
from crm_pipelines.erasure.tombstones import ERASED_REASON, HASHED_ADDRESS_KINDS, TOMBSTONES_TABLE
from crm_pipelines.schema import AUDIT, CORE
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd

SUPPRESSION_TABLE = "suppression_list"


def with_erased_addresses(suppressed: pd.DataFrame, wh: Warehouse) -> pd.DataFrame:
    """The suppression list plus every erased email and phone, by SHA-256 only (``email_sha256``,
    ``phone_sha256``, reason ``erased``): an erased person is never marketed to again, and the list never
    holds their address. An export checks an address by hashing its normalized form."""
    import pandas as pd
    if not wh.table_exists(AUDIT, TOMBSTONES_TABLE):
        return suppressed
    tombstones = wh.read_table(AUDIT, TOMBSTONES_TABLE, columns=["key_kind", "key_hash", "recorded_at"])
    erased = tombstones[tombstones["key_kind"].isin(list(HASHED_ADDRESS_KINDS))]
    if erased.empty:
        return suppressed
    erased = erased.sort_values("recorded_at").drop_duplicates(["key_kind", "key_hash"]).reset_index(drop=True)
    hashed = pd.DataFrame(
        {
            "address_kind": erased["key_kind"].map(HASHED_ADDRESS_KINDS).astype("str"),
            "address": erased["key_hash"].astype("str"),
            "reason": pd.Series(ERASED_REASON, index=erased.index, dtype="str"),
            "source": pd.Series(pd.NA, index=erased.index, dtype="str"),
            "suppressed_since": pd.to_datetime(erased["recorded_at"], utc=True),
        }
    )
    if suppressed.empty:
        return hashed
    return pd.concat([suppressed, hashed], ignore_index=True)


def address_suppression(config: CrmConfig, wh: Warehouse, as_of: pd.Timestamp) -> pd.DataFrame:
    """The suppressed addresses (see :mod:`crm_pipelines.analytics.suppression`), computed in the warehouse
    (:mod:`crm_pipelines.facts.suppression`) and published as ``core.suppression_list`` for other exports
    (SMS, ad audiences) to honour too."""
    from crm_pipelines.facts.suppression import read_suppression_list

    customer_sources = {
        s.name: e.customer_source
        for s in config.sources
        for name, e in s.entities.items()
        if name in ("subscriptions", "campaign_events") and e.customer_source
    }
    suppressed = read_suppression_list(wh, as_of, customer_sources)
    suppressed = with_erased_addresses(suppressed, wh)
    wh.publish(suppressed, CORE, SUPPRESSION_TABLE)
    return suppressed
