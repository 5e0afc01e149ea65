"""Consent filtering of marketing audiences: a withdrawal anywhere wins; only opted-in addresses leave."""

from __future__ import annotations

import pandas as pd
import pytest

from crm_pipelines.analytics.activity import core_frame
from crm_pipelines.analytics.audiences import consent_summary, marketing_audiences, marketing_consent
from crm_pipelines.analytics.mart_columns import MARKETING_AUDIENCES_COLUMNS

AS_OF = pd.Timestamp("2024-06-30 23:59:59.999999", tz="UTC")


def _at(days_ago: float) -> pd.Timestamp:
    return AS_OF.floor("D") - pd.Timedelta(days=days_ago) + pd.Timedelta(hours=12)


def _consent(
    customer: str,
    status: str,
    days_ago: float | None,
    list_name: str = "news",
    source: str = "mail",
    email: str | None = None,
) -> dict:
    return {
        "customer_id": customer,
        "source": source,
        "subscription_id": f"{customer}-{status}-{days_ago}-{list_name}",
        "email": email,
        "list_name": list_name,
        "consent_status": status,
        "consent_at": None if days_ago is None else _at(days_ago),
    }


def _event(customer: str, kind: str, days_ago: float, email: str | None = None) -> dict:
    return {"customer_id": customer, "event_id": f"{customer}-{kind}-{days_ago}", "event_type": kind,
            "email": email, "occurred_at": _at(days_ago)}  # fmt: skip


SUBSCRIPTIONS = [
    _consent("withdrawn", "subscribed", 20),
    _consent("withdrawn", "unsubscribed", 10),
    _consent("resubscribed", "subscribed", 30),
    _consent("resubscribed", "unsubscribed", 20),
    _consent("resubscribed", "subscribed", 10),
    _consent("event_out", "subscribed", 20),
    _consent("other_list_out", "subscribed", 20, list_name="news", source="mail"),
    _consent("other_list_out", "unsubscribed", 10, list_name="offers", source="crm"),
    _consent("same_moment", "subscribed", 10),
    _consent("same_moment", "unsubscribed", 10, list_name="offers"),
    _consent("undated_out", "subscribed", 10),
    _consent("undated_out", "unsubscribed", None),
    _consent("undated_in", "subscribed", None),
    _consent("pending", "pending", 3),
    _consent("bounced", "subscribed", 20),
    _consent("bounce_then_resub", "subscribed", 10),
    _consent("future_withdrawal", "subscribed", 10),
    _consent("future_withdrawal", "unsubscribed", -2),
    _consent("no_email", "subscribed", 10),
    _consent("sub_email", "subscribed", 10, email=" Promo@Example.COM "),
    _consent("other_bounce", "subscribed", 10),
]
EVENTS = [
    _event("event_out", "unsubscribe", 5),
    _event("bounced", "bounce", 5, email="bounced@example.com"),
    _event("bounce_then_resub", "bounce", 30, email="bounce_then_resub@example.com"),
    _event("other_bounce", "bounce", 5, email="old-address@example.com"),
    _event("pending", "click", 1),
]
EXPORTED = {
    "resubscribed",
    "undated_in",
    "bounce_then_resub",
    "future_withdrawal",
    "sub_email",
    "other_bounce",
}


def _customers() -> pd.DataFrame:
    ids = sorted({s["customer_id"] for s in SUBSCRIPTIONS} | {"never_asked"})
    return core_frame(
        "unified_customers",
        [{"customer_id": c, "email": None if c == "no_email" else f"{c}@example.com"} for c in ids],
    )


def _consent_frame() -> pd.DataFrame:
    return marketing_consent(
        _customers(), core_frame("subscriptions", SUBSCRIPTIONS), core_frame("campaign_events", EVENTS), AS_OF
    ).set_index("customer_id")


def test_only_opted_in_customers_who_never_withdrew_afterwards_are_exportable() -> None:
    consent = _consent_frame()
    assert set(consent.index[consent["exportable"]]) == EXPORTED


