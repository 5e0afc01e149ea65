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


def _suppression_frames(frames: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Subscriptions and events naming their source customer record (some without an address of their
    own, from a source whose customer ids another source holds), an SMS list, ties and undated rows."""
    ids = frames["customers"]["customer_id"].astype("str")
    records = pd.DataFrame(
        {
            "source": "crm",
            "source_record_id": [f"r-{i}" for i in range(40)],
            "email": [f"rec{i}@example.com" if i % 5 else None for i in range(40)],
            "phone": [f"+4915100000{i:02d}" if i % 3 else None for i in range(40)],
        }
    )
    subs = pd.DataFrame(
        [
            ("app", "y-1", "r-1", None, "SMS alerts", "subscribed", "2025-03-01"),
            ("app", "y-2", "r-1", None, "SMS alerts", "unsubscribed", "2025-04-01"),
            ("app", "y-3", "r-2", None, "Newsletter", "unsubscribed", None),  # undated: suppressed
            ("app", "y-4", "r-4", " Rec4@Example.com", "text messages", "unsubscribed", "2025-02-01"),
            ("app", "y-5", "r-4", None, "Newsletter", "subscribed", "2025-03-01"),  # a later opt-in lifts it
            ("app", "y-6", "r-5", None, "Newsletter", "unsubscribed", "2025-02-01"),  # record without email
            ("app", "y-7", "r-7", "tie@example.com", "Newsletter", "subscribed", "2025-05-01"),
            ("app", "y-8", "r-7", "tie@example.com", "Newsletter", "unsubscribed", "2025-05-01"),  # a tie: suppressed
            ("app", "y-9", "r-8", None, "Newsletter", "subscribed", None),
            ("app", "y-10", "r-8", None, "Newsletter", "unsubscribed", "2025-01-01"),  # after an undated opt-in
            ("app", "y-11", "r-9", None, "Newsletter", "unsubscribed", "2025-08-01"),  # after the cutoff
        ],
        columns=["source", "subscription_id", "source_customer_id", "email", "list_name", "consent_status",
                 "consent_at"],
    )  # fmt: skip
    subs = subs.assign(
        customer_id=ids.iloc[: len(subs)].to_numpy(),
        consent_at=pd.to_datetime(subs["consent_at"], utc=True).astype("datetime64[us, UTC]"),
    )
    events = pd.DataFrame(
        [
            ("app", "ye-1", "r-13", None, "bounce", "2025-06-01"),
            ("app", "ye-2", "r-13", None, "unsubscribe", "2025-06-01"),  # same moment: the greater reason
            ("mail", "ye-3", "r-11", None, "bounce", "2025-06-01"),  # source not mapped: no record
            ("app", "ye-4", "r-12", "own@example.com", "unsubscribe", "2025-06-02"),
        ],
        columns=["source", "event_id", "source_customer_id", "email", "event_type", "occurred_at"],
    )
    events = events.assign(
        customer_id=ids.iloc[: len(events)].to_numpy(),
        campaign_id="camp-y",
        occurred_at=pd.to_datetime(events["occurred_at"], utc=True).astype("datetime64[us, UTC]"),
    )
    base = {
        name: frames[name].assign(source_customer_id=pd.Series(pd.NA, index=frames[name].index, dtype="str"))
        for name in ("subscriptions", "events")
    }
    return {
        **frames,
        "subscriptions": pd.concat([base["subscriptions"], subs], ignore_index=True).astype({"email": "str"}),
        "events": pd.concat([base["events"], events], ignore_index=True).astype({"email": "str"}),
    }, records


def test_suppression_list_equals_the_reference(warehouse, core_frames):
    from crm_pipelines.analytics.suppression import suppression_list
    from crm_pipelines.facts.suppression import read_suppression_list

    frames, records = _suppression_frames(core_frames)
    load_core(warehouse, frames)
    warehouse.write_table(records, "staging", "customers")
    sources = {"app": "crm"}
    expected = suppression_list(frames["subscriptions"], frames["events"], records, AS_OF, sources)
    actual = read_suppression_list(warehouse, AS_OF, sources)
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected)
    assert_same(actual, expected)
    by_address = actual.set_index("address")
    assert by_address.loc["+491510000001", "address_kind"] == "phone"  # the SMS list's withdrawal
    assert "rec4@example.com" not in by_address.index and "tie@example.com" in by_address.index
    assert by_address.loc["rec13@example.com", "reason"] == "unsubscribe"
