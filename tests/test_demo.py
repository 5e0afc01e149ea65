"""The demo generator: determinism, completeness, ground truth, messiness, behaviour, loaders, API, config."""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import phonenumbers
import pytest

from crm_pipelines.config import load_config
from crm_pipelines.demo.__main__ import main as demo_cli
from crm_pipelines.demo.generator import FILES, DemoManifest, generate
from crm_pipelines.demo.settings import Coverage, Messiness
from crm_pipelines.demo.shop_db import load_shop_database, shop_row_counts
from crm_pipelines.demo.support_api import serve_support_api

END = dt.date(2026, 11, 22)
END_TS = pd.Timestamp("2026-11-22 23:59:59", tz="UTC")
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DemoManifest:
    return generate(tmp_path_factory.mktemp("demo"), people=1000, seed=11, end_date=END)


def _csv(demo: DemoManifest, name: str) -> pd.DataFrame:
    return pd.read_csv(demo.out_dir / name, dtype=str, keep_default_na=False, na_values=[""])


def _tickets(demo: DemoManifest) -> list[dict]:
    return [json.loads(line) for line in (demo.out_dir / "support_tickets.jsonl").read_text().splitlines()]


def _shop(demo: DemoManifest, table: str) -> pd.DataFrame:
    with sqlite3.connect(demo.out_dir / "shop.sqlite") as conn:
        return pd.read_sql(f"SELECT * FROM {table}", conn)  # noqa: S608 - our own table names


def _time(values) -> pd.Series:
    return pd.to_datetime(pd.Series(values), utc=True, format="mixed")


def _normalized(email: str) -> str:
    return email.strip().lower()


def _truth(demo: DemoManifest) -> pd.DataFrame:
    return _csv(demo, "ground_truth.csv")


# --- files, counts, determinism -------------------------------------------------------------------


def test_writes_every_file_with_the_counted_rows(demo):
    assert set(demo.files) == set(FILES) and demo.is_complete()
    for name in FILES:
        if name.endswith(".csv"):
            assert len(_csv(demo, name)) == demo.counts[name] > 0, name
    assert len(_tickets(demo)) == demo.counts["support_tickets.jsonl"] > 0
    for table in ("customers", "orders", "order_items"):
        assert len(_shop(demo, table)) == demo.counts[f"shop.sqlite:{table}"] > 0
    assert DemoManifest.read(demo.out_dir) == demo


def test_scale_is_about_ten_orders_per_shop_customer(demo):
    orders_per_customer = demo.counts["shop.sqlite:orders"] / demo.counts["shop.sqlite:customers"]
    assert 7 <= orders_per_customer <= 14
    per_customer = _shop(demo, "orders").groupby("customer_id").size()
    assert (per_customer == 1).mean() > 0.15, "many one-off buyers"
    assert per_customer.max() > 50, "some very loyal buyers"
    events_per_subscriber = demo.counts["email_events.csv"] / demo.counts["email_subscribers.csv"]
    assert 4 <= events_per_subscriber <= 11


def test_same_seed_gives_identical_files(demo, tmp_path):
    again = generate(tmp_path / "again", people=1000, seed=11, end_date=END)
    for name in [*FILES, "manifest.json"]:
        assert (again.out_dir / name).read_bytes() == (demo.out_dir / name).read_bytes(), name
    other = generate(tmp_path / "other", people=1000, seed=12, end_date=END)
    assert (other.out_dir / "crm_contacts.csv").read_bytes() != (
        demo.out_dir / "crm_contacts.csv"
    ).read_bytes()


