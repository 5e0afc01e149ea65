"""How source systems distort clean values: email case and whitespace, typos, nicknames, phone formats,
country and gender spellings.

Each function takes the clean values of the rows a source holds and returns what that source shows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crm_pipelines.demo.arrays import concat, grouped_index, map_rows, pick_rows, take, weighted_index, where
from crm_pipelines.demo.places import PhoneNumber, by_country
from crm_pipelines.demo.population import FEMALE, MALE, OTHER
from crm_pipelines.demo.vocab import (
    COUNTRIES,
    COUNTRY_ENGLISH_NAME,
    COUNTRY_SPELLINGS,
    DIALING_CODE,
    NICKNAMES,
    TRUNK_PREFIX,
)

# Letters next to each other on a QWERTZ keyboard: the typos people actually make.
_KEYBOARD_NEIGHBOURS = dict(
    pair.split(":")
    for pair in (
        "a:sqw b:vn c:xv d:sf e:wr f:dg g:fh h:gj i:uo j:hk k:jl l:k m:n n:bm o:ip p:o q:w r:et s:ad "
        "t:rz u:zi v:cb w:qe x:yc y:xu z:tu"
    ).split()
)
GENDER_SPELLINGS = {
    FEMALE: (("F", 35), ("female", 20), ("Female", 15), ("f", 15), ("w", 5), ("", 10)),
    MALE: (("M", 35), ("male", 20), ("Male", 15), ("m", 20), ("", 10)),
    OTHER: (("d", 30), ("diverse", 30), ("X", 20), ("", 20)),
}


def present_emails(
    rng: np.random.Generator, emails: pa.Array, case_rate: float, whitespace_rate: float
) -> pa.Array:
    """Emails as users typed them: some capitalized or shouting, some with stray spaces around them."""
    size = len(emails)
    variant = np.where(rng.random(size) < case_rate, 1 + weighted_index(rng, (5, 2, 3), size), 0)
    shown = pc.choose(
        pa.array(variant.astype(np.int8)),
        emails,
        pc.utf8_capitalize(emails),
        pc.utf8_upper(emails),
        pc.utf8_title(emails),
    )
    padding = np.where(rng.random(size) < whitespace_rate, 1 + rng.integers(0, 3, size), 0)
    return pc.choose(
        pa.array(padding.astype(np.int8)),
        shown,
        concat(" ", shown),
        concat(shown, " "),
        concat("  ", shown, " "),
    )


def with_typos(rng: np.random.Generator, names: pa.Array, rate: float) -> pa.Array:
    """One edit (swap, drop, double or mistype a letter) in about ``rate`` of the names."""
    rows = pick_rows(rng, len(names), rate)
    operation = rng.integers(0, 4, len(rows))
    position = rng.random(len(rows))
    pick = rng.random(len(rows))

    def one_edit(name: str, i: int) -> str:
        if len(name) < 3:
            return name
        at = 1 + int(position[i] * (len(name) - 2))  # first letters are rarely mistyped
        ch = name[at]
        match operation[i]:
            case 0:
                return name[:at] + name[at + 1] + ch + name[at + 2 :]
            case 1:
                return name[:at] + name[at + 1 :]
            case 2:
                return name[:at] + ch + name[at:]
            case _:
                neighbours = _KEYBOARD_NEIGHBOURS.get(ch.lower(), "e")
                return name[:at] + neighbours[int(pick[i] * len(neighbours))] + name[at + 1 :]

    return map_rows(names, rows, one_edit)


def with_nicknames(rng: np.random.Generator, first_names: pa.Array, rate: float) -> pa.Array:
    """Alex for Alexander, Liz for Elizabeth: in about ``rate`` of the names that have a short form."""
    has_short = np.asarray(pc.is_in(first_names, pa.array(list(NICKNAMES))).fill_null(False))
    rows = np.flatnonzero(has_short & (rng.random(len(first_names)) < rate))
    return map_rows(first_names, rows, lambda name, _: NICKNAMES[name])


def spell_countries(
    rng: np.random.Generator, country: np.ndarray, english_name_share: float | None = None
) -> pa.Array:
    """Country as a source shows it. Free text (default): DE, Deutschland, Germany, DEU, ... A drop-down
    (``english_name_share`` given): the ISO code, or the English name for that share of rows."""
    if english_name_share is not None:
        english = take([COUNTRY_ENGLISH_NAME[code] for code in COUNTRIES], country)
        return where(rng.random(len(country)) < english_name_share, english, take(list(COUNTRIES), country))
    spellings = [COUNTRY_SPELLINGS[code] for code in COUNTRIES]
    index = grouped_index(rng, country.astype(np.int64), [[w for _, w in s] for s in spellings])
    flat = [v for s in spellings for v, _ in s]
    offsets = np.cumsum([0] + [len(s) for s in spellings])[:-1]
    return take(flat, offsets[country] + index)


def spell_genders(rng: np.random.Generator, gender: np.ndarray) -> pa.Array:
    spellings = [GENDER_SPELLINGS[g] for g in (FEMALE, MALE, OTHER)]
    index = grouped_index(rng, gender.astype(np.int64), [[w for _, w in s] for s in spellings])
    flat = [v for s in spellings for v, _ in s]
    offsets = np.cumsum([0] + [len(s) for s in spellings])[:-1]
    shown = take(flat, offsets[gender] + index)
    return pc.if_else(pc.equal(shown, ""), pa.scalar(None, pa.string()), shown)


def format_phones(rng: np.random.Generator, country: np.ndarray, number: PhoneNumber) -> pa.Array:
    """Phone numbers in the many ways people write them: +49 30 1234567, 030/1234567, (212) 555-0100."""

    def build(code: str, rows: np.ndarray) -> dict[str, pa.Array]:
        a = number.area.take(pa.array(rows))
        s = number.subscriber.take(pa.array(rows))
        cc = DIALING_CODE[code]
        national = concat(TRUNK_PREFIX[code], a)

        def part(start: int, stop: int | None = None) -> pa.Array:
            return pc.utf8_slice_codeunits(s, start, stop if stop is not None else 99)

        common = [(concat("+", cc, " ", a, " ", s), 20), (concat("+", cc, a, s), 10)]
        if code != "US":  # Americans dial 011 abroad and never write their own number with 00
            common.append((concat("00", cc, a, s), 8))
        styles = {
            "DE": [
                (concat(national, " ", s), 25),
                (concat(national, "/", s), 20),
                (concat("(", national, ") ", part(0, 3), " ", part(3)), 12),
                (concat(national, "-", s), 5),
            ],
            "AT": [(concat(national, " ", s), 30), (concat(national, "/", s), 20)],
            "CH": [(concat(national, " ", part(0, 3), " ", part(3, 5), " ", part(5)), 45)],
            "GB": [(concat(national, " ", s), 45), (concat("(", national, ") ", s), 10)],
            "US": [
                (concat("(", a, ") ", part(0, 3), "-", part(3)), 40),
                (concat(a, "-", part(0, 3), "-", part(3)), 25),
                (concat(a, ".", part(0, 3), ".", part(3)), 10),
            ],
            "FR": [(concat(national, " ", part(0, 2), " ", part(2, 4), " ", part(4, 6), " ", part(6)), 60)],
            "NL": [(concat(national, "-", s), 40), (concat(national, " ", s), 20)],
        }[code] + common
        choice = weighted_index(rng, [w for _, w in styles], len(rows))
        return {"phone": pc.choose(pa.array(choice), *(v for v, _ in styles))}

    return by_country(country, build)["phone"]
