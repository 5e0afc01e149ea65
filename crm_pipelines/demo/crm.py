"""The CRM: a contacts export (crm_contacts.csv) and newsletter consent history (crm_consents.csv).

The CRM is the most complete view of a person but typed by hand: free-text countries and genders,
some duplicates, placeholders in mandatory fields, and a few broken values.
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
    date_strings,
    int_strings,
    null_where,
    pick_rows,
    replace_rows,
    timestamp_strings,
    where,
)
from crm_pipelines.demo.noise import (
    fill_in_forms,
    format_phones,
    present_emails,
    spell_countries,
    spell_genders,
    with_date_errors,
    with_ocr_errors,
    with_typos,
)
from crm_pipelines.demo.places import PhoneNumber
from crm_pipelines.demo.population import People
from crm_pipelines.demo.settings import Coverage, Messiness, malformed_count
from crm_pipelines.demo.vocab import JUNK_EMAILS, JUNK_PHONES, JUNK_TEXT


@dataclass
class CrmExport:
    contacts: pa.Table
    consents: pa.Table
    contact_person: np.ndarray
    """Person position of each contact row."""
    contact_email: pa.Array
    """The clean address (lower case) each contact carries; null where it has none, or a placeholder or
    broken value instead."""
    consent_granted: np.ndarray
    """Per person: the CRM's latest newsletter consent is 'granted'."""


