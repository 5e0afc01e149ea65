"""Households at the edges of the evidence: records that lack a given name, a birth date or a gender,
links that would bridge two people of one family, and contact details written another way.

Each household case is two (or three) people who share an address, a landline or a family email and
must stay apart; each noisy case is one person's records that must join.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from test_identity import customer_of, customers, identifiers, row_of
from test_identity_noise import BACKGROUND, KATHARINA, SETTINGS, WILLIAM

from crm_pipelines.identity.clustering import FLAG_AMBIGUOUS
from crm_pipelines.identity.engine import duckdb_session, fetch_frame
from crm_pipelines.identity.model import train_model
from crm_pipelines.identity.prepare import build_match_records, clean_records, load_records
from crm_pipelines.identity.resolve import resolve
from crm_pipelines.identity.synthetic import synthetic_customers

LANDLINE = "+492211234567"
FAMILY_EMAIL = "schulze.familie@mail.de"
# People elsewhere whose records say which gender a given name has (a CRM records it, a shop does not).
NAMED = [
    ("Klaus", "male"),
    ("Daniel", "male"),
    ("Daniela", "female"),
    ("Robert", "male"),
    ("Kim", "female"),
    ("Kim", "male"),
]
GENDERED = pd.DataFrame(
    [
        {
            "source": "people",
            "source_record_id": f"{name}-{gender}-{i}",
            "first_name": name,
            "last_name": f"Nachbar{i}",
            "gender": gender,
            "postcode": f"{80000 + i}",
            "created_at": "2020-01-01",
            "updated_at": "2020-01-01",
            "record_kind": "record",
        }
        for name, gender in NAMED
        for i in range(6)
    ]
)


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    data = synthetic_customers(1200, seed=7)
    return train_model(data.customers, data.identifiers, SETTINGS)


def records(*rows: dict[str, Any]) -> pd.DataFrame:
    """Rows as crm/1, shop/2, shop/3, ..., among background people."""
    keyed = [
        {"source": "crm" if i == 0 else "shop", "source_record_id": str(i + 1), **row} for i, row in enumerate(rows)
    ]
    return pd.concat([customers(*keyed), BACKGROUND.assign(source="background"), GENDERED], ignore_index=True)


def match_genders(frame: pd.DataFrame) -> dict[str, str | None]:
    with duckdb_session(SETTINGS) as con:
        load_records(con, frame, None)
        clean_records(con, None, SETTINGS)
        build_match_records(con, SETTINGS)
        genders = fetch_frame(con, "SELECT source || '/' || source_record_id AS key, gender FROM match_records")
    return {k: (g if isinstance(g, str) else None) for k, g in zip(genders["key"], genders["gender"], strict=True)}


def test_a_missing_gender_is_read_from_a_given_name_the_records_use_for_one_gender_only():
    frame = records(
        {**KATHARINA, "first_name": "Klaus", "gender": None},
        {**KATHARINA, "first_name": "Kim", "gender": None},
        {**KATHARINA, "first_name": "Gundula", "gender": None},
    )
    genders = match_genders(frame)
    assert genders["crm/1"] == "male"  # Klaus: six records, all male
    assert genders["shop/2"] is None  # Kim: used for both
    assert genders["shop/3"] is None  # Gundula: no record says


HOUSEHOLD = {
    # The shop records no gender; the CRM record of the wife has no given name.
    "husband_on_the_landline_and_wife_without_given_name": (
        {**KATHARINA, "first_name": None, "phone": LANDLINE},
        {**KATHARINA, "first_name": "Klaus", "gender": None, "date_of_birth": None, "phone": LANDLINE},
    ),
    "brother_and_sister_without_birth_dates_on_the_landline": (
        {**KATHARINA, "first_name": "Daniel", "gender": "male", "date_of_birth": None, "phone": LANDLINE},
        {**KATHARINA, "first_name": "Daniela", "gender": None, "date_of_birth": None, "phone": LANDLINE},
    ),
    # Nothing but the surname to compare, and it differs: a partner who kept their name, elsewhere.
    "partner_with_another_surname_on_the_family_email": (
        {**KATHARINA, "email": FAMILY_EMAIL},
        {
            "first_name": None,
            "last_name": "Becker",
            "address_line1": "Ringstraße 8",
            "postcode": "50670",
            "city": "Köln",
            "email": FAMILY_EMAIL,
        },
    ),
}


@pytest.mark.parametrize("case", sorted(HOUSEHOLD))
def test_household_members_stay_apart(model, case):
    left, right = HOUSEHOLD[case]
    result = resolve(records(left, right), None, SETTINGS, model)
    assert customer_of(result, "crm", "1") != customer_of(result, "shop", "2")


NOISY = {
    "sub_addressed_email": (
        {**WILLIAM, "email": "w.okonkwo@mail.de"},
        {"first_name": "William", "email": "W.Okonkwo+shop@mail.de"},
    ),
    "names_swapped_and_surname_misread_on_the_same_landline": (
        {**WILLIAM, "first_name": "Marco", "last_name": "Studer", "phone": LANDLINE},
        {**WILLIAM, "first_name": "Stucler", "last_name": "Marco", "date_of_birth": None, "phone": LANDLINE},
    ),
    "names_swapped_and_nickname_on_the_same_email": (
        {**WILLIAM, "first_name": "Andreas", "last_name": "Fischer", "email": "andfis70@mail.de"},
        {**WILLIAM, "first_name": "Fischer", "last_name": "Andi", "date_of_birth": None, "email": "andfis70@mail.de"},
    ),
    # The surname of the record without a given name is the other record's given name: it was swapped.
    "names_swapped_and_given_name_missing_on_the_same_email": (
        {**KATHARINA, "first_name": "Schulze", "last_name": "Katharina", "email": "k.schulze@mail.de"},
        {"first_name": None, "last_name": "Schulze", "postcode": "10115", "email": "k.schulze@mail.de"},
    ),
    "chris_for_christopher": (
        {**WILLIAM, "first_name": "Christopher", "email": "c.okonkwo@mail.de"},
        {**WILLIAM, "first_name": "Chris", "date_of_birth": None, "email": "c.okonkwo@mail.de"},
    ),
}


@pytest.mark.parametrize("case", sorted(NOISY))
def test_noisy_records_of_one_person_join(model, case):
    left, right = NOISY[case]
    result = resolve(records(left, right), None, SETTINGS, model)
    assert customer_of(result, "crm", "1") == customer_of(result, "shop", "2"), result.rejected_links.to_dict("records")


def test_a_shared_identifier_decides_before_a_stronger_weighed_family_email(model):
    """Nancy's loyalty card is on the record without a given name; Robert shares only the family
    email and, living there, the address too, so the model alone weighs his link higher."""
    nancy = {**KATHARINA, "first_name": "Nancy", "date_of_birth": None, "address_line1": None, "email": FAMILY_EMAIL}
    card_holder = {**KATHARINA, "first_name": None, "gender": None, "email": FAMILY_EMAIL}
    robert = {**KATHARINA, "first_name": "Robert", "gender": "male", "date_of_birth": None, "email": FAMILY_EMAIL}
    ids = identifiers(("crm", "1", "loyalty_card", "L-77"), ("shop", "2", "loyalty_card", "L-77"))
    result = resolve(records(nancy, card_holder, robert), ids, SETTINGS, model)
    assert customer_of(result, "crm", "1") == customer_of(result, "shop", "2")
    assert customer_of(result, "shop", "3") != customer_of(result, "shop", "2")


def test_a_record_pulled_equally_towards_two_people_through_weak_links_stays_alone(model):
    """No given name and a birth date the others lack: it compares nothing personal with either
    spouse, so the family email and the address say nothing about which of them it is."""
    unknown = {**KATHARINA, "first_name": None, "gender": None, "email": FAMILY_EMAIL}
    monika = {**KATHARINA, "first_name": "Monika", "date_of_birth": None, "email": FAMILY_EMAIL}
    dominik = {**KATHARINA, "first_name": "Dominik", "gender": "male", "date_of_birth": None, "email": FAMILY_EMAIL}
    result = resolve(records(unknown, monika, dominik), None, SETTINGS, model)
    ids = {customer_of(result, "crm", "1"), customer_of(result, "shop", "2"), customer_of(result, "shop", "3")}
    assert len(ids) == 3
    assert row_of(result, "crm", "1")["cluster_flag"] == FLAG_AMBIGUOUS
