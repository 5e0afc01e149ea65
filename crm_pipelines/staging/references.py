"""Which customer record each order, ticket, subscription, event or survey answer belongs to.

A row names its customer in one of two ways:

- ``source_customer_id``: the id of a customer record in the entity's ``customer_source`` (crm.yaml;
  default: the row's own source), so a support desk storing shop account ids points at the shop;
- otherwise an email only: the customer is ``(row's source, "email:" + normalized email)``.

People named this way but never delivered as customer records get stub customer rows
(``record_kind = 'referenced'``) so every row can be attributed. A customer record that staging
quarantined (say, for a malformed phone) therefore comes back as a stub with only its id: its
orders still get a customer, and the quarantine keeps the evidence of what was wrong with it.
Order lines are attributed through their order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from crm_pipelines.config import CrmConfig
from crm_pipelines.schema import CUSTOMERS, ENTITIES
from crm_pipelines.staging.values import typed_frame

if TYPE_CHECKING:
    import pandas as pd

EMAIL_PREFIX = "email:"
REFERENCED = "referenced"

# The column holding a row's email, per entity that may name its customer by email only.
EMAIL_COLUMNS = {
    "support_tickets": "requester_email",
    "subscriptions": "email",
    "campaign_events": "email",
    "survey_responses": "email",
}
# When a row happened: the earliest of these becomes a stub customer's created_at.
EVENT_TIME_COLUMNS = {
    "orders": "ordered_at",
    "support_tickets": "opened_at",
    "subscriptions": "consent_at",
    "campaign_events": "occurred_at",
    "survey_responses": "responded_at",
}
REFERENCE_COLUMNS = ["customer_source", "customer_record_id"]


def customer_reference(
    config: CrmConfig, entity: str, frame: pd.DataFrame, orders: pd.DataFrame | None = None
) -> pd.DataFrame:
    """For each row of a staged ``entity`` frame, the customer record it belongs to.

    Returns ``customer_source`` and ``customer_record_id`` (``str``, on ``frame``'s index); both are
    null when the row names no customer. Customers refer to themselves. ``order_items`` need the
    staged ``orders``: a line belongs to its order's customer.
    """
    if entity not in ENTITIES:
        raise ValueError(f"unknown entity {entity!r}; known: {sorted(ENTITIES)}")
    if entity == "customers":
        return _reference(frame["source"], frame["source_record_id"], frame.index)
    if entity == "order_items":
        if orders is None:
            raise ValueError("order_items are attributed through their orders: pass the staged orders")
        return _items_reference(config, frame, orders)

    customer_source = frame["source"].map(
        {name: _customer_source(config, name, entity) for name in frame["source"].dropna().unique()}
    )
    by_id = frame["source_customer_id"].notna()
    sources = customer_source.where(by_id)
    record_ids = frame["source_customer_id"].where(by_id)
    email_column = EMAIL_COLUMNS.get(entity)
    if email_column is not None:
        by_email = ~by_id & frame[email_column].notna()
        sources = sources.mask(by_email, frame["source"])
        record_ids = record_ids.mask(by_email, EMAIL_PREFIX + frame[email_column])
    return _reference(sources, record_ids, frame.index)


def _customer_source(config: CrmConfig, source_name: str, entity: str) -> str:
    try:
        settings = config.source(source_name).entities[entity]
    except KeyError:
        raise ValueError(f"staged {entity} come from source {source_name!r}, which crm.yaml does not declare "
                         f"for {entity}") from None
    return settings.customer_source or source_name


def _items_reference(config: CrmConfig, items: pd.DataFrame, orders: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd
    order_refs = customer_reference(config, "orders", orders)
    keyed = pd.concat([orders[["source", "order_id"]], order_refs], axis=1)
    keyed = keyed.drop_duplicates(["source", "order_id"])
    joined = items[["source", "order_id"]].merge(keyed, on=["source", "order_id"], how="left")
    return _reference(joined["customer_source"], joined["customer_record_id"], items.index)


def _reference(sources: pd.Series, record_ids: pd.Series, index: pd.Index) -> pd.DataFrame:
    import pandas as pd
    return pd.DataFrame(
        {
            "customer_source": sources.astype("str").to_numpy(),
            "customer_record_id": record_ids.astype("str").to_numpy(),
        },
        index=index,
    ).astype("str")


def referenced_customers(
    config: CrmConfig, staged: Mapping[str, pd.DataFrame], customers: pd.DataFrame
) -> pd.DataFrame:
    """Stub customer rows for the people other entities name but no source delivered as a record.

    ``staged`` maps entity names to staged frames (customers and order_items are ignored: customers
    are what is referenced, and lines have no customer of their own); ``customers`` is the staged
    customers. One stub per distinct (source, source_record_id), with the customers' staged columns:
    ``email`` filled for email references, ``created_at`` the earliest referencing time,
    ``record_kind = 'referenced'``, everything else null.
    """
    import pandas as pd
    parts = []
    for entity, frame in staged.items():
        if entity not in EVENT_TIME_COLUMNS or frame.empty:
            continue
        refs = customer_reference(config, entity, frame)
        email_column = EMAIL_COLUMNS.get(entity)
        email = frame[email_column] if email_column else pd.Series(pd.NA, index=frame.index, dtype="str")
        by_email = refs["customer_record_id"].str.startswith(EMAIL_PREFIX).fillna(False)
        parts.append(
            pd.DataFrame(
                {
                    "source": refs["customer_source"],
                    "source_record_id": refs["customer_record_id"],
                    "email": email.where(by_email),
                    "created_at": frame[EVENT_TIME_COLUMNS[entity]],
                }
            ).dropna(subset=["source", "source_record_id"])
        )
    if not parts:
        return typed_frame(CUSTOMERS.staged_columns, {}, 0)

    named = pd.concat(parts, ignore_index=True)
    stubs = (
        named.groupby(["source", "source_record_id"], sort=True)
        .agg(email=("email", "first"), created_at=("created_at", "min"))
        .reset_index()
    )
    known = pd.MultiIndex.from_frame(customers[["source", "source_record_id"]].astype("str"))
    stubs = stubs[~pd.MultiIndex.from_frame(stubs[["source", "source_record_id"]]).isin(known)]
    stubs = stubs.reset_index(drop=True)
    data = {**stubs.to_dict("series"), "record_kind": REFERENCED}
    return typed_frame(CUSTOMERS.staged_columns, data, len(stubs))
