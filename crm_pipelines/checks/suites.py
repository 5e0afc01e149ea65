"""Data contracts per layer: staging, core and marts, built from :mod:`crm_pipelines.schema`.

Raw deliveries are judged by their volume contract (:mod:`crm_pipelines.ingest.contracts`) before
they replace anything, not by a suite: ``raw_contract`` names that check.

Each builder returns a :class:`~crm_pipelines.checks.rules.SuiteSpec` (plain data, see
:mod:`crm_pipelines.checks.rules`); :func:`crm_pipelines.checks.sql.validate_in_warehouse` runs it on a
table in the warehouse, :func:`crm_pipelines.checks.gx.validate` on a frame.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from crm_pipelines.checks.rules import (
    Bound,
    Rule,
    SuiteSpec,
    between,
    columns_present,
    in_set,
    matches,
    not_null,
    row_count_at_least,
    typed,
    unique,
)
from crm_pipelines.schema import (
    ENTITIES,
    IDENTITY_MAP_COLUMNS,
    UNIFIED_CUSTOMER_COLUMNS,
    core_entity_columns,
)

if TYPE_CHECKING:
    import pandas as pd

# Check names: one Dagster asset check per suite kind.
RAW_CONTRACT = "raw_contract"
STAGING_CONTRACT = "staging_contract"
CORE_CONTRACT = "core_contract"
MART_CONTRACT = "mart_contract"
DRIFT_CHECK = "drift"

# Value sets staging normalizes onto (crm_pipelines.schema describes them).
ORDER_STATUSES = ("completed", "cancelled", "refunded", "pending", "other")
TICKET_STATUSES = ("open", "pending", "resolved", "closed")
CONSENT_STATUSES = ("subscribed", "unsubscribed", "pending")
EVENT_TYPES = ("sent", "open", "click", "unsubscribe", "bounce", "holdout")
GENDERS = ("female", "male", "other", "unknown")
RECORD_KINDS = ("record", "referenced")
MATCH_METHODS = ("seed", "email", "phone", "identifier", "probabilistic", "singleton")

EMAIL_REGEX = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
E164_REGEX = r"^\+[1-9]\d{6,14}$"
COUNTRY_REGEX = r"^[A-Z]{2}$"
CURRENCY_REGEX = r"^[A-Z]{3}$"
EARLIEST_BIRTH_DATE = "1900-01-01"

# Ranges marts commonly declare, as (min, max); None leaves a side open.
PROBABILITY = (0.0, 1.0)
RATE = (0.0, 1.0)
NON_NEGATIVE = (0.0, None)


# -- staging ----------------------------------------------------------------------------------------
def _as_timestamp(value: dt.datetime | dt.date | pd.Timestamp) -> pd.Timestamp:
    import pandas as pd
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def staging_suite(
    entity: str,
    *,
    as_of_end: dt.datetime | dt.date | pd.Timestamp,
    currencies: Iterable[str] | None = None,
) -> SuiteSpec:
    """Contract of ``staging.<entity>``: columns and types per :mod:`crm_pipelines.schema`, and values.

    ``as_of_end`` is the run's cutoff (naive values are taken as UTC): no timestamp may be later.
    ``currencies`` are the configured ones (``crm.yaml`` ``fx_rates``); without them a currency only
    has to look like an ISO 4217 code.
    """
    ent = ENTITIES[entity]
    table = f"staging.{entity}"
    cutoff = _as_timestamp(as_of_end)
    staged = ent.staged_columns
    names = {c.name for c in staged}
    rules: list[Rule] = [columns_present([c.name for c in staged], table)]
    rules += [typed(c.name, c.dtype) for c in staged]
    rules += [
        not_null("source"),
        not_null(ent.record_id, name="record_id_not_null"),
        unique(["source", ent.record_id], name="unique_record_id"),
    ]
    for c in staged:
        if c.dtype == "timestamp":
            rules.append(between(
                c.name, max_value=cutoff, name=f"no_future_{c.name}",
                description=f"{c.name} is not later than the run's cutoff {cutoff.isoformat()}.",
            ))
    for email_column in ("email", "requester_email"):
        if email_column in names:
            rules.append(matches(email_column, EMAIL_REGEX, "a well-formed email address"))
    if "phone" in names:
        rules.append(matches("phone", E164_REGEX, "an E.164 phone number (+4930123456)", name="phone_e164"))
    rules += _staging_value_rules(entity, cutoff, currencies)
    description = f"{table}: typed, normalized, one row per record."
    return SuiteSpec(table, STAGING_CONTRACT, tuple(rules), description)


def _staging_value_rules(entity: str, cutoff: pd.Timestamp, currencies: Iterable[str] | None) -> list[Rule]:
    import pandas as pd
    if entity == "customers":
        return [
            between(
                "date_of_birth", pd.Timestamp(EARLIEST_BIRTH_DATE), cutoff.tz_localize(None),
                name="date_of_birth_plausible",
                description="date_of_birth is on or after 1900-01-01 and not after the cutoff.",
            ),
            in_set("gender", GENDERS),
            in_set("record_kind", RECORD_KINDS),
            matches("country", COUNTRY_REGEX, "an ISO 3166-1 alpha-2 code", name="country_code"),
        ]
    if entity == "orders":
        currency_rule = (
            in_set("currency", currencies, name="currency_known")
            if currencies is not None
            else matches("currency", CURRENCY_REGEX, "an ISO 4217 code", name="currency_known")
        )
        return [
            in_set("status", ORDER_STATUSES),
            currency_rule,
            not_null("is_refund", name="refund_flag_set"),
            Rule(
                "non_refund_total_not_negative",
                "ExpectColumnValuesToBeBetween",
                {"column": "total_amount", "min_value": 0},
                "error",
                "An order that is not a refund has total_amount >= 0; a negative total is a refund "
                "(is_refund).",
                row_condition=("is_refund", "==", False),
            ),
            Rule(
                "refunded_orders_flagged",
                "ExpectColumnValuesToBeInSet",
                {"column": "is_refund", "value_set": [True]},
                "error",
                "Every order with status refunded has is_refund true.",
                row_condition=("status", "==", "refunded"),
            ),
        ]
    if entity == "order_items":
        # Returned units are negative lines on credit notes; prices never are.
        return [between("unit_price", 0, name="unit_price_not_negative")]
    if entity == "support_tickets":
        return [
            in_set("status", TICKET_STATUSES),
            between("satisfaction_score", 1, 5),
            _not_before("first_response_at", "opened_at"),
            _not_before("resolved_at", "opened_at"),
        ]
    if entity == "subscriptions":
        return [in_set("consent_status", CONSENT_STATUSES)]
    if entity == "campaign_events":
        return [in_set("event_type", EVENT_TYPES)]
    if entity == "survey_responses":
        return [between("nps_score", 0, 10)]
    return []


def _not_before(later: str, earlier: str) -> Rule:
    return Rule(
        f"{later}_not_before_{earlier}",
        "ExpectColumnPairValuesAToBeGreaterThanB",
        {"column_A": later, "column_B": earlier, "or_equal": True,
         "ignore_row_if": "either_value_is_missing"},
        "error",
        f"{later} is not earlier than {earlier}.",
    )


# -- core -------------------------------------------------------------------------------------------
def identity_map_suite(staged_customer_count: int) -> SuiteSpec:
    """``core.customer_identity_map``: every staged customer record mapped to exactly one customer."""
    table = "core.customer_identity_map"
    return SuiteSpec(
        table,
        CORE_CONTRACT,
        (
            columns_present([c.name for c in IDENTITY_MAP_COLUMNS], table),
            unique(["source", "source_record_id"], name="record_mapped_once"),
            Rule(
                "every_record_mapped",
                "ExpectTableRowCountToEqual",
                {"value": int(staged_customer_count)},
                "error",
                f"The map has one row per staged customer record ({staged_customer_count}).",
            ),
            not_null("customer_id"),
            in_set("match_method", MATCH_METHODS),
            between("match_probability", *PROBABILITY),
        ),
        f"{table}: each source customer record belongs to exactly one unified customer.",
    )


def unified_customers_suite() -> SuiteSpec:
    table = "core.unified_customers"
    return SuiteSpec(
        table,
        CORE_CONTRACT,
        (
            columns_present([c.name for c in UNIFIED_CUSTOMER_COLUMNS], table),
            not_null("customer_id"),
            unique(["customer_id"]),
            between("record_count", 1, name="record_count_positive"),
        ),
        f"{table}: one golden record per customer_id.",
    )


def core_entity_suite(entity: str, *, customer_required: bool | None = None) -> SuiteSpec:
    """``core.<entity>``: staged rows attributed to a customer.

    An order (or order line) without a customer is an orphan and breaks the contract; tickets,
    subscriptions, events and survey answers may come from people no source knows (a warning).
    """
    table = f"core.{entity}"
    required = entity in ("orders", "order_items") if customer_required is None else customer_required
    ent = ENTITIES[entity]
    return SuiteSpec(
        table,
        CORE_CONTRACT,
        (
            columns_present([c.name for c in core_entity_columns(entity)], table),
            Rule(
                "customer_attributed",
                "ExpectColumnValuesToNotBeNull",
                {"column": "customer_id"},
                "error" if required else "warn",
                f"Every row of {table} belongs to a unified customer (customer_id not null).",
            ),
            unique(["source", ent.record_id], name="unique_record_id"),
        ),
        f"{table}: staged {entity} attributed to unified customers.",
    )


# -- marts ------------------------------------------------------------------------------------------
def mart_suite(
    table: str,
    *,
    columns: Sequence[str] = (),
    allowed_values: Mapping[str, Iterable[Any]] | None = None,
    ranges: Mapping[str, tuple[Bound, Bound]] | None = None,
    unique_keys: Sequence[Sequence[str]] = (),
    not_null_columns: Sequence[str] = (),
    min_rows: int | None = None,
) -> SuiteSpec:
    """A mart's contract, declared by the mart: for example customer segments::

        mart_suite("marts.customer_segments",
                   allowed_values={"rfm_segment": RFM_SEGMENTS},
                   ranges={"p_alive": PROBABILITY, "clv_12m": NON_NEGATIVE},
                   unique_keys=[["customer_id"]])

    Ranges are inclusive ``(min, max)`` with ``None`` for an open side; each unique key is a list of
    columns (``[["customer_id"]]`` means one row per customer).
    """
    rules: list[Rule] = []
    key_columns = [c for key in unique_keys for c in key]
    required = list(dict.fromkeys([*columns, *key_columns, *not_null_columns,
                                   *(allowed_values or {}), *(ranges or {})]))
    if required:
        rules.append(columns_present(required, table))
    if min_rows is not None:
        rules.append(row_count_at_least(min_rows))
    for column in dict.fromkeys([*key_columns, *not_null_columns]):
        rules.append(not_null(column))
    for key in unique_keys:
        rules.append(unique(key))
    for column, values in (allowed_values or {}).items():
        rules.append(in_set(column, values))
    for column, (low, high) in (ranges or {}).items():
        rules.append(between(column, low, high))
    return SuiteSpec(table, MART_CONTRACT, tuple(rules), f"{table}: the shape and value ranges BI relies on.")



# -- facts (built and validated in the warehouse) ---------------------------------------------------
# Per facts table: its key, the columns that must be set, and counts that cannot be negative.
_FACTS_SHAPES: dict[str, tuple[list[str], list[str], dict[str, tuple[Bound, Bound]]]] = {
    "purchases": (["source", "order_id"], ["customer_id", "purchase_day", "amount"], {}),
    "customer_order_facts": (
        ["customer_id"], ["customer_id", "orders"],
        {c: NON_NEGATIVE for c in ("orders", "cancelled_orders", "refunded_orders", "purchase_days",
                                   "orders_recent", "orders_previous")},
    ),
    "customer_category_facts": (["customer_id", "category"], ["customer_id", "lines"], {"lines": (1, None)}),
    "customer_engagement_facts": (
        ["customer_id"], ["customer_id"],
        {**{c: NON_NEGATIVE for c in ("tickets_opened", "tickets_resolved", "survey_responses", "campaign_opens",
                                      "campaign_clicks")},
         "avg_satisfaction": (1, 5), "latest_nps": (0, 10)},
    ),
}


def facts_suite(table: str) -> SuiteSpec:
    """``core.<table>`` of the facts built in the warehouse: one row per key, counts not negative."""
    if table not in _FACTS_SHAPES:
        raise KeyError(f"no facts contract for {table!r}; known: {sorted(_FACTS_SHAPES)}")
    key, required, ranges = _FACTS_SHAPES[table]
    name = f"core.{table}"
    rules: list[Rule] = [columns_present(list(dict.fromkeys([*key, *required, *ranges])), name)]
    rules += [not_null(c) for c in required]
    rules.append(unique(key, name="unique_key"))
    rules += [between(c, low, high) for c, (low, high) in ranges.items()]
    return SuiteSpec(name, CORE_CONTRACT, tuple(rules), f"{name}: one row per {', '.join(key)}, built in SQL.")
