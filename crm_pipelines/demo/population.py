"""The people behind the data: households, names, birth dates, addresses, phones, emails, latent traits.

Every source system later shows a distorted, partial view of these people. Household members share an
address and often a landline (and sometimes a family email), but never a first name or a birth date, so
matching on address or phone alone would wrongly merge them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crm_pipelines.demo.arrays import (
    NULL_STRING,
    concat,
    grouped_index,
    int_strings,
    rank_within_groups,
    take,
    weighted_index,
    where,
)
from crm_pipelines.demo.places import (
    Address,
    PhoneNumber,
    addresses,
    by_country,
    landlines,
    mobiles,
    unique_numbers,
)
from crm_pipelines.demo.vocab import (
    COMPANY_SUFFIX,
    COMPANY_TRADES,
    COMPANY_WORDS,
    COUNTRIES,
    COUNTRY_WEIGHTS,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    ascii_fold,
    popularity,
    words,
)

FEMALE, MALE, OTHER = 0, 1, 2
HOUSEHOLD_SIZE_WEIGHTS = (0.62, 0.26, 0.08, 0.04)  # 1, 2, 3, 4 adults
INTEREST_CLUSTERS = ("photo", "coffee", "mobile", "computing", "home", "reader")
INTEREST_WEIGHTS = (0.15, 0.25, 0.2, 0.15, 0.15, 0.10)
_WORK_TLD = {"DE": "de", "AT": "at", "CH": "ch", "GB": "co.uk", "US": "com", "FR": "fr", "NL": "nl"}
_FAMILY_EMAIL = {
    "DE": ("familie.", ""),
    "AT": ("familie.", ""),
    "CH": ("familie.", ""),
    "GB": ("the", "s"),
    "US": ("the", "s"),
    "FR": ("famille.", ""),
    "NL": ("familie", ""),
}


@dataclass
class People:
    """One entry per person; arrays share the person's position as index."""

    person_id: pa.Array
    country: np.ndarray
    """Index into :data:`COUNTRIES`."""
    gender: np.ndarray
    first_name: pa.Array
    last_name: pa.Array
    birth_day: np.ndarray
    """Days since 1970-01-01."""
    household: np.ndarray
    household_rank: np.ndarray
    """0 for the household's first member (who owns a family email), 1, 2, ... for the others."""
    address: Address
    previous_address: Address
    """Where the household lived before; systems not updated since still show it."""
    mobile: PhoneNumber
    has_mobile: np.ndarray
    landline: PhoneNumber
    has_landline: np.ndarray
    email: pa.Array
    """The address the person uses (lower case); a family email for some couples."""
    email_owner: np.ndarray
    """Position of the person who owns ``email`` (self, or the household member owning a family email)."""
    other_email: pa.Array
    """A second address (work or another mailbox) some people use in some systems; null for most."""
    company: pa.Array
    loyalty_card: pa.Array
    satisfaction: np.ndarray
    """Latent contentment (standard normal): drives loyalty, NPS, CSAT."""
    interest: np.ndarray
    """Index into :data:`INTEREST_CLUSTERS`: what the person tends to buy."""
    email_engagement: np.ndarray
    """Probability of opening a campaign email."""

    def __len__(self) -> int:
        return len(self.country)