@pytest.mark.parametrize(
    ("customer", "status", "reason"),
    [
        ("withdrawn", "unsubscribed", "withdrawn"),
        ("event_out", "unsubscribed", "withdrawn"),
        ("other_list_out", "unsubscribed", "withdrawn"),
        ("same_moment", "unsubscribed", "withdrawn"),
        ("undated_out", "unsubscribed", "withdrawn"),
        ("pending", "pending", "pending"),
        ("never_asked", "unknown", "no_consent"),
        ("bounced", "subscribed", "bounced"),
        ("no_email", "subscribed", "no_email"),
        ("resubscribed", "subscribed", None),
    ],
)
def test_status_and_exclusion_reason(customer: str, status: str, reason: str | None) -> None:
    row = _consent_frame().loc[customer]
    assert row["consent_status"] == status
    assert (pd.isna(row["exclusion_reason"]) and reason is None) or row["exclusion_reason"] == reason


def test_the_opt_in_behind_the_export_dates_it_and_supplies_the_address() -> None:
    consent = _consent_frame()
    assert consent.loc["resubscribed", "consent_at"] == _at(10)
    assert consent.loc["resubscribed", "withdrawn_at"] == _at(20)
    assert pd.isna(consent.loc["undated_in", "consent_at"])
    assert consent.loc["sub_email", "email"] == "promo@example.com"
    assert consent.loc["other_bounce", "email"] == "other_bounce@example.com"


def test_audiences_list_every_exportable_customer_in_each_segmentation_and_nobody_else() -> None:
    customers = _customers()
    segments = pd.DataFrame(
        {
            "customer_id": customers["customer_id"],
            "rfm_segment": ["Champions" if i % 2 else "Lost" for i in range(len(customers))],
            "value_tier": "key",
            "cluster_label": None,
        }
    )
    audiences = marketing_audiences(
        segments,
        core_frame("subscriptions", SUBSCRIPTIONS),
        core_frame("campaign_events", EVENTS),
        AS_OF,
        customers=customers,
    )
    assert list(audiences.columns) == [c.name for c in MARKETING_AUDIENCES_COLUMNS]
    assert set(audiences["customer_id"]) == EXPORTED
    assert sorted(audiences["audience_group"].unique()) == ["rfm_segment", "value_tier"]
    assert len(audiences) == 2 * len(EXPORTED)
    withdrawn = {"withdrawn", "event_out", "other_list_out", "same_moment", "undated_out"}
    assert not withdrawn & set(audiences["customer_id"])
    row = audiences.loc[
        (audiences["customer_id"] == "resubscribed") & (audiences["audience_group"] == "value_tier")
    ]
    assert row[["audience", "email"]].iloc[0].tolist() == ["key", "resubscribed@example.com"]
    assert row["consent_at"].iloc[0] == _at(10)


def test_a_re_subscription_after_withdrawal_is_exported_but_a_later_withdrawal_wins_again() -> None:
    subs = [
        _consent("x", "subscribed", 30),
        _consent("x", "unsubscribed", 20),
        _consent("x", "subscribed", 10),
    ]
    customers = core_frame("unified_customers", [{"customer_id": "x", "email": "x@example.com"}])
    segments = pd.DataFrame({"customer_id": ["x"], "rfm_segment": ["Champions"]})
    no_events = core_frame("campaign_events")
    exported = marketing_audiences(
        segments, core_frame("subscriptions", subs), no_events, AS_OF, customers=customers
    )
    assert exported["customer_id"].tolist() == ["x"]
    withdrawn_again = [*subs, _consent("x", "unsubscribed", 2, list_name="offers")]
    none = marketing_audiences(
        segments, core_frame("subscriptions", withdrawn_again), no_events, AS_OF, customers=customers
    )
    assert none.empty and list(none.columns) == [c.name for c in MARKETING_AUDIENCES_COLUMNS]


def test_consent_summary_counts_customers_per_reason() -> None:
    summary = consent_summary(_consent_frame().reset_index())
    counts = summary.set_index(["consent_status", "exclusion_reason"])["customers"]
    assert counts[("subscribed", "exported")] == len(EXPORTED)
    assert counts[("unsubscribed", "withdrawn")] == 5
    assert summary["customers"].sum() == len(_customers())
