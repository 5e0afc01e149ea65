"""The canonical entities every source system is mapped onto, and the warehouse layers.

This module is the one place that says which columns an entity has. Sources map their own column
names onto these (``crm.yaml``); staging types and normalizes them; everything downstream reads
the staged, canonical names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["string", "timestamp", "date", "float", "integer", "boolean"]

# Warehouse layers: one schema each.
RAW = "raw"
STAGING = "staging"
CORE = "core"
MARTS = "marts"
QUARANTINE = "quarantine"
AUDIT = "audit"
LAYERS = (RAW, STAGING, CORE, MARTS, QUARANTINE, AUDIT)

# Lineage columns every raw table carries.
RAW_SOURCE = "_source"
RAW_INGESTED_AT = "_ingested_at"
RAW_BATCH_ID = "_batch_id"
RAW_PARTITION_DATE = "_partition_date"
RAW_METADATA_COLUMNS = (RAW_SOURCE, RAW_INGESTED_AT, RAW_BATCH_ID, RAW_PARTITION_DATE)


@dataclass(frozen=True)
class Column:
    name: str
    dtype: ColumnType
    description: str
    required: bool = False
    """A source delivering the entity must map this column."""


@dataclass(frozen=True)
class Entity:
    name: str
    record_id: str
    """The column that identifies one record within one source system."""
    columns: tuple[Column, ...]
    description: str

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"entity {self.name!r} has no column {name!r}")

    @property
    def staged_columns(self) -> list[Column]:
        """Columns of the staging table: ``source`` first, then the canonical ones, then extras."""
        return [SOURCE_COLUMN, *self.columns, *STAGED_EXTRAS.get(self.name, ())]


def _c(name: str, dtype: ColumnType, description: str, required: bool = False) -> Column:
    return Column(name, dtype, description, required)


SOURCE_COLUMN = _c("source", "string", "Name of the source system the record came from (crm.yaml).")

CUSTOMERS = Entity(
    name="customers",
    record_id="source_record_id",
    description="People as one source system knows them: a CRM contact, a shop account, ...",
    columns=(
        _c("source_record_id", "string", "The record's id in its source system.", required=True),
        _c("first_name", "string", "Given name, Unicode NFC, trimmed, title case."),
        _c("last_name", "string", "Family name, Unicode NFC, trimmed, title case."),
        _c("email", "string", "Email address, validated and normalized (lower case)."),
        _c("phone", "string", "Phone number in E.164 (+4930123456)."),
        _c("date_of_birth", "date", "Date of birth."),
        _c("gender", "string", "female, male, other or unknown."),
        _c("address_line1", "string", "Street and house number."),
        _c("address_line2", "string", "Apartment, suite, c/o."),
        _c("city", "string", "City."),
        _c("postcode", "string", "Postal code, upper case without inner spaces collapsed."),
        _c("region", "string", "State, county or region."),
        _c("country", "string", "ISO 3166-1 alpha-2 country code."),
        _c("company", "string", "Employer or company name for B2B contacts."),
        _c("created_at", "timestamp", "When the source created the record (UTC)."),
        _c("updated_at", "timestamp", "When the source last changed the record (UTC)."),
    ),
)

ORDERS = Entity(
    name="orders",
    record_id="order_id",
    description="Orders placed in a shop or billing system.",
    columns=(
        _c("order_id", "string", "The order's id in its source system.", required=True),
        _c("source_customer_id", "string", "The buyer's customer record id in the same source.", True),
        _c("ordered_at", "timestamp", "When the order was placed (UTC).", required=True),
        _c("status", "string", "completed, cancelled, refunded, pending or other (lower case)."),
        _c("currency", "string", "ISO 4217 currency code of total_amount."),
        _c("total_amount", "float", "Order total in its own currency.", required=True),
    ),
)

ORDER_ITEMS = Entity(
    name="order_items",
    record_id="item_id",
    description="Lines of an order.",
    columns=(
        _c("item_id", "string", "The line's id; derived as order_id:product_id where a source has none."),
        _c("order_id", "string", "The order the line belongs to.", required=True),
        _c("product_id", "string", "Product id or SKU.", required=True),
        _c("product_name", "string", "Product name."),
        _c("category", "string", "Product category."),
        _c("quantity", "integer", "Units bought."),
        _c("unit_price", "float", "Price of one unit in the order's currency."),
    ),
)

SUPPORT_TICKETS = Entity(
    name="support_tickets",
    record_id="ticket_id",
    description="Support desk tickets (inquiries).",
    columns=(
        _c("ticket_id", "string", "The ticket's id in its source system.", required=True),
        _c("source_customer_id", "string", "Requester's customer record id in the same source."),
        _c("requester_email", "string", "Requester's email, normalized like customer emails."),
        _c("opened_at", "timestamp", "When the ticket was opened (UTC).", required=True),
        _c("first_response_at", "timestamp", "First agent response (UTC)."),
        _c("resolved_at", "timestamp", "When the ticket was resolved (UTC)."),
        _c("status", "string", "open, pending, resolved or closed (lower case)."),
        _c("channel", "string", "email, phone, chat, web, ... (lower case)."),
        _c("satisfaction_score", "float", "Customer satisfaction (CSAT) 1-5."),
    ),
)

SUBSCRIPTIONS = Entity(
    name="subscriptions",
    record_id="subscription_id",
    description="Marketing consent: who opted in to or out of which list, and when.",
    columns=(
        _c("subscription_id", "string", "The subscription or consent record's id.", required=True),
        _c("source_customer_id", "string", "Customer record id in the same source."),
        _c("email", "string", "Subscriber email, normalized like customer emails."),
        _c("list_name", "string", "Mailing list or consent purpose."),
        _c("consent_status", "string", "subscribed, unsubscribed or pending.", required=True),
        _c("consent_at", "timestamp", "When the consent status was last set (UTC)."),
    ),
)

CAMPAIGN_EVENTS = Entity(
    name="campaign_events",
    record_id="event_id",
    description="Email campaign events.",
    columns=(
        _c("event_id", "string", "The event's id.", required=True),
        _c("source_customer_id", "string", "Subscriber's record id in the same source."),
        _c("email", "string", "Subscriber email, normalized."),
        _c("campaign_id", "string", "Campaign id."),
        _c("event_type", "string", "sent, open, click, unsubscribe, bounce or holdout (control group).", required=True),
        _c("occurred_at", "timestamp", "When it happened (UTC).", required=True),
    ),
)

SURVEY_RESPONSES = Entity(
    name="survey_responses",
    record_id="response_id",
    description="Survey answers, such as Net Promoter Score.",
    columns=(
        _c("response_id", "string", "The response's id.", required=True),
        _c("source_customer_id", "string", "Respondent's customer record id in the same source."),
        _c("email", "string", "Respondent email, normalized."),
        _c("nps_score", "integer", "Likelihood to recommend, 0-10."),
        _c("comment", "string", "Free-text feedback."),
        _c("responded_at", "timestamp", "When the response was submitted (UTC).", required=True),
    ),
)

ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        CUSTOMERS,
        ORDERS,
        ORDER_ITEMS,
        SUPPORT_TICKETS,
        SUBSCRIPTIONS,
        CAMPAIGN_EVENTS,
        SURVEY_RESPONSES,
    )
}

# Columns staging adds beyond the canonical ones.
STAGED_EXTRAS: dict[str, tuple[Column, ...]] = {
    "customers": (
        _c(
            "record_kind",
            "string",
            "'record' when the source delivered the customer; 'referenced' when it was only named "
            "by an order, ticket, subscription, event or survey answer.",
        ),
    ),
    "orders": (
        _c("total_amount_reporting", "float", "total_amount converted to the reporting currency."),
        _c("is_refund", "boolean", "The order is a refund (status refunded or a negative total)."),
    ),
    "order_items": (_c("line_amount", "float", "quantity x unit_price in the order's currency."),),
}

# Staging also publishes identifier fields that sources declare for customers (a loyalty card,
# a tax number) as a long table, so matching can use any number of them.
CUSTOMER_IDENTIFIERS_COLUMNS = (
    SOURCE_COLUMN,
    _c("source_record_id", "string", "The customer record's id in its source."),
    _c("identifier_type", "string", "The identifier's name as declared in crm.yaml (loyalty_card)."),
    _c("identifier_value", "string", "The value, trimmed and upper-cased."),
)

# Every rejected row, in every layer, lands here with its reason.
QUARANTINE_COLUMNS = (
    _c("run_id", "string", "The run that rejected the row."),
    _c("layer", "string", "The layer the row failed to enter (staging, core, marts)."),
    _c("entity", "string", "The entity or table."),
    SOURCE_COLUMN,
    _c("record_id", "string", "The row's record id in its source (null when missing)."),
    _c("rule", "string", "Machine-readable rule that failed (invalid_email, future_date, ...)."),
    _c("column_name", "string", "The column at fault, if one."),
    _c("reason", "string", "Human-readable reason."),
    _c("raw_values", "string", "The rejected row as JSON."),
    _c("rejected_at", "timestamp", "When it was rejected (UTC)."),
)

# audit.reconciliation: one row per run, layer, table and source:
# rows in = out + quarantined + superseded + deleted.
RECONCILIATION_COLUMNS = (
    _c("run_id", "string", "The run."),
    _c("recorded_at", "timestamp", "When the row was written (UTC)."),
    _c("layer", "string", "The layer whose input is reconciled (staging, core, marts)."),
    _c("table_name", "string", "The table rows flowed into."),
    SOURCE_COLUMN,
    _c("rows_in", "integer", "Rows read from the layer below."),
    _c("rows_out", "integer", "Rows written to the table."),
    _c("rows_quarantined", "integer", "Rows rejected into quarantine."),
    _c("rows_superseded", "integer", "Older versions of a record replaced by a newer one."),
    _c("reconciles", "boolean", "rows_in = rows_out + rows_quarantined + rows_superseded + rows_deleted."),
    _c("rows_deleted", "integer", "Rows of records whose current version the source marks deleted."),
)

# audit.source_deletes: one row per record a run removed because its source deleted it.
SOURCE_DELETE_COLUMNS = (
    _c("run_id", "string", "The run that removed the record."),
    _c("recorded_at", "timestamp", "When it was removed (UTC)."),
    _c("entity", "string", "The entity."),
    SOURCE_COLUMN,
    _c("record_id", "string", "The record's id in its source."),
    _c("kind", "string", "flagged_deleted (the source marks it deleted) or missing_from_delivery."),
    _c("reason", "string", "Human-readable reason."),
)


def raw_table_name(source: str, entity: str) -> str:
    """``raw`` holds one table per source and entity: ``raw.<source>__<entity>``."""
    return f"{source}__{entity}"


# --- core layer -------------------------------------------------------------------------------
# customer_id is a string, stable from run to run (see crm_pipelines.identity).
CUSTOMER_ID = _c("customer_id", "string", "The unified customer's stable id.")

# core.<entity> for each of these is the staging table's columns plus customer_id, attributed
# through core.customer_identity_map; core.order_items also carries its order's ordered_at.
CORE_ATTRIBUTED_ENTITIES = (
    "orders",
    "order_items",
    "support_tickets",
    "subscriptions",
    "campaign_events",
    "survey_responses",
)

IDENTITY_MAP_COLUMNS = (
    SOURCE_COLUMN,
    _c("source_record_id", "string", "The customer record's id in its source."),
    CUSTOMER_ID,
    _c(
        "match_method",
        "string",
        "How the record joined its customer: seed, email, phone, identifier, probabilistic or singleton.",
    ),
    _c("match_probability", "float", "Probability of the link that joined it (1.0 for exact identifiers)."),
)

# core.unified_customers: one golden record per customer_id.
UNIFIED_CUSTOMER_COLUMNS = (
    CUSTOMER_ID,
    *(c for c in CUSTOMERS.columns if c.name not in ("source_record_id", "created_at", "updated_at")),
    _c("created_at", "timestamp", "Earliest creation time across the customer's records."),
    _c("updated_at", "timestamp", "Latest update time across the customer's records."),
    _c("record_count", "integer", "Source records joined into this customer."),
    _c("sources", "string", "Comma-separated source systems that know the customer."),
)


def core_entity_columns(entity: str) -> list[Column]:
    """Columns of ``core.<entity>``: the staged columns plus customer_id (and ordered_at for items)."""
    cols = [CUSTOMER_ID, *ENTITIES[entity].staged_columns]
    if entity == "order_items":
        cols.append(ORDERS.column("ordered_at"))
    return cols
