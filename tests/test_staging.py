"""Staging on small hand-made raw frames: typing, normalization, quarantine, reconciliation."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from typing import Any

import pandas as pd
import phonenumbers
import pytest
import yaml
from email_validator import EmailNotValidError, validate_email

from crm_pipelines.config import CrmConfig, config_from_dict
from crm_pipelines.schema import (
    CUSTOMER_IDENTIFIERS_COLUMNS,
    ENTITIES,
    QUARANTINE_COLUMNS,
    RECONCILIATION_COLUMNS,
    STAGING,
)
from crm_pipelines.staging import values as values_module
from crm_pipelines.staging.contacts import EmailNormalizer, email_verdicts
from crm_pipelines.staging.phones import phone_keys, phone_verdict, phone_verdicts
from crm_pipelines.staging.references import customer_reference, referenced_customers
from crm_pipelines.staging.rejections import FIELD_NULLED
from crm_pipelines.staging.rules import FIELD_LEVEL_COLUMNS
from crm_pipelines.staging.stage import StagingResult, stage_entity
from crm_pipelines.staging.values import (
    PLACEHOLDER_SPELLINGS,
    PLACEHOLDERS,
    PYTHON_WHITESPACE,
    clean_text,
    collapse_whitespace,
    replace_regex,
)

AS_OF_END = dt.datetime(2024, 6, 30, 23, 59, 59, tzinfo=dt.UTC)
NOW = dt.datetime(2024, 7, 1, 2, 0, tzinfo=dt.UTC)
INGESTED = pd.Timestamp("2024-07-01 01:00", tz="UTC")

CONFIG = """
fx_rates: {EUR: 1.0, USD: 0.5}
default_country: DE
sources:
  - name: crm
    connector: {type: csv}
    default_country: AT
    entities:
      customers:
        path: c.csv
        timezone: Europe/Berlin
        identifiers: {loyalty_card: Card}
        columns: {source_record_id: Id, first_name: First, last_name: Last, email: Mail, phone: Tel,
                  date_of_birth: Born, gender: Sex, postcode: Zip, country: Land, created_at: Created}
  - name: shop
    connector: {type: csv}
    entities:
      customers: {path: c.csv, columns: {source_record_id: id, email: email}}
      orders:
        path: o.csv
        columns: {order_id: id, source_customer_id: customer, ordered_at: at, status: status,
                  currency: cur, total_amount: total}
      order_items:
        path: i.csv
        columns: {order_id: order, product_id: sku, quantity: qty, unit_price: price}
  - name: desk
    connector: {type: csv}
    entities:
      support_tickets:
        path: t.csv
        customer_source: shop
        timestamp_format: "%d.%m.%Y %H:%M"
        timezone: Europe/Berlin
        columns: {ticket_id: id, source_customer_id: shop_account, requester_email: from, opened_at: opened,
                  first_response_at: answered, resolved_at: solved, status: state, channel: via,
                  satisfaction_score: csat}
  - name: mail
    connector: {type: csv}
    entities:
      subscriptions:
        path: s.csv
        columns: {subscription_id: id, email: email, list_name: list, consent_status: consent, consent_at: at}
      campaign_events:
        path: e.csv
        columns: {event_id: id, email: email, campaign_id: campaign, event_type: type, occurred_at: at}
      survey_responses:
        path: r.csv
        columns: {response_id: id, email: email, nps_score: nps, responded_at: at}
