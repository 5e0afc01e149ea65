"""The rules of each entity: normalization of its fields and the checks that quarantine a record.

Each function takes :class:`~crm_pipelines.staging.rules.EntityRows` whose columns are already typed,
fills in normalized and derived columns, and rejects rows; the order of the calls inside a function
is the order in which its rules judge a row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from crm_pipelines.staging.contacts import (
    normalize_countries,
    normalize_emails,
    normalize_genders,
    normalize_names,
)
from crm_pipelines.staging.phones import normalize_phones
from crm_pipelines.staging.rules import EntityRows, reject_or_null
from crm_pipelines.staging.values import collapse_whitespace, date_bound, map_unique
from crm_pipelines.staging.vocabularies import (
    CONSENT_STATUSES,
    EVENT_TYPES,
    ORDER_STATUSES,
    OTHER_ORDER_STATUS,
    TICKET_STATUSES,
    vocabulary_key,
)

if TYPE_CHECKING:
    import pandas as pd

EARLIEST_BIRTH_DATE = "1900-01-01"
FREE_TEXT_COLUMNS = ("address_line1", "address_line2", "city", "region", "company")


def normalize_email_column(rows: EntityRows, column: str) -> None:
    """``invalid_email``: the address is malformed. Junk addresses are nulled, not rejected."""
    text = rows.text[column]
    result = normalize_emails(text)
    rows.note_junk(column, result.junk)
    reject_or_null(rows, result.invalid, "invalid_email", column, text, result.problems)
    rows.set_normalized(column, result.values)


def map_vocabulary(
    rows: EntityRows, column: str, vocabulary: dict[str, str], unknown: str | None = None
) -> None:
    """Canonical values from synonyms; a value not in ``vocabulary`` becomes ``unknown`` or, when
    ``unknown`` is None, rejects the row with ``unknown_value``."""
    import pandas as pd
    text = rows.text[column]
    mapped = pd.Series(
        map_unique(text, lambda v: vocabulary.get(vocabulary_key(v), unknown)), index=text.index, dtype="str"
    )
    if unknown is None:
        allowed = ", ".join(dict.fromkeys(vocabulary.values()))
        rows.checks.reject_values(
            text.notna() & mapped.isna(),
            "unknown_value",
            column,
            text,
            f"is not one of {allowed} (or a synonym)",
        )
    rows.set_normalized(column, mapped)


def check_range(rows: EntityRows, column: str, low: float, high: float) -> None:
    """``out_of_range``: a number outside [low, high]."""
    values = rows.typed[column]
    outside = values.notna() & (values.lt(low) | values.gt(high))
    rows.checks.reject_values(
        outside, "out_of_range", column, rows.text[column], f"is outside {low:g}..{high:g}"
    )


def customers(rows: EntityRows) -> None:
    """Names, free text, postcode, gender, country, email, phone; ``record_kind = 'record'``.

    Rules: ``implausible_birth_date``, ``invalid_email``, ``invalid_phone``, ``unknown_country``.
    """
    import pandas as pd
    text, typed = rows.text, rows.typed
    for column in ("first_name", "last_name"):
        rows.set_normalized(column, normalize_names(text[column]))
    for column in FREE_TEXT_COLUMNS:
        rows.set_normalized(column, collapse_whitespace(text[column]))
    rows.set_normalized("postcode", collapse_whitespace(text["postcode"]).str.upper())
    rows.set_normalized("gender", normalize_genders(text["gender"]))
    countries = normalize_countries(text["country"])
    rows.note_junk("country", countries.junk)
    rows.set_normalized("country", countries.values)
    typed["record_kind"] = pd.Series("record", index=text.index, dtype="str")

    birth = typed["date_of_birth"]
    implausible = birth.lt(pd.Timestamp(EARLIEST_BIRTH_DATE)) | birth.gt(date_bound(rows.as_of_end.date()))
    reject_or_null(
        rows, implausible, "implausible_birth_date", "date_of_birth", text["date_of_birth"],
        f"is before {EARLIEST_BIRTH_DATE} or after the as-of date {rows.as_of_end.date()}",
    )
    normalize_email_column(rows, "email")

    default_region = (rows.source.default_country or rows.config.default_country).upper()
    phones = normalize_phones(text["phone"], countries.values.fillna(default_region))
    rows.note_junk("phone", phones.junk)
    reject_or_null(rows, phones.invalid, "invalid_phone", "phone", text["phone"], phones.problems)
    rows.set_normalized("phone", phones.values)

    reject_or_null(rows, countries.invalid, "unknown_country", "country", text["country"], countries.problems)


def orders(rows: EntityRows) -> None:
    """Status, currency, amount in the reporting currency, refund flag.

    Rules: ``unknown_currency``, ``negative_amount`` (a negative total that is not a refund),
    ``implausible_amount`` (a total, or refund, above ``checks.max_order_amount`` in the reporting currency).
    """
    import pandas as pd
    text, typed = rows.text, rows.typed
    map_vocabulary(rows, "status", ORDER_STATUSES, unknown=OTHER_ORDER_STATUS)
    currency = text["currency"].str.upper()
    rows.set_normalized("currency", currency)
    missing_currency = currency.isna()
    if missing_currency.any():
        # A source that does not state a currency bills in the reporting currency.
        currency = currency.fillna(rows.config.reporting_currency)
        typed["currency"] = currency
        rows.stats.defaults_applied["currency"] += int(missing_currency.sum())
    rates = {code.upper(): rate for code, rate in rows.config.fx_rates.items()}
    rate = pd.Series(map_unique(currency, rates.get), index=currency.index).astype("float64")
    rows.checks.reject_values(
        rate.isna(), "unknown_currency", "currency", text["currency"],
        f"has no rate in fx_rates (known: {', '.join(sorted(rates))})",
    )
    total, status = typed["total_amount"], typed["status"]
    refunded = status.eq("refunded").fillna(False)
    rows.checks.reject_values(
        total.lt(0) & ~refunded, "negative_amount", "total_amount", text["total_amount"],
        "is negative but the order is not refunded",
    )
    reporting = total * rate
    ceiling = rows.config.checks.max_order_amount
    unit = rows.config.reporting_currency

    def too_large(labels: pd.Index) -> list[str]:
        return [
            f"total_amount {amount!r} ({code}) is {converted:,.0f} {unit}, above checks.max_order_amount "
            f"({ceiling:,.0f} {unit})"
            for amount, code, converted in zip(
                text["total_amount"][labels], currency[labels], reporting[labels], strict=True
            )
        ]

    rows.checks.reject(reporting.abs().gt(ceiling), "implausible_amount", "total_amount", too_large)
    typed["total_amount_reporting"] = reporting
    typed["is_refund"] = (refunded | total.lt(0)).astype("boolean")


def order_items(rows: EntityRows) -> None:
    """Line amount; rules: ``negative_amount`` (unit price), ``implausible_amount``.

    Lines carry no currency of their own, so a line is implausible when its amount is above
    ``checks.max_order_amount`` even in the weakest currency of ``fx_rates``: a legitimate line is never
    refused, and a 1e12 line always is.

    A negative quantity is kept: shops book returned units as negative lines on a credit note, so
    the line amount is negative too (fractional quantities fail typing as ``invalid_quantity``).
    """
    typed, text = rows.typed, rows.text
    quantity, unit_price = typed["quantity"], typed["unit_price"]
    rows.checks.reject_values(
        unit_price.lt(0), "negative_amount", "unit_price", text["unit_price"], "is negative"
    )
    line_amount = quantity.astype("float64") * unit_price
    ceiling = line_ceiling(rows)

    def too_large(labels: pd.Index) -> list[str]:
        return [
            f"unit_price {price!r} times quantity {count} is {amount:,.0f}, above checks.max_order_amount "
            f"in the weakest currency of fx_rates ({ceiling:,.0f})"
            for price, count, amount in zip(
                text["unit_price"][labels], text["quantity"][labels], line_amount[labels], strict=True
            )
        ]

    rows.checks.reject(line_amount.abs().gt(ceiling), "implausible_amount", "unit_price", too_large)
    typed["line_amount"] = line_amount


def line_ceiling(rows: EntityRows) -> float:
    """The largest plausible line amount in any currency: the order ceiling at the lowest rate."""
    config = rows.config
    return config.checks.max_order_amount / min(config.fx_rates.values())


def support_tickets(rows: EntityRows) -> None:
    """Requester email, status, channel.

    Rules: ``invalid_email``, ``unknown_value`` (status), ``out_of_range`` (CSAT 1-5),
    ``inconsistent_timestamps`` (a response or resolution before the ticket was opened).
    """
    typed, text = rows.typed, rows.text
    normalize_email_column(rows, "requester_email")
    map_vocabulary(rows, "status", TICKET_STATUSES)
    rows.set_normalized("channel", text["channel"].str.lower())
    check_range(rows, "satisfaction_score", 1, 5)
    opened = typed["opened_at"]
    for column in ("first_response_at", "resolved_at"):
        rows.checks.reject_values(
            typed[column].lt(opened), "inconsistent_timestamps", column, text[column],
            "is before opened_at",
        )


def subscriptions(rows: EntityRows) -> None:
    """Email, list name, consent status; rules: ``invalid_email``, ``unknown_value``."""
    normalize_email_column(rows, "email")
    rows.set_normalized("list_name", collapse_whitespace(rows.text["list_name"]))
    map_vocabulary(rows, "consent_status", CONSENT_STATUSES)


def campaign_events(rows: EntityRows) -> None:
    """Email and event type; rules: ``invalid_email``, ``unknown_value``."""
    normalize_email_column(rows, "email")
    map_vocabulary(rows, "event_type", EVENT_TYPES)


def survey_responses(rows: EntityRows) -> None:
    """Email and NPS; rules: ``invalid_email``, ``out_of_range`` (NPS 0-10)."""
    normalize_email_column(rows, "email")
    check_range(rows, "nps_score", 0, 10)


ENTITY_RULES: dict[str, Callable[[EntityRows], None]] = {
    "customers": customers,
    "orders": orders,
    "order_items": order_items,
    "support_tickets": support_tickets,
    "subscriptions": subscriptions,
    "campaign_events": campaign_events,
    "survey_responses": survey_responses,
}