def test_cli_if_missing_keeps_a_complete_set(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["--out", str(out), "--people", "200", "--seed", "3", "--end-date", "2026-01-31", "--if-missing"]
    assert demo_cli(args) == 0
    written = (out / "crm_contacts.csv").stat().st_mtime_ns
    assert demo_cli(args) == 0
    assert "already there" in capsys.readouterr().out
    assert (out / "crm_contacts.csv").stat().st_mtime_ns == written
    (out / "email_events.csv").unlink()  # an incomplete set is generated again
    assert demo_cli(args) == 0 and (out / "email_events.csv").is_file()


def test_timestamps_end_on_end_date_except_the_deliberately_broken(demo):
    contacts, orders = _csv(demo, "crm_contacts.csv"), _shop(demo, "orders")
    future_contacts = (_time(contacts["created_at"]) > END_TS).sum()
    future_orders = (_time(orders["created_at"]) > END_TS).sum()
    assert 1 <= future_contacts <= 0.002 * len(contacts) + 1
    assert 1 <= future_orders <= 0.002 * len(orders) + 1
    assert (_time(orders["updated_at"]) <= END_TS).all()
    tickets = pd.DataFrame(_tickets(demo))
    for column in ("created_at", "first_response_at", "solved_at", "updated_at"):
        assert (_time(tickets[column].dropna()) <= END_TS).all(), column
    answered = tickets.dropna(subset=["first_response_at"])
    assert (_time(answered["first_response_at"]) >= _time(answered["created_at"])).all()
    # The newest tickets still wait for a fix (at 1,000 people a ticket without any first response
    # yet is down to chance, so only its consistency is checked).
    assert tickets["solved_at"].isna().any(), "the newest tickets wait for a fix"
    assert tickets[tickets["first_response_at"].isna()]["status"].isin(["open", "pending"]).all()
    for name, column in (
        ("email_events.csv", "occurred_at"),
        ("survey_responses.csv", "submitted_at"),
        ("crm_consents.csv", "changed_at"),
        ("email_subscribers.csv", "status_changed_at"),
    ):
        assert (_time(_csv(demo, name)[column]) <= END_TS).all(), name
    assert (_time(orders["created_at"]) > END_TS - pd.Timedelta(days=3 * 365)).mean() > 0.8


# --- ground truth ---------------------------------------------------------------------------------


def test_ground_truth_covers_every_customer_record_once(demo):
    truth = _truth(demo)
    assert set(truth["entity"]) == {"customers"}
    assert not truth.duplicated(["source", "source_record_id"]).any()
    ids = {source: set(group["source_record_id"]) for source, group in truth.groupby("source")}
    assert ids["crm"] == set(_csv(demo, "crm_contacts.csv")["contact_id"])
    assert ids["shop"] == set(_shop(demo, "customers")["id"].astype(str))
    tickets = [t for t in _tickets(demo) if t["customer_ref"] is None]
    assert ids["support"] == {"email:" + _normalized(t["requester_email"]) for t in tickets}
    assert ids["email"] == {"email:" + _normalized(e) for e in _csv(demo, "email_subscribers.csv")["email"]}
    responses = _csv(demo, "survey_responses.csv")
    assert ids["surveys"] == {
        "email:" + _normalized(e) for e in responses[responses["customer_ref"].isna()]["email"]
    }


def test_references_point_at_existing_records(demo):
    shop_ids = set(_shop(demo, "customers")["id"])
    assert set(_shop(demo, "orders")["customer_id"]) <= shop_ids
    assert {t["customer_ref"] for t in _tickets(demo)} - {None} <= shop_ids
    refs = _csv(demo, "survey_responses.csv")["customer_ref"].dropna().astype(int)
    assert set(refs) <= shop_ids
    assert set(_csv(demo, "crm_consents.csv")["contact_id"]) <= set(
        _csv(demo, "crm_contacts.csv")["contact_id"]
    )
    assert set(_shop(demo, "order_items")["order_id"]) <= set(_shop(demo, "orders")["id"])


def test_events_and_subscribers_agree_on_emails(demo):
    subscribers = _csv(demo, "email_subscribers.csv").set_index("subscriber_id")["email"]
    events = _csv(demo, "email_events.csv")
    assert (events["subscriber_id"].map(subscribers) == events["email"]).all()


# --- messiness ------------------------------------------------------------------------------------


def _records_by_person(demo: DemoManifest) -> pd.DataFrame:
    truth = _truth(demo)
    contacts = _csv(demo, "crm_contacts.csv").rename(columns={"contact_id": "record_id", "zip": "postcode"})
    shop = (
        _shop(demo, "customers")
        .astype({"id": str})
        .rename(columns={"id": "record_id", "postal_code": "postcode"})
    )
    contacts["source"], shop["source"] = "crm", "shop"
    records = pd.concat([contacts, shop], ignore_index=True)
    return records.merge(truth, left_on=["source", "record_id"], right_on=["source", "source_record_id"])


def test_same_person_with_emails_differing_only_in_case_or_whitespace(demo):
    records = _records_by_person(demo).dropna(subset=["email"])
    records["normalized"] = records["email"].map(_normalized)
    pairs = records.merge(records, on=["person_id", "normalized"])
    assert (pairs["email_x"] != pairs["email_y"]).any()
    assert records["email"].str.match(r"^\s|.*\s$").any()
    assert (records["email"] != records["email"].str.lower()).any()


def test_households_share_a_phone_but_not_first_name_or_birth_date(demo):
    records = _records_by_person(demo)
    junk = {"0000000000", "1234567890", "12"}
    records["digits"] = records["phone"].fillna("").str.replace(r"\D", "", regex=True).str[-7:]
    phones = records[(records["digits"].str.len() == 7) & ~records["phone"].isin(junk)]
    shared = phones.groupby("digits").filter(lambda g: g["person_id"].nunique() > 1)
    assert shared["digits"].nunique() >= 3
    for _, group in shared.groupby("digits"):
        # A given name left out, or written where the surname belongs, says nothing about sharing one.
        named = group[group["first_name"].notna() & ~group["first_name"].isin(group["last_name"])]
        named = named.drop_duplicates("person_id")
        assert named["first_name"].str.lower().nunique() == len(named)
        people = group.drop_duplicates("person_id")
        births = people["birth_date"].dropna()
        assert births.nunique() == len(births)


def test_shared_family_email_and_in_system_duplicates(demo):
    records = _records_by_person(demo).dropna(subset=["email"])
    records["normalized"] = records["email"].map(_normalized)
    by_email = records[
        ~records["normalized"].isin(["test@test.com", "noemail@none.com", "a@b.c", "keine@email.de"])
    ]
    assert (by_email.groupby("normalized")["person_id"].nunique() == 2).any(), (
        "a family email used by two people"
    )
    truth = _truth(demo)
    crm_per_person = truth[truth["source"] == "crm"].groupby("person_id").size()
    assert 0.01 <= (crm_per_person > 1).sum() / demo.counts["crm_contacts.csv"] <= 0.06
    assert (truth[truth["source"] == "shop"].groupby("person_id").size() > 1).any()


def _email_only_references(demo: DemoManifest) -> pd.DataFrame:
    """Each email-only reference with ``kind``: ``known`` (a record of its person carries the address),
    ``unknown`` (none does) or ``shared`` (records of two or more people carry it), and ``carriers``."""
    records = _records_by_person(demo).dropna(subset=["email"])
    carriers = records.groupby(records["email"].map(_normalized))["person_id"].agg(set)
    truth = _truth(demo)
    references = truth[truth["source_record_id"].str.startswith("email:")].copy()
    references["carriers"] = references["source_record_id"].str.removeprefix("email:").map(carriers)
    references["carriers"] = references["carriers"].map(lambda c: c if isinstance(c, set) else set())
    references["kind"] = [
        "shared" if len(c) > 1 else "known" if p in c else "unknown"
        for p, c in zip(references["person_id"], references["carriers"], strict=True)
    ]
    return references


def test_email_only_references_mostly_use_an_address_the_crm_or_shop_has(demo):
    references = _email_only_references(demo)
    share = references["kind"].value_counts(normalize=True)
    assert set(references["source"]) == {"support", "email", "surveys"}
    assert share["known"] >= 0.95
    assert 0 < share["unknown"] <= 0.025, "a few come from a mailbox no other system knows"
    assert 0 < share["shared"] <= 0.025, "a few come from a shared family address"
    # A shared family address belongs to one of the people whose records carry it: its owner.
    shared = references[references["kind"] == "shared"]
    assert all(p in c for p, c in zip(shared["person_id"], shared["carriers"], strict=True))


def test_hard_email_references_follow_their_configured_rates(tmp_path):
    demo = generate(
        tmp_path,
        people=1000,
        seed=11,
        end_date=END,
        messiness=Messiness(unknown_reference_email=0.0, family_reference_email=0.08),
    )
    references = _email_only_references(demo)
    assert 0.05 <= (references["kind"] == "shared").mean() <= 0.11
    # With no unknown mailboxes drawn, only people whose records carry no address at all use one.
    unknown = references[references["kind"] == "unknown"]
    with_address = set(_records_by_person(demo).dropna(subset=["email"])["person_id"])
    assert not set(unknown["person_id"]) & with_address
    assert (references["kind"] == "unknown").mean() < 0.01


def test_junk_and_malformed_values_are_present_but_rare(demo):
    contacts, orders = _csv(demo, "crm_contacts.csv"), _shop(demo, "orders")
    junk_owners = _records_by_person(demo).query("email == 'test@test.com'")["person_id"]
    assert junk_owners.nunique() >= 1 and (contacts["email"] == "test@test.com").sum() >= 1
    assert (contacts["phone"] == "0000000000").any() and (contacts["street"] == "n/a").any()
    assert contacts["email"].str.contains("@@", na=False).any()
    assert (contacts["phone"] == "12").any() and (contacts["birth_date"] == "1850-01-01").any()
    assert (orders["currency"] == "XYZ").any()
    assert ((orders["status"] == "completed") & (orders["total"] < 0)).any()
    assert (orders["currency"] == "XYZ").mean() < 0.002
    assert set(orders["currency"]) >= {"EUR", "USD", "GBP", "CHF"}


def test_spellings_formats_typos_and_moves_vary(demo):
    contacts = _csv(demo, "crm_contacts.csv")
    assert set(contacts["country"].dropna()) >= {"DE", "Germany", "Deutschland"}
    assert (
        set(contacts["gender"].dropna()) >= {"F", "female", "M", "Male"} and contacts["gender"].isna().any()
    )
    phones = contacts["phone"].dropna()
    for pattern in (r"^\+\d+ \d+ \d+$", r"^0\d+/\d+$", r"^00\d+$", r"^\(0\d+\) \d{3} \d+$"):
        assert phones.str.match(pattern).any(), pattern
    records = _records_by_person(demo)
    both = records.groupby("person_id").filter(lambda g: set(g["source"]) == {"crm", "shop"})
    pairs = both[both["source"] == "crm"].merge(both[both["source"] == "shop"], on="person_id")
    one_edit = [
        a != b and _one_edit_apart(a, b)
        for a, b in zip(pairs["last_name_x"], pairs["last_name_y"], strict=True)
    ]
    assert any(one_edit), "a shop last name with a typo"
    moved = pairs.dropna(subset=["postcode_x", "postcode_y"])
    assert (moved["postcode_x"] != moved["postcode_y"]).any(), "the shop shows an old address"
    crm_cards = pairs.dropna(subset=["loyalty_card_x", "loyalty_card_y"])
    assert len(crm_cards) and (crm_cards["loyalty_card_x"] == crm_cards["loyalty_card_y"].str.upper()).all()


def _one_edit_apart(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]])
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def test_phone_numbers_are_mostly_valid_for_their_country(demo):
    shop = _shop(demo, "customers").dropna(subset=["phone", "country"])
    shop = shop[shop["country"].str.len() == 2]
    valid = [
        phonenumbers.is_valid_number(phonenumbers.parse(p, c))
        for p, c in zip(shop["phone"], shop["country"], strict=True)
    ]
    assert sum(valid) / len(valid) > 0.97