def draw_people(
    rng: np.random.Generator, count: int, end_day: int, family_email_rate: float = 0.25
) -> People:
    """``count`` people living in households, aged 18 or more on day ``end_day`` (days since 1970)."""
    household, rank = _households(rng, count)
    head = np.flatnonzero(rank == 0)[household]
    country = weighted_index(rng, COUNTRY_WEIGHTS, count)[head]
    gender = _genders(rng, rank, head)
    age_years = _ages(rng, household, rank, head)
    birth_day = (end_day - age_years * 365.25 - rng.random(count) * 365).astype(np.int64)
    _differ_within_households(birth_day, rank, lambda clash: birth_day[clash] + 17)
    first_name = _first_names(rng, country, gender, rank)
    last_name = _last_names(rng, country, rank, head)

    home = addresses(rng, country[rank == 0]).take(household)
    previous = addresses(rng, country[rank == 0]).take(household)
    landline = landlines(rng, country[rank == 0], home.area_code.take(pa.array(np.flatnonzero(rank == 0))))
    landline = landline.take(household)
    has_landline = (rng.random(household.max() + 1) < 0.55)[household]
    has_mobile = rng.random(count) < np.where(age_years > 70, 0.6, 0.97)
    has_landline |= ~has_mobile

    company = _companies(rng, country, last_name)
    email, email_owner, other_email = _emails(
        rng, country, first_name, last_name, company, household, rank, head, family_email_rate
    )
    card_holder = rng.random(count) < 0.35
    card_numbers = concat("LC-", unique_numbers(rng, count, 8, (0, 9)))
    return People(
        person_id=concat("P", int_strings(np.arange(1, count + 1), width=max(7, len(str(count))))),
        country=country,
        gender=gender,
        first_name=first_name,
        last_name=last_name,
        birth_day=birth_day,
        household=household,
        household_rank=rank,
        address=home,
        previous_address=previous,
        mobile=mobiles(rng, country, home.area_code),
        has_mobile=has_mobile,
        landline=landline,
        has_landline=has_landline,
        email=email,
        email_owner=email_owner,
        other_email=other_email,
        company=company,
        loyalty_card=where(card_holder, card_numbers, NULL_STRING),
        satisfaction=rng.standard_normal(count),
        interest=weighted_index(rng, INTEREST_WEIGHTS, count).astype(np.int8),
        email_engagement=rng.beta(2.0, 3.0, count),
    )


def _differ_within_households(
    values: np.ndarray,
    rank: np.ndarray,
    change: Callable[[np.ndarray], np.ndarray],
    also_equal: np.ndarray | None = None,
) -> None:
    """Change ``values`` in place until no two members of a household share one.

    Members of a household sit next to each other, ranked 0, 1, 2, ...; ``change(rows)`` gives new
    values for clashing rows. With ``also_equal``, values clash only where that array agrees too.
    """
    for _ in range(3):
        for r in range(1, int(rank.max(initial=0)) + 1):
            rows = np.flatnonzero(rank == r)
            for earlier in range(r):
                other = rows - r + earlier
                same = values[rows] == values[other]
                if also_equal is not None:
                    same &= also_equal[rows] == also_equal[other]
                clash = rows[same]
                values[clash] = change(clash)


def _households(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    sizes = 1 + weighted_index(rng, HOUSEHOLD_SIZE_WEIGHTS, count)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), count) + 1]
    household = np.repeat(np.arange(len(sizes)), sizes)[:count]
    return household, rank_within_groups(household)


def _genders(rng: np.random.Generator, rank: np.ndarray, head: np.ndarray) -> np.ndarray:
    gender = weighted_index(rng, (0.5, 0.485, 0.015), len(rank)).astype(np.int8)
    partner = (rank == 1) & (gender[head] != OTHER) & (rng.random(len(rank)) < 0.9)
    gender[partner] = 1 - gender[head][partner]
    return gender


def _ages(rng: np.random.Generator, household: np.ndarray, rank: np.ndarray, head: np.ndarray) -> np.ndarray:
    size = np.bincount(household)[household]
    age = 19 + 66 * rng.beta(2.0, 2.6, len(rank))
    with_children = size >= 3
    age = np.where(with_children & (rank == 0), 44 + 18 * rng.beta(2, 2, len(rank)), age)
    age = np.where(rank == 1, np.clip(age[head] + rng.normal(0, 4, len(rank)), 18, 95), age)
    return np.where(rank >= 2, 18 + 9 * rng.random(len(rank)), age)


