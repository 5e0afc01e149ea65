"""The marts' personal-data policy (crm.yaml ``pii``): hash, mask and drop per class, on frames and contracts."""

from __future__ import annotations

import datetime as dt
import hashlib

import pandas as pd
import pytest

from crm_pipelines.analytics.mart_boundary import pii_marts, to_published_mart
from crm_pipelines.analytics.mart_columns import MART_COLUMNS, PII_COLUMNS
from crm_pipelines.analytics.pii import normalized, sha256
from crm_pipelines.analytics.pii_settings import PII_CLASSES, PiiSettings
from crm_pipelines.checks.suites import mart_suite
from crm_pipelines.config import ConfigError, config_from_dict


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _audiences() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            "audience_group": ["rfm_segment"] * 3,
            "audience": ["Champions"] * 3,
            "email": [" Jane.Doe@Example.COM ", "bo@shop.de", None],
            "consent_at": pd.to_datetime(["2024-01-01"] * 3, utc=True),
            "campaign": [None] * 3,
            "campaign_group": [None] * 3,
        }
    )


def _profile() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "first_name": ["  Zoë ", None],
            "last_name": ["van  der Berg", "Smith"],
            "email": ["jane@example.com", None],
            "phone": ["+4930123456", "+14155550123"],
            "date_of_birth": [dt.date(1984, 3, 7), None],
            "address_line1": ["Hauptstraße 5", None],
            "address_line2": [None, "Flat 2"],
            "city": ["Berlin", "London"],
            "postcode": ["10115", "sw1a 1aa"],
        }
    )


def _suite(table: str, not_null: list[str]):
    return mart_suite(f"marts.{table}", columns=[c.name for c in MART_COLUMNS[table]], not_null_columns=not_null)


def test_hash_is_the_sha256_of_the_normalized_value():
    assert sha256("email", " Jane.Doe@Example.COM ") == _digest("jane.doe@example.com")
    assert sha256("phone", "+49 30 123-456") == _digest("+4930123456")
    assert sha256("first_name", "  Zoë ") == _digest("zoë")
    assert sha256("last_name", "van  der Berg") == _digest("van der berg")
    assert sha256("date_of_birth", dt.date(1984, 3, 7)) == _digest("1984-03-07")
    assert sha256("date_of_birth", pd.Timestamp("1984-03-07")) == _digest("1984-03-07")
    assert sha256("postcode", "sw1a 1aa") == _digest("SW1A1AA")
    # Composed and decomposed Unicode hash alike.
    assert normalized("first_name", "Zoe\u0308") == normalized("first_name", "Zo\u00eb")


def test_default_keeps_every_mart_as_it_was():
    settings = PiiSettings()
    assert settings.keeps_everything
    frame = _profile()
    suite = _suite("customer_360", ["customer_id"])
    published, columns, checked = to_published_mart(
        "customer_360", frame, MART_COLUMNS["customer_360"], suite, settings
    )
    pd.testing.assert_frame_equal(published, frame)
    assert columns == MART_COLUMNS["customer_360"]
    assert checked == suite


def test_hash_renames_to_sha256_columns_of_text_and_keeps_nulls():
    settings = PiiSettings(email="hash")
    suite = _suite("marketing_audiences", ["customer_id", "audience", "email"])
    frame, columns, checked = to_published_mart(
        "marketing_audiences", _audiences(), MART_COLUMNS["marketing_audiences"], suite, settings
    )
    assert "email" not in frame.columns
    assert list(frame["email_sha256"][:2]) == [_digest("jane.doe@example.com"), _digest("bo@shop.de")]
    assert pd.isna(frame["email_sha256"][2])
    declared = {c.name: c for c in columns}
    assert "email" not in declared and declared["email_sha256"].dtype == "string"
    # The contract checks the published column: not null on email becomes not null on email_sha256.
    assert "email_sha256" in {c for r in checked.rules for c in r.columns}
    assert "email_sha256" in checked.rule("columns_present").kwargs["column_set"]


def test_mask_keeps_the_names_and_shows_only_what_cannot_reach_anybody():
    settings = PiiSettings(name="mask", email="mask", phone="mask", birth_date="mask", address="mask")
    frame, columns, _ = to_published_mart(
        "customer_360", _profile(), MART_COLUMNS["customer_360"], _suite("customer_360", ["customer_id"]), settings
    )
    assert frame.loc[0, "first_name"] == "Z." and pd.isna(frame.loc[1, "first_name"])
    assert frame.loc[0, "last_name"] == "V."
    assert frame.loc[0, "email"] == "j***@example.com" and pd.isna(frame.loc[1, "email"])
    assert list(frame["phone"]) == ["+49 *** ** 56", "+1 *** ** 23"]
    assert frame.loc[0, "date_of_birth"] == "1984" and pd.isna(frame.loc[1, "date_of_birth"])
    assert frame.loc[0, "address_line1"] == "***" and pd.isna(frame.loc[1, "address_line1"])
    assert list(frame["postcode"]) == ["10***", "SW***"]
    assert list(frame["city"]) == ["Berlin", "London"]  # the coarse location stays
    declared = {c.name: c for c in columns}
    assert all(declared[n].dtype == "string" for n in PII_COLUMNS)


def test_drop_removes_the_columns_and_the_rules_on_them():
    settings = PiiSettings(email="drop", name="drop")
    suite = _suite("marketing_audiences", ["customer_id", "audience", "email"])
    frame, columns, checked = to_published_mart(
        "marketing_audiences", _audiences(), MART_COLUMNS["marketing_audiences"], suite, settings
    )
    assert "email" not in frame.columns and "email" not in {c.name for c in columns}
    assert all("email" not in r.columns for r in checked.rules)
    assert "email" not in checked.rule("columns_present").kwargs["column_set"]
    assert [r.name for r in checked.rules if r.name.startswith("not_null")] == [
        r.name for r in suite.rules if r.name.startswith("not_null") and "email" not in r.columns
    ]


def test_a_mart_override_wins_over_the_class():
    settings = PiiSettings(email="drop", marts={"marketing_audiences": {"email": "hash"}})
    assert settings.mode("marketing_audiences", "email") == "hash"
    assert settings.mode("customer_360", "email") == "drop"
    assert settings.mode("customer_360", "phone") == "keep"


def test_every_class_is_held_by_customer_360_and_email_by_the_audiences():
    marts = pii_marts()
    assert set(marts) == {"customer_360", "marketing_audiences"}
    assert {PII_COLUMNS[c] for c in marts["customer_360"]} == set(PII_CLASSES)
    assert marts["marketing_audiences"] == ("email",)


def _config(pii: dict) -> dict:
    return {
        "sources": [
            {
                "name": "crm",
                "connector": {"type": "csv"},
                "entities": {
                    "customers": {"path": "contacts.csv", "columns": {"source_record_id": "id", "email": "email"}}
                },
            }
        ],
        "pii": pii,
    }


def test_configuration_names_the_bad_field():
    assert (
        config_from_dict(_config({"email": "hash", "marts": {"marketing_audiences": {"email": "keep"}}})).pii.mode(
            "marketing_audiences", "email"
        )
        == "keep"
    )
    with pytest.raises(ConfigError, match="pii"):
        config_from_dict(_config({"email": "encrypt"}))
    with pytest.raises(ConfigError, match="crm_kpis"):
        config_from_dict(_config({"marts": {"crm_kpis": {"email": "drop"}}}))
    with pytest.raises(ConfigError, match="pii"):
        config_from_dict(_config({"social_security": "drop"}))
