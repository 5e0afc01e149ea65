"""Address-level suppression: withdrawals of an address hold whichever customer the record resolved to."""

from __future__ import annotations

import pandas as pd

from crm_pipelines.analytics.audiences import marketing_audiences
from crm_pipelines.analytics.suppression import suppression_list, without_suppressed

AS_OF = pd.Timestamp("2026-06-30 23:59:59", tz="UTC")
NO_RECORDS = pd.DataFrame({c: pd.Series(dtype="str") for c in ("source", "source_record_id", "email", "phone")})


def _subs(*rows: tuple) -> pd.DataFrame:
    columns = ["source", "subscription_id", "source_customer_id", "email", "list_name", "consent_status", "consent_at"]
    frame = pd.DataFrame(list(rows), columns=columns)
    frame["consent_at"] = pd.to_datetime(frame["consent_at"], utc=True)
    return frame.astype({c: "str" for c in columns[:-1]})


def _events(*rows: tuple) -> pd.DataFrame:
    columns = ["source", "event_id", "source_customer_id", "email", "event_type", "occurred_at"]
    frame = pd.DataFrame(list(rows), columns=columns)
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True)
    return frame.astype({c: "str" for c in columns[:-1]})


NO_EVENTS = _events()


def test_latest_signal_of_the_address_decides():
    subs = _subs(
        ("email", "1", None, "A@x.com ", "news", "subscribed", "2026-01-01"),
        ("email", "2", None, "a@x.com", "news", "unsubscribed", "2026-02-01"),
        ("email", "3", None, "b@x.com", "news", "unsubscribed", "2026-01-01"),
        ("email", "4", None, "b@x.com", "news", "subscribed", "2026-03-01"),  # a later opt-in lifts it
        ("email", "5", None, "c@x.com", "news", "subscribed", "2026-01-01"),
        ("email", "6", None, "c@x.com", "news", "unsubscribed", "2026-01-01"),  # a tie suppresses
        ("email", "7", None, "d@x.com", "news", "unsubscribed", None),  # undated suppresses
        ("email", "8", None, "d@x.com", "news", "subscribed", "2026-05-01"),
        ("email", "9", None, "e@x.com", "news", "unsubscribed", "2026-08-01"),  # after the as-of day
    )
    events = _events(("email", "e1", None, "f@x.com", "bounce", "2026-04-01"))
    result = suppression_list(subs, events, NO_RECORDS, AS_OF)
    assert result["address"].tolist() == ["a@x.com", "c@x.com", "d@x.com", "f@x.com"]
    assert result.set_index("address").loc["f@x.com", "reason"] == "bounce"
    assert pd.isna(result.set_index("address").loc["d@x.com", "suppressed_since"])


def test_record_without_address_takes_its_customer_records_email_and_sms_phone():
    subs = _subs(
        ("crm", "c1", "CRM-1", None, "newsletter", "unsubscribed", "2026-02-01"),
        ("crm", "c2", "CRM-1", None, "SMS offers", "unsubscribed", "2026-02-01"),
    )
    records = pd.DataFrame(
        {"source": ["crm"], "source_record_id": ["CRM-1"], "email": ["p@x.com"], "phone": ["+4930123456"]}
    )
    result = suppression_list(subs, NO_EVENTS, records, AS_OF)
    assert sorted(zip(result["address_kind"], result["address"], strict=True)) == [
        ("email", "p@x.com"),
        ("phone", "+4930123456"),
    ]


def test_audiences_never_export_a_suppressed_address_of_another_customer():
    # The customer C1 opted in via the CRM; the email tool's unsubscribe of the same address was resolved
    # to another customer C2, so C1's own consent still says subscribed.
    segments = pd.DataFrame({"customer_id": ["C1", "C3"], "rfm_segment": ["champions", "loyal"]})
    customers = pd.DataFrame({"customer_id": ["C1", "C3"], "email": ["a@x.com", "c@x.com"]})
    subs = _subs(
        ("crm", "1", "CRM-1", "a@x.com", "news", "subscribed", "2026-01-01"),
        ("crm", "3", "CRM-3", "c@x.com", "news", "subscribed", "2026-01-01"),
        ("email", "2", None, "a@x.com", "news", "unsubscribed", "2026-03-01"),
    ).assign(customer_id=["C1", "C3", "C2"])
    events = NO_EVENTS.assign(customer_id=pd.Series(dtype="str"))
    groups = ("rfm_segment",)
    unsuppressed = marketing_audiences(segments, subs, events, AS_OF, customers=customers, audience_columns=groups)
    assert set(unsuppressed["customer_id"]) == {"C1", "C3"}
    suppressed = suppression_list(subs, events, NO_RECORDS, AS_OF)
    audiences = marketing_audiences(
        segments, subs, events, AS_OF, customers=customers, audience_columns=groups, suppressed=suppressed
    )
    assert audiences["customer_id"].tolist() == ["C3"]
    assert without_suppressed(audiences, suppressed).equals(audiences)