# --- behaviour with signal ------------------------------------------------------------------------


def test_recent_buyers_buy_again_more_often(demo):
    orders = _shop(demo, "orders")
    orders["at"] = _time(orders["created_at"])
    cutoff = END_TS - pd.Timedelta(days=180)
    before, after = orders[orders["at"] <= cutoff], orders[(orders["at"] > cutoff) & (orders["at"] <= END_TS)]
    last = before.groupby("customer_id")["at"].max()
    recent = set(last[last > cutoff - pd.Timedelta(days=90)].index)
    lapsed = set(last[last <= cutoff - pd.Timedelta(days=365)].index)
    returned = set(after["customer_id"])
    assert len(recent & returned) / len(recent) > 3 * len(lapsed & returned) / max(len(lapsed), 1)


def test_complementary_categories_are_bought_together(demo):
    items = _shop(demo, "order_items")
    baskets = items.groupby("order_id")["category"].agg(set)
    has_camera = baskets.map(lambda b: "Cameras" in b)
    has_lens = baskets.map(lambda b: "Lenses" in b)
    lift = has_lens[has_camera].mean() / has_lens.mean()
    assert lift > 2
    has_machine = baskets.map(lambda b: "Coffee Machines" in b)
    has_beans = baskets.map(lambda b: "Coffee Beans" in b)
    assert has_beans[has_machine].mean() / has_beans.mean() > 1.5


