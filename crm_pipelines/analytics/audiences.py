"""Marketing consent per customer, and the consented audience lists marketing tools import.

Consent rule (docs/marts.md, "Consent and audiences"):

- Every consent signal up to ``as_of`` counts, in every source and on every list: ``subscribed``
  records are opt-ins; ``unsubscribed`` records and ``unsubscribe`` campaign events are withdrawals;
  ``pending`` records (double opt-in not confirmed) are neither.
- A customer is opted in when their latest opt-in is later than their latest withdrawal. A withdrawal at
  the same moment as an opt-in wins. A withdrawal without a date wins over every opt-in (nothing proves
  the opt-in came after it); an opt-in without a date counts only when there is no withdrawal at all.
- The exported address is the email of the latest opt-in record, else the customer's golden email.
  Every ``bounce`` event is treated as a hard bounce: an address that bounced after the latest opt-in
  is not exported (a bounce without an email blocks the customer's address). A re-subscription after
  the bounce confirms the address again.
- A customer who withdrew consent is never exported, whatever their segment.
- An address on the suppression list (:mod:`.suppression`) is never exported, whichever customer the
  withdrawal behind it resolved to.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from crm_pipelines.analytics.activity import (
    as_of_micros,
    customer_codes,
    customer_index,
    is_value,
    micros_to_timestamps,
    normalized_text,
    utc_micros,
)
from crm_pipelines.analytics.suppression import without_suppressed

NONE = np.iinfo("int64").min
UNDATED_OPT_IN = NONE + 1
UNDATED_WITHDRAWAL = np.iinfo("int64").max

# Segment columns of marts.customer_segments that become audiences, in export order.
AUDIENCE_COLUMNS: tuple[str, ...] = ("rfm_segment", "value_tier", "relationship_type", "cluster_label")


def _normalized_email(values: pd.Series) -> np.ndarray:
    emails = values.astype("str").str.strip().str.lower()
    return emails.where(emails.str.len() > 0).to_numpy(dtype=object, na_value=None)


def _latest(code: np.ndarray, micros: np.ndarray, n: int) -> np.ndarray:
    """Per customer position, the largest time among the given signals (``NONE`` when none)."""
    latest = np.full(n, NONE, dtype="int64")
    np.maximum.at(latest, code, micros)
    return latest


def marketing_consent(
    customers: pd.DataFrame,
    subscriptions: pd.DataFrame,
    events: pd.DataFrame,
    as_of: pd.Timestamp,
) -> pd.DataFrame:
    """One row per customer of ``customers``: consent status and whether the customer may be exported.

    ``customers`` needs ``customer_id`` and may carry ``email`` (the fallback address).
    Columns: customer_id, consent_status (subscribed, unsubscribed, pending or unknown), consent_at (the
    opt-in behind a subscribed status, or the latest signal otherwise), withdrawn_at, email (the address
    to export), email_bounced, exportable, exclusion_reason (null when exportable).
    """
    index = customer_index(customers)
    n = len(index)
    limit = as_of_micros(as_of)

    s_code = customer_codes(subscriptions, index)
    s_micros, s_dated = utc_micros(subscriptions["consent_at"])
    status = normalized_text(subscriptions["consent_status"])
    known = (s_code >= 0) & (~s_dated | (s_micros <= limit))
    signal_time = np.where(s_dated, s_micros, 0)

    opt_in = known & is_value(status, "subscribed")
    in_time = np.where(s_dated, signal_time, UNDATED_OPT_IN)
    last_in = _latest(s_code[opt_in], in_time[opt_in], n)

    withdrawal = known & is_value(status, "unsubscribed")
    out_time = np.where(s_dated, signal_time, UNDATED_WITHDRAWAL)
    out_codes, out_times = [s_code[withdrawal]], [out_time[withdrawal]]

    e_code = customer_codes(events, index)
    e_micros, e_dated = utc_micros(events["occurred_at"])
    kind = normalized_text(events["event_type"])
    e_known = (e_code >= 0) & e_dated & (e_micros <= limit)
    unsubscribe = e_known & is_value(kind, "unsubscribe")
    out_codes.append(e_code[unsubscribe])
    out_times.append(e_micros[unsubscribe])
    last_out = _latest(np.concatenate(out_codes), np.concatenate(out_times), n)

    pending = known & is_value(status, "pending")
    last_pending = _latest(s_code[pending], np.where(s_dated, signal_time, UNDATED_OPT_IN)[pending], n)

    has_in, has_out = last_in != NONE, last_out != NONE
    subscribed = has_in & (~has_out | (last_out < last_in))
    withdrawn = has_out & ~subscribed
    consent_status = np.select(
        [subscribed, withdrawn, last_pending != NONE], ["subscribed", "unsubscribed", "pending"], "unknown"
    )
    shown_time = np.where(subscribed, last_in, np.where(withdrawn, last_out, last_pending))
    shown_dated = (shown_time != NONE) & (shown_time != UNDATED_OPT_IN) & (shown_time != UNDATED_WITHDRAWAL)

    # The exported address: the email on the latest opt-in record, else the golden email.
    email = np.full(n, None, dtype=object)
    if opt_in.any():
        records = pd.DataFrame(
            {
                "code": s_code[opt_in],
                "at": in_time[opt_in],
                "id": subscriptions["subscription_id"].astype("str").to_numpy()[opt_in],
                "email": _normalized_email(subscriptions["email"][opt_in]),
            }
        ).dropna(subset=["email"])
        latest = records.sort_values(["code", "at", "id"]).drop_duplicates("code", keep="last")
        email[latest["code"].to_numpy()] = latest["email"].to_numpy()
    if "email" in customers:
        golden = _normalized_email(customers["email"])
        email = np.where(pd.isna(email), golden, email)

    # Bounces after the latest opt-in block the address (or the customer, for bounces without an email).
    bounce = e_known & is_value(kind, "bounce")
    bounce_email = _normalized_email(events["email"][bounce])
    by_email = pd.Series(e_micros[bounce]).groupby(pd.Series(bounce_email, dtype="str")).max()
    email_bounce = by_email.reindex(pd.Series(email, dtype="str")).fillna(NONE).to_numpy("int64")
    no_email = pd.isna(bounce_email)
    customer_bounce = _latest(e_code[bounce][no_email], e_micros[bounce][no_email], n)
    bounced = np.maximum(email_bounce, customer_bounce) > last_in

    no_address = pd.isna(email)
    exportable = subscribed & ~no_address & ~bounced
    reason = np.select(
        [exportable, withdrawn, consent_status == "pending", ~subscribed, no_address, bounced],
        [None, "withdrawn", "pending", "no_consent", "no_email", "bounced"],
        None,
    )
    return pd.DataFrame(
        {
            "customer_id": index.to_numpy(),
            "consent_status": pd.array(consent_status, dtype="str"),
            "consent_at": micros_to_timestamps(shown_time, shown_dated),
            "withdrawn_at": micros_to_timestamps(last_out, has_out & (last_out != UNDATED_WITHDRAWAL)),
            "email": pd.array(email, dtype="str"),
            "email_bounced": bounced & subscribed,
            "exportable": exportable,
            "exclusion_reason": pd.array(reason, dtype="str"),
        }
    )


def marketing_audiences(
    segments: pd.DataFrame,
    subscriptions: pd.DataFrame,
    events: pd.DataFrame,
    as_of: pd.Timestamp,
    customers: pd.DataFrame | None = None,
    audience_columns: tuple[str, ...] | Mapping[str, str] = AUDIENCE_COLUMNS,
    suppressed: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Consented audience lists: one row per exportable customer and audience they belong to.

    ``segments`` is one row per customer (marts.customer_segments); each of ``audience_columns`` present
    in it becomes an audience group whose audiences are its values. ``customers`` (customer_id, email)
    supplies golden emails for opt-ins recorded without an address; without it, ``segments.email`` is
    used when present. Only customers :func:`marketing_consent` marks exportable appear, and none whose
    address is in ``suppressed`` (:func:`~crm_pipelines.analytics.suppression.suppression_list`).
    Columns: customer_id, audience_group, audience, email, consent_at.
    """
    people = customers if customers is not None else segments
    consent = marketing_consent(
        people[[c for c in ("customer_id", "email") if c in people]], subscriptions, events, as_of
    )
    return audiences_from_consent(segments, consent, audience_columns, suppressed)


