"""NPS survey responses, sent a few days after an order. Scores follow the customer's contentment
(which also keeps them buying) and how much they buy, and drop when the surveyed order was refunded or
cancelled; comments fit the score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from crm_pipelines.demo.arrays import DAY, concat, int_strings, take, timestamp_strings, where
from crm_pipelines.demo.noise import present_emails
from crm_pipelines.demo.orders import CANCELLED, REFUNDED, ShopOrders
from crm_pipelines.demo.population import People
from crm_pipelines.demo.references import KnownEmails, reference_emails
from crm_pipelines.demo.settings import Coverage, Messiness

_COMMENTS = {
    "promoter": (
        "Great selection and fast delivery.",
        "Super Service, gerne wieder!",
        "Love the coffee beans, always fresh.",
        "Fast shipping, well packed.",
        'Exactly "as described", and the support team was lovely.',
    ),
    "passive": (
        "Good prices, but delivery took a while.",
        "Alles okay.",
        "Website could be easier to use.",
        "Fine, nothing special.",
        "Ok, aber der Versand war teuer.",
    ),
    "detractor": (
        "Support took too long to answer.",
        "Item arrived damaged, refund took weeks.",
        "Too expensive, found it cheaper elsewhere.",
        "Lieferung kam zu spät.",
        'Ordered a "Pro" model, got the basic one. Not happy.',
    ),
}


@dataclass
class Surveys:
    responses: pa.Table
    person: np.ndarray
    email_owner: np.ndarray


def survey_responses(
    rng: np.random.Generator,
    people: People,
    orders: ShopOrders,
    account_id: np.ndarray,
    end_ts: int,
    known: KnownEmails,
    messiness: Messiness,
    coverage: Coverage,
) -> Surveys:
    n_people = len(people)
    order_count = np.bincount(orders.person, minlength=n_people)

    # Buyers answer after one of their orders (a random one); some answer a second survey months later.
    shuffled = rng.permutation(np.flatnonzero(~orders.is_return))
    buyers, first = np.unique(orders.person[shuffled], return_index=True)
    about = shuffled[first][rng.random(len(buyers)) < coverage.survey_respondents]
    again = about[rng.random(len(about)) < 0.1]
    about = np.concatenate([about, again])
    buyer_time = orders.created[about] + rng.uniform(1, 7, len(about)).astype(np.int64) * DAY
    buyer_time[len(about) - len(again) :] += 120 * DAY

    never_bought = np.flatnonzero((order_count == 0) & (rng.random(n_people) < 0.02))
    web_time = end_ts - (rng.random(len(never_bought)) * 2 * 365 * DAY).astype(np.int64)
    person = np.concatenate([orders.person[about], never_bought])
    time = np.concatenate([buyer_time, web_time])
    account = np.r_[orders.account[about], np.full(len(never_bought), -1)]
    order_status = np.r_[orders.status[about], np.full(len(never_bought), -1)]
    keep = time <= end_ts
    person, time, account, order_status = person[keep], time[keep], account[keep], order_status[keep]
    order = np.argsort(time, kind="stable")
    person, time, account, order_status = person[order], time[order], account[order], order_status[order]
    linked = (account >= 0) & (rng.random(len(person)) < 0.7)
    respondent = reference_emails(rng, people, known, person, messiness)
    # Someone whose records carry no address but an ambiguous family one answers through the
    # invitation's customer link; without a shop account the answer is left out, so family
    # references keep their rate (see crm_pipelines.demo.references).
    linked |= respondent.unplaced & (account >= 0)
    kept = ~respondent.unplaced | linked
    person, time, account, order_status, linked = (
        a[kept] for a in (person, time, account, order_status, linked)
    )
    email, email_owner = respondent.email.filter(pa.array(kept)), respondent.owner[kept]
    count = len(person)

    # The answer reflects contentment, how much the customer buys, and how the surveyed order went.
    bad_order = np.isin(order_status, (REFUNDED, CANCELLED))
    nps = np.clip(
        np.round(
            6.6
            + 1.4 * people.satisfaction[person]
            + 0.45 * np.log1p(order_count[person])
            - 2.0 * bad_order
            + rng.normal(0, 1.2, count)
        ),
        0,
        10,
    ).astype(np.int64)
    band = np.where(nps >= 9, 0, np.where(nps >= 7, 1, 2))
    comment_index = band * 5 + rng.integers(0, 5, count)
    flat = [c for key in ("promoter", "passive", "detractor") for c in _COMMENTS[key]]
    comment = where(rng.random(count) < 0.45, take(flat, comment_index), pa.scalar(None, pa.string()))
    responses = pa.table(
        {
            "response_id": concat("R-", int_strings(np.arange(1, count + 1), width=7)),
            "email": present_emails(rng, email, messiness.email_case, messiness.email_whitespace),
            "customer_ref": pa.array(np.where(linked, account_id[np.maximum(account, 0)], 0), mask=~linked),
            "nps": pa.array(nps),
            "comment": comment,
            "submitted_at": timestamp_strings(time, iso=True),
        }
    )
    return Surveys(responses, person, email_owner)
