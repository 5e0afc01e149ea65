"""Real-world noise joins one person's records; household evidence keeps people apart.

Each noisy case is a pair of records of one person that only probabilistic evidence can join (no
shared email or phone). Each household case is two people who share an address, a landline or a
family email. A declared identifier is trusted unless configured otherwise.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from test_identity import customer_of, customers, identifiers, row_of

from crm_pipelines.identity.explain import explain_customer
from crm_pipelines.identity.guard import OVERRIDE_FLAG
from crm_pipelines.identity.model import train_model
from crm_pipelines.identity.resolve import resolve
from crm_pipelines.identity.settings import IdentitySettings
from crm_pipelines.identity.synthetic import synthetic_customers

SETTINGS = IdentitySettings()
KATHARINA = {
    "first_name": "Katharina",
    "last_name": "Schulze",
    "date_of_birth": "1985-03-14",
    "address_line1": "Lindenallee 12",
    "postcode": "50667",
    "city": "Köln",
    "gender": "female",
}
WILLIAM = {
    "first_name": "William",
    "last_name": "Okonkwo",
    "date_of_birth": "1979-11-02",
    "address_line1": "Gartenweg 3",
    "postcode": "10115",
    "city": "Berlin",
    "gender": "male",
}


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    data = synthetic_customers(1200, seed=7)
    return train_model(data.customers, data.identifiers, SETTINGS)


# Other customers around the pair, so a name is as common as in real data: on two records alone,
# term-frequency adjustment finds every value in every record and exact agreement worth nothing.
BACKGROUND = synthetic_customers(300, seed=11).customers


def pair(left: dict[str, Any], right: dict[str, Any]) -> pd.DataFrame:
    return pd.concat(
        [
            customers(
                {"source": "crm", "source_record_id": "1", **left}, {"source": "shop", "source_record_id": "2", **right}
            ),
            BACKGROUND.assign(source="background"),
        ],
        ignore_index=True,
    )


NOISY = {
    "nickname": (WILLIAM, {**WILLIAM, "first_name": "Bill"}),
    "initial": (WILLIAM, {**WILLIAM, "first_name": "W."}),
    "given_name_dropped": (KATHARINA, {**KATHARINA, "first_name": None}),
    "names_swapped": (KATHARINA, {**KATHARINA, "first_name": "Schulze", "last_name": "Katharina"}),
    "typo_in_given_name": (KATHARINA, {**KATHARINA, "first_name": "Katahrina"}),
    "birth_digit_wrong": (KATHARINA, {**KATHARINA, "date_of_birth": "1985-03-19"}),
    "birth_day_month_swapped": (
        {**KATHARINA, "date_of_birth": "1985-03-12"},
        {**KATHARINA, "date_of_birth": "1985-12-03"},
    ),
    # Stacked distortions, as real exports have them.
    "names_swapped_with_a_typo_in_each": (KATHARINA, {**KATHARINA, "first_name": "Schulz", "last_name": "Katahrina"}),
    "names_swapped_with_typo_in_surname": (
        KATHARINA,
        {**KATHARINA, "first_name": "Schultze", "last_name": "Katharina"},
    ),
    "postcode_one_off_and_city_missing": (KATHARINA, {**KATHARINA, "postcode": "50668", "city": None}),
    "street_missing_and_surname_misread": (
        KATHARINA,
        {**KATHARINA, "address_line1": None, "last_name": "Schuize"},
    ),
    "typo_in_both_names_no_birth_date": (
        WILLIAM,
        {**WILLIAM, "first_name": "Willaim", "last_name": "Okonkow", "date_of_birth": None},
    ),
    "given_name_dropped_and_postcode_one_off": (
        WILLIAM,
        {**WILLIAM, "first_name": None, "postcode": "10116"},
    ),
    "nickname_and_birth_digit_and_city_missing": (
        WILLIAM,
        {**WILLIAM, "first_name": "Bill", "date_of_birth": "1979-11-03", "city": None},
    ),
}


@pytest.mark.parametrize("case", sorted(NOISY))
def test_noisy_records_of_one_person_join(model, case):
    left, right = NOISY[case]
    frame = pair(left, right)
    result = resolve(frame, None, SETTINGS, model)
    assert customer_of(result, "crm", "1") == customer_of(result, "shop", "2"), result.rejected_links.to_dict("records")


HOUSEHOLD = {
    "spouses_sharing_everything": (
        {**KATHARINA, "email": "schulze.familie@mail.de", "phone": "+492211234567"},
        {
            **KATHARINA,
            "first_name": "Jonas",
            "gender": "male",
            "date_of_birth": "1983-07-21",
            "email": "schulze.familie@mail.de",
            "phone": "+492211234567",
        },
    ),
    "mother_and_daughter": (
        {**KATHARINA, "phone": "+492211234567"},
        {**KATHARINA, "first_name": "Lea", "date_of_birth": "2004-09-30", "phone": "+492211234567"},
    ),
    "parent_without_birth_date": (
        {**KATHARINA, "email": "schulze.familie@mail.de"},
        {**KATHARINA, "first_name": "Gisela", "date_of_birth": None, "email": "schulze.familie@mail.de"},
    ),
    "brother_next_door_postcode_one_off": (
        {**KATHARINA, "phone": "+492211234567"},
        {
            **KATHARINA,
            "first_name": "Jonas",
            "gender": "male",
            "date_of_birth": "1988-05-02",
            "postcode": "50668",
            "phone": "+492211234567",
        },
    ),
    # Surname and address are all the two can compare: what a household shares, no evidence of one person.
    "relative_without_given_name_or_birth_date": (
        {**KATHARINA, "email": "k.schulze@mail.de"},
        {**KATHARINA, "first_name": None, "date_of_birth": None, "email": "j.schulze@mail.de"},
    ),
    # No given name to compare, and the recorded gender disagrees: the husband on the family email.
    "husband_without_given_name_on_the_family_email": (
        {**KATHARINA, "email": "schulze.familie@mail.de"},
        {**KATHARINA, "first_name": None, "date_of_birth": None, "gender": "male", "email": "schulze.familie@mail.de"},
    ),
    "siblings_similar_names_shared_email": (
        {**KATHARINA, "first_name": "Maria", "email": "schulze.familie@mail.de"},
        {**KATHARINA, "first_name": "Marie", "date_of_birth": "1990-08-21", "email": "schulze.familie@mail.de"},
    ),
}


@pytest.mark.parametrize("case", sorted(HOUSEHOLD))
def test_household_members_stay_apart(model, case):
    left, right = HOUSEHOLD[case]
    frame = pair(left, right)
    result = resolve(frame, None, SETTINGS, model)
    assert customer_of(result, "crm", "1") != customer_of(result, "shop", "2")
    assert result.rejected_links["reason"].notna().all()


def test_a_record_without_given_name_or_birth_date_joins_by_its_own_email(model):
    """Household evidence alone links nobody; a shared email with nothing disagreeing still does."""
    frame = pair(
        {**KATHARINA, "email": "k.schulze@mail.de"},
        {**KATHARINA, "first_name": None, "date_of_birth": None, "email": "k.schulze@mail.de"},
    )
    result = resolve(frame, None, SETTINGS, model)
    assert customer_of(result, "crm", "1") == customer_of(result, "shop", "2")


def test_a_trusted_identifier_joins_through_a_conflict_and_flags_it(model):
    frame = customers(
        {"source": "crm", "source_record_id": "1", **WILLIAM},
        {"source": "shop", "source_record_id": "2", **WILLIAM, "first_name": "Kofi", "date_of_birth": "1997-01-01"},
    )
    ids = identifiers(("crm", "1", "national_id", "AB123"), ("shop", "2", "national_id", "ab123"))
    trusted = resolve(frame, ids, SETTINGS, model)
    assert customer_of(trusted, "crm", "1") == customer_of(trusted, "shop", "2")
    assert {row_of(trusted, "crm", "1")["cluster_flag"], row_of(trusted, "shop", "2")["cluster_flag"]} == {
        OVERRIDE_FLAG
    }
    untrusted = resolve(frame, ids, SETTINGS.model_copy(update={"untrusted_identifiers": ("national_id",)}), model)
    assert customer_of(untrusted, "crm", "1") != customer_of(untrusted, "shop", "2")


def test_explain_shows_the_probability_the_map_records(model):
    frame = pair({**WILLIAM, "email": "w.okonkwo@mail.de"}, {"first_name": "William", "email": "w.okonkwo@mail.de"})
    result = resolve(frame, None, SETTINGS, model)
    customer = customer_of(result, "crm", "1")
    (link,) = explain_customer(customer, result)["links"]
    joined = (
        row_of(result, "shop", "2")
        if row_of(result, "crm", "1")["match_method"] == "seed"
        else row_of(result, "crm", "1")
    )
    assert link["match_probability"] == joined["match_probability"] == 1.0
    assert link["model_probability"] < SETTINGS.match_threshold
    markdown = explain_customer(customer, result, format="markdown")
    assert "probability 1.0000 (shared email" in markdown


def _joined_row(result, customer: str) -> dict:
    """The map row of the record that joined the customer (not its seed)."""
    rows = result.identity_map[result.identity_map["customer_id"] == customer]
    (joined,) = rows[rows["match_method"] != "seed"].to_dict("records")
    return joined


def test_explain_shows_the_probability_the_map_records_for_a_model_link(model):
    result = resolve(pair(KATHARINA, {**KATHARINA, "first_name": "Katahrina"}), None, SETTINGS, model)
    customer = customer_of(result, "crm", "1")
    (link,) = explain_customer(customer, result)["links"]
    joined = _joined_row(result, customer)
    assert link["match_method"] == joined["match_method"] == "probabilistic"
    assert link["match_probability"] == pytest.approx(joined["match_probability"], abs=1e-12)
    assert link["match_probability"] == link["model_probability"] >= SETTINGS.match_threshold
    markdown = explain_customer(customer, result, format="markdown")
    assert f"probability {joined['match_probability']:.4f}" in markdown


def test_explain_shows_the_probability_the_map_records_for_an_identifier_link(model):
    frame = pair(WILLIAM, {**WILLIAM, "first_name": "Kofi", "date_of_birth": "1997-01-01", "postcode": None})
    ids = identifiers(("crm", "1", "national_id", "AB123"), ("shop", "2", "national_id", "AB123"))
    result = resolve(frame, ids, SETTINGS, model)
    customer = customer_of(result, "crm", "1")
    (link,) = explain_customer(customer, result)["links"]
    joined = _joined_row(result, customer)
    assert link["match_method"] == joined["match_method"] == "identifier"
    assert link["match_probability"] == joined["match_probability"] == 1.0
    assert link["model_probability"] < SETTINGS.match_threshold