def audiences_from_consent(
    segments: pd.DataFrame,
    consent: pd.DataFrame,
    audience_columns: tuple[str, ...] | Mapping[str, str] = AUDIENCE_COLUMNS,
    suppressed: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """:func:`marketing_audiences` from the consent per customer (:func:`marketing_consent`, or the same
    computed in the warehouse by :mod:`crm_pipelines.facts.consent`)."""
    allowed = consent.loc[consent["exportable"], ["customer_id", "email", "consent_at"]]
    if suppressed is not None:
        allowed = without_suppressed(allowed, suppressed)
    members = segments.merge(allowed, on="customer_id", how="inner", suffixes=("_segment", ""))
    groups = (
        dict(audience_columns)
        if isinstance(audience_columns, Mapping)
        else {column: column for column in audience_columns}
    )
    parts = []
    for column, group in groups.items():
        if column not in members:
            continue
        part = members.loc[members[column].notna(), ["customer_id", column, "email", "consent_at"]]
        parts.append(part.rename(columns={column: "audience"}).assign(audience_group=group))
    columns = ["customer_id", "audience_group", "audience", "email", "consent_at"]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="str") for c in columns[:-1]}).assign(
            consent_at=pd.Series(dtype="datetime64[us, UTC]")
        )
    audiences = pd.concat(parts, ignore_index=True)[columns]
    audiences["audience"] = audiences["audience"].astype("str")
    audiences["audience_group"] = audiences["audience_group"].astype("str")
    return audiences.sort_values(["audience_group", "audience", "customer_id"], ignore_index=True)


def consent_summary(consent: pd.DataFrame) -> pd.DataFrame:
    """Customers per consent status and exclusion reason (asset metadata)."""
    return (
        consent.assign(exclusion_reason=consent["exclusion_reason"].fillna("exported"))
        .groupby(["consent_status", "exclusion_reason"], as_index=False)
        .size()
        .rename(columns={"size": "customers"})
    )
