"""Property-based tests of identity resolution: invariants that hold for any small input.

Hypothesis builds households of people (sharing surname, address, landline and sometimes a family
email, never a given name or a date of birth) and gives each person one to three records, some with
typos or missing fields. Whatever the draw:
- every record has exactly one customer_id, in ``resolve`` and in ``resolve_incremental``;
- two people of one household are never one customer;
- ids are stable: re-resolving the same records keeps them, and an incremental night keeps the id
  of every customer its new records did not touch.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_pipelines.assets.core import DEFAULT_MODEL
from crm_pipelines.identity.incremental import resolve_incremental
from crm_pipelines.identity.model import load_model
from crm_pipelines.identity.resolve import resolve
from crm_pipelines.identity.settings import IdentitySettings

SETTINGS = IdentitySettings()
MODEL = load_model(DEFAULT_MODEL)
# Given names no typo, nickname or initial turns into one another.
GIVEN_NAMES = ("Anna", "Boris", "Clemens", "Dagmar", "Egon", "Frieda", "Gustav", "Helga", "Ingo", "Ruth")
SURNAMES = ("Berg", "Schulte", "Novak", "Okafor", "Lindqvist")
STREETS = ("Gartenweg", "Lindenallee", "Bahnhofstr.", "Am Markt")
PROPERTY_SETTINGS = settings(
    max_examples=10, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)


def _typo(name: str, position: int) -> str:
    position %= len(name) - 1
    return name[:position] + name[position + 1] + name[position] + name[position + 2 :]


@st.composite
def households(draw) -> tuple[pd.DataFrame, dict[tuple[str, str], int]]:
    """Staged customer records, and the person each record belongs to."""
    rows: list[dict[str, Any]] = []
    person_of: dict[tuple[str, str], int] = {}
    given = iter(GIVEN_NAMES)
    person = 0
    for house in range(draw(st.integers(1, 3))):
        surname = SURNAMES[house]
        address = {
            "address_line1": f"{STREETS[house % len(STREETS)]} {house + 3}",
            "postcode": f"1{house}115",
            "city": "Berlin",
            "phone": f"+49301234{house:03d}7",
        }
        family_email = draw(st.booleans())
        for member in range(draw(st.integers(1, 3))):
            first_name = next(given)
            birth = f"{1950 + 13 * member + 3 * house}-{member + 2:02d}-{10 + member + house:02d}"
            for record in range(draw(st.integers(1, 3))):
                source = ("crm", "shop", "email_tool")[record]
                key = (source, f"{source[0]}{person}")
                noisy = draw(st.sampled_from(("none", "typo_surname", "no_birth", "no_email")))
                rows.append(
                    {
                        "source": key[0],
                        "source_record_id": key[1],
                        "first_name": first_name,
                        "last_name": _typo(surname, person + record) if noisy == "typo_surname" else surname,
                        "date_of_birth": None if noisy == "no_birth" else birth,
                        "email": None
                        if noisy == "no_email"
                        else (f"{surname.lower()}.family@mail.de" if family_email else f"{first_name.lower()}@mail.de"),
                        "created_at": f"2020-0{record + 1}-01",
                        "updated_at": "2020-06-01",
                        "record_kind": "record",
                        **address,
                    }
                )
                person_of[key] = person
            person += 1
    return pd.DataFrame(rows), person_of


def ids_of(result) -> dict[tuple[str, str], str]:
    m = result.identity_map
    assert not m.duplicated(["source", "source_record_id"]).any()
    assert m["customer_id"].notna().all()
    return dict(zip(zip(m["source"], m["source_record_id"], strict=True), m["customer_id"], strict=True))


def assert_people_apart(ids: dict[tuple[str, str], str], person_of: dict[tuple[str, str], int]) -> None:
    people_of_customer: dict[str, set[int]] = {}
    for key, customer in ids.items():
        people_of_customer.setdefault(customer, set()).add(person_of[key])
    joined = {c: p for c, p in people_of_customer.items() if len(p) > 1}
    assert not joined, f"household members joined: {joined}"


@PROPERTY_SETTINGS
@given(households())
def test_resolve_gives_every_record_one_customer_and_keeps_households_apart(drawn):
    records, person_of = drawn
    first = resolve(records, None, SETTINGS, MODEL)
    ids = ids_of(first)
    assert ids.keys() == person_of.keys()
    assert_people_apart(ids, person_of)
    assert set(first.unified_customers["customer_id"]) == set(ids.values())
    again = resolve(records.iloc[::-1], None, SETTINGS, MODEL, first.identity_map, first.customer_id_history)
    assert ids_of(again) == ids


@PROPERTY_SETTINGS
@given(households(), st.integers(0, 10_000), st.booleans())
def test_resolve_incremental_keeps_untouched_ids_and_households_apart(drawn, seed, change_one):
    records, person_of = drawn
    new_mask = pd.Series(range(len(records))).sample(frac=0.3, random_state=seed).sort_index()
    is_new = records.index.isin(new_mask.index)
    base = records[~is_new]
    first = resolve(base, None, SETTINGS, MODEL)
    fresh = records[is_new]
    if change_one and len(base):
        changed = base.iloc[[0]].assign(city="Potsdam", updated_at="2020-07-01")
        fresh = pd.concat([fresh, changed])
        records = pd.concat([records[~records.index.isin(changed.index)], changed])
    night = resolve_incremental(
        fresh,
        records,
        first.identity_map,
        None,
        SETTINGS,
        MODEL,
        first.customer_id_history,
        existing_match_records=first.match_records,
    )
    ids = ids_of(night)
    assert ids.keys() == person_of.keys()
    assert_people_apart(ids, person_of)
    before = ids_of(first)
    touched = set(night.affected_customer_ids or [])
    for key, customer in before.items():
        if customer not in touched:
            assert ids[key] == customer, key