"""


@pytest.fixture(scope="module")
def config() -> CrmConfig:
    return config_from_dict(yaml.safe_load(CONFIG))


def raw(rows: list[dict[str, Any]], source: str, batch: str = "b1", ingested: Any = INGESTED) -> pd.DataFrame:
    """A raw table as ingest writes it: text values plus lineage columns."""
    frame = pd.DataFrame(rows).astype("str")
    frame["_source"] = source
    frame["_ingested_at"] = ingested
    frame["_batch_id"] = batch
    frame["_partition_date"] = None
    return frame


def stage(config: CrmConfig, entity: str, source: str, rows: list[dict[str, Any]]) -> StagingResult:
    frame = raw(rows, source)
    return stage_entity(config, entity, [(config.source(source), frame)], run_id="run-1", as_of_end=AS_OF_END, now=NOW)


def customer(**values: Any) -> dict[str, Any]:
    return {
        "Id": "c1",
        "First": "Anna",
        "Last": "Berg",
        "Mail": "anna@example.com",
        "Tel": None,
        "Born": None,
        "Sex": None,
        "Zip": None,
        "Land": "DE",
        "Created": "2024-01-01 10:00",
        "Card": None,
        **values,
    }


def order(**values: Any) -> dict[str, Any]:
    return {
        "id": "o1",
        "customer": "s1",
        "at": "2024-03-01T10:00:00Z",
        "status": "paid",
        "cur": "EUR",
        "total": "10.00",
        **values,
    }


def ticket(**values: Any) -> dict[str, Any]:
    return {
        "id": "t1",
        "shop_account": None,
        "from": "kim@example.com",
        "opened": "01.03.2024 10:00",
        "answered": None,
        "solved": None,
        "state": "open",
        "via": "Email",
        "csat": None,
        **values,
    }


def item(**values: Any) -> dict[str, Any]:
    return {"order": "o1", "sku": "p1", "qty": "1", "price": "1", **values}


def assert_reconciles(result: StagingResult) -> None:
    recon = result.reconciliation
    assert recon["reconciles"].all()
    counted = recon["rows_out"] + recon["rows_quarantined"] + recon["rows_superseded"]
    assert (recon["rows_in"] == counted).all()
    assert recon["rows_out"].sum() == len(result.staged)
    rows_quarantined = ~result.quarantined["reason"].str.endswith(FIELD_NULLED)
    assert recon["rows_quarantined"].sum() == rows_quarantined.sum()


# -- normalization --------------------------------------------------------------------------------
def test_customer_fields_are_normalized(config: CrmConfig) -> None:
    rows = [
        customer(
            Id="c1",
            First="  ANNA  MARIA ",
            Last="VAN DER BERG",
            Mail="  Anna.Berg@Example.COM ",
            Tel="030 1234567",
            Land="Deutschland",
            Sex="w",
            Zip=" sw1a  1aa ",
        ),
        customer(
            Id="c2",
            First="jürgen",
            Last="McDonald",
            Mail="x@b\u00fccher.de",
            Tel="+49 (0)30 123-4567",
            Land="germany",
            Sex="männlich",
        ),
        customer(Id="c3", First="Ma\u0301ria", Last="van der Berg", Tel="0049 30 1234567", Land="DEU", Sex="D"),
        customer(Id="c4", Tel="(030) 12 34 567", Land="de", Sex="female"),
        customer(Id="c5", Tel="+4930/1234567", Land="UK", Sex="?"),
        customer(Id="c6", Tel="0664.123.4567", Land="Österreich", Sex="Keine Angabe"),
        customer(Id="c7", Tel="0664/1234567", Land=None),  # crm's default country: Austria
        customer(Id="c8", Tel="650-253-0000", Land="USA"),
        customer(Id="c9", Land="Schweiz"),
        customer(Id="c10", Land="England"),
        customer(Id="c11", Land="D"),
    ]
    result = stage(config, "customers", "crm", rows)
    staged = result.staged.set_index("source_record_id")
    assert result.quarantined.empty
    assert staged.loc["c1", ["first_name", "last_name", "email", "postcode", "gender"]].tolist() == [
        "Anna Maria",
        "Van der Berg",
        "anna.berg@example.com",
        "SW1A 1AA",
        "female",
    ]
    assert staged.loc["c2", ["first_name", "last_name", "email", "gender"]].tolist() == [
        "Jürgen",
        "McDonald",
        "x@bücher.de",
        "male",
    ]
    assert staged.loc["c3", "first_name"] == "M\u00e1ria"  # NFC: one code point for the accented a
    assert staged.loc["c3", "last_name"] == "van der Berg"
    assert staged.loc[["c1", "c2", "c3", "c4"], "phone"].tolist() == ["+49301234567"] * 4
    assert staged.loc["c5", "phone"] == "+49301234567"  # international: the UK country does not matter
    assert staged.loc[["c6", "c7"], "phone"].tolist() == ["+436641234567"] * 2
    assert staged.loc["c8", "phone"] == "+16502530000"
    countries = staged["country"].fillna("").tolist()
    assert countries == ["DE", "DE", "DE", "DE", "GB", "AT", "", "US", "CH", "GB", "DE"]
    genders = staged.loc[["c3", "c5", "c6", "c7"], "gender"].fillna("-").tolist()
    assert genders == ["other", "-", "unknown", "-"]
    assert (staged["record_kind"] == "record").all()
    assert result.summary["values_normalized"]["email"] == 1
    assert result.summary["values_normalized"]["country"] == 10


def test_phone_formats_of_one_number_meet_in_e164(config: CrmConfig) -> None:
    formats = [
        "030 1234567",
        "030-1234567",
        "(030) 1234567",
        "+49 30 1234567",
        "0049 30 1234567",
        "+49 (0)30 1234567",
        "030/123 45 67",
        "+49-30-123-4567",
    ]
    rows = [customer(Id=f"c{i}", Tel=phone, Land="DE") for i, phone in enumerate(formats)]
    staged = stage(config, "customers", "crm", rows).staged
    assert staged["phone"].tolist() == ["+49301234567"] * len(formats)


def test_junk_values_are_nulled_not_quarantined(config: CrmConfig) -> None:
    junk_emails = ["test@test.com", "noemail@shop.de", "NONE@firma.de", "n/a", "-", "no-reply@x.com"]
    junk_phones = ["0000000000", "1234567890", "+49 1111111", "-", "999999", "0987654321"]
    pairs = zip(junk_emails, junk_phones, strict=True)
    rows = [customer(Id=f"c{i}", Mail=m, Tel=p) for i, (m, p) in enumerate(pairs)]
    result = stage(config, "customers", "crm", rows)
    assert result.quarantined.empty
    assert result.staged["email"].isna().all()
    assert result.staged["phone"].isna().all()
    assert result.summary["junk_nulled"] == {"email": 6, "phone": 6}


def test_email_fast_path_agrees_with_email_validator() -> None:
    addresses = [
        "a@example.com",
        "b.c@example.com",
        "d+tag@example.com",
        "first.last@sub.example.com",
        "x..y@example.com",
        ".x@example.com",
        "x.@example.com",
        "x@example.com.",
        "x@-example.com",
        "o'brien@example.com",
        "jörg@example.com",
        "a@example.c",
        "a@example.123",
        "a" * 65 + "@example.com",
        "a@foo.test",
        "b@foo.test",
        "c@localhost",
    ]
    normalizer = EmailNormalizer()
    normalizer("warm@example.com")  # the domain has passed: later plain addresses take the fast path
    normalizer("warm@sub.example.com")
    for address in addresses:
        try:
            expected: str | None = validate_email(address, check_deliverability=False).normalized.lower()
        except EmailNotValidError:
            expected = None
        verdict = normalizer(address)
        assert verdict.value == expected, address
        assert (verdict.problem is None) == (expected is not None), address


def test_emails_judged_in_bulk_get_the_verdicts_of_one_by_one() -> None:
    rng = random.Random(7)
    addresses = [
        "a@example.com", "A@Example.COM", " a@example.com ", "b@example.com", "noemail@shop.com",
        "NoEmail@example.com", "x@test.com", "dummy@EXAMPLE.com", "x..y@example.com", "jörg@example.com",
        "jörg@exämple.com", "a@example.c", "a" * 65 + "@example.com", "c@localhost", "@example.com",
        "plain", "two@at@example.com", "tab\t@example.com", "a@foo.test", "b@foo.test", "İ@example.com",
        "first.last@sub.example.com", "\x1fa@example.com", "o'brien@example.com",
    ]
    pool = "abcXYZ019._%+-@ '"
    for _ in range(400):
        local = "".join(rng.choice(pool) for _ in range(rng.randint(1, 16)))
        addresses.append(local + rng.choice(["@gmail.com", "@web.de", ""]))
    distinct = list(dict.fromkeys(addresses))
    normalizer = EmailNormalizer()
    assert email_verdicts(distinct).as_list() == [normalizer(address) for address in distinct]


def test_phone_shortcut_agrees_with_a_full_parse() -> None:
    rng = random.Random(5)
    regions = ["DE", "AT", "CH", "GB", "US", "FR", "IT", "NL", "ES", "PL", "RU", "BR", "JP", "AU", "IN"]
    numbers, number_regions = [], []
    for region in regions:
        code = phonenumbers.country_code_for_region(region)
        examples = [
            phonenumbers.format_number(example, style)
            for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE)
            if (example := phonenumbers.example_number_for_type(region, kind)) is not None
            for style in (phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.E164)
        ]
        for _ in range(100):
            digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(3, 13)))
            examples += ["0" + digits, "00" + digits, digits, f"+{code}{digits}", f"+{code}0{digits}"]
        numbers += examples
        number_regions += [region] * len(examples)
    keys = phone_keys(pd.Series(numbers, dtype="str"), pd.Series(number_regions, dtype="str"))
    valid = 0
    for key, number in zip(keys, numbers, strict=True):
        verdict = phone_verdict(key)
        if verdict.junk:
            continue
        compact, _, region = key.partition("\x1f")
        try:
            parsed = phonenumbers.parse(compact, region or None)
            expected = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            if not phonenumbers.is_valid_number(parsed):
                expected = None
        except phonenumbers.NumberParseException:
            expected = None
        assert verdict.value == expected, (region, number)
        valid += expected is not None
    assert valid > 500


def test_arrow_whitespace_rules_match_pythons() -> None:
    # Arrow's RE2 knows only ASCII white space as \s: collapse_whitespace and phone_keys name Python's.
    assert PYTHON_WHITESPACE == "".join(c for c in map(chr, range(0x110000)) if re.fullmatch(r"\s", c))
    rng = random.Random(3)
    pool = [*PYTHON_WHITESPACE, *"ab0-./()+\u200bü\x00"]
    values = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 10))) for _ in range(3000)]
    text = pd.Series([*values, None], dtype="str")
    assert collapse_whitespace(text).equals(text.map(lambda v: re.sub(r"\s+", " ", v), na_action="ignore"))
    keys = phone_keys(text, pd.Series("DE", index=text.index, dtype="str"))
    compact = text.map(lambda v: re.sub(r"[\s\-./()]", "", v), na_action="ignore")
    assert keys.str.partition("\x1f")[0].equals(compact.mask(compact.str.startswith("00"), "+" + compact.str.slice(2)))


def test_placeholder_spellings_are_every_text_lowering_to_a_placeholder() -> None:
    # clean_text looks the spellings up instead of lowering the column: every code point that lowers to
    # a placeholder's character must be among the spellings, and each spelling must lower to one.
    every = pd.Series([c for c in map(chr, range(0x110000)) if not 0xD800 <= ord(c) < 0xE000], dtype="str")
    letters = set("".join(PLACEHOLDERS))
    lowering = {c for c, low in zip(every, every.str.lower(), strict=True) if low in letters}
    assert lowering == {c for s in PLACEHOLDER_SPELLINGS for c in s}
    assert set(pd.Series(sorted(PLACEHOLDER_SPELLINGS), dtype="str").str.lower()) == PLACEHOLDERS
    rng = random.Random(5)
    pool = sorted(lowering) + [" ", "x", "\u3000"]
    values = [*PLACEHOLDERS, *("".join(rng.choice(pool) for _ in range(rng.randint(0, 7))) for _ in range(20000))]
    text = pd.Series([*values, None], dtype="str")
    stripped = text.str.strip()
    lowered = stripped.str.lower().isin(PLACEHOLDERS)
    cleaned, placeholders = clean_text(text)
    assert cleaned.equals(stripped.mask(stripped.eq("") | lowered))
    assert placeholders == int(lowered.sum()) > len(PLACEHOLDERS)


def test_timestamp_patterns_in_arrow_match_pythons() -> None:
    # RE2 spells Python's \d, \s and $ differently: the patterns parse_timestamps runs in Arrow.
    rng = random.Random(4)
    digits = [*"0123456789", "\u0663", "\uff11", "x"]  # Arabic-Indic and full-width digits are \d in Python

    def some(count: int) -> str:
        return "".join(rng.choice(digits) for _ in range(count))

    values = []
    for _ in range(5000):
        time = f"{rng.choice('T x')}{some(rng.randint(1, 2))}:{some(2)}"
        time += rng.choice(["", f":{some(2)}", f":{some(2)}{rng.choice('.,')}{some(rng.randint(1, 10))}"])
        zone = rng.choice(["Z", "z", f"+{some(2)}:{some(2)}", f"-{some(4)}", f"+{some(2)}", "", "+2:00"])
        space = rng.choice(["", " ", "\xa0", "\u3000", "\t"])
        values.append(f"2024-03-05{time}{space}{zone}{rng.choice(['', '', chr(10), chr(10) * 2, ' '])}")
    text = pd.Series(values, dtype="str")
    python_zone = r"[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
    zoned = values_module._matches(text, values_module._ZONE_SUFFIX)
    assert zoned.tolist() == [re.search(python_zone, v) is not None for v in values]
    assert zoned.sum() > 50
    cut = replace_regex(text, values_module._SUB_MICROSECONDS, r"\1")
    assert cut.tolist() == [re.sub(r"([.,]\d{6})\d+", r"\1", v) for v in values]
    assert (cut != text).sum() > 50


def _full_parse_verdict(key: str):
    """The E.164 value ``phonenumbers.parse`` and ``is_valid_number`` alone give a key (None: invalid)."""
    compact, _, region = key.partition("\x1f")
    try:
        parsed = phonenumbers.parse(compact, region or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _changed_digits(national: str, rng: random.Random) -> str:
    """``national`` with one digit changed, and in about 30% of cases one dropped or added at the end."""
    digits = list(national)
    digits[rng.randrange(len(digits))] = rng.choice("0123456789")
    if rng.random() < 0.3:
        digits = digits[:-1] if rng.random() < 0.5 else [*digits, rng.choice("0123456789")]
    return "".join(digits)


def _example_numbers(kinds, *, repeats: int, seed: int, shapes) -> tuple[list[str], list[str]]:
    """Every region's example number of each of ``kinds``, ``repeats`` times with digits changed
    (:func:`_changed_digits`), written in each of the ``shapes(code, trunk, national, changed)``;
    with the region of each number."""
    rng = random.Random(seed)
    numbers, regions = [], []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        code, trunk = metadata.country_code, metadata.national_prefix or ""
        for kind in kinds:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            national = str(example.national_number)
            for _ in range(repeats):
                shaped = shapes(code, trunk, national, _changed_digits(national, rng))
                numbers += shaped
                regions += [region] * len(shaped)
    return numbers, regions


def test_phone_split_agrees_with_a_full_parse_in_every_region() -> None:
    # The shapes the split takes without a parse: national numbers with and without their trunk
    # prefix, numbers that start with the region's own country code, +<code> with a trunk prefix
    # after it ("+49 (0)30 ..."), with digits changed, dropped and added, in every region.
    numbers, number_regions = _example_numbers(
        (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE),
        repeats=3,
        seed=23,
        shapes=lambda code, trunk, national, changed: (
            national, changed, f"{trunk}{changed}", f"{code}{changed}", f"{code}{trunk}{changed}",
            f"+{code}{trunk}{changed}", f"+{code}{changed}",
        ),
    )
    keys = list(phone_keys(pd.Series(numbers, dtype="str"), pd.Series(number_regions, dtype="str")).unique())
    bulk = phone_verdicts(keys).as_list()
    expected = [_full_parse_verdict(key) for key in keys]
    compared = [(key, v.value, e) for key, v, e in zip(keys, bulk, expected, strict=True) if not v.junk]
    assert [(k, v) for k, v, _ in compared] == [(k, e) for k, _, e in compared]
    assert sum(e is not None for _, _, e in compared) > 2000


def test_phones_judged_in_bulk_get_the_verdicts_of_one_by_one() -> None:
    # Every region's example numbers, written nationally and internationally, with digits changed,
    # dropped and added: the bulk path validates the plain splits with the metadata patterns in Arrow.
    numbers, number_regions = _example_numbers(
        range(12),
        repeats=4,
        seed=11,
        shapes=lambda code, _trunk, national, changed: (
            national, changed, f"0{changed}", f"+{code}{changed}", f"+{code}0{changed}",
        ),
    )
    numbers += ["0000000", "+49 1234567890", "030 123456", "٠٣٠١٢٣٤٥٦٧", "+1 212 555 0100", "+44 7911 123456"]
    number_regions += ["DE", "", "DE", "DE", "", ""]
    keys = list(phone_keys(pd.Series(numbers, dtype="str"), pd.Series(number_regions, dtype="str")).unique())
    one_by_one = [phone_verdict(key) for key in keys]
    assert phone_verdicts(keys).as_list() == one_by_one
    assert sum(v.value is not None for v in one_by_one) > 2000
    assert any(v.junk for v in one_by_one) and any(v.problem for v in one_by_one)


def test_order_status_currency_and_refunds(config: CrmConfig) -> None:
    rows = [
        order(id="o1", status="Shipped", cur="usd", total="100"),
        order(id="o2", status="canceled"),
        order(id="o3", status="Returned", total="-10"),
        order(id="o4", status="refund", total="10"),
        order(id="o5", status="Processing"),
        order(id="o6", status="lost in space", cur=None),
    ]
    result = stage(config, "orders", "shop", rows)
    staged = result.staged.set_index("order_id")
    assert staged["status"].tolist() == ["completed", "cancelled", "refunded", "refunded", "pending", "other"]
    assert staged["currency"].tolist() == ["USD", "EUR", "EUR", "EUR", "EUR", "EUR"]
    assert staged.loc["o1", "total_amount_reporting"] == 50.0
    assert staged["is_refund"].tolist() == [False, False, True, True, False, False]
    assert result.summary["defaults_applied"] == {"currency": 1}


def test_declared_status_default_makes_every_order_a_purchase(config: CrmConfig) -> None:
    data = yaml.safe_load(CONFIG)
    shop_orders = data["sources"][1]["entities"]["orders"]
    del shop_orders["columns"]["status"]
    shop_orders["defaults"] = {"status": "completed"}
    result = stage(config_from_dict(data), "orders", "shop", [order(id="o1"), order(id="o2", status=None)])
    assert result.staged["status"].tolist() == ["completed", "completed"]
    assert len(result.quarantined) == 0


def test_order_items_derive_item_id_and_line_amount(config: CrmConfig) -> None:
    rows = [item(sku="p1", qty="3", price="2.50"), item(sku="p2", qty="2.0"), item(sku="p3", qty=None)]
    staged = stage(config, "order_items", "shop", rows).staged
    assert staged["item_id"].tolist() == ["o1:p1", "o1:p2", "o1:p3"]
    assert staged["quantity"].tolist()[:2] == [3, 2]
    assert staged["line_amount"].tolist()[:2] == [7.5, 2.0]
    assert pd.isna(staged["line_amount"].iloc[2])


def test_returned_units_are_negative_lines_not_rejects(config: CrmConfig) -> None:
    result = stage(config, "order_items", "shop", [item(order="credit-1", sku="p1", qty="-2", price="4.5")])
    assert result.quarantined.empty
    assert result.staged["quantity"].tolist() == [-2]
    assert result.staged["line_amount"].tolist() == [-9.0]


def test_vocabularies_of_tickets_subscriptions_events(config: CrmConfig) -> None:
    rows = [ticket(id="t1", state="Solved", via="PHONE"), ticket(id="t2", state="on hold")]
    tickets = stage(config, "support_tickets", "desk", rows).staged
    assert tickets["status"].tolist() == ["resolved", "pending"]
    assert tickets["channel"].tolist() == ["phone", "email"]

    consents = ["granted", "Opt-In", "opted_in", "YES", "true", "withdrawn", "revoked", "opt-out", "no", "unconfirmed"]
    rows = [
        {"id": f"s{i}", "email": "a@example.com", "list": "news", "consent": c, "at": "2024-01-01"}
        for i, c in enumerate(consents)
    ]
    subscriptions = stage(config, "subscriptions", "mail", rows).staged
    expected = ["subscribed"] * 5 + ["unsubscribed"] * 4 + ["pending"]
    assert subscriptions["consent_status"].tolist() == expected

    kinds = ["opened", "clicked", "delivered", "unsubscribed", "bounced", "hard_bounce", "Soft Bounce"]
    rows = [
        {"id": f"e{i}", "email": "a@example.com", "campaign": "c1", "type": k, "at": "2024-01-01"}
        for i, k in enumerate(kinds)
    ]
    events = stage(config, "campaign_events", "mail", rows).staged
    expected = ["open", "click", "sent", "unsubscribe", "bounce", "bounce", "bounce"]
    assert events["event_type"].tolist() == expected


# -- quarantine -------------------------------------------------------------------------------------
def case(entity: str, source: str, row: dict[str, Any], rule: str, column: str, reason: str) -> Any:
    return pytest.param(entity, source, row, rule, column, reason, id=f"{entity}-{rule}-{column}")


def subscription(**values: Any) -> dict[str, Any]:
    return {"id": "s1", "email": "a@example.com", "list": "x", "consent": "yes", "at": None, **values}


def survey(**values: Any) -> dict[str, Any]:
    return {"id": "r1", "email": "a@example.com", "nps": "9", "at": "2024-01-01", **values}


QUARANTINE_CASES = [
    case("customers", "crm", customer(Id=" "), "missing_record_id", "source_record_id", "is missing"),
    case("orders", "shop", order(customer="n/a"), "missing_required", "source_customer_id", "is missing"),
    case("orders", "shop", order(at="yesterday"), "invalid_timestamp", "ordered_at", "'yesterday' is not a timestamp"),
    case("orders", "shop", order(at="0001-01-01"), "invalid_timestamp", "ordered_at", "is before 1900-01-01"),
    case("orders", "shop", order(total="12,50"), "invalid_number", "total_amount", "'12,50' is not a number"),
    case("customers", "crm", customer(Born="31/02/1980"), "invalid_date", "date_of_birth", "'31/02/1980'"),
    case("customers", "crm", customer(Born="1980-02-30"), "invalid_date", "date_of_birth", "'1980-02-30'"),
    case(
        "orders",
        "shop",
        order(at="2024-07-01T00:00:00Z"),
        "future_date",
        "ordered_at",
        "later than the run's as-of end",
    ),
    case(
        "customers",
        "crm",
        customer(Born="1850-01-01"),
        "implausible_birth_date",
        "date_of_birth",
        "'1850-01-01' is before 1900-01-01",
    ),
    case("customers", "crm", customer(Born="2024-08-01"), "implausible_birth_date", "date_of_birth", "'2024-08-01'"),
    case(
        "customers",
        "crm",
        customer(Mail="anna@@example"),
        "invalid_email",
        "email",
        "'anna@@example' is not a valid email address",
    ),
    case("customers", "crm", customer(Tel="12"), "invalid_phone", "phone", "'12' is not a"),
    case(
        "customers",
        "crm",
        customer(Tel="+49 30"),
        "invalid_phone",
        "phone",
        "'+49 30' is not a valid phone number for country code +49",
    ),
    case(
        "customers", "crm", customer(Land="Atlantis"), "unknown_country", "country", "'Atlantis' is not a known country"
    ),
    case("orders", "shop", order(cur="GBP"), "unknown_currency", "currency", "'GBP' has no rate in fx_rates"),
    case(
        "orders",
        "shop",
        order(total="-5"),
        "negative_amount",
        "total_amount",
        "'-5' is negative but the order is not refunded",
    ),
    case("order_items", "shop", item(sku=None), "missing_record_id", "item_id", "derived from order_id and"),
    case("order_items", "shop", item(qty="1.5"), "invalid_quantity", "quantity", "'1.5' is not a whole number"),
    case("order_items", "shop", item(price="-2"), "negative_amount", "unit_price", "'-2' is negative"),
    case(
        "support_tickets",
        "desk",
        ticket(**{"from": "kim at example"}),
        "invalid_email",
        "requester_email",
        "'kim at example' is not a valid email address",
    ),
    case("support_tickets", "desk", ticket(csat="6"), "out_of_range", "satisfaction_score", "'6' is outside 1..5"),
    case(
        "support_tickets",
        "desk",
        ticket(solved="01.03.2024 09:00"),
        "inconsistent_timestamps",
        "resolved_at",
        "'01.03.2024 09:00' is before opened_at",
    ),
    case(
        "support_tickets",
        "desk",
        ticket(answered="29.02.2024 10:00"),
        "inconsistent_timestamps",
        "first_response_at",
        "is before opened_at",
    ),
    case(
        "support_tickets",
        "desk",
        ticket(state="escalated"),
        "unknown_value",
        "status",
        "'escalated' is not one of open, pending, resolved, closed",
    ),
    case(
        "subscriptions",
        "mail",
        subscription(consent="maybe"),
        "unknown_value",
        "consent_status",
        "'maybe' is not one of subscribed, unsubscribed, pending",
    ),
    case(
        "campaign_events",
        "mail",
        {"id": "e1", "email": None, "campaign": "c", "type": "fwd", "at": "2024"},
        "unknown_value",
        "event_type",
        "'fwd' is not one of sent, open, click, unsubscribe, bounce",
    ),
    case("survey_responses", "mail", survey(nps="11"), "out_of_range", "nps_score", "'11' is outside 0..10"),
    case("survey_responses", "mail", survey(nps="7.5"), "invalid_number", "nps_score", "'7.5' is not a whole number"),
]


@pytest.mark.parametrize(("entity", "source", "row", "rule", "column", "reason"), QUARANTINE_CASES)
def test_quarantine_rule(
    config: CrmConfig, entity: str, source: str, row: dict[str, Any], rule: str, column: str, reason: str
) -> None:
    result = stage(config, entity, source, [row])
    field_level = column in FIELD_LEVEL_COLUMNS.get(entity, ())
    if field_level:  # a malformed optional field is nulled; the record is staged
        assert len(result.staged) == 1 and pd.isna(result.staged[column].iloc[0])
    else:
        assert result.staged.empty
    assert len(result.quarantined) == 1
    rejected = result.quarantined.iloc[0]
    assert (rejected["rule"], rejected["column_name"]) == (rule, column)
    assert reason in rejected["reason"]
    lineage = rejected[["run_id", "layer", "entity", "source"]].tolist()
    assert lineage == ["run-1", "staging", entity, source]
    assert rejected["rejected_at"] == pd.Timestamp(NOW)
    assert json.loads(rejected["raw_values"]) == row
    counted = "fields_nulled_by_rule" if field_level else "quarantined_by_rule"
    assert result.summary[counted] == {rule: 1}
    assert rejected["reason"].endswith(FIELD_NULLED) == field_level
    assert_reconciles(result)


def test_a_row_fails_on_its_first_failing_rule_only(config: CrmConfig) -> None:
    rows = [
        order(id="o1", at="never", total="lots"),
        order(id="o2", total="lots", cur="EURO"),
    ]
    result = stage(config, "orders", "shop", rows)
    assert result.quarantined["rule"].tolist() == ["invalid_timestamp", "invalid_number"]
    assert result.quarantined["record_id"].tolist() == ["o1", "o2"]


def test_malformed_optional_customer_fields_are_nulled_and_quarantined_by_field(config: CrmConfig) -> None:
    rows = [
        customer(Created="never", Born="1850-01-01", Mail="bad@", Tel="12", Land="Atlantis"),
        customer(Id="c2", Born="1850-01-01", Mail="bad@", Tel="12", Land="Atlantis"),
        customer(Id="c3", Born="31/02/1980", Mail="ok@example.com", Land="Atlantis"),
    ]
    result = stage(config, "customers", "crm", rows)
    # A bad required value (created_at is typed for every record) still rejects c1, and only as a row.
    quarantined = result.quarantined
    assert quarantined.loc[quarantined["record_id"] == "c1", "rule"].tolist() == ["invalid_timestamp"]
    staged = result.staged.set_index("source_record_id")
    assert staged.index.tolist() == ["c2", "c3"]
    assert staged.loc["c2", ["email", "phone", "date_of_birth", "country"]].isna().all()
    assert staged.loc["c3", "email"] == "ok@example.com" and pd.isna(staged.loc["c3", "date_of_birth"])
    fields = quarantined[quarantined["reason"].str.endswith(FIELD_NULLED)]
    assert sorted(zip(fields["record_id"], fields["column_name"], strict=True)) == [
        ("c2", "country"), ("c2", "date_of_birth"), ("c2", "email"), ("c2", "phone"),
        ("c3", "country"), ("c3", "date_of_birth"),
    ]
    assert result.summary["fields_nulled_by_rule"] == {
        "implausible_birth_date": 1, "invalid_date": 1, "invalid_email": 1, "invalid_phone": 1, "unknown_country": 2,
    }
    assert_reconciles(result)


def test_raw_values_keep_source_names_and_drop_lineage(config: CrmConfig) -> None:
    extra = 'kept/too, "quoted" \\ and\nacross lines'
    result = stage(config, "customers", "crm", [customer(Mail="bad@", Extra=extra)])
    raw_values = result.quarantined["raw_values"].iloc[0]
    assert json.loads(raw_values) == {**customer(Mail="bad@"), "Extra": extra}
    assert "kept/too" in raw_values and "_batch_id" not in raw_values


def test_future_date_is_relative_to_as_of_end(config: CrmConfig) -> None:
    rows = [
        order(id="on-time", at="2024-06-30T23:59:59Z"),
        order(id="late", at="2024-07-01T00:00:00Z"),
        order(id="local-late", at="2024-07-01T01:30:00+02:00"),
    ]
    result = stage(config, "orders", "shop", rows)
    assert result.staged["order_id"].tolist() == ["on-time", "local-late"]
    assert result.quarantined["record_id"].tolist() == ["late"]


# -- versions and reconciliation -------------------------------------------------------------------
COUNTS = ["rows_in", "rows_out", "rows_quarantined", "rows_superseded"]


def test_latest_version_wins_and_older_ones_are_superseded(config: CrmConfig) -> None:
    frames = [
        raw([order(id="o1", total="1"), order(id="o2", total="1")], "shop", "b1", INGESTED),
        raw([order(id="o1", total="2")], "shop", "b2", INGESTED + pd.Timedelta(hours=1)),
        raw([order(id="o1", total="3")], "shop", "b0", INGESTED - pd.Timedelta(hours=1)),
        raw([order(id="o2", total="bad")], "shop", "b3", INGESTED),  # same load time, later batch id
    ]
    shuffled = pd.concat([frames[2], frames[1], frames[3], frames[0]], ignore_index=True)
    shop = config.source("shop")
    result = stage_entity(config, "orders", [(shop, shuffled)], run_id="r", as_of_end=AS_OF_END)
    assert result.staged.set_index("order_id")["total_amount"].to_dict() == {"o1": 2.0}
    assert result.quarantined["record_id"].tolist() == ["o2"]  # the newest o2 is invalid: no fallback
    assert result.reconciliation.iloc[0][COUNTS].tolist() == [5, 1, 1, 3]
    assert result.summary["rows_superseded"] == 3
    assert_reconciles(result)


def test_reconciliation_has_one_row_per_source(config: CrmConfig) -> None:
    crm_rows = [customer(Id="c1"), customer(Id="c1"), customer(Id="c2", Mail="bad@"), customer(Id=None)]
    shop_rows = [{"id": "s1", "email": "s1@example.com"}, {"id": "s2", "email": None}]
    raw_frames = [(config.source("crm"), raw(crm_rows, "crm")), (config.source("shop"), raw(shop_rows, "shop"))]
    result = stage_entity(config, "customers", raw_frames, run_id="r", as_of_end=AS_OF_END, now=NOW)
    recon = result.reconciliation.set_index("source")
    assert list(result.reconciliation.columns) == [c.name for c in RECONCILIATION_COLUMNS]
    # c2's bad email is nulled (a field-level quarantine entry, not a row): c2 is staged.
    assert recon.loc["crm", COUNTS].tolist() == [4, 2, 1, 1]
    assert recon.loc["shop", COUNTS].tolist() == [2, 2, 0, 0]
    assert (recon["layer"] == "staging").all() and (recon["table_name"] == "customers").all()
    assert (recon["recorded_at"] == pd.Timestamp(NOW)).all()
    assert_reconciles(result)
    assert result.summary["rows_in"] == 6 and result.summary["rows_staged"] == 4


# -- types and time zones ---------------------------------------------------------------------------
PANDAS_TYPES = {
    "string": "str",
    "timestamp": "datetime64[us, UTC]",
    "date": "object",
    "float": "float64",
    "integer": "Int64",
    "boolean": "boolean",
}


@pytest.mark.parametrize("entity", list(ENTITIES))
def test_staged_frames_have_schema_columns_and_types(config: CrmConfig, entity: str) -> None:
    source = next(s for s in config.sources if entity in s.entities)
    empty = raw([dict.fromkeys(source.entities[entity].columns.values())], source.name).iloc[:0]
    result = stage_entity(config, entity, [(source, empty)], run_id="r", as_of_end=AS_OF_END)
    for frame, schema_columns in [
        (result.staged, ENTITIES[entity].staged_columns),
        (result.quarantined, QUARANTINE_COLUMNS),
        (result.identifiers, CUSTOMER_IDENTIFIERS_COLUMNS),
        (result.reconciliation, RECONCILIATION_COLUMNS),
    ]:
        assert list(frame.columns) == [c.name for c in schema_columns]
        dtypes = [str(frame[c.name].dtype) for c in schema_columns]
        assert dtypes == [PANDAS_TYPES[c.dtype] for c in schema_columns]
    assert result.reconciliation[COUNTS].values.tolist() == [[0, 0, 0, 0]]


def test_timestamps_are_utc_and_naive_ones_use_the_source_timezone(config: CrmConfig) -> None:
    created = {
        "summer": "2024-06-01 12:00",  # CEST, +02:00
        "winter": "2024-01-15T12:00:00",  # CET, +01:00
        "offset": "2024-06-01T12:00:00-04:00",
        "zulu": "2024-06-01T12:00:00Z",
        "date": "2024-06-01",
        "skipped": "2024-03-31 02:30",  # clocks jump 02:00 -> 03:00: moves forward
        "repeated": "2023-10-29 02:30",  # happens twice: the standard-time reading
    }
    rows = [customer(Id=k, Created=v) for k, v in created.items()]
    staged = stage(config, "customers", "crm", rows).staged.set_index("source_record_id")["created_at"]
    assert str(staged.dtype) == "datetime64[us, UTC]"
    assert {k: v.isoformat() for k, v in staged.items()} == {
        "summer": "2024-06-01T10:00:00+00:00",
        "winter": "2024-01-15T11:00:00+00:00",
        "offset": "2024-06-01T16:00:00+00:00",
        "zulu": "2024-06-01T12:00:00+00:00",
        "date": "2024-05-31T22:00:00+00:00",
        "skipped": "2024-03-31T01:00:00+00:00",
        "repeated": "2023-10-29T01:30:00+00:00",
    }


def test_source_timestamp_format_with_iso_fallback(config: CrmConfig) -> None:
    rows = [ticket(id="t1", opened="05.03.2024 14:30"), ticket(id="t2", opened="2024-03-05T14:30:00+01:00")]
    staged = stage(config, "support_tickets", "desk", rows).staged
    assert staged["opened_at"].tolist() == [pd.Timestamp("2024-03-05 13:30", tz="UTC")] * 2


def test_dates_are_date_objects(config: CrmConfig) -> None:
    born = ["1980-05-17", "17.05.1980", "1980-05-17T00:00:00+02:00", None]
    rows = [customer(Id=f"c{i}", Born=b) for i, b in enumerate(born)]
    staged = stage(config, "customers", "crm", rows).staged
    assert staged["date_of_birth"].tolist() == [dt.date(1980, 5, 17)] * 3 + [None]


def test_identifiers_come_from_staged_customers_only(config: CrmConfig) -> None:
    quarantined = customer(Id="c3", Created="never", Card="x")
    rows = [customer(Id="c1", Card=" ab-12 "), customer(Id="c2", Card=""), quarantined]
    identifiers = stage(config, "customers", "crm", rows).identifiers
    assert identifiers.values.tolist() == [["crm", "c1", "loyalty_card", "AB-12"]]


def test_a_mapped_column_missing_from_raw_is_null_and_reported(config: CrmConfig) -> None:
    row = {k: v for k, v in customer().items() if k != "Zip"}
    result = stage(config, "customers", "crm", [row])
    assert len(result.staged) == 1 and result.staged["postcode"].isna().all()
    assert result.summary["mapped_columns_missing_from_raw"] == {"crm": ["Zip"]}


# -- referenced customers -----------------------------------------------------------------------------
def test_referenced_customers_and_customer_reference(config: CrmConfig) -> None:
    # s9's bad email is nulled; s9 itself is staged, so orders naming it need no stub.
    shop_rows = [{"id": "s1", "email": "s1@example.com"}, {"id": "s9", "email": "bad@"}]
    shop_customers = stage(config, "customers", "shop", shop_rows).staged
    orders = stage(
        config,
        "orders",
        "shop",
        [
            order(id="o1", customer="s1", at="2024-03-01T10:00:00Z"),
            order(id="o2", customer="s2", at="2024-03-05T10:00:00Z"),  # s2 was never delivered as a customer
            order(id="o3", customer="s2", at="2024-03-02T10:00:00Z"),
            order(id="o4", customer="s9", at="2024-03-02T10:00:00Z"),
        ],
    ).staged
    tickets = stage(
        config,
        "support_tickets",
        "desk",
        [
            ticket(id="t1", shop_account="s1"),  # the desk refers to shop accounts (customer_source: shop)
            ticket(id="t2", shop_account="s3", opened="02.03.2024 10:00"),
            ticket(id="t3", **{"from": " Kim@Example.com"}, opened="03.03.2024 10:00"),
            ticket(id="t4", **{"from": "kim@example.com"}, opened="01.03.2024 10:00"),
            ticket(id="t5", **{"from": None}),
        ],
    ).staged
    items = stage(config, "order_items", "shop", [item(order="o2"), item(order="o404")]).staged

    refs = customer_reference(config, "support_tickets", tickets)
    assert refs.index.equals(tickets.index)
    assert refs.fillna("-").values.tolist() == [
        ["shop", "s1"],
        ["shop", "s3"],
        ["desk", "email:kim@example.com"],
        ["desk", "email:kim@example.com"],
        ["-", "-"],
    ]
    item_refs = customer_reference(config, "order_items", items, orders=orders)
    assert item_refs.fillna("-").values.tolist() == [["shop", "s2"], ["-", "-"]]
    with pytest.raises(ValueError, match="pass the staged orders"):
        customer_reference(config, "order_items", items)

    subscribed = [subscription(at="2024-02-01", email="Kim@example.com")]
    subscriptions = stage(config, "subscriptions", "mail", subscribed).staged
    staged = {"orders": orders, "support_tickets": tickets, "order_items": items}
    staged["subscriptions"] = subscriptions
    stubs = referenced_customers(config, staged, shop_customers)
    assert list(stubs.columns) == [c.name for c in ENTITIES["customers"].staged_columns]
    assert [str(stubs[c].dtype) for c in stubs.columns] == [
        PANDAS_TYPES[c.dtype] for c in ENTITIES["customers"].staged_columns
    ]
    assert (stubs["record_kind"] == "referenced").all()
    by_key = stubs.set_index(["source", "source_record_id"])
    kim = ("desk", "email:kim@example.com")
    mail_kim = ("mail", "email:kim@example.com")  # same person, other source: identity matching joins them
    assert by_key.index.tolist() == [kim, mail_kim, ("shop", "s2"), ("shop", "s3")]
    assert by_key.loc[mail_kim, "created_at"] == pd.Timestamp("2024-02-01", tz="UTC")
    assert by_key.loc[("shop", "s2"), "created_at"] == pd.Timestamp("2024-03-02 10:00", tz="UTC")
    assert by_key.loc[kim, "email"] == "kim@example.com"
    assert by_key.loc[kim, "created_at"] == pd.Timestamp("2024-03-01 09:00", tz="UTC")
    assert by_key.loc[("shop", "s2")].drop(["created_at", "record_kind"]).isna().all()


def test_stubs_kept_in_sql_are_the_stubs_pandas_derives(config: CrmConfig, warehouse) -> None:
    """The nightly refresh of the stubs in the warehouse (references grouped per table first) gives
    exactly :func:`referenced_customers`: id and email references, a redirected customer source, earliest
    times, and no stub for a staged customer record."""
    import sqlalchemy as sa

    from crm_pipelines.staging_sql import refresh_referenced_customers

    customers = stage(config, "customers", "shop", [{"id": "s1", "email": "s1@example.com"}]).staged
    staged = {
        "orders": stage(config, "orders", "shop", [
            order(id="o1", customer="s1", at="2024-03-01T10:00:00Z"),
            order(id="o2", customer="s2", at="2024-03-05T10:00:00Z"),
            order(id="o3", customer="s2", at="2024-03-02T10:00:00Z"),
        ]).staged,
        "support_tickets": stage(config, "support_tickets", "desk", [
            ticket(id="t1", shop_account="s1"),
            ticket(id="t2", shop_account="s3", opened="02.03.2024 10:00"),
            ticket(id="t3", **{"from": " Kim@Example.com"}, opened="03.03.2024 10:00"),
            ticket(id="t4", **{"from": "kim@example.com"}, opened="01.03.2024 10:00"),
            ticket(id="t5", **{"from": None}),
        ]).staged,
        "subscriptions": stage(config, "subscriptions", "mail", [
            subscription(at="2024-02-01", email="Kim@example.com"),
        ]).staged,
    }
    for entity, frame in {"customers": customers, **staged}.items():
        types = {c.name: c.dtype for c in ENTITIES[entity].staged_columns}
        warehouse.write_table(frame, STAGING, entity, column_types=types)
    stale = {"source": ["shop"], "source_record_id": ["s7"], "record_kind": ["referenced"]}
    warehouse.write_table(pd.DataFrame(stale), STAGING, "customers", mode="append")
    with warehouse.connect() as conn:  # the stale stub goes; run again, the stubs stay as they are
        refresh_referenced_customers(conn, warehouse, config, list(staged))
        refresh_referenced_customers(conn, warehouse, config, list(staged))
    in_sql = warehouse.read_table(STAGING, "customers", where=sa.column("record_kind") == "referenced")
    expected = referenced_customers(config, staged, customers)
    columns = ["source", "source_record_id", "email", "created_at"]

    def ordered(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[columns].sort_values(columns[:2]).reset_index(drop=True)
        out["created_at"] = pd.to_datetime(out["created_at"], utc=True)
        return out.astype({"source": "string", "source_record_id": "string", "email": "string"})

    assert len(expected) == 4
    pd.testing.assert_frame_equal(ordered(in_sql), ordered(expected))


def test_referenced_customers_with_nothing_referenced(config: CrmConfig) -> None:
    customers = stage(config, "customers", "shop", [{"id": "s1", "email": None}]).staged
    orders = stage(config, "orders", "shop", [order(customer="s1")]).staged
    assert referenced_customers(config, {"orders": orders}, customers).empty
    assert referenced_customers(config, {}, customers).empty


def test_a_source_must_deliver_the_entity(config: CrmConfig) -> None:
    with pytest.raises(ValueError, match="source 'crm' does not deliver orders"):
        stage_entity(config, "orders", [(config.source("crm"), raw([order()], "crm"))], run_id="r", as_of_end=AS_OF_END)
