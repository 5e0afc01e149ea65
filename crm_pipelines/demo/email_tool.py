"""The email marketing tool: subscribers per list and campaign events (sent, open, click, unsubscribe,
bounce). A click raises the chance of a purchase in the following days, so email-to-purchase
conversion is measurable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crm_pipelines.demo.arrays import (
    DAY,
    HOUR,
    concat,
    int_strings,
    labels,
    rank_within_groups,
    take,
    timestamp_strings,
)
from crm_pipelines.demo.noise import present_emails
from crm_pipelines.demo.population import People
from crm_pipelines.demo.references import KnownEmails, reference_emails
from crm_pipelines.demo.settings import Coverage, Messiness

LISTS = ("newsletter", "product-news")
EVENTS = ("sent", "open", "click", "unsubscribe", "bounce")
SUBSCRIBED, UNSUBSCRIBED, PENDING = range(3)
SUBSCRIBER_STATUSES = ("subscribed", "unsubscribed", "pending")
# Each subscriber gets a share of the campaigns sent while they are on the list (segments, tests).
SEND_SHARE = {"newsletter": 0.08, "product-news": 0.2}
CAMPAIGN_EVERY_DAYS = {"newsletter": 7, "product-news": 30}
CLICK_TO_PURCHASE = 0.3
BOUNCE_RATE = 0.015


@dataclass
class EmailTool:
    subscribers: pa.Table
    events: pa.Table
    subscriber_person: np.ndarray
    """Person of each subscriber row, who also owns its email (family addresses subscribe by their owner)."""
    click_purchases: tuple[np.ndarray, np.ndarray]
    """(person, time) of purchases that followed a campaign click."""


def email_tool(
    rng: np.random.Generator,
    people: People,
    first_contact: np.ndarray,
    consent_granted: np.ndarray,
    is_buyer: np.ndarray,
    first_purchase: np.ndarray,
    alive_until: np.ndarray,
    end_ts: int,
    years: int,
    known: KnownEmails,
    messiness: Messiness,
    coverage: Coverage,
) -> EmailTool:
    count = len(people)
    chance = np.where(
        consent_granted, 0.85, np.where(is_buyer, coverage.subscribers, 0.6 * coverage.subscribers)
    )
    person = np.flatnonzero(rng.random(count) < chance)
    # A list holds each address once: a family address is subscribed by its owner only, and a partner
    # with no address of their own on record stays off the list.
    chosen = reference_emails(rng, people, known, person, messiness, family_owner_only=True)
    person, email = person[~chosen.unplaced], chosen.email.filter(pa.array(~chosen.unplaced))
    signup = np.minimum(
        first_contact[person] + rng.exponential(60 * DAY, len(person)).astype(np.int64), end_ts - DAY
    )
    status = np.where(rng.random(len(person)) < 0.16, UNSUBSCRIBED, SUBSCRIBED)
    pending = rng.random(len(person)) < 0.05
    status[pending] = PENDING
    signup[pending] = end_ts - rng.integers(HOUR, 14 * DAY, int(pending.sum()))
    left = signup + ((end_ts - signup) * rng.random(len(person))).astype(np.int64)

    # Everyone is on the newsletter; a quarter also on product news.
    also = np.flatnonzero(rng.random(len(person)) < 0.25)
    row_of = np.concatenate([np.arange(len(person)), also])
    list_index = np.r_[np.zeros(len(person), np.int8), np.ones(len(also), np.int8)]
    changed = np.where(status[row_of] == UNSUBSCRIBED, left[row_of], signup[row_of])
    order = np.lexsort((list_index, changed))
    row_of, list_index, changed = row_of[order], list_index[order], changed[order]
    sub_status = status[row_of]
    shown_email = present_emails(rng, email.take(pa.array(row_of)), messiness.email_case / 3, 0.0)
    subscriber_id = concat("SUB-", int_strings(np.arange(1, len(row_of) + 1), width=7))
    subscribers = pa.table(
        {
            "subscriber_id": subscriber_id,
            "email": shown_email,
            "list": take(list(LISTS), list_index),
            "status": take(list(SUBSCRIBER_STATUSES), sub_status),
            "status_changed_at": timestamp_strings(changed),
        }
    )

    events, clicks = _campaign_events(
        rng, people, person[row_of], list_index, sub_status, signup[row_of], left[row_of], end_ts, years
    )
    event_rows, event_type, event_time, campaign, campaign_names = events
    events_table = pa.table(
        {
            "event_id": concat("EV-", int_strings(np.arange(1, len(event_rows) + 1), width=9)),
            # Dictionary-encoded: millions of events repeat a few hundred thousand subscribers and campaigns.
            "subscriber_id": pa.DictionaryArray.from_arrays(
                pa.array(event_rows.astype(np.int32)), subscriber_id
            ),
            "email": pa.DictionaryArray.from_arrays(pa.array(event_rows.astype(np.int32)), shown_email),
            "campaign_id": pa.DictionaryArray.from_arrays(
                pa.array(campaign.astype(np.int32), mask=campaign < 0), campaign_names
            ),
            "event": labels(EVENTS, event_type),
            "occurred_at": timestamp_strings(event_time),
        }
    )
    click_person, click_time = clicks
    can_buy = (
        is_buyer[click_person]
        & (click_time >= first_purchase[click_person])
        & (click_time <= alive_until[click_person])
    )
    converts = can_buy & (rng.random(len(click_person)) < CLICK_TO_PURCHASE)
    purchase_time = click_time[converts] + np.minimum(
        rng.exponential(1.5 * DAY, int(converts.sum())), 7 * DAY
    )
    in_window = purchase_time <= end_ts
    return EmailTool(
        subscribers,
        events_table,
        person[row_of],
        (click_person[converts][in_window], purchase_time[in_window].astype(np.int64)),
    )


def _campaign_events(
    rng: np.random.Generator,
    people: People,
    person: np.ndarray,
    list_index: np.ndarray,
    status: np.ndarray,
    signup: np.ndarray,
    left: np.ndarray,
    end_ts: int,
    years: int,
) -> tuple[tuple, tuple[np.ndarray, np.ndarray]]:
    """Sends of randomly chosen campaigns while subscribed; opens, clicks, bounces and unsubscribes."""
    start = end_ts - years * 365 * DAY
    stop = np.where(status == UNSUBSCRIBED, left, end_ts)
    rows, campaigns, campaign_times, names = [], [], [], []
    last_campaign = np.full(len(person), -1, dtype=np.int64)  # per subscriber row: last campaign received
    for li, name in enumerate(LISTS):
        every = CAMPAIGN_EVERY_DAYS[name] * DAY
        schedule = start + np.arange((end_ts - start) // every + 1) * every + 8 * HOUR
        offset = sum(len(n) for n in names)
        dates = pc.utf8_slice_codeunits(timestamp_strings(schedule), 0, 10)
        names.append(concat("NL-" if name == "newsletter" else "PN-", dates))
        on_list = np.flatnonzero((list_index == li) & (status != PENDING))
        first = np.searchsorted(schedule, signup[on_list])
        last = np.searchsorted(schedule, stop[on_list], side="right")
        eligible = np.maximum(last - first, 0)
        sends = rng.binomial(eligible, SEND_SHARE[name])
        owner = np.repeat(np.arange(len(on_list)), sends)
        # One campaign from each of `sends` equal slices of the eligible ones: distinct and ascending.
        slice_number = rank_within_groups(owner)
        width = eligible[owner] / np.maximum(sends[owner], 1)
        pick = first[owner] + ((slice_number + rng.random(len(owner))) * width).astype(np.int64)
        rows.append(on_list[owner])
        campaigns.append(offset + pick)
        campaign_times.append(schedule[pick])
        has_sends = sends > 0
        last_campaign[on_list[has_sends]] = offset + pick[np.cumsum(sends)[has_sends] - 1]
    row = np.concatenate(rows)
    campaign = np.concatenate(campaigns)
    sent_at = np.concatenate(campaign_times) + rng.integers(0, 30 * 60, len(row))
    send_person = person[row]

    bounced = rng.random(len(row)) < BOUNCE_RATE
    opened = ~bounced & (rng.random(len(row)) < 0.8 * people.email_engagement[send_person])
    open_at = sent_at + np.minimum(rng.lognormal(np.log(3 * HOUR), 1.2, len(row)), 5 * DAY).astype(np.int64)
    clicked = opened & (rng.random(len(row)) < 0.1 + 0.3 * people.email_engagement[send_person])
    click_at = open_at + rng.integers(5, 600, len(row))

    unsubscribed = np.flatnonzero(status == UNSUBSCRIBED)
    parts = [  # (send positions, event type, time)
        (np.arange(len(row)), EVENTS.index("sent"), sent_at),
        (np.flatnonzero(bounced), EVENTS.index("bounce"), sent_at + 60),
        (np.flatnonzero(opened), EVENTS.index("open"), open_at),
        (np.flatnonzero(clicked), EVENTS.index("click"), click_at),
    ]
    event_row = np.concatenate([row[p] for p, _, _ in parts] + [unsubscribed])
    event_type = np.concatenate(
        [np.full(len(p), t, np.int8) for p, t, _ in parts]
        + [np.full(len(unsubscribed), EVENTS.index("unsubscribe"), np.int8)]
    )
    event_time = np.concatenate([ts[p] for p, _, ts in parts] + [left[unsubscribed]])
    # An unsubscribe names the campaign whose footer link was used: the last one received.
    event_campaign = np.concatenate([campaign[p] for p, _, _ in parts] + [last_campaign[unsubscribed]])
    keep = np.flatnonzero(event_time <= end_ts)
    order = keep[np.argsort(event_time[keep] * len(EVENTS) + event_type[keep], kind="stable")]
    events = (
        event_row[order],
        event_type[order],
        event_time[order],
        event_campaign[order],
        pa.concat_arrays(names),
    )
    click_rows = np.flatnonzero(clicked & (click_at <= end_ts))
    return events, (send_person[click_rows], click_at[click_rows])
