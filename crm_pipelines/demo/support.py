"""The support desk: tickets about orders (more often about refunds and cancellations) and general
questions. Response times run from minutes (chat) to days (email at busy times); satisfaction (CSAT)
follows the customer's contentment and how long the fix took.
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
    take,
    timestamp_strings,
    weighted_index,
    where,
)
from crm_pipelines.demo.noise import present_emails
from crm_pipelines.demo.orders import CANCELLED, PENDING, REFUNDED, ShopOrders
from crm_pipelines.demo.population import People
from crm_pipelines.demo.references import KnownEmails, reference_emails
from crm_pipelines.demo.settings import Messiness
from crm_pipelines.demo.shop import ShopAccounts

CHANNELS = ("email", "web", "chat", "phone")
TICKET_STATUSES = ("open", "pending", "solved", "closed")
OPEN, PENDING_TICKET, SOLVED, CLOSED = range(4)
FIRST_TICKET_ID = 5001
_ORDER_SUBJECTS = {
    "any": (
        "Where is my order #{}?",
        "Question about order #{}",
        "Invoice for order #{}",
        "Damaged item in order #{}",
        "Wrong item delivered, order #{}",
    ),
    REFUNDED: ("Refund for order #{}", "Return request for order #{}", "Refund not received yet (#{})"),
    CANCELLED: ("Please cancel order #{}", "Why was order #{} cancelled?"),
    PENDING: ("Payment pending for order #{}", "Order #{} still not confirmed"),
}
_GENERAL_SUBJECTS = (
    "Change of address",
    "Cannot log in to my account",
    "Question about my loyalty card",
    "Product question",
    "Please delete my data",
    "Newsletter: too many emails",
    "Adresse ändern",
    "Rechnung benötigt",
)


@dataclass
class SupportDesk:
    tickets: pa.Table
    person: np.ndarray
    """Person who wrote each ticket."""
    email_owner: np.ndarray
    """Owner of each ticket's requester email."""


def support_desk(
    rng: np.random.Generator,
    people: People,
    accounts: ShopAccounts,
    orders: ShopOrders,
    end_ts: int,
    known: KnownEmails,
    messiness: Messiness,
) -> SupportDesk:
    n_orders = len(orders.order_id)
    chance = np.select(
        [orders.is_return | (orders.status == REFUNDED), orders.status == CANCELLED],
        [0.35, 0.12],
        default=0.04,
    )
    about = np.flatnonzero(rng.random(n_orders) < chance)
    order_time = orders.created[about] + rng.exponential(3 * DAY, len(about)).astype(np.int64)

    general_person = np.flatnonzero(rng.random(len(people)) < 0.04)
    general_time = end_ts - (rng.random(len(general_person)) * 3 * 365 * DAY).astype(np.int64)

    person = np.concatenate([orders.person[about], general_person])
    created = np.concatenate([order_time, general_time])
    keep = created <= end_ts - 10 * 60
    is_order = np.r_[np.ones(len(about), bool), np.zeros(len(general_person), bool)][keep]
    about_order = np.r_[about, np.full(len(general_person), -1)][keep]
    person, created = person[keep], created[keep]
    order = np.argsort(created, kind="stable")
    person, created, is_order, about_order = (
        person[order],
        created[order],
        is_order[order],
        about_order[order],
    )
    count = len(person)

    account = np.where(
        is_order, orders.account[np.maximum(about_order, 0)], accounts.first_account_of_person[person]
    )
    linked = (account >= 0) & (rng.random(count) < np.where(is_order, 0.65, 0.3))
    requester = reference_emails(rng, people, known, person, messiness)
    # Someone whose records carry no address but an ambiguous family one is asked for their customer
    # number; without a shop account the ticket is left out, so family references keep their rate.
    linked |= requester.unplaced & (account >= 0)
    kept = ~requester.unplaced | linked
    person, created, is_order, about_order, account, linked = (
        a[kept] for a in (person, created, is_order, about_order, account, linked)
    )
    email, email_owner = requester.email.filter(pa.array(kept)), requester.owner[kept]
    count = len(person)
    customer_ref = pa.array(np.where(linked, accounts.account_id[np.maximum(account, 0)], 0), mask=~linked)

    channel = weighted_index(rng, (45, 25, 20, 10), count).astype(np.int8)
    first_response, solved, status = _handling(rng, channel, created, end_ts)
    closes_at = solved + 4 * DAY  # the desk closes solved tickets after four quiet days
    status[(status == CLOSED) & ~(closes_at <= end_ts)] = SOLVED
    updated = np.select(
        [status == CLOSED, status == SOLVED, ~np.isnan(first_response)],
        [closes_at, solved, first_response],
        default=created,
    )
    updated = np.nan_to_num(updated).astype(np.int64)

    resolution_hours = (np.nan_to_num(solved, nan=end_ts) - created) / HOUR
    csat = np.clip(
        np.round(
            3.9
            + 0.7 * people.satisfaction[person]
            - 0.35 * np.log(resolution_hours / 24 + 0.1)
            + rng.normal(0, 0.8, count)
        ),
        1,
        5,
    ).astype(np.int64)
    answered = np.isin(status, (SOLVED, CLOSED)) & (rng.random(count) < 0.35)

    tickets = pa.table(
        {
            "ticket_id": pa.array(FIRST_TICKET_ID + np.arange(count, dtype=np.int64)),
            "requester_email": present_emails(rng, email, messiness.email_case, messiness.email_whitespace),
            "customer_ref": customer_ref,
            "subject": _subjects(rng, orders, about_order, is_order),
            "status": take(list(TICKET_STATUSES), status),
            "channel": take(list(CHANNELS), channel),
            "created_at": timestamp_strings(created, iso=True),
            "first_response_at": _optional_stamps(first_response),
            "solved_at": _optional_stamps(np.where(np.isin(status, (SOLVED, CLOSED)), solved, np.nan)),
            "csat": pa.array(csat, mask=~answered),
            "updated_at": timestamp_strings(updated, iso=True),
        }
    )
    return SupportDesk(tickets, person, email_owner)