def test_clicks_raise_purchases_in_the_following_week(demo):
    truth = _truth(demo)
    owner = truth[truth["source"] == "email"].set_index("source_record_id")["person_id"]
    shop_person = truth[truth["source"] == "shop"].set_index("source_record_id")["person_id"]
    orders = _shop(demo, "orders")
    orders["person_id"] = orders["customer_id"].astype(str).map(shop_person)
    orders["at"] = _time(orders["created_at"])
    events = _csv(demo, "email_events.csv")
    events["person_id"] = ("email:" + events["email"].map(_normalized)).map(owner)
    events["at"] = _time(events["occurred_at"])
    buyers = set(orders["person_id"])
    events = events[events["person_id"].isin(buyers)]

    def converted(kind: str) -> float:
        chosen = events[events["event"] == kind].merge(orders[["person_id", "at"]], on="person_id")
        window = (chosen["at_y"] > chosen["at_x"]) & (chosen["at_y"] <= chosen["at_x"] + pd.Timedelta(days=7))
        hits = chosen[window].drop_duplicates("event_id")
        return len(hits) / (events["event"] == kind).sum()

    assert converted("click") > 1.5 * converted("sent")


def test_nps_rises_with_loyalty(tmp_path):
    surveyed = generate(
        tmp_path, people=1500, seed=5, end_date=END, coverage=Coverage(survey_respondents=0.6)
    )
    responses = _csv(surveyed, "survey_responses.csv").dropna(subset=["customer_ref"]).astype({"nps": int})
    count = _shop(surveyed, "orders").groupby("customer_id").size()
    responses["orders"] = responses["customer_ref"].astype(int).map(count)
    assert len(responses) > 300
    loyal = responses[responses["orders"] >= 10]["nps"].mean()
    occasional = responses[responses["orders"] <= 2]["nps"].mean()
    assert loyal > occasional + 0.5


