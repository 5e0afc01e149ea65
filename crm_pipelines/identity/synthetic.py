"""Synthetic people in the staged shape, with the ground truth of who is who.

Used by the identity tests and the scale benchmark, where the demo generator's realism matters less
than control and speed: a million staged customer records are made in seconds with numpy. The data
has what makes matching hard: households that share an address, a landline and sometimes one family
email; typos in names; people who moved or changed email; in-system duplicates; records that lack a
date of birth; email-only references from the email tool and the survey; declared loyalty cards; and
a sprinkling of junk values (test@test.com, +490000000000, "N/A").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crm_pipelines.schema import CUSTOMERS

FEMALE_NAMES = (
    "Anna Maria Sophie Emma Mia Hannah Lena Lea Laura Julia Sarah Lisa Katharina Johanna Clara Marie "
    "Charlotte Paula Emilia Luisa Nele Greta Ida Frieda Mila Amelie Leonie Jana Franziska Sandra Sabine "
    "Petra Claudia Monika Andrea Susanne Birgit Martina Stefanie Nicole Christina Melanie Daniela Tanja "
    "Anja Kerstin Heike Ute Renate Ursula Helga Ingrid Gisela Elke Karin Brigitte Angelika Barbara "
    "Doris Gabriele Silke Nadine Jessica Jennifer Vanessa Nina Carina Svenja Theresa Helena Elisa "
    "Antonia Victoria Alina Carla Fiona Jasmin Kathrin Miriam Ronja Selina Tamara Verena Yvonne Zoe"
).split()
MALE_NAMES = (
    "Lukas Leon Finn Jonas Paul Elias Noah Felix Ben Luis Max Moritz Jakob Emil Anton Theo Henry "
    "Thomas Michael Andreas Stefan Christian Markus Martin Frank Peter Klaus Wolfgang Jürgen Dieter "
    "Uwe Bernd Ralf Jörg Thorsten Sven Tobias Sebastian Daniel Alexander Florian Philipp Simon David "
    "Tim Jan Niklas Julian Fabian Dominik Benjamin Matthias Oliver Patrick Dennis Marco Kevin Robert "
    "Karl Heinz Horst Günter Manfred Werner Helmut Gerhard Rainer Holger Volker Jens Carsten Dirk "
    "Johannes Hendrik Konstantin Leonard Maximilian Nico Oskar Raphael Samuel Valentin Vincent Erik"
).split()
SURNAME_STEMS = (
    "Berg Stein Hoff Wald Linde Brunn Eich Rosen Hart Kirch Schön Feld Busch Hahn Kron Lang Neu Ober "
    "Rot Schwarz Weiß Grün Sonnen Stern Wolf Fuchs Bär Adler Falk Vogel Birk Buch Ahorn Hasel Tann "
    "Mühl Dorf Burg Marx Lind Esch Holz Kamp Loh Mer Reh Ried Sand Tal Wies"
).split()
SURNAME_ENDINGS = "mann er berg hoff feld haus bach ner ling meier huber ke rich wald".split() + [""]
COMMON_SURNAMES = (
    "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer "
    "Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hofmann Hartmann Lange "
    "Schmitt Werner Schmitz Krause Meier Lehmann Schmid Schulze Maier Köhler Herrmann König Walter"
).split()
STREETS = (
    "Haupt Bahnhof Schul Garten Dorf Kirch Berg Wald Ring Linden Birken Eichen Buchen Mühlen Feld "
    "Wiesen Rosen Goethe Schiller Mozart Beethoven Friedrich Wilhelm Luisen Park Sonnen Tal Bach"
).split()
STREET_KINDS = ("straße", "weg", "allee", "platz", "ring", "gasse")
CITIES = (
    ("Berlin", "10"),
    ("Hamburg", "20"),
    ("München", "80"),
    ("Köln", "50"),
    ("Frankfurt am Main", "60"),
    ("Stuttgart", "70"),
    ("Düsseldorf", "40"),
    ("Leipzig", "04"),
    ("Dortmund", "44"),
    ("Essen", "45"),
    ("Bremen", "28"),
    ("Dresden", "01"),
    ("Hannover", "30"),
    ("Nürnberg", "90"),
    ("Duisburg", "47"),
    ("Bochum", "44"),
    ("Wuppertal", "42"),
    ("Bielefeld", "33"),
    ("Bonn", "53"),
    ("Münster", "48"),
    ("Mannheim", "68"),
    ("Karlsruhe", "76"),
    ("Augsburg", "86"),
    ("Wiesbaden", "65"),
    ("Kiel", "24"),
    ("Freiburg", "79"),
    ("Mainz", "55"),
    ("Rostock", "18"),
    ("Kassel", "34"),
    ("Potsdam", "14"),
)
EMAIL_DOMAINS = ("gmail.com", "web.de", "gmx.de", "t-online.de", "outlook.com", "yahoo.de", "posteo.de")
JUNK_EMAILS = ("test@test.com", "noreply@example.com", "none@none.com")
JUNK_PHONES = ("+490000000000", "+491111111111")
_ASCII = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "é": "e"})
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class SyntheticData:
    """Staged customers and identifiers, with ``truth``: (source, source_record_id, person_id)."""

    customers: pd.DataFrame
    identifiers: pd.DataFrame
    truth: pd.DataFrame


def _zipf_choice(
    rng: np.random.Generator, pool: list[str] | tuple[str, ...], n: int, a: float = 0.8
) -> np.ndarray:
    weights = 1.0 / np.arange(1, len(pool) + 1) ** a
    return np.asarray(pool, dtype=object)[rng.choice(len(pool), size=n, p=weights / weights.sum())]


def _surname_pool() -> list[str]:
    built = [stem + ending for stem in SURNAME_STEMS for ending in SURNAME_ENDINGS]
    return COMMON_SURNAMES + [name for name in built if name not in COMMON_SURNAMES]


def _typo(rng: np.random.Generator, word: str) -> str:
    """One keyboard slip: a swap, a drop, a doubled or a replaced letter."""
    if len(word) < 4:
        return word
    i = int(rng.integers(1, len(word) - 1))
    kind = int(rng.integers(4))
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    if kind == 2:
        return word[:i] + word[i] + word[i:]
    return word[:i] + _LETTERS[int(rng.integers(26))] + word[i + 1 :]


def _dob_typo(rng: np.random.Generator, day: object) -> object:
    """Day and month swapped where that is a date, else a mistyped last digit of the day."""
    d = pd.Timestamp(day)
    if d.day <= 12 and d.day != d.month and rng.random() < 0.5:
        return d.replace(month=d.day, day=d.month).date()
    return (d + pd.Timedelta(days=1 if d.day % 10 < 8 else -1)).date()


def _people(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """People grouped in households that share surname, address, a landline and maybe an email."""
    household_sizes = rng.choice([1, 2, 3, 4], size=n, p=[0.55, 0.25, 0.12, 0.08])
    household = np.repeat(np.arange(n), household_sizes)[:n]
    n_households = int(household.max()) + 1
    first_in_household = np.r_[True, household[1:] != household[:-1]]

    city_index = rng.integers(len(CITIES), size=n_households)
    street = _zipf_choice(rng, STREETS, n_households, 0.3) + rng.choice(STREET_KINDS, size=n_households)
    house_number = rng.integers(1, 200, size=n_households).astype(str)
    surname = _zipf_choice(rng, _surname_pool(), n_households, 0.6)
    postcode_suffix = rng.integers(0, 1000, size=n_households)
    landline = rng.integers(10**9, 10**10, size=n_households).astype(str)
    hh_uses_landline = rng.random(n_households) < 0.35
    hh_family_email = rng.random(n_households) < 0.15

    female = rng.random(n) < 0.5
    first = np.where(female, _zipf_choice(rng, FEMALE_NAMES, n, 0.7), _zipf_choice(rng, MALE_NAMES, n, 0.7))
    # Siblings and spouses do not share a first name: redraw a repeat of an earlier member's name.
    for _ in range(3):
        for back in (1, 2, 3):
            same_household = np.r_[np.zeros(back, bool), household[back:] == household[:-back]]
            repeat = same_household & (first == np.r_[np.full(back, None), first[:-back]])
            first[repeat] = np.where(
                female[repeat],
                rng.choice(FEMALE_NAMES, int(repeat.sum())),
                rng.choice(MALE_NAMES, int(repeat.sum())),
            )
    # Household members are adults and children of similar age bands; twins share a birthday.
    days = rng.integers(-365 * 30, 365 * 35, size=n)
    dob = pd.Timestamp("1940-01-01") + pd.to_timedelta(days + 365 * 30, unit="D")
    people = pd.DataFrame(
        {
            "person_id": np.arange(n),
            "household": household,
            "first_in_household": first_in_household,
            "gender": np.where(female, "female", "male"),
            "first_name": first,
            "last_name": surname[household],
            "date_of_birth": dob.date,
            "address_line1": street[household] + " " + house_number[household],
            "postcode": [
                CITIES[c][1] + f"{p:03d}"
                for c, p in zip(city_index[household], postcode_suffix[household], strict=True)
            ],
            "city": [CITIES[c][0] for c in city_index[household]],
        }
    )
    local = (people["first_name"].str.lower() + "." + people["last_name"].str.lower()).map(
        lambda s: s.translate(_ASCII)
    ) + pd.Series(rng.integers(1, 999, size=n)).astype(str)
    people["email"] = local + "@" + rng.choice(EMAIL_DOMAINS, size=n)
    family = (
        "familie."
        + people["last_name"].str.lower().map(lambda s: s.translate(_ASCII))
        + household.astype(str)
        + "@"
        + "web.de"
    )
    uses_family = hh_family_email[household] & (rng.random(n) < 0.7)
    people.loc[uses_family, "email"] = family[uses_family]
    mobile = "+491" + pd.Series(rng.integers(5 * 10**9, 8 * 10**9, size=n)).astype(str)
    use_landline = hh_uses_landline[household] & (rng.random(n) < 0.8)
    people["phone"] = np.where(use_landline, "+49" + landline[household], mobile)
    people["alt_email"] = local + "@" + rng.choice(EMAIL_DOMAINS, size=n) + ".alt"
    people["alt_email"] = people["alt_email"].str.removesuffix(".alt").str.replace("@", "_2@", n=1)
    people["loyalty_card"] = np.where(
        rng.random(n) < 0.25, "LC" + pd.Series(rng.integers(10**8, 10**9, size=n)).astype(str), None
    )
    people["created_at"] = pd.Timestamp("2015-01-01") + pd.to_timedelta(
        rng.integers(0, 3000, size=n), unit="D"
    )
    return people


def _records(
    rng: np.random.Generator,
    people: pd.DataFrame,
    source: str,
    share: float,
    duplicate_share: float,
    dob_share: float,
    phone_share: float,
) -> pd.DataFrame:
    """One source system's view of a share of the people, with its own gaps, typos and duplicates."""
    chosen = people[rng.random(len(people)) < share]
    duplicates = chosen[rng.random(len(chosen)) < duplicate_share]
    rows = pd.concat([chosen, duplicates], ignore_index=True)
    n = len(rows)
    is_duplicate = np.r_[np.zeros(len(chosen), bool), np.ones(len(duplicates), bool)]
    out = rows[
        [
            "person_id",
            "first_name",
            "last_name",
            "email",
            "phone",
            "date_of_birth",
            "gender",
            "address_line1",
            "postcode",
            "city",
            "loyalty_card",
        ]
    ].copy()
    typo_rate = np.where(is_duplicate, 0.25, 0.04)
    for column in ("first_name", "last_name"):
        hit = np.flatnonzero(rng.random(n) < typo_rate)
        values = out[column].to_numpy(dtype=object)
        values[hit] = [_typo(rng, v).title() for v in values[hit]]
        out[column] = values
    changed_email = rng.random(n) < np.where(is_duplicate, 0.4, 0.1)
    out["email"] = out["email"].where(~changed_email, rows["alt_email"])
    out["email"] = out["email"].where(rng.random(n) > 0.05)
    out["phone"] = out["phone"].where(rng.random(n) < phone_share)
    out["date_of_birth"] = out["date_of_birth"].where(rng.random(n) < dob_share)
    moved = np.flatnonzero(rng.random(n) < 0.05)
    new_city = rng.integers(len(CITIES), size=len(moved))
    out.loc[moved, "address_line1"] = [f"Neue Straße {k}" for k in rng.integers(1, 99, size=len(moved))]
    out.loc[moved, "city"] = [CITIES[c][0] for c in new_city]
    out.loc[moved, "postcode"] = [
        CITIES[c][1] + f"{p:03d}" for c, p in zip(new_city, rng.integers(0, 1000, len(moved)), strict=True)
    ]
    dob_typo = np.flatnonzero((rng.random(n) < 0.02) & out["date_of_birth"].notna().to_numpy())
    out.loc[dob_typo, "date_of_birth"] = [_dob_typo(rng, d) for d in out.loc[dob_typo, "date_of_birth"]]
    out["address_line1"] = out["address_line1"].where(rng.random(n) > 0.05)
    out["loyalty_card"] = out["loyalty_card"].where(rng.random(n) < 0.8)
    junk = rng.random(n)
    out.loc[junk < 0.002, "email"] = rng.choice(JUNK_EMAILS, size=int((junk < 0.002).sum()))
    phone_junk = (junk >= 0.002) & (junk < 0.004)
    out.loc[phone_junk, "phone"] = rng.choice(JUNK_PHONES, size=int(phone_junk.sum()))
    created = rows["created_at"] + pd.to_timedelta(rng.integers(0, 400, size=n), unit="D")
    out["created_at"] = created
    out["updated_at"] = created + pd.to_timedelta(rng.integers(0, 900, size=n), unit="D")
    out["source"] = source
    out["company"] = np.where(rng.random(n) < 0.1, rows["last_name"] + " GmbH", None)
    return out