def _first_names(
    rng: np.random.Generator, country: np.ndarray, gender: np.ndarray, rank: np.ndarray
) -> pa.Array:
    lists: list[list[str]] = []
    for code in COUNTRIES:
        female, male = FIRST_NAMES[code]
        lists += [words(female), words(male)]
    name_gender = np.where(gender == OTHER, rng.integers(0, 2, len(gender)), gender)
    group = country.astype(np.int64) * 2 + name_gender
    index = grouped_index(rng, group, [popularity(len(names)) for names in lists])
    sizes = np.array([len(names) for names in lists])[group]
    # Members of one household never share a first name: move clashes to the next name in the list.
    _differ_within_households(index, rank, lambda clash: (index[clash] + 1) % sizes[clash], group)
    flat = [n for names in lists for n in names]
    offsets = np.cumsum([0] + [len(names) for names in lists])[:-1]
    return take(flat, offsets[group] + index)


def _last_names(
    rng: np.random.Generator, country: np.ndarray, rank: np.ndarray, head: np.ndarray
) -> pa.Array:
    lists = [words(LAST_NAMES[code]) for code in COUNTRIES]
    index = grouped_index(rng, country.astype(np.int64), [popularity(len(names), 0.7) for names in lists])
    flat = [n for names in lists for n in names]
    offsets = np.cumsum([0] + [len(names) for names in lists])[:-1]
    own = take(flat, offsets[country] + index)
    u = rng.random(len(rank))
    shares_name = ((rank == 1) & (u < 0.7)) | ((rank >= 2) & (u < 0.85))
    family_name = own.take(pa.array(head))
    last = where(shares_name, family_name, own)
    german_speaking = np.isin(country, [COUNTRIES.index(c) for c in ("DE", "AT", "CH")])
    double = (rank == 1) & ~shares_name & german_speaking & (rng.random(len(rank)) < 0.25)
    return where(double, concat(family_name, "-", own), last)


def _companies(rng: np.random.Generator, country: np.ndarray, last_name: pa.Array) -> pa.Array:
    def build(code: str, rows: np.ndarray) -> dict[str, pa.Array]:
        size = len(rows)
        suffix = take(
            COMPANY_SUFFIX[code].split("|"), rng.integers(0, len(COMPANY_SUFFIX[code].split("|")), size)
        )
        made_up = concat(
            take(words(COMPANY_WORDS), rng.integers(0, 20, size)),
            " ",
            take(words(COMPANY_TRADES), rng.integers(0, 12, size)),
            " ",
            suffix,
        )
        family_firm = concat(last_name.take(pa.array(rows)), " ", suffix)
        return {"company": where(rng.random(size) < 0.3, family_firm, made_up)}

    companies = by_country(country, build)["company"]
    return where(rng.random(len(country)) < 0.12, companies, NULL_STRING)