# --- loaders, API, configuration ------------------------------------------------------------------


@pytest.mark.mariadb
def test_load_shop_database_into_mariadb(demo, mysql_url):
    load_shop_database(demo.out_dir / "shop.sqlite", mysql_url)
    assert shop_row_counts(mysql_url) == {
        t: demo.counts[f"shop.sqlite:{t}"] for t in ("customers", "orders", "order_items")
    }


@pytest.mark.postgres
def test_load_shop_database_into_postgres_twice(demo, postgres_url):
    load_shop_database(demo.out_dir / "shop.sqlite", postgres_url)
    load_shop_database(demo.out_dir / "shop.sqlite", postgres_url)  # replaces, never appends
    expected = {t: demo.counts[f"shop.sqlite:{t}"] for t in ("customers", "orders", "order_items")}
    assert shop_row_counts(postgres_url) == expected


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_support_api_pages_through_tickets_and_filters_by_update(demo):
    tickets = _tickets(demo)
    with serve_support_api(demo.out_dir / "support_tickets.jsonl") as base:
        assert re.match(r"^http://127\.0\.0\.1:\d+$", base)
        seen, page = [], 1
        while True:
            body = _get(f"{base}/api/v1/tickets?page={page}&per_page=37")
            assert body["page"] == page and body["per_page"] == 37
            if not body["data"]:
                break
            seen += body["data"]
            page += 1
        assert page - 1 == body["total_pages"] == -(-len(tickets) // 37)
        assert sorted(t["ticket_id"] for t in seen) == sorted(t["ticket_id"] for t in tickets)
        keys = [(_time([t["updated_at"]])[0], t["ticket_id"]) for t in seen]
        assert keys == sorted(keys)

        since = sorted(t["updated_at"] for t in tickets)[len(tickets) // 2]
        recent = _get(f"{base}/api/v1/tickets?per_page=1000&updated_since={since.replace('Z', '%2B00:00')}")
        expected = {t["ticket_id"] for t in tickets if t["updated_at"] > since}
        assert {t["ticket_id"] for t in recent["data"]} == expected and expected

        for bad in (
            "/api/v1/tickets?page=0",
            "/api/v1/tickets?per_page=x",
            "/api/v1/tickets?updated_since=soon",
        ):
            with pytest.raises(urllib.error.HTTPError) as error:
                _get(base + bad)
            assert error.value.code == 400
        with pytest.raises(urllib.error.HTTPError) as error:
            _get(base + "/api/v2/nothing")
        assert error.value.code == 404


def test_bundled_crm_yaml_maps_columns_the_demo_files_have(demo):
    config = load_config(PROJECT_ROOT / "crm.yaml")
    assert [s.name for s in config.sources] == ["crm", "shop", "support", "email", "surveys"]
    assert config.nightly.timezone == "Europe/Berlin" and config.nightly.time == "02:00"
    assert set(config.fx_rates) == {"EUR", "USD", "GBP", "CHF"} and config.default_country == "DE"
    assert set(_truth(demo)["source"]) == {s.name for s in config.sources}
    for source in config.sources:
        for entity, mapping in source.entities.items():
            if source.connector.type == "sql":
                columns = set(_shop(demo, mapping.table).columns)
            elif source.connector.type == "jsonl":
                columns = set(_tickets(demo)[0])
            else:
                columns = set(_csv(demo, Path(mapping.path).name).columns)
            mapped = set(mapping.columns.values()) | set(mapping.identifiers.values())
            if mapping.incremental.column:
                mapped.add(mapping.incremental.column)
            assert mapped <= columns, (source.name, entity, mapped - columns)
            if mapping.path:
                assert Path(mapping.path).name in FILES and mapping.path.startswith("data/demo/")
