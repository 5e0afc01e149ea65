"""Consent and the source campaigns' assignments computed in the warehouse equal the pandas reference, on
DuckDB and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from facts_support import AS_OF, assert_same, by_customer, core_frames_with_edges, load_core

from crm_pipelines.analytics.audiences import marketing_consent
from crm_pipelines.analytics.campaigns import source_campaign_assignments
from crm_pipelines.analytics.cycle_settings import CampaignSettings
from crm_pipelines.facts.campaigns import read_source_campaign_assignments
from crm_pipelines.facts.consent import CONSENT_COLUMNS, read_consent


def _at(text: str | None) -> pd.Timestamp | None:
    return None if text is None else pd.Timestamp(text, tz="UTC")


def _edge_consent(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Opt-in addresses unlike the golden one, bounces by address, by customer and of another customer's
    address, bounces before and after the opt-in, an undated opt-in with a bounce, a customer without
    golden email."""
    customers = frames["customers"].copy()
    who = customers["customer_id"].iloc[20:30].tolist()
    unsubscribed = customers.loc[~customers["customer_id"].isin(frames["subscriptions"]["customer_id"]), "customer_id"]
    who[6] = unsubscribed.iloc[0]  # a customer only the edge rows give consent
    customers.loc[customers["customer_id"] == who[6], "email"] = None
    subscriptions = [
        (who[0], "x-1", "subscribed", "2025-06-27", " Other@Example.COM "),
        (who[0], "x-2", "subscribed", "2025-06-28", ""),  # latest opt-in, no address: the earlier one's
        (who[1], "x-3", "subscribed", "2025-06-29", "b1@example.com"),
        (who[1], "x-4", "subscribed", "2025-06-29", "b2@example.com"),  # same moment: the higher id
        (who[2], "x-5", "subscribed", None, "undated@example.com"),
        (who[3], "x-6", "subscribed", "2025-04-01", None),
        (who[4], "x-7", "subscribed", "2025-04-01", "shared@example.com"),
        (who[5], "x-8", "pending", "2025-04-01", None),
        (who[6], "x-9", "subscribed", "2025-04-01", None),  # no address anywhere
        (who[7], "x-10", "subscribed", "2025-05-01", None),
        (who[7], "x-11", "unsubscribed", "2025-05-01", None),  # a tie: the withdrawal wins
    ]
    subs = pd.DataFrame(subscriptions, columns=["customer_id", "subscription_id", "consent_status", "consent_at",
                                                "email"])  # fmt: skip
    subs = subs.assign(
        source="edge", list_name="newsletter",
        consent_at=pd.to_datetime(subs["consent_at"], utc=True).astype("datetime64[us, UTC]"),
    )  # fmt: skip
    events = [
        (who[2], "bounce", "2025-01-05", None),  # after an undated opt-in: bounced
        (who[3], "bounce", "2025-03-01", None),  # before the opt-in: not bounced
        (who[8], "bounce", "2025-05-01", "shared@example.com"),  # another customer's bounce of who[4]'s address
        (who[0], "bounce", "2025-07-02", "other@example.com"),  # after the cutoff
        (who[9], "unsubscribe", "2025-06-01", None),
        (None, "bounce", "2025-06-01", "b2@example.com"),  # of no known customer: ignored
    ]
    ev = pd.DataFrame(events, columns=["customer_id", "event_type", "occurred_at", "email"])
    ev = ev.assign(
        source="edge", event_id=[f"xe-{i}" for i in range(len(ev))], campaign_id="camp-x",
        occurred_at=pd.to_datetime(ev["occurred_at"], utc=True).astype("datetime64[us, UTC]"),
    )  # fmt: skip
    return {
        **frames,
        "customers": customers,
        "subscriptions": pd.concat([frames["subscriptions"], subs], ignore_index=True),
        "events": pd.concat([frames["events"], ev.astype({"customer_id": "str"})], ignore_index=True),
    }


@pytest.fixture(scope="module")
def core_frames() -> dict[str, pd.DataFrame]:
    return _edge_consent(core_frames_with_edges())


@pytest.fixture(scope="module")
def loaded(module_warehouse, core_frames):
    load_core(module_warehouse, core_frames)
    return module_warehouse


def test_consent_equals_the_reference(loaded, core_frames):
    c = core_frames
    expected = marketing_consent(c["customers"][["customer_id", "email"]], c["subscriptions"], c["events"], AS_OF)
    actual = read_consent(loaded, AS_OF)
    assert list(actual.columns) == list(CONSENT_COLUMNS) == list(expected.columns)
    assert len(actual) == len(expected)
    assert_same(by_customer(actual), by_customer(expected))
    # The edges are there, so the comparison covers them.
    edge = by_customer(actual).loc[c["customers"]["customer_id"].iloc[20:30].tolist()]
    assert edge["email"].iloc[:2].tolist() == ["other@example.com", "b2@example.com"]
    # A bounce after an undated opt-in, and another customer's bounce of the address, block it.
    assert edge["exclusion_reason"].iloc[[2, 4]].tolist() == ["bounced", "bounced"]
    assert set(expected["exclusion_reason"].dropna()) >= {"withdrawn", "pending", "no_consent", "bounced", "no_email"}


def test_exportable_only(loaded, core_frames):
    everyone = read_consent(loaded, AS_OF)
    exportable = read_consent(loaded, AS_OF, exportable_only=True)
    assert exportable["customer_id"].tolist() == sorted(everyone.loc[everyone["exportable"], "customer_id"])


@pytest.mark.parametrize(
    "start, end",
    [(None, None), (dt.date(2025, 2, 1), dt.date(2025, 4, 30)), (dt.date(2025, 6, 30), dt.date(2025, 12, 31))],
)
def test_source_campaign_assignments_equal_the_reference(loaded, core_frames, start, end):
    events = core_frames["events"].copy()
    # A source campaign with holdout events, and customers with both kinds (treated).
    holdout = events["campaign_id"] == "camp-7"
    events.loc[holdout & (events.index % 3 == 0), "event_type"] = " HoldOut "
    loaded.write_table(events.astype({"event_type": "str"}), "core", "campaign_events")
    campaign = CampaignSettings(name="external", source_campaign_id="camp-7", start=start, end=end)
    members = set(core_frames["customers"]["customer_id"].iloc[::4])
    expected = source_campaign_assignments(campaign, events, members, AS_OF)
    actual = read_source_campaign_assignments(loaded, campaign, members, AS_OF)
    assert len(expected) > 0 or start is not None
    assert list(actual.columns) == list(expected.columns)
    assert_same(actual.reset_index(drop=True), expected.reset_index(drop=True))
    assert actual.dtypes.to_dict() == expected.dtypes.to_dict()