def _handling(
    rng: np.random.Generator, channel: np.ndarray, created: np.ndarray, end_ts: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First response and resolution times; tickets whose fix lies after the end are still open."""
    count = len(created)
    median = np.array([4 * HOUR, 6 * HOUR, 3 * 60, 60])[channel]
    wait = rng.lognormal(np.log(median), 1.1, count)
    first_response = created + np.maximum(wait, 30)
    solved = first_response + rng.lognormal(np.log(20 * HOUR), 1.3, count)
    status = np.where(rng.random(count) < 0.85, CLOSED, SOLVED).astype(np.int8)
    unsolved = solved > end_ts
    status[unsolved] = np.where(rng.random(int(unsolved.sum())) < 0.5, OPEN, PENDING_TICKET)
    solved[unsolved] = np.nan
    first_response[first_response > end_ts] = np.nan
    return first_response, solved, status


def _optional_stamps(seconds: np.ndarray) -> pa.Array:
    missing = np.isnan(seconds)
    return timestamp_strings(np.nan_to_num(seconds).astype(np.int64), missing=missing, iso=True)


def _subjects(
    rng: np.random.Generator, orders: ShopOrders, about_order: np.ndarray, is_order: np.ndarray
) -> pa.Array:
    count = len(about_order)
    status = np.where(is_order, orders.status[np.maximum(about_order, 0)], -1)
    status = np.where(is_order & orders.is_return[np.maximum(about_order, 0)], REFUNDED, status)
    templates, group = [_ORDER_SUBJECTS["any"]], np.zeros(count, dtype=np.int64)
    for key in (REFUNDED, CANCELLED, PENDING):
        group[status == key] = len(templates)
        templates.append(_ORDER_SUBJECTS[key])
    flat = [t for group_templates in templates for t in group_templates]
    starts = np.cumsum([0] + [len(t) for t in templates])[:-1]
    sizes = np.array([len(t) for t in templates])
    index = starts[group] + (rng.random(count) * sizes[group]).astype(np.int64)
    order_id = int_strings(orders.order_id[np.maximum(about_order, 0)])
    parts = pc.split_pattern(take(flat, index), "{}", max_splits=1)
    order_subject = concat(pc.list_element(parts, 0), order_id, pc.list_element(parts, 1))
    general = take(list(_GENERAL_SUBJECTS), rng.integers(0, len(_GENERAL_SUBJECTS), count))
    return where(is_order, order_subject, general) if count else pa.array([], pa.string())
