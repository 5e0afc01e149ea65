"""How source systems distort clean values: email case and whitespace, typos, nicknames, phone formats,
country and gender spellings.

Each function takes the clean values of the rows a source holds and returns what that source shows.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from crm_pipelines.demo.arrays import (
    concat,
    grouped_index,
    map_rows,
    null_where,
    pick_rows,
    replace_rows,
    take,
    weighted_index,
    where,
)
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
    """Phone numbers in the many ways people write them: +49 30 1234567, 030/1234567, +49 (0)30 1234567,
    0049 30 1234567, (212) 555-0100, 1-212-555-0100."""

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
            common.append((concat("00", cc, " ", a, " ", s), 4))
            # The trunk prefix kept in brackets after the country code: +49 (0)30 1234567.
            common.append((concat("+", cc, " (", TRUNK_PREFIX[code], ")", a, " ", s), 6))
        else:
            common.append((concat("1-", a, "-", part(0, 3), "-", part(3)), 5))
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


# Letters a scanner or a hurried reader takes for others: m/rn, d/cl, h/li, w/vv, e/c, l/i. Letters
# only, so a misread name is still a name to every normalizer (digits would be stripped or rejected).
_OCR_CONFUSIONS = (
    ("rn", "m"),
    ("m", "rn"),
    ("cl", "d"),
    ("d", "cl"),
    ("li", "h"),
    ("h", "li"),
    ("w", "vv"),
    ("e", "c"),
    ("c", "e"),
    ("l", "i"),
    ("i", "l"),
    ("n", "ri"),
)


def with_ocr_errors(rng: np.random.Generator, names: pa.Array, rate: float) -> pa.Array:
    """One misread letter group (Martin -> Rnartin is rare; Schmidt -> Schrnidt, Adler -> Aclier) in
    about ``rate`` of the names; a name with nothing to misread stays as it is."""
    rows = pick_rows(rng, len(names), rate)
    pick = rng.random(len(rows))

    def misread(name: str, i: int) -> str:
        spots = [
            (at, seen, read)
            for seen, read in _OCR_CONFUSIONS
            for at in range(1, len(name))
            if name.startswith(seen, at)
        ]
        if not spots:
            return name
        at, seen, read = spots[int(pick[i] * len(spots))]
        return name[:at] + read + name[at + len(seen) :]

    return map_rows(names, rows, misread)


def swap_names(
    rng: np.random.Generator, first_names: pa.Array, last_names: pa.Array, rate: float
) -> tuple[pa.Array, pa.Array]:
    """Given name and surname entered the wrong way round in about ``rate`` of the records."""
    rows = pick_rows(rng, len(first_names), rate)
    firsts = first_names.take(pa.array(rows)).to_pylist()
    lasts = last_names.take(pa.array(rows)).to_pylist()
    return replace_rows(first_names, rows, lasts), replace_rows(last_names, rows, firsts)


def drop_values(rng: np.random.Generator, values: pa.Array, rate: float) -> pa.Array:
    """A field left empty in about ``rate`` of the records (a given name, a street, a city)."""
    return null_where(rng.random(len(values)) < rate, values)


def _valid_date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def with_date_errors(
    rng: np.random.Generator, dates: pa.Array, digit_rate: float, day_month_rate: float
) -> pa.Array:
    """ISO dates as typed: one digit wrong (1985-03-14 -> 1985-03-19, 1958-03-14) in about
    ``digit_rate`` of them, still a valid date; day and month swapped (1985-03-12 -> 1985-12-03) in
    about ``day_month_rate`` of those whose day could be a month (a 12th or earlier, not the month)."""
    size = len(dates)
    text = dates.to_pylist()
    swappable = np.array(
        [d is not None and int(d[8:10]) <= 12 and d[8:10] != d[5:7] for d in text], dtype=bool
    )
    swapped = swappable & (rng.random(size) < day_month_rate)
    mistyped = ~swapped & (rng.random(size) < digit_rate)
    draws = rng.random((size, 2, 8))  # enough attempts to find a digit that keeps the date valid

    def mistype(date: str, i: int) -> str:
        for position, digit in draws[i].T:
            at = (2, 3, 5, 6, 8, 9)[int(position * 6)]
            wrong = str((int(date[at]) + 1 + int(digit * 9)) % 10)
            candidate = date[:at] + wrong + date[at + 1 :]
            if _valid_date(candidate):
                return candidate
        return date

    for i in np.flatnonzero(swapped):
        text[i] = f"{text[i][:5]}{text[i][8:10]}-{text[i][5:7]}"
    for i in np.flatnonzero(mistyped):
        if text[i] is not None:
            text[i] = mistype(text[i], i)
    return pa.array(text, pa.string())


def with_postcode_digit_off(rng: np.random.Generator, postcodes: pa.Array, rate: float) -> pa.Array:
    """One digit of the postcode one off (50667 -> 50668, SW1A 2AA -> SW1A 3AA) in about ``rate`` of
    them; never the first character, which names the region and is rarely mistyped."""
    rows = pick_rows(rng, len(postcodes), rate)
    pick, step = rng.random(len(rows)), np.where(rng.random(len(rows)) < 0.5, 1, 9)

    def off_by_one(code: str, i: int) -> str:
        digits = [at for at in range(1, len(code)) if code[at].isdigit()]
        if not digits:
            return code
        at = digits[int(pick[i] * len(digits))]
        return code[:at] + str((int(code[at]) + int(step[i])) % 10) + code[at + 1 :]

    return map_rows(postcodes, rows, off_by_one)


def fill_in_forms(rng: np.random.Generator, fields: dict[str, pa.Array], messiness) -> dict[str, pa.Array]:
    """What people and clerks do to a form, at the rates of ``messiness`` (a Messiness): names the
    wrong way round, the given name left out, street or city left empty, a postcode digit off.

    ``fields`` maps first_name, last_name, street, city and postcode to a source's values; the same
    keys come back distorted. Every draw comes from ``rng``, so a source's other values stay as they were.
    """
    first, last = swap_names(rng, fields["first_name"], fields["last_name"], messiness.name_swap)
    return {
        "first_name": drop_values(rng, first, messiness.given_name_dropped),
        "last_name": last,
        "street": drop_values(rng, fields["street"], messiness.missing_street),
        "city": drop_values(rng, fields["city"], messiness.missing_city),
        "postcode": with_postcode_digit_off(rng, fields["postcode"], messiness.postcode_digit),
    }
