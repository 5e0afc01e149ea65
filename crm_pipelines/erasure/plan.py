"""Who an erasure request names: from hashed keys and customer ids to every customer, record and value.

Resolution reads the warehouse and changes nothing:

1. the staged customer records whose email, phone or ``source:record id`` hashes to a requested key,
   and the staged addresses that do (a support ticket's requester, an email-only subscriber);
2. their customers through ``core.customer_identity_map``, with the requested customer ids and the ids
   ``core.customer_id_history`` links to them (retired by a merge or split);
3. every source record of those customers, and their orders;
4. the emails and phones of those records, except values another, not erased, record also holds (a
   household's shared phone stays with the rest of the household), plus every requested value.

The plan keeps the plain values in memory only; what is stored is :attr:`ErasurePlan.tombstones`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from crm_pipelines.config import CrmConfig
from crm_pipelines.erasure.keys import EMAIL, ORDER, PHONE, SOURCE_RECORD, KeyHashes, hashes_of, key_hash, record_key
from crm_pipelines.schema import CORE, STAGING
from crm_pipelines.staging.references import EMAIL_COLUMNS
from crm_pipelines.warehouse import Warehouse, col

IDENTITY_MAP = "customer_identity_map"
ID_HISTORY = "customer_id_history"
ENTITIES_NAMING_CUSTOMERS = ("orders", "support_tickets", "subscriptions", "campaign_events", "survey_responses")


@dataclass
class ErasurePlan:
    """Everything an erasure deletes, resolved from the request."""

    requested: KeyHashes
    customer_ids: set[str] = field(default_factory=set)
    records: set[tuple[str, str]] = field(default_factory=set)
    """Customer records: (source, source_record_id)."""
    orders: set[tuple[str, str]] = field(default_factory=set)
    """(source, order_id)."""
    emails: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)

    @property
    def tombstones(self) -> KeyHashes:
        """The requested keys and every key of the erased records, hashed: nothing else is stored."""
        pairs = [(EMAIL, key_hash(e)) for e in self.emails] + [(PHONE, key_hash(p)) for p in self.phones]
        pairs += [(SOURCE_RECORD, key_hash(record_key(s, r))) for s, r in self.records]
        pairs += [(ORDER, key_hash(record_key(s, o))) for s, o in self.orders]
        return self.requested.union(KeyHashes.of(pairs))

    def ids_by_source(self, which: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
        grouped: dict[str, set[str]] = {}
        for source, record_id in which:
            grouped.setdefault(source, set()).add(record_id)
        return {s: sorted(ids) for s, ids in sorted(grouped.items())}


def _read(wh: Warehouse, schema: str, table: str, columns: list[str]) -> pd.DataFrame:
    if not wh.table_exists(schema, table):
        return pd.DataFrame({c: pd.Series(dtype="str") for c in columns})
    present = set(wh.columns(schema, table))
    frame = wh.read_table(schema, table, columns=[c for c in columns if c in present])
    for c in columns:
        if c not in frame:
            frame[c] = pd.Series(pd.NA, index=frame.index, dtype="str")
    return frame.astype({c: "str" for c in columns})


def _distinct(wh: Warehouse, schema: str, table: str, column: str) -> pd.Series:
    if not wh.table_exists(schema, table) or column not in wh.columns(schema, table):
        return pd.Series([], dtype="str")
    stmt = sa.select(col(column)).select_from(wh.table(schema, table)).where(col(column).is_not(None)).distinct()
    return wh.query(stmt)[column].astype("str")


def _matching(values: pd.Series, wanted: frozenset[str]) -> set[str]:
    if not wanted or values.empty:
        return set()
    return set(values[hashes_of(values).isin(wanted).to_numpy(dtype=bool)].tolist())


def resolve(wh: Warehouse, config: CrmConfig, requested: KeyHashes, customer_ids: Iterable[str] = ()) -> ErasurePlan:
    """The :class:`ErasurePlan` of a request (hashed keys and customer ids). Reads only."""
    plan = ErasurePlan(requested=requested)
    customers = _read(wh, STAGING, "customers", ["source", "source_record_id", "email", "phone"])
    identity = _read(wh, CORE, IDENTITY_MAP, ["source", "source_record_id", "customer_id"])

    # 1. Requested values as staging holds them, and the records that carry them.
    emails = pd.concat(
        [_distinct(wh, STAGING, "customers", "email")]
        + [_distinct(wh, STAGING, entity, column) for entity, column in EMAIL_COLUMNS.items()]
    ).drop_duplicates()
    plan.emails |= _matching(emails, requested.get(EMAIL))
    plan.phones |= _matching(_distinct(wh, STAGING, "customers", "phone"), requested.get(PHONE))
    record_keys = customers["source"] + ":" + customers["source_record_id"]
    identity_keys = identity["source"] + ":" + identity["source_record_id"]
    wanted_records = requested.get(SOURCE_RECORD)
    direct = (
        customers["email"].isin(plan.emails)
        | customers["phone"].isin(plan.phones)
        | hashes_of(record_keys).isin(wanted_records)
    ).to_numpy(dtype=bool)
    direct_records = set(zip(customers["source"][direct], customers["source_record_id"][direct], strict=True))
    in_map = hashes_of(identity_keys).isin(wanted_records).to_numpy(dtype=bool)
    direct_records |= set(zip(identity["source"][in_map], identity["source_record_id"][in_map], strict=True))

    # 2. Their customers, and the ids history links to them.
    keys = pd.MultiIndex.from_frame(identity[["source", "source_record_id"]])
    named = keys.isin(list(direct_records)) if direct_records else pd.Series(False, index=identity.index)
    plan.customer_ids = set(identity.loc[named, "customer_id"].dropna()) | set(customer_ids)
    plan.customer_ids |= _linked_ids(wh, plan.customer_ids)

    # 3. Every record of those customers, and their orders.
    theirs = identity["customer_id"].isin(plan.customer_ids).to_numpy(dtype=bool)
    plan.records = direct_records | set(
        zip(identity["source"][theirs], identity["source_record_id"][theirs], strict=True)
    )
    plan.orders = _orders(wh, config, plan)

    # 4. Their emails and phones that no other record holds.
    record_index = pd.MultiIndex.from_frame(customers[["source", "source_record_id"]])
    erased = record_index.isin(list(plan.records)) if plan.records else pd.Series(False, index=customers.index)
    erased = pd.Series(erased, index=customers.index)
    for column, values in (("email", plan.emails), ("phone", plan.phones)):
        mine = set(customers.loc[erased, column].dropna())
        others = set(customers.loc[~erased, column].dropna())
        values |= mine - others
    return plan


def _linked_ids(wh: Warehouse, ids: set[str]) -> set[str]:
    """Customer ids retired into, or split from, ``ids`` (followed until nothing new turns up)."""
    history = _read(wh, CORE, ID_HISTORY, ["retired_customer_id", "merged_into_customer_id"])
    linked = set(ids)
    while True:
        retired = history["retired_customer_id"].isin(linked) | history["merged_into_customer_id"].isin(linked)
        found = set(history.loc[retired, "retired_customer_id"].dropna())
        found |= set(history.loc[retired, "merged_into_customer_id"].dropna())
        if found <= linked:
            return linked - set(ids)
        linked |= found


def _orders(wh: Warehouse, config: CrmConfig, plan: ErasurePlan) -> set[tuple[str, str]]:
    """Orders of the erased records (staging) and customers (core)."""
    found: set[tuple[str, str]] = set()
    staged = _read(wh, STAGING, "orders", ["source", "order_id", "source_customer_id"])
    customer_source = {
        s.name: s.entities["orders"].customer_source or s.name for s in config.sources if "orders" in s.entities
    }
    referenced = pd.MultiIndex.from_arrays(
        [staged["source"].map(lambda s: customer_source.get(s, s)), staged["source_customer_id"]]
    )
    if plan.records and len(staged):
        mine = referenced.isin(list(plan.records))
        found |= set(zip(staged["source"][mine], staged["order_id"][mine], strict=True))
    attributed = _read(wh, CORE, "orders", ["source", "order_id", "customer_id"])
    mine = attributed["customer_id"].isin(plan.customer_ids).to_numpy(dtype=bool)
    found |= set(zip(attributed["source"][mine], attributed["order_id"][mine], strict=True))
    return found
