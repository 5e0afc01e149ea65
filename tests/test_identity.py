"""Identity resolution on small hand-made frames: links, guards, junk, golden records, explanations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from crm_pipelines.identity.explain import explain_customer
from crm_pipelines.identity.model import ensure_model, load_model, save_model, train_model
from crm_pipelines.identity.resolve import resolve
from crm_pipelines.identity.settings import IdentitySettings
from crm_pipelines.identity.synthetic import synthetic_customers

SETTINGS = IdentitySettings()
PRIORITY = {"crm": 10, "shop": 20, "email_tool": 30}


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    data = synthetic_customers(1200, seed=7)
    return train_model(data.customers, data.identifiers, SETTINGS)


def customers(*rows: dict[str, Any]) -> pd.DataFrame:
    defaults = {"created_at": "2020-01-01", "updated_at": "2020-01-01", "record_kind": "record"}
    return pd.DataFrame([{**defaults, **row} for row in rows])


def identifiers(*rows: tuple[str, str, str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["source", "source_record_id", "identifier_type", "identifier_value"])


def customer_of(result, source: str, record_id: str) -> str:
    m = result.identity_map
    return m.loc[(m["source"] == source) & (m["source_record_id"] == record_id), "customer_id"].item()


def row_of(result, source: str, record_id: str) -> pd.Series:
    m = result.identity_map
    return m[(m["source"] == source) & (m["source_record_id"] == record_id)].iloc[0]


ANNA = {
    "first_name": "Anna",
    "last_name": "Müller",
    "date_of_birth": "1980-01-01",
    "address_line1": "Gartenweg 3",
    "postcode": "10115",
    "city": "Berlin",
    "gender": "female",
}
THOMAS = {
    "first_name": "Thomas",
    "last_name": "Müller",
    "date_of_birth": "1975-05-05",
    "address_line1": "Gartenweg 3",
    "postcode": "10115",
    "city": "Berlin",
    "gender": "male",
}


def test_shared_email_phone_and_identifier_link_deterministically(model):
    frame = customers(
        {"source": "crm", "source_record_id": "1", **ANNA, "email": "anna@mail.de"},
        {
            "source": "shop",
            "source_record_id": "7",
            "first_name": "Anna",
            "last_name": "Mueller",
            "email": "anna@mail.de",
        },
        {"source": "shop", "source_record_id": "8", "first_name": "Anna", "phone": "+4930111222"},
        {"source": "crm", "source_record_id": "2", "first_name": "Anna", "phone": "+4930111222"},
        {"source": "crm", "source_record_id": "3", "first_name": "Ana", "last_name": "Berg"},
        {"source": "shop", "source_record_id": "9", "first_name": "Anna", "last_name": "Berg"},
    )
    ids = identifiers(("crm", "3", "loyalty_card", "lc-1"), ("shop", "9", "loyalty_card", "LC-1"))
    result = resolve(frame, ids, SETTINGS, model, source_priority=PRIORITY)
    assert customer_of(result, "crm", "1") == customer_of(result, "shop", "7")
    assert customer_of(result, "shop", "8") == customer_of(result, "crm", "2")
    assert customer_of(result, "crm", "3") == customer_of(result, "shop", "9")
    methods = set(result.links["match_method"])
    assert {"email", "phone", "identifier"} <= methods
    assert (
        result.identity_map.loc[result.identity_map["match_method"] != "seed", "match_probability"]
        .eq(1.0)
        .all()
    )
    assert result.summary["links_by_method"]["identifier"] == 1


def test_household_sharing_phone_and_address_is_not_merged(model):
    frame = customers(
        {"source": "crm", "source_record_id": "1", **ANNA, "phone": "+4930123456"},
        {"source": "crm", "source_record_id": "2", **THOMAS, "phone": "+4930123456"},
    )
    result = resolve(frame, None, SETTINGS, model, source_priority=PRIORITY)
    assert result.identity_map["customer_id"].nunique() == 2
    assert result.links.empty
    refused = result.rejected_links.iloc[0]
    assert refused["match_method"] == "phone"
    assert refused["reason"] == "given_name_and_birth_disagree"


def test_siblings_with_similar_names_but_different_genders_are_not_merged(model):
    frame = customers(
        {
            "source": "crm",
            "source_record_id": "1",
            **ANNA,
            "first_name": "Paul",
            "gender": "male",
            "date_of_birth": None,
            "email": "familie@mail.de",
        },
        {
            "source": "crm",
            "source_record_id": "2",
            **ANNA,
            "first_name": "Paula",
            "date_of_birth": None,
            "email": "familie@mail.de",
        },
    )
    result = resolve(frame, None, SETTINGS, model)
    assert result.identity_map["customer_id"].nunique() == 2
    assert result.rejected_links["reason"].tolist() == ["gender_disagrees"]


def test_family_email_reference_joins_neither_spouse(model):
    family = "familie.mueller@web.de"
    frame = customers(
        {"source": "crm", "source_record_id": "1", **ANNA, "email": family},
        {"source": "shop", "source_record_id": "5", **THOMAS, "email": family},
        {
            "source": "email_tool",
            "source_record_id": f"email:{family}",
            "email": family,
            "record_kind": "referenced",
            "created_at": None,
            "updated_at": None,
        },
    )
    result = resolve(frame, None, SETTINGS, model)
    assert result.identity_map["customer_id"].nunique() == 3
    stub = row_of(result, "email_tool", f"email:{family}")
    assert stub["cluster_flag"] == "ambiguous"
    assert stub["match_method"] == "singleton"


def test_references_join_by_email_or_by_their_own_id(model):
    frame = customers(
        {"source": "crm", "source_record_id": "1", **ANNA, "email": "anna@mail.de"},
        {"source": "email_tool", "source_record_id": "email:anna@mail.de", "record_kind": "referenced"},
        {"source": "shop", "source_record_id": "77", **THOMAS},
        {"source": "shop", "source_record_id": "77", "record_kind": "referenced"},
        {"source": "shop", "source_record_id": "99", "record_kind": "referenced"},
    )
    result = resolve(frame, None, SETTINGS, model)
    assert len(result.identity_map) == 4  # the id-only stub of shop/77 is shop/77
    assert customer_of(result, "email_tool", "email:anna@mail.de") == customer_of(result, "crm", "1")
    assert row_of(result, "email_tool", "email:anna@mail.de")["match_method"] == "email"
    assert row_of(result, "shop", "99")["match_method"] == "singleton"
    assert result.unified_customers.set_index("customer_id").loc[
        customer_of(result, "shop", "77"), "first_name"
    ] == ("Thomas")


def test_junk_values_never_link(model):
    frame = customers(
        {
            "source": "crm",
            "source_record_id": "1",
            "first_name": "Lena",
            "email": "test@test.com",
            "phone": "+490000000000",
        },
        {
            "source": "shop",
            "source_record_id": "2",
            "first_name": "Lena",
            "email": "TEST@test.com",
            "phone": "+490000000000",
        },
        {
            "source": "shop",
            "source_record_id": "3",
            "first_name": "Lena",
            "email": "noreply@shop.example",
            "phone": "+491234567890",
        },
        {"source": "crm", "source_record_id": "4", "first_name": "N/A", "last_name": "unknown"},
        {"source": "shop", "source_record_id": "5", "first_name": "n/a", "last_name": "Unknown"},
    )
    ids = identifiers(("crm", "1", "loyalty_card", "N/A"), ("shop", "2", "loyalty_card", "n/a"))
    result = resolve(frame, ids, SETTINGS, model)
    assert result.identity_map["customer_id"].nunique() == 5
    assert result.links.empty and result.rejected_links.empty
    cleaning = result.summary["cleaning"]
    assert cleaning["junk_emails"] == 3 and cleaning["junk_phones"] == 3
    assert cleaning["junk_names"] == 4 and cleaning["junk_identifiers"] == 2


def test_value_shared_by_more_records_than_the_limit_links_nobody(model):
    shared = [
        {
            "source": "crm",
            "source_record_id": str(i),
            "first_name": "Alex",
            "last_name": f"Name{i}",
            "email": "info@firma.de",
        }
        for i in range(4)
    ]
    at_limit = resolve(customers(*shared), None, IdentitySettings(shared_value_limit=4), model)
    over_limit = resolve(customers(*shared), None, IdentitySettings(shared_value_limit=3), model)
    assert at_limit.identity_map["customer_id"].nunique() == 1
    assert over_limit.identity_map["customer_id"].nunique() == 4
    assert over_limit.summary["cleaning"]["shared_emails"] == 1


def test_typos_link_probabilistically(model):
    frame = customers(
        {
            "source": "crm",
            "source_record_id": "1",
            "first_name": "Katharina",
            "last_name": "Schneider",
            "date_of_birth": "1980-04-03",
            "address_line1": "Hauptstraße 5",
            "postcode": "10115",
            "city": "Berlin",
        },
        {
            "source": "shop",
            "source_record_id": "9",
            "first_name": "Katarina",
            "last_name": "Schnieder",
            "date_of_birth": "1980-03-04",
            "address_line1": "Hauptstr. 5",
            "postcode": "10115",
            "city": "Berlin",
        },
    )
    result = resolve(frame, None, SETTINGS, model)
    assert result.identity_map["customer_id"].nunique() == 1
    link = result.links.iloc[0]
    assert link["match_method"] == "probabilistic"
    assert link["match_probability"] >= SETTINGS.match_threshold
    evidence = json.loads(link["evidence"])
    assert evidence["date_of_birth"]["level"] == "day_month_swapped"
    assert evidence["location"]["level"] == "same_address"  # Hauptstraße 5 = Hauptstr. 5
    assert evidence["first_name"]["match_weight"] > 0


def test_oversize_cluster_is_flagged_and_broken_up(model):
    chain = [
        {
            "source": "crm",
            "source_record_id": str(i),
            "first_name": "Jan",
            "email": f"jan{i}@mail.de",
            "phone": f"+4917000000{i + 1:02d}",
        }
        for i in range(6)
    ]
    for i in range(5):  # record i shares its phone with record i + 1: one chain of six records
        chain[i + 1]["phone"] = chain[i]["phone"] if i % 2 == 0 else chain[i + 1]["phone"]
        chain[i + 1]["email"] = chain[i]["email"] if i % 2 == 1 else chain[i + 1]["email"]
    settings = IdentitySettings(max_cluster_size=3)
    unguarded = resolve(customers(*chain), None, IdentitySettings(), model)
    result = resolve(customers(*chain), None, settings, model)
    assert unguarded.identity_map["customer_id"].nunique() == 1
    assert result.identity_map.groupby("customer_id").size().max() <= 3
    assert set(result.identity_map["cluster_flag"]) == {"oversize_split"}
    assert "oversize_cluster" in set(result.rejected_links["reason"])


def test_golden_record_follows_field_priority_then_source_priority_then_recency(model):
    frame = customers(
        {
            "source": "crm",
            "source_record_id": "1",
            **ANNA,
            "email": "anna@crm.de",
            "address_line1": "Crmweg 1",
            "city": "Berlin",
            "postcode": "10115",
            "updated_at": "2021-01-01",
        },
        {
            "source": "shop",
            "source_record_id": "2",
            **ANNA,
            "email": "anna@crm.de",
            "address_line1": "Shopstraße 2",
            "city": "Köln",
            "postcode": "50667",
            "phone": "+4922100000",
            "updated_at": "2024-01-01",
        },
        {
            "source": "crm",
            "source_record_id": "3",
            **ANNA,
            "last_name": "Schulz",
            "email": "anna@crm.de",
            "address_line1": None,
            "city": None,
            "postcode": None,
            "updated_at": "2023-06-01",
        },
    )
    settings = IdentitySettings(field_priority={"address_line1": ["shop", "crm"]})
    result = resolve(frame, None, settings, model, source_priority=PRIORITY)
    golden = result.unified_customers.iloc[0]
    assert (
        golden["address_line1"] == "Shopstraße 2"
        and golden["city"] == "Köln"
        and golden["postcode"] == "50667"
    )
    assert golden["last_name"] == "Schulz"  # both crm: the more recently updated record wins
    assert golden["phone"] == "+4922100000"  # only the shop knows it
    assert golden["record_count"] == 3 and golden["sources"] == "crm,shop"
    lineage = result.golden_lineage.set_index("field")
    assert tuple(lineage.loc["city", ["source", "source_record_id"]]) == ("shop", "2")
    assert tuple(lineage.loc["last_name", ["source", "source_record_id"]]) == ("crm", "3")
    assert tuple(lineage.loc["first_name", ["source", "source_record_id"]]) == ("crm", "3")


def test_explain_customer_lists_records_links_and_evidence(model):
    frame = customers(
        {"source": "crm", "source_record_id": "1", **ANNA, "phone": "+4930123456", "email": "anna@mail.de"},
        {"source": "shop", "source_record_id": "2", **ANNA, "email": "anna@mail.de"},
        {"source": "crm", "source_record_id": "3", **THOMAS, "phone": "+4930123456"},
    )
    result = resolve(frame, None, SETTINGS, model)
    anna = customer_of(result, "crm", "1")
    explanation = explain_customer(anna, result)
    assert {r["source_record_id"] for r in explanation["records"]} == {"1", "2"}
    (link,) = explanation["links"]
    assert link["match_method"] == "email" and link["evidence"]["first_name"]["level"] == "exact"
    assert [r["reason"] for r in explanation["rejected_links"]] == ["given_name_and_birth_disagree"]
    assert explanation["golden_sources"]["email"] in {"crm/1", "shop/2"}
    markdown = explain_customer(anna, result, format="markdown")
    assert markdown.startswith(f"# Customer {anna}") and "crm/1 = shop/2" in markdown
    assert "given_name_and_birth_disagree" in markdown
    with pytest.raises(KeyError, match="not in this identity map"):
        explain_customer("Cnope", result)


def test_model_training_is_deterministic_and_round_trips(tmp_path: Path, model):
    data = synthetic_customers(1200, seed=7)
    assert train_model(data.customers, data.identifiers, SETTINGS) == model
    path = save_model(model, tmp_path / "models" / "identity.json")
    assert load_model(path) == model
    frame = customers(
        {"source": "crm", "source_record_id": "1", **ANNA},
        {"source": "shop", "source_record_id": "2", **ANNA},
    )
    first = resolve(frame, None, SETTINGS, load_model(path), recorded_at=pd.Timestamp("2024-01-01"))
    second = resolve(frame, None, SETTINGS, model, recorded_at=pd.Timestamp("2024-01-01"))
    pd.testing.assert_frame_equal(first.identity_map, second.identity_map)


def test_ensure_model_trains_once_then_loads(tmp_path: Path, model):
    path = tmp_path / "identity_model.json"
    data = synthetic_customers(300, seed=1)
    trained = ensure_model(path, data.customers, data.identifiers, SETTINGS)
    assert path.exists() and load_model(path) == trained
    path.write_text(json.dumps(model), encoding="utf-8")
    assert ensure_model(path, data.customers, data.identifiers, SETTINGS) == model  # loaded, not retrained


def test_load_model_names_the_file_when_it_is_not_a_model(tmp_path: Path):
    bad = tmp_path / "model.json"
    bad.write_text('{"link_type": "dedupe_only"}', encoding="utf-8")
    with pytest.raises(ValueError, match=str(bad)):
        load_model(bad)
    with pytest.raises(FileNotFoundError, match="ensure_model"):
        load_model(tmp_path / "missing.json")


def test_settings_reject_unknown_columns_and_fields():
    with pytest.raises(ValidationError, match="unknown column"):
        IdentitySettings(blocking_rules=(("shoe_size",),))
    with pytest.raises(ValidationError, match="unknown field"):
        IdentitySettings(field_priority={"favourite_colour": ["crm"]})
    with pytest.raises(ValidationError, match="split_threshold"):
        IdentitySettings(match_threshold=0.99, split_threshold=0.9)
