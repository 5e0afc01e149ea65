"""The demo's real-world noise appears at its stated rates, and the ground truth still names each record's person.

The generated CRM contacts and shop accounts are compared with the clean population they were drawn
from (the population has its own random stream, so it can be drawn again here). Noises that would
overlap the ones measured (typos, nicknames, moves, missing addresses) are switched off, so each
measured difference has one cause. Bounds are four binomial standard deviations either side.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from crm_pipelines.demo.arrays import rng_for
from crm_pipelines.demo.generator import generate
from crm_pipelines.demo.noise import (
    swap_names,
    with_date_errors,
    with_ocr_errors,
    with_postcode_digit_off,
)
from crm_pipelines.demo.population import draw_people
from crm_pipelines.demo.settings import Messiness

END = dt.date(2026, 6, 30)
PEOPLE, SEED = 3000, 21
MESSINESS = Messiness(name_typo=0.0, nickname=0.0, moved_address=0.0, missing_address=0.0, abbreviated_street=0.0)


def _within(observed: int, trials: int, rate: float) -> bool:
    spread = 4 * np.sqrt(trials * rate * (1 - rate))
    return abs(observed - trials * rate) <= max(spread, 3)


def _one_edit_apart(a: str, b: str) -> bool:
    return len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=True)) == 1


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> pd.DataFrame:
    """Shop accounts and CRM contacts beside their person's clean values, one row per record."""
    out = tmp_path_factory.mktemp("demo_noise")
    generate(out, people=PEOPLE, seed=SEED, end_date=END, messiness=MESSINESS)
    end_day = (END - dt.date(1970, 1, 1)).days
    people = draw_people(rng_for(SEED, "population"), PEOPLE, end_day, MESSINESS.family_email)
    clean = pd.DataFrame(
        {
            "person_id": people.person_id.to_pylist(),
            "clean_first": people.first_name.to_pylist(),
            "clean_last": people.last_name.to_pylist(),
            "clean_birth": pd.to_datetime(people.birth_day, unit="D").strftime("%Y-%m-%d"),
            "clean_street": people.address.street.to_pylist(),
            "clean_city": people.address.city.to_pylist(),
            "clean_postcode": people.address.postcode.to_pylist(),
        }
    )
    truth = pd.read_csv(out / "ground_truth.csv", dtype=str)
    crm = pd.read_csv(out / "crm_contacts.csv", dtype=str, keep_default_na=False, na_values=[""])
    crm = crm.rename(columns={"contact_id": "record_id", "zip": "postcode"}).assign(source="crm")
    with sqlite3.connect(out / "shop.sqlite") as conn:
        shop = pd.read_sql("SELECT * FROM customers", conn).astype({"id": str})
    shop = shop.rename(columns={"id": "record_id", "postal_code": "postcode"}).assign(source="shop", birth_date=None)
    both = pd.concat([crm, shop], ignore_index=True)
    both = both.merge(
        truth.rename(columns={"source_record_id": "record_id"}), on=["source", "record_id"], validate="one_to_one"
    )
    return both.merge(clean, on="person_id", validate="many_to_one")


def test_every_record_keeps_its_person(records):
    assert records["person_id"].notna().all()


def test_names_swapped_and_given_names_dropped_at_their_rates(records):
    swapped = (records["last_name"] == records["clean_first"]) & (records["clean_first"] != records["clean_last"])
    assert _within(int(swapped.sum()), len(records), MESSINESS.name_swap)
    assert _within(int(records["first_name"].isna().sum()), len(records), MESSINESS.given_name_dropped)


def test_surnames_misread_in_the_crm_at_their_rate(records):
    crm = records[(records["source"] == "crm") & (records["last_name"] == records["last_name"])]
    kept_order = crm[crm["last_name"] != crm["clean_first"]]
    misread = (kept_order["last_name"] != kept_order["clean_last"]).sum()
    # A few surnames offer nothing to misread; every misreading is a letter group, never a digit.
    assert _within(int(misread), len(kept_order), MESSINESS.ocr_typo * 0.97)
    assert not kept_order["last_name"].str.contains(r"\d").any()


def test_birth_dates_mistyped_and_swapped_at_their_rates(records):
    crm = records[(records["source"] == "crm") & records["birth_date"].notna()]
    crm = crm[crm["birth_date"] != "1850-01-01"]  # the deliberately broken ones
    shown, clean = crm["birth_date"], crm["clean_birth"]
    swappable = (clean.str[8:10].astype(int) <= 12) & (clean.str[8:10] != clean.str[5:7])
    swapped = shown == clean.str[:5] + clean.str[8:10] + "-" + clean.str[5:7]
    assert _within(int((swapped & swappable).sum()), int(swappable.sum()), MESSINESS.birth_day_month_swap)
    one_digit = [_one_edit_apart(a, b) for a, b in zip(shown, clean, strict=True)]
    mistyped = np.array(one_digit) & ~swapped.to_numpy()
    trials = len(crm) - int((swapped & swappable).sum())
    assert _within(int(mistyped.sum()), trials, MESSINESS.birth_date_digit)
    assert all(dt.date.fromisoformat(d) for d in shown)


def test_address_parts_missing_and_postcodes_off_at_their_rates(records):
    assert _within(int(records["street"].isna().sum()), len(records), MESSINESS.missing_street)
    assert _within(int(records["city"].isna().sum()), len(records), MESSINESS.missing_city)
    off = [
        _one_edit_apart(a, b) and a[0] == b[0]
        for a, b in zip(records["postcode"].fillna(""), records["clean_postcode"], strict=True)
    ]
    assert _within(int(sum(off)), len(records), MESSINESS.postcode_digit)


def test_noise_functions_at_scale():
    rng = np.random.default_rng(3)
    names = pa.array(["katharina", "schulze", "martin", "adler"] * 5000)
    misread = with_ocr_errors(rng, names, 0.1).to_pylist()
    assert _within(sum(a != b for a, b in zip(misread, names.to_pylist(), strict=True)), len(names), 0.1)
    first, last = swap_names(rng, names, pa.array(["x"] * len(names)), 0.05)
    assert _within(first.to_pylist().count("x"), len(names), 0.05)
    assert last.to_pylist().count("x") == len(names) - first.to_pylist().count("x")
    dates = pa.array(["1985-03-14", "1970-12-31", "2001-01-09"] * 5000)
    shown = with_date_errors(rng, dates, 0.04, 0.0).to_pylist()
    assert all(dt.date.fromisoformat(d) for d in shown)
    assert _within(sum(a != b for a, b in zip(shown, dates.to_pylist(), strict=True)), len(dates), 0.04)
    postcodes = with_postcode_digit_off(rng, pa.array(["50667", "SW1A 2AA", "1011 AB"] * 5000), 0.03).to_pylist()
    changed = [p for p, c in zip(postcodes, ["50667", "SW1A 2AA", "1011 AB"] * 5000, strict=True) if p != c]
    assert _within(len(changed), 15000, 0.03)
