"""A demo campaign with an effect to find: a win-back email with a randomized control group.

The email tool sends the campaign ``WINBACK-DEMO`` to the newsletter subscribers who had bought before
it started, holding out a random ``CONTROL_SHARE`` of them (``holdout`` events, as email tools record
control-group enrolment). Each treated customer makes an extra purchase within the measurement window
with probability ``EXTRA_PURCHASE_PROBABILITY``. The true uplift, written to ``campaign_truth.json``, is
counted on the orders actually generated: the share of treated customers who bought in their window
only because of the campaign (a completed campaign order and no other purchase in the window).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from crm_pipelines.demo.arrays import DAY, HOUR, concat, int_strings, timestamp_strings
from crm_pipelines.demo.email_tool import SUBSCRIBER_STATUSES, EmailTool
from crm_pipelines.demo.orders import COMPLETED, ShopOrders

CAMPAIGN_ID = "WINBACK-DEMO"
CAMPAIGN_TRUTH_FILE = "campaign_truth.json"
START_DAYS_BEFORE_END = 75
WINDOW_DAYS = 30
CONTROL_SHARE = 0.2
EXTRA_PURCHASE_PROBABILITY = 0.10
# Its own random stream, outside arrays._STREAMS, so adding the campaign changes no other demo data.
_STREAM = 1_000


@dataclass
class DemoCampaign:
    events: pa.Table
    """Rows for the email tool's event export (sent to treated, holdout for control)."""
    person: np.ndarray
    treated: np.ndarray
    window_start: np.ndarray
    """Start of each customer's measurement window: midnight (UTC) of the send day."""
    purchases: tuple[np.ndarray, np.ndarray]
    """(person, time) of the purchases the campaign caused."""


def run_campaign(
    seed: int, emails: EmailTool, is_buyer: np.ndarray, first_purchase: np.ndarray, end_ts: int
) -> DemoCampaign:
    rng = np.random.default_rng([seed, _STREAM])
    start = end_ts - START_DAYS_BEFORE_END * DAY
    subscribers = emails.subscribers
    changed = pc.strptime(subscribers["status_changed_at"], format="%Y-%m-%d %H:%M:%S", unit="s", error_is_null=True)
    changed_s = np.asarray(pc.cast(changed, pa.int64()).fill_null(end_ts))
    rows = np.flatnonzero(
        np.asarray(pc.equal(subscribers["list"].cast(pa.string()), "newsletter"))
        & np.asarray(pc.equal(subscribers["status"].cast(pa.string()), SUBSCRIBER_STATUSES[0]))
        & (changed_s < start)
    )
    person = emails.subscriber_person[rows]
    eligible = is_buyer[person] & (first_purchase[person] < start)
    rows, person = rows[eligible], person[eligible]
    _, first = np.unique(person, return_index=True)
    rows, person = rows[np.sort(first)], person[np.sort(first)]
    treated = rng.random(len(person)) >= CONTROL_SHARE
    sent_at = start + 9 * HOUR + rng.integers(0, 30 * 60, len(person))
    window_start = sent_at - sent_at % DAY
    converts = treated & (rng.random(len(person)) < EXTRA_PURCHASE_PROBABILITY)
    delay = np.minimum(rng.exponential(5 * DAY, int(converts.sum())), (WINDOW_DAYS - 1) * DAY).astype(np.int64)
    purchase_time = sent_at[converts] + HOUR + delay
    take = pa.array(rows)
    events = pa.table(
        {
            "event_id": concat("EVC-", int_strings(np.arange(1, len(rows) + 1), width=7)),
            "subscriber_id": subscribers["subscriber_id"].take(take).cast(pa.string()),
            "email": subscribers["email"].take(take).cast(pa.string()),
            "campaign_id": pa.array([CAMPAIGN_ID] * len(rows), pa.string()),
            "event": pa.array(np.where(treated, "sent", "holdout").tolist(), pa.string()),
            "occurred_at": timestamp_strings(sent_at),
        }
    )
    return DemoCampaign(events, person, treated, window_start, (person[converts], purchase_time))


def append_events(path: Path, campaign: DemoCampaign) -> int:
    """Append the campaign's events to the email tool's event export (same columns, no header)."""
    with path.open("ab") as sink:
        pa_csv.write_csv(campaign.events, sink, pa_csv.WriteOptions(include_header=False, quoting_style="needed"))
    return campaign.events.num_rows


def true_uplift(campaign: DemoCampaign, orders: ShopOrders) -> dict:
    """The campaign's effect on the treated, counted on the generated orders (see the module docstring)."""
    buy = (orders.status == COMPLETED) & ~orders.is_return
    caused = set(zip(campaign.purchases[0].tolist(), campaign.purchases[1].tolist(), strict=True))
    from_campaign = np.fromiter(
        ((p, t) in caused for p, t in zip(orders.person.tolist(), orders.created.tolist(), strict=True)),
        dtype=bool,
        count=len(orders.person),
    )
    start_of = dict(zip(campaign.person.tolist(), campaign.window_start.tolist(), strict=True))
    in_campaign = np.fromiter((p in start_of for p in orders.person.tolist()), dtype=bool, count=len(orders.person))
    rows = np.flatnonzero(buy & in_campaign)
    starts = np.array([start_of[p] for p in orders.person[rows].tolist()], dtype=np.int64)
    inside = (orders.created[rows] >= starts) & (orders.created[rows] < starts + WINDOW_DAYS * DAY)
    bought_with = set(orders.person[rows][inside].tolist())
    bought_without = set(orders.person[rows][inside & ~from_campaign[rows]].tolist())
    treated = campaign.person[campaign.treated]
    converted_only_by_campaign = sum(1 for p in treated.tolist() if p in bought_with and p not in bought_without)
    return {
        "campaign_id": CAMPAIGN_ID,
        "metric": "purchase",
        "window_days": WINDOW_DAYS,
        "customers_treatment": int(campaign.treated.sum()),
        "customers_control": int((~campaign.treated).sum()),
        "extra_purchase_probability": EXTRA_PURCHASE_PROBABILITY,
        "true_uplift_absolute": converted_only_by_campaign / max(len(treated), 1),
        "treated_conversion_without_campaign": sum(1 for p in treated.tolist() if p in bought_without)
        / max(len(treated), 1),
    }


def write_truth(path: Path, truth: dict) -> int:
    path.write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return 1