def crm_export(
    rng: np.random.Generator,
    people: People,
    in_crm: np.ndarray,
    first_contact: np.ndarray,
    end_ts: int,
    messiness: Messiness,
    coverage: Coverage,
) -> CrmExport:
    members = np.flatnonzero(in_crm)
    duplicated = members[pick_rows(rng, len(members), messiness.crm_duplicates, minimum=1)]
    person = np.concatenate([members, duplicated])
    is_duplicate = np.r_[np.zeros(len(members), bool), np.ones(len(duplicated), bool)]
    count = len(person)

    created = np.minimum(
        first_contact[person] + rng.normal(0, 20 * DAY, count).astype(np.int64), end_ts - DAY
    )
    later = created + rng.uniform(30, 700, count).astype(np.int64) * DAY
    created = np.where(is_duplicate, np.minimum(later, end_ts - DAY // 2), created)
    created = np.minimum(at_time_of_day(rng, created), end_ts)
    order = np.argsort(created, kind="stable")
    person, is_duplicate, created = person[order], is_duplicate[order], created[order]
    updated = created + ((end_ts - created) * rng.random(count) ** 2).astype(np.int64)

    contact_id = concat("CRM-", int_strings(np.arange(1, count + 1), width=max(6, len(str(count)))))
    first_name = people.first_name.take(pa.array(person))
    last_name = people.last_name.take(pa.array(person))
    duplicate_rows = np.flatnonzero(is_duplicate)
    typo_rows = duplicate_rows[rng.random(len(duplicate_rows)) < 0.4]
    first_name = replace_rows(
        first_name, typo_rows, with_typos(rng, first_name.take(pa.array(typo_rows)), 1.0).to_pylist()
    )

    clean_email, email = _crm_emails(rng, people, person, is_duplicate, messiness)
    phone = _phones(rng, people, person, messiness)
    phone = null_where(rng.random(count) < messiness.missing_phone + 0.15 * is_duplicate, phone)

    # A duplicate entered after a move leaves the older contact with the previous address.
    moved_pair = (
        np.isin(person, person[is_duplicate][rng.random(int(is_duplicate.sum())) < 0.3]) & ~is_duplicate
    )
    address = people.address.take(person)
    previous = people.previous_address.take(person)
    no_address = rng.random(count) < messiness.missing_address

    def located(current: pa.Array, before: pa.Array) -> pa.Array:
        return null_where(no_address, where(moved_pair, before, current))

    birth = date_strings(people.birth_day[person], missing=rng.random(count) < messiness.missing_birth_date)
    card = people.loyalty_card.take(pa.array(person))
    # Its own stream (spawning leaves ``rng`` untouched), so the form noise changes no other value.
    form_rng = rng.spawn(1)[0]
    form = fill_in_forms(
        form_rng,
        {
            "first_name": first_name,
            "last_name": with_ocr_errors(form_rng, last_name, messiness.ocr_typo),
            "street": located(address.street, previous.street),
            "city": located(address.city, previous.city),
            "postcode": located(address.postcode, previous.postcode),
        },
        messiness,
    )
    birth = with_date_errors(form_rng, birth, messiness.birth_date_digit, messiness.birth_day_month_swap)
    contacts = {
        "contact_id": contact_id,
        "first_name": form["first_name"],
        "last_name": form["last_name"],
        "email": email,
        "phone": phone,
        "birth_date": birth,
        "gender": spell_genders(rng, people.gender[person]),
        "street": form["street"],
        "street2": located(address.street2, previous.street2),
        "city": form["city"],
        "zip": form["postcode"],
        "state": null_where(rng.random(count) < 0.3, located(address.region, previous.region)),
        "country": null_where(rng.random(count) < 0.02, spell_countries(rng, people.country[person])),
        "company": people.company.take(pa.array(person)),
        "loyalty_card": null_where(rng.random(count) >= coverage.loyalty_card_in_crm, card),
        "created_at": created,
        "updated_at": updated,
    }
    _add_junk(rng, contacts, messiness)
    _break_values(rng, contacts, end_ts, messiness)
    contacts["created_at"] = timestamp_strings(contacts["created_at"])
    contacts["updated_at"] = timestamp_strings(contacts["updated_at"])
    consents, granted = _consents(rng, contact_id, person, email, created, end_ts, len(people))
    shown = pc.utf8_lower(pc.utf8_trim_whitespace(contacts["email"]))
    clean_email = null_where(~np.asarray(pc.equal(shown, clean_email).fill_null(False)), clean_email)
    return CrmExport(pa.table(contacts), consents, person, clean_email, granted)


def _crm_emails(
    rng: np.random.Generator,
    people: People,
    person: np.ndarray,
    is_duplicate: np.ndarray,
    messiness: Messiness,
) -> tuple[pa.Array, pa.Array]:
    """Each contact's clean address and the address as the CRM shows it (case, spaces, gaps)."""
    own = people.email.take(pa.array(person))
    other = people.other_email.take(pa.array(person))
    use_other = np.asarray(other.is_valid()) & (rng.random(len(person)) < np.where(is_duplicate, 0.5, 0.1))
    clean = where(use_other, other, own)
    email = present_emails(rng, clean, messiness.email_case, messiness.email_whitespace)
    missing = rng.random(len(person)) < messiness.missing_email_crm + 0.1 * is_duplicate
    return null_where(missing, clean), null_where(missing, email)


def _phones(rng: np.random.Generator, people: People, person: np.ndarray, messiness: Messiness) -> pa.Array:
    """Mobile for most; the household landline for some, so household members share a number."""
    household_size = np.bincount(people.household)[people.household[person]]
    prefers_landline = rng.random(len(person)) < np.where(household_size > 1, messiness.shared_landline, 0.15)
    landline = ~people.has_mobile[person] | (prefers_landline & people.has_landline[person])
    mobile, home = people.mobile.take(person), people.landline.take(person)
    chosen = PhoneNumber(
        where(landline, home.area, mobile.area), where(landline, home.subscriber, mobile.subscriber)
    )
    return format_phones(rng, people.country[person], chosen)


def _add_junk(rng: np.random.Generator, contacts: dict, messiness: Messiness) -> None:
    count = len(contacts["contact_id"])
    minimum = 2
    for column, values in (("email", JUNK_EMAILS), ("phone", JUNK_PHONES), ("street", JUNK_TEXT)):
        rows = pick_rows(rng, count, messiness.junk, minimum)
        contacts[column] = replace_rows(
            contacts[column], rows, [values[i % len(values)] for i in range(len(rows))]
        )


def _break_values(rng: np.random.Generator, contacts: dict, end_ts: int, messiness: Messiness) -> None:
    """A handful of values no validation should let through."""
    count = len(contacts["contact_id"])
    n = malformed_count(messiness.malformed, count)
    rows = rng.choice(count, min(count, 4 * n), replace=False)
    bad_email, bad_phone, bad_birth, future = (rows[i::4] for i in range(4))
    emails = contacts["email"].take(pa.array(bad_email)).to_pylist()
    broken = []
    for i, e in enumerate(emails):
        local, _, domain = (e or "john@example.com").strip().partition("@")
        broken.append(f"{local}@@{domain}" if i % 2 == 0 else f"{local}@{domain.split('.')[0]}")
    contacts["email"] = replace_rows(contacts["email"], bad_email, broken)
    contacts["phone"] = replace_rows(contacts["phone"], bad_phone, ["12"] * len(bad_phone))
    contacts["birth_date"] = replace_rows(contacts["birth_date"], bad_birth, ["1850-01-01"] * len(bad_birth))
    shift = rng.integers(1, 90, len(future)) * DAY
    contacts["created_at"][future] = end_ts + shift
    contacts["updated_at"][future] = end_ts + shift


def _consents(
    rng: np.random.Generator,
    contact_id: pa.Array,
    person: np.ndarray,
    email: pa.Array,
    created: np.ndarray,
    end_ts: int,
    n_people: int,
) -> tuple[pa.Table, np.ndarray]:
    """Newsletter consent history: granted, sometimes withdrawn later, rarely refused from the start."""
    count = len(person)
    has_email = np.asarray(email.is_valid())
    u = rng.random(count)
    granted_rows = np.flatnonzero(has_email & (u < 0.55))
    refused_rows = np.flatnonzero(has_email & (u >= 0.55) & (u < 0.60))
    granted_at = np.minimum(
        created[granted_rows] + rng.exponential(2 * DAY, len(granted_rows)).astype(np.int64), end_ts
    )
    withdraws = rng.random(len(granted_rows)) < 0.25
    withdrawn_rows = granted_rows[withdraws]
    withdrawn_at = granted_at[withdraws] + (
        (end_ts - granted_at[withdraws]) * rng.random(int(withdraws.sum()))
    )
    refused_at = np.minimum(created[refused_rows] + 60, end_ts)

    row = np.concatenate([granted_rows, withdrawn_rows, refused_rows])
    status = np.r_[
        np.zeros(len(granted_rows), np.int8), np.ones(len(withdrawn_rows) + len(refused_rows), np.int8)
    ]
    changed = np.concatenate([granted_at, withdrawn_at.astype(np.int64), refused_at])
    order = np.lexsort((row, changed))
    row, status, changed = row[order], status[order], changed[order]
    consents = pa.table(
        {
            "consent_id": concat("CON-", int_strings(np.arange(1, len(row) + 1), width=7)),
            "contact_id": contact_id.take(pa.array(row)),
            "purpose": pa.array(["newsletter"] * len(row), pa.string()),
            "status": pc.choose(pa.array(status), pa.scalar("granted"), pa.scalar("withdrawn")),
            "changed_at": timestamp_strings(changed),
        }
    )
    # The latest status per person (over all their contacts) decides whether the CRM says "granted".
    latest = np.full(n_people, -1, dtype=np.int8)
    latest[person[row]] = status  # rows are in time order: the last write per person wins
    return consents, latest == 0
