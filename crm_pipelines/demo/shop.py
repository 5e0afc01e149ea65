"""The shop's customers and when they buy.

Purchases follow the BG/NBD story: while "alive", a customer buys at a personal Poisson rate; after
each purchase they drop out for good with a personal probability. Rates are heavy-tailed (many one-off
buyers, a few very loyal ones) and content customers drop out less, so recent activity predicts future
activity and NPS relates to loyalty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crm_pipelines.demo.arrays import (
    DAY,
    at_time_of_day,
    concat,
    null_where,
    pick_rows,
    timestamp_strings,
    where,
)
from crm_pipelines.demo.noise import (
    fill_in_forms,
    format_phones,
    present_emails,
    spell_countries,
    with_nicknames,
    with_typos,
)
from crm_pipelines.demo.places import PhoneNumber
from crm_pipelines.demo.population import People
from crm_pipelines.demo.settings import Coverage, Messiness
from crm_pipelines.demo.vocab import COUNTRIES

# Purchase rate per day ~ Gamma(shape, mean / shape); dropout probability ~ Beta(a, b).
RATE_SHAPE, RATE_MEAN_PER_DAY, RATE_CAP_PER_DAY = 0.55, 0.085, 0.5
DROPOUT_A, DROPOUT_B = 0.9, 7.0
NEVER = np.iinfo(np.int64).max


@dataclass
class Purchases:
    person: np.ndarray
    time: np.ndarray
    alive_until: np.ndarray
    """Per person: when they stopped buying for good (their last purchase), or NEVER while still active."""


def purchase_history(
    rng: np.random.Generator, people: People, buyers: np.ndarray, first_purchase: np.ndarray, end_ts: int
) -> Purchases:
    """First purchases at ``first_purchase``, then repeat purchases while alive, up to ``end_ts``."""
    size = len(buyers)
    days = (end_ts - first_purchase[buyers]) / DAY
    rate = np.minimum(rng.gamma(RATE_SHAPE, RATE_MEAN_PER_DAY / RATE_SHAPE, size), RATE_CAP_PER_DAY)
    dropout = rng.beta(DROPOUT_A, DROPOUT_B, size) * np.exp(-0.6 * people.satisfaction[buyers])
    dropout = np.clip(dropout, 0.005, 0.95)
    repeats_while_alive = rng.geometric(dropout) - 1  # purchases after the first before dropping out
    repeats_possible = rng.poisson(np.minimum(rate * days, 400))  # purchases the window leaves room for
    repeats = np.minimum(repeats_while_alive, repeats_possible)

    # The first k of N uniform points on [0, 1] are S_j / (S_k + R): S_j cumulative sums of k unit
    # exponentials, R ~ Gamma(N - k + 1). Drawing k + 1 numbers per customer instead of N keeps memory
    # proportional to the purchases actually made.
    owner = np.repeat(np.arange(size), repeats)
    spacing = rng.exponential(1.0, len(owner))
    cumulative = np.cumsum(spacing)
    starts = np.r_[0, np.cumsum(repeats)[:-1]]
    before_group = np.where(starts > 0, cumulative[np.maximum(starts - 1, 0)], 0.0)
    within = cumulative - np.repeat(before_group, repeats)
    has = repeats > 0
    sum_of_drawn = np.zeros(size)
    sum_of_drawn[has] = within[np.cumsum(repeats)[has] - 1]
    total = sum_of_drawn + rng.gamma(repeats_possible - repeats + 1.0)
    fraction = within / np.repeat(total, repeats)
    repeat_time = first_purchase[buyers][owner] + (fraction * days[owner] * DAY).astype(np.int64)

    person = np.concatenate([buyers, buyers[owner]])
    time = np.minimum(at_time_of_day(rng, np.concatenate([first_purchase[buyers], repeat_time])), end_ts)
    alive_until = np.full(len(people), NEVER, dtype=np.int64)
    dropped = repeats_while_alive <= repeats_possible  # they left after their last purchase
    last_time = time[:size].copy()
    last_time[has] = np.maximum(last_time[has], time[size:][np.cumsum(repeats)[has] - 1])
    alive_until[buyers[dropped]] = last_time[dropped]
    return Purchases(person=person, time=time, alive_until=alive_until)


@dataclass
class ShopAccounts:
    customers: pa.Table
    account_id: np.ndarray
    person: np.ndarray
    created: np.ndarray
    second_account_of_person: np.ndarray
    """Per person: position of their second account, or -1."""
    first_account_of_person: np.ndarray
    """Per person: position of their (first) account, or -1."""
    email: pa.Array
    """The clean address (lower case) each account carries."""


def shop_accounts(
    rng: np.random.Generator,
    people: People,
    members: np.ndarray,
    first_purchase: np.ndarray,
    end_ts: int,
    messiness: Messiness,
    coverage: Coverage,
) -> ShopAccounts:
    """One account per member (created shortly before the first order); a few members open a second one."""
    opened = np.maximum(
        first_purchase[members] - (rng.exponential(1.5 * DAY, len(members))).astype(np.int64),
        first_purchase[members] - 30 * DAY,
    )
    second = members[pick_rows(rng, len(members), messiness.shop_duplicates, minimum=1)]
    second_opened = first_purchase[second] + rng.uniform(30, 600, len(second)).astype(np.int64) * DAY
    keep = second_opened < end_ts - DAY
    second, second_opened = second[keep], at_time_of_day(rng, second_opened[keep])

    person = np.concatenate([members, second])
    is_second = np.r_[np.zeros(len(members), bool), np.ones(len(second), bool)]
    created = np.minimum(np.concatenate([opened, second_opened]), end_ts)
    order = np.argsort(created, kind="stable")
    person, is_second, created = person[order], is_second[order], created[order]
    count = len(person)
    account_id = np.arange(1, count + 1, dtype=np.int64)
    updated = created + ((end_ts - created) * rng.random(count) ** 1.5).astype(np.int64)

    email = people.email.take(pa.array(person))
    other = people.other_email.take(pa.array(person))
    uses_other = np.asarray(other.is_valid()) & (rng.random(count) < np.where(is_second, 0.8, 0.12))
    parts = pc.split_pattern(email, "@", max_splits=1)
    plus_address = concat(pc.list_element(parts, 0), "+shop@", pc.list_element(parts, 1))
    clean_email = where(uses_other, other, where(is_second, plus_address, email))
    email = present_emails(rng, clean_email, messiness.email_case, messiness.email_whitespace / 3)

    first_name = with_nicknames(rng, people.first_name.take(pa.array(person)), messiness.nickname)
    first_name = with_typos(rng, first_name, messiness.name_typo)
    last_name = with_typos(rng, people.last_name.take(pa.array(person)), messiness.name_typo)
    moved = rng.random(count) < messiness.moved_address
    address, previous = people.address.take(person), people.previous_address.take(person)
    street = _abbreviate(
        rng, where(moved, previous.street, address.street), people.country[person], messiness
    )
    card = people.loyalty_card.take(pa.array(person))
    card = null_where(rng.random(count) >= coverage.loyalty_card_in_shop, card)
    card = where(rng.random(count) < 0.05, pc.utf8_lower(card), card)

    # Its own stream (spawning leaves ``rng`` untouched), so the form noise changes no other value.
    form = fill_in_forms(
        rng.spawn(1)[0],
        {
            "first_name": first_name,
            "last_name": last_name,
            "street": street,
            "city": where(moved, previous.city, address.city),
            "postcode": where(moved, previous.postcode, address.postcode),
        },
        messiness,
    )
    customers = pa.table(
        {
            "id": pa.array(account_id),
            "email": email,
            "first_name": form["first_name"],
            "last_name": form["last_name"],
            "phone": null_where(
                rng.random(count) < messiness.missing_phone + 0.15, _shop_phones(rng, people, person)
            ),
            "street": form["street"],
            "city": form["city"],
            "postal_code": form["postcode"],
            "country": spell_countries(rng, people.country[person], english_name_share=0.1),
            "loyalty_card": card,
            "created_at": timestamp_strings(created),
            "updated_at": timestamp_strings(updated),
        }
    )
    first_of_person = np.full(len(people), -1, dtype=np.int64)
    first_of_person[person[~is_second]] = np.flatnonzero(~is_second)
    second_of_person = np.full(len(people), -1, dtype=np.int64)
    second_of_person[person[is_second]] = np.flatnonzero(is_second)
    return ShopAccounts(
        customers, account_id, person, created, second_of_person, first_of_person, clean_email
    )


def _shop_phones(rng: np.random.Generator, people: People, person: np.ndarray) -> pa.Array:
    landline = ~people.has_mobile[person] | (people.has_landline[person] & (rng.random(len(person)) < 0.2))
    mobile, home = people.mobile.take(person), people.landline.take(person)
    number = PhoneNumber(
        where(landline, home.area, mobile.area), where(landline, home.subscriber, mobile.subscriber)
    )
    return format_phones(rng, people.country[person], number)


def _abbreviate(
    rng: np.random.Generator, street: pa.Array, country: np.ndarray, messiness: Messiness
) -> pa.Array:
    """Hauptstraße 5 -> Hauptstr. 5, Bahnhofstrasse 3 -> Bahnhofstr. 3, for some German-speaking rows."""
    german = np.isin(country, [COUNTRIES.index(c) for c in ("DE", "AT", "CH")])
    short = pc.replace_substring_regex(street, "([Ss])tra(ß|ss)e\\b", "\\1tr.")
    return where(german & (rng.random(len(street)) < messiness.abbreviated_street), short, street)


def account_for_purchases(
    rng: np.random.Generator, accounts: ShopAccounts, person: np.ndarray, time: np.ndarray
) -> np.ndarray:
    """Account position of each purchase: a second account, once opened, takes half of them."""
    first = accounts.first_account_of_person[person]
    second = accounts.second_account_of_person[person]
    use_second = (
        (second >= 0) & (time >= accounts.created[np.maximum(second, 0)]) & (rng.random(len(person)) < 0.5)
    )
    return np.where(use_second, second, first)


def first_purchase_times(
    rng: np.random.Generator, count: int, end_ts: int, years: int, coverage: Coverage
) -> np.ndarray:
    """When each person first bought or got in touch: growing over the window, some before it."""
    window = years * 365 * DAY
    recent = end_ts - (window * (1 - rng.random(count) ** 0.8)).astype(np.int64)
    earlier = end_ts - window - (rng.random(count) * 2 * 365 * DAY).astype(np.int64)
    first = np.where(rng.random(count) < coverage.pre_window_customers, earlier, recent)
    return at_time_of_day(rng, np.minimum(first, end_ts - DAY))
