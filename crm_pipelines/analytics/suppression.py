"""Address-level suppression: addresses that must not be contacted, whoever they resolved to.

Customer-level consent (:mod:`.audiences`) trusts identity resolution: a withdrawal recorded on an email
record that resolution put into another customer never reaches the customer whose address it is. The
law and the recipient care about the address, so this list is keyed by the address itself:

- every ``unsubscribed`` subscription record, every ``unsubscribe`` event and every ``bounce`` event (all
  treated as hard bounces) of every source is a withdrawal of its address;
- every ``subscribed`` record is an opt-in of its address;
- an address is suppressed when its latest withdrawal is not older than its latest opt-in (a tie, and
  an undated withdrawal, suppress); a later opt-in by the same address lifts it.

A subscription or event without an address of its own takes the email of the source customer record it
names (``source_customer_id``, in the source ``customer_sources`` maps it to). Phone numbers are
suppressed from withdrawals on lists whose name mentions SMS or text messages, for SMS exports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from crm_pipelines.analytics.activity import as_of_micros, is_value, normalized_text, utc_micros
from crm_pipelines.analytics.isin import isin

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

NONE = -(2**63)  # np.iinfo("int64").min
UNDATED_OPT_IN = NONE + 1
UNDATED_WITHDRAWAL = 2**63 - 1  # np.iinfo("int64").max
SMS_LIST = r"\b(?:sms|text)"
SUPPRESSION_COLUMNS = ("address_kind", "address", "reason", "source", "suppressed_since")


def _clean(values: pd.Series) -> pd.Series:
    text = values.astype("str").str.strip().str.lower()
    return text.where(text.str.len() > 0)


def _record_addresses(
    frame: pd.DataFrame, records: pd.DataFrame, customer_sources: Mapping[str, str], column: str
) -> pd.Series:
    """The ``column`` (email or phone) of the customer record each row of ``frame`` names."""
    import pandas as pd
    if records.empty or "source_customer_id" not in frame:
        return pd.Series(pd.NA, index=frame.index, dtype="str")
    lookup = records.dropna(subset=[column]).drop_duplicates(["source", "source_record_id"], keep="last")
    lookup = lookup.set_index(["source", "source_record_id"])[column]
    keys = pd.MultiIndex.from_arrays(
        [
            frame["source"].astype("str").map(lambda s: customer_sources.get(s, s)),
            frame["source_customer_id"].astype("str"),
        ]
    )
    return pd.Series(lookup.reindex(keys).to_numpy(), index=frame.index, dtype="str")


def _signals(
    frame: pd.DataFrame, address: pd.Series, micros: np.ndarray, kind: str, reason: pd.Series | str
) -> pd.DataFrame:
    import pandas as pd
    return pd.DataFrame(
        {
            "address_kind": kind,
            "address": _clean(address).to_numpy(),
            "reason": reason if isinstance(reason, str) else reason.to_numpy(),
            "source": frame["source"].astype("str").to_numpy(),
            "at": micros,
        }
    ).dropna(subset=["address"])


def suppression_list(
    subscriptions: pd.DataFrame,
    events: pd.DataFrame,
    customer_records: pd.DataFrame,
    as_of: pd.Timestamp,
    customer_sources: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The suppressed addresses as of ``as_of``: address_kind (email, phone), address, reason (the latest
    withdrawal: unsubscribed, unsubscribe or bounce), source, suppressed_since (null when undated).

    ``subscriptions`` and ``events`` are the staged or core tables; ``customer_records`` is
    ``staging.customers`` (source, source_record_id, email, phone); ``customer_sources`` maps a source to
    the source whose customer ids its ``source_customer_id`` holds (crm.yaml ``customer_source``).
    """
    import numpy as np
    import pandas as pd
    sources = dict(customer_sources or {})
    limit = as_of_micros(as_of)
    parts_in, parts_out = [], []

    s_micros, s_dated = utc_micros(subscriptions["consent_at"])
    status = normalized_text(subscriptions["consent_status"])
    s_known = ~s_dated | (s_micros <= limit)
    record_email = _record_addresses(subscriptions, customer_records, sources, "email")
    email = _clean(subscriptions["email"]).fillna(record_email)
    opt_in = s_known & is_value(status, "subscribed")
    withdrawal = s_known & is_value(status, "unsubscribed")
    in_at = np.where(s_dated, s_micros, UNDATED_OPT_IN)
    out_at = np.where(s_dated, s_micros, UNDATED_WITHDRAWAL)
    parts_in.append(_signals(subscriptions[opt_in], email[opt_in], in_at[opt_in], "email", "subscribed"))
    parts_out.append(
        _signals(subscriptions[withdrawal], email[withdrawal], out_at[withdrawal], "email", "unsubscribed")
    )
    lists = subscriptions["list_name"].astype("str").str.lower().str.contains(SMS_LIST, regex=True, na=False)
    sms = lists.to_numpy(dtype=bool)
    if sms.any():
        phone = _record_addresses(subscriptions, customer_records, sources, "phone")
        into, out = opt_in & sms, withdrawal & sms
        parts_in.append(_signals(subscriptions[into], phone[into], in_at[into], "phone", "subscribed"))
        parts_out.append(_signals(subscriptions[out], phone[out], out_at[out], "phone", "unsubscribed"))

    e_micros, e_dated = utc_micros(events["occurred_at"])
    kind = normalized_text(events["event_type"])
    blocking = e_dated & (e_micros <= limit) & is_value(kind, "unsubscribe", "bounce")
    e_email = _clean(events["email"]).fillna(_record_addresses(events, customer_records, sources, "email"))
    parts_out.append(
        _signals(events[blocking], e_email[blocking], e_micros[blocking], "email", pd.Series(kind[blocking]))
    )

    signals_in = pd.concat(parts_in, ignore_index=True)
    signals_out = pd.concat(parts_out, ignore_index=True)
    key = ["address_kind", "address"]
    latest_in = signals_in.groupby(key)["at"].max().rename("latest_in")
    latest_out = signals_out.sort_values([*key, "at", "reason", "source"]).drop_duplicates(key, keep="last")
    merged = latest_out.set_index(key).join(latest_in).reset_index()
    suppressed = merged[merged["latest_in"].isna() | (merged["at"] >= merged["latest_in"])]
    dated = suppressed["at"] != UNDATED_WITHDRAWAL
    since = pd.to_datetime(suppressed["at"].where(dated), unit="us", utc=True)
    result = suppressed.assign(suppressed_since=since)[list(SUPPRESSION_COLUMNS)]
    return result.astype({c: "str" for c in SUPPRESSION_COLUMNS[:-1]}).sort_values(key, ignore_index=True)


def without_suppressed(audiences: pd.DataFrame, suppressed: pd.DataFrame) -> pd.DataFrame:
    """``audiences`` without rows whose exported email is on the suppression list, in plain or, for an
    erased person's address, as its SHA-256 (``email_sha256``)."""
    emails = suppressed.loc[suppressed["address_kind"] == "email", "address"]
    blocked = isin(_clean(audiences["email"]), emails)
    hashed = set(suppressed.loc[suppressed["address_kind"] == "email_sha256", "address"])
    if hashed:
        digests = _clean(audiences["email"]).map(
            lambda e: hashlib.sha256(e.encode("utf-8")).hexdigest() if isinstance(e, str) else None
        )
        blocked = blocked | isin(digests, hashed)
    return audiences[~blocked].reset_index(drop=True)