def _emails(
    rng: np.random.Generator,
    country: np.ndarray,
    first_name: pa.Array,
    last_name: pa.Array,
    company: pa.Array,
    household: np.ndarray,
    rank: np.ndarray,
    head: np.ndarray,
    family_email_rate: float,
) -> tuple[pa.Array, np.ndarray, pa.Array]:
    """Each person's email, its owner, and a second address (work or another mailbox) for some."""
    count = len(country)
    first = _folded(first_name)
    last = _folded(last_name)
    initial = pc.utf8_slice_codeunits(first, 0, 1)
    year = int_strings(rng.integers(60, 100, count) % 100, width=2)
    patterns = [
        concat(first, ".", last),
        concat(first, last),
        concat(initial, ".", last),
        concat(first, "_", last),
        concat(last, ".", first),
        concat(first, ".", last, year),
        concat(first, year),
        concat(pc.utf8_slice_codeunits(first, 0, 3), pc.utf8_slice_codeunits(last, 0, 3), year),
    ]
    local = pc.choose(pa.array(weighted_index(rng, (30, 12, 10, 6, 6, 16, 10, 10), count)), *patterns)
    domains = by_country(
        country,
        lambda code, rows: {
            "domain": take(
                words(EMAIL_DOMAINS[code]),
                weighted_index(rng, popularity(len(words(EMAIL_DOMAINS[code])), 1.0), len(rows)),
            )
        },
    )["domain"]
    personal = concat(local, "@", domains)

    # Some couples share one address; the household's first member owns it.
    size = np.bincount(household)[household]
    family_households = (rng.random(household.max() + 1) < family_email_rate)[household] & (size >= 2)
    family_prefix = by_country(
        country,
        lambda code, rows: {
            "prefix": concat(_FAMILY_EMAIL[code][0], last.take(pa.array(rows)), _FAMILY_EMAIL[code][1])
        },
    )["prefix"]
    family = concat(family_prefix.take(pa.array(head)), "@", domains.take(pa.array(head)))
    uses_family = family_households & (rank <= 1)
    email = where(uses_family, family, personal)
    email_owner = np.where(uses_family, head, np.arange(count))

    work = concat(
        first,
        ".",
        last,
        "@",
        _folded(pc.utf8_slice_codeunits(company, 0, 12)),
        ".",
        take([_WORK_TLD[c] for c in COUNTRIES], country),
    )
    second_mailbox = concat(
        pc.choose(pa.array(rng.integers(0, len(patterns), count)), *patterns),
        "@",
        take(["gmail.com", "outlook.com", "icloud.com"], rng.integers(0, 3, count)),
    )
    other = where(company.is_valid(), work, second_mailbox)
    has_other = rng.random(count) < np.where(uses_family & (rank == 1), 0.6, 0.15)
    other = where(has_other, other, NULL_STRING)

    # Shared family addresses are meant to repeat; every other address belongs to one person only.
    email, other = _make_unique(email, other, email_owner == np.arange(count))
    email = where(uses_family & (rank == 1), email.take(pa.array(head)), email)
    return email, email_owner, other


def _make_unique(email: pa.Array, other: pa.Array, owns: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """Append a number to colliding addresses (anna.mueller@gmx.de -> anna.mueller10482@gmx.de).

    The number encodes the row (second addresses after all first ones) and always has the same
    number of digits, at least three, while generated local parts end in at most two: so a renamed
    address can collide neither with another renamed one nor with an original.
    """
    count = len(email)
    first_number = 10 ** len(str(2 * count))
    email_rows = np.flatnonzero(owns)
    other_rows = np.flatnonzero(np.asarray(other.is_valid()))
    pool = pa.concat_arrays([email.take(pa.array(email_rows)), other.take(pa.array(other_rows))])
    taken = _repeated(pool)
    fixed = []
    for values, rows, flags, offset in (
        (email, email_rows, taken[: len(email_rows)], first_number),
        (other, other_rows, taken[len(email_rows) :], first_number + count),
    ):
        rows = rows[flags]
        parts = pc.split_pattern(values.take(pa.array(rows)), "@", max_splits=1)
        renamed = concat(
            pc.list_element(parts, 0), int_strings(rows + offset), "@", pc.list_element(parts, 1)
        )
        mask = np.zeros(count, dtype=bool)
        mask[rows] = True
        fixed.append(pc.replace_with_mask(values, pa.array(mask), renamed) if len(rows) else values)
    return fixed[0], fixed[1]


def _repeated(values: pa.Array) -> np.ndarray:
    """True for every non-null value that already occurred at an earlier position."""
    codes = np.asarray(values.dictionary_encode().indices.fill_null(-1))
    _, first = np.unique(codes, return_index=True)
    repeated = np.ones(len(codes), dtype=bool)
    repeated[first] = False
    return repeated & (codes >= 0)


def _folded(names: pa.Array) -> pa.Array:
    """ASCII, lower-case, no spaces: computed once per distinct name, then looked up."""
    encoded = names.dictionary_encode()
    folded = [None if v is None else ascii_fold(v) for v in encoded.dictionary.to_pylist()]
    return pa.array(folded, pa.string()).take(encoded.indices)