def _email_references(
    rng: np.random.Generator, people: pd.DataFrame, source: str, share: float
) -> pd.DataFrame:
    chosen = people[(rng.random(len(people)) < share)]
    refs = pd.DataFrame({"person_id": chosen["person_id"], "email": chosen["email"], "source": source})
    # A family email named by one member's reference belongs to that member: keep the first.
    refs = refs.drop_duplicates("email")
    refs["source_record_id"] = "email:" + refs["email"]
    refs["record_kind"] = "referenced"
    return refs


def synthetic_customers(people: int, seed: int = 0) -> SyntheticData:
    """Make staged customers for ``people`` persons (about 1.9 records per person) and their truth."""
    rng = np.random.default_rng(seed)
    persons = _people(rng, people)
    frames = [
        _records(rng, persons, "crm", 0.75, 0.06, 0.7, 0.7),
        _records(rng, persons, "shop", 0.6, 0.05, 0.3, 0.5),
    ]
    records = pd.concat(frames, ignore_index=True)
    prefix = records["source"].map({"crm": "C-", "shop": "S"})
    records["source_record_id"] = prefix + pd.Series(np.arange(len(records)) + 1000).astype(str)
    records["record_kind"] = "record"
    references = pd.concat(
        [
            _email_references(rng, persons, "email_tool", 0.35),
            _email_references(rng, persons, "survey", 0.12),
        ],
        ignore_index=True,
    )
    customers = pd.concat([records, references], ignore_index=True)
    customers["country"] = np.where(customers["record_kind"] == "record", "DE", None)
    truth = customers[["source", "source_record_id", "person_id"]].copy()
    identifiers = records.loc[records["loyalty_card"].notna(), ["source", "source_record_id", "loyalty_card"]]
    identifiers = identifiers.rename(columns={"loyalty_card": "identifier_value"})
    identifiers.insert(2, "identifier_type", "loyalty_card")
    staged = ["source", *CUSTOMERS.column_names, "record_kind"]
    for column in staged:
        if column not in customers:
            customers[column] = None
    customers = customers[staged].astype(
        {c: "str" for c in staged if c not in ("date_of_birth", "created_at", "updated_at")}
    )
    customers = customers.replace({"None": None, "nan": None, "NaT": None})
    customers["date_of_birth"] = pd.to_datetime(customers["date_of_birth"]).dt.date
    return SyntheticData(customers.reset_index(drop=True), identifiers.reset_index(drop=True), truth)
