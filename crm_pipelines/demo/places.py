"""Addresses and phone numbers per country, drawn in bulk.

Numbers that must not collide between people (mobile numbers, landlines of different households) come
from an affine bijection ``low + (i * a + b) mod range``: unique by construction and random-looking,
without the memory of drawing from the whole number space.
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
    int_strings,
    take,
    weighted_index,
    where,
)
from crm_pipelines.demo.vocab import (
    ADDRESS_LINE2,
    CITIES,
    COUNTRIES,
    HOUSE_NUMBER_FIRST,
    LANDLINE_LENGTH,
    MOBILE_PLANS,
    STREETS,
    City,
    popularity,
    words,
)

_POSTCODE_WIDTH = {"DE": 5, "AT": 4, "CH": 4, "US": 5, "FR": 5, "NL": 4}
_POSTCODE_LETTERS = "ABCDEGHJKLMNPRTVWXZ"  # letter pairs in Dutch postcodes; SA, SD and SS are not issued
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # letters British inward codes use


@dataclass(frozen=True)
class Address:
    street: pa.Array
    street2: pa.Array
    city: pa.Array
    postcode: pa.Array
    region: pa.Array
    area_code: pa.Array
    """Landline dialling code of the city, without trunk prefix."""

    def take(self, index: np.ndarray) -> Address:
        positions = pa.array(index)
        return Address(*(getattr(self, f).take(positions) for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class PhoneNumber:
    """A national number split as people write it: area code (or mobile prefix) and subscriber number."""

    area: pa.Array
    subscriber: pa.Array

    def take(self, index: np.ndarray) -> PhoneNumber:
        positions = pa.array(index)
        return PhoneNumber(self.area.take(positions), self.subscriber.take(positions))


def by_country(
    country: np.ndarray, build: Callable[[str, np.ndarray], dict[str, pa.Array]]
) -> dict[str, pa.Array]:
    """Run ``build(country_code, row_positions)`` per country and stitch the columns back in row order."""
    positions: list[np.ndarray] = []
    pieces: dict[str, list[pa.Array]] = {}
    for code_index, code in enumerate(COUNTRIES):
        rows = np.flatnonzero(country == code_index)
        if len(rows) == 0:
            continue
        positions.append(rows)
        for name, column in build(code, rows).items():
            pieces.setdefault(name, []).append(column)
    return {name: scatter(len(country), positions, parts) for name, parts in pieces.items()}


def scatter(size: int, positions: list[np.ndarray], parts: list[pa.Array]) -> pa.Array:
    """One array of ``size`` rows from parts that each fill the rows at their ``positions``."""
    order = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
    inverse = np.empty(size, dtype=np.int64)
    inverse[order] = np.arange(size)
    return pa.concat_arrays(parts).take(pa.array(inverse))


def unique_numbers(
    rng: np.random.Generator, count: int, length: int, first_digits: tuple[int, int]
) -> pa.Array:
    """``count`` distinct ``length``-digit strings whose first digit lies in ``first_digits`` (inclusive)."""
    low = first_digits[0] * 10 ** (length - 1)
    span = (first_digits[1] - first_digits[0] + 1) * 10 ** (length - 1)
    if count > span:
        raise ValueError(f"cannot draw {count} distinct {length}-digit numbers")
    multiplier = int(rng.integers(span // 3, span)) | 1
    while multiplier % 5 == 0 or np.gcd(multiplier, span) != 1:
        multiplier += 2
    offset = int(rng.integers(0, span))
    if count * span >= 2**62:
        raise ValueError(f"{count} numbers of {length} digits overflow int64 arithmetic")
    values = low + (np.arange(count, dtype=np.int64) * multiplier + offset) % span
    return int_strings(values, width=length)


def addresses(rng: np.random.Generator, country: np.ndarray) -> Address:
    """One address per row, in that row's country."""

    def build(code: str, rows: np.ndarray) -> dict[str, pa.Array]:
        size = len(rows)
        cities = CITIES[code]
        city = weighted_index(rng, [c.weight for c in cities], size)
        street_names = words(STREETS[code])
        street = take(street_names, weighted_index(rng, popularity(len(street_names), 0.5), size))
        number = _house_numbers(rng, code, size)
        line1 = concat(number, " ", street) if code in HOUSE_NUMBER_FIRST else concat(street, " ", number)
        line2_values = ADDRESS_LINE2[code].split("|")
        line2 = take(line2_values, rng.integers(0, len(line2_values), size))
        return {
            "street": line1,
            "street2": where(rng.random(size) < 0.08, line2, NULL_STRING),
            "city": take([c.name for c in cities], city),
            "postcode": _postcodes(rng, code, cities, city),
            "region": take([c.region for c in cities], city),
            "area_code": take([c.area_code for c in cities], city),
        }

    return Address(**by_country(country, build))


def _house_numbers(rng: np.random.Generator, code: str, size: int) -> pa.Array:
    top = {"US": 9000, "NL": 300, "GB": 200}.get(code, 150)
    numbers = int_strings(1 + (top * rng.beta(1.0, 3.0, size)).astype(np.int64))
    if code in ("DE", "AT", "NL"):
        suffix = take(["", "a", "b"], weighted_index(rng, [0.93, 0.05, 0.02], size))
        numbers = concat(numbers, suffix)
    return numbers


def _postcodes(rng: np.random.Generator, code: str, cities: tuple[City, ...], city: np.ndarray) -> pa.Array:
    size = len(city)
    if code == "GB":
        outward_lists = [c.outward_codes for c in cities]
        flat = [o for lst in outward_lists for o in lst]
        starts = np.cumsum([0] + [len(lst) for lst in outward_lists])[:-1]
        counts = np.array([len(lst) for lst in outward_lists])
        outward = take(flat, starts[city] + (rng.random(size) * counts[city]).astype(np.int64))
        letters = list(_INWARD_LETTERS)
        return concat(
            outward,
            " ",
            int_strings(rng.integers(1, 10, size)),
            take(letters, rng.integers(0, len(letters), size)),
            take(letters, rng.integers(0, len(letters), size)),
        )
    low = np.array([c.postcode_low for c in cities])[city]
    high = np.array([c.postcode_high for c in cities])[city]
    step = np.array([c.postcode_step for c in cities])[city]
    numeric = low + step * (rng.random(size) * ((high - low) // step + 1)).astype(np.int64)
    postcode = int_strings(numeric, width=_POSTCODE_WIDTH[code])
    if code == "NL":
        letters = list(_POSTCODE_LETTERS)
        postcode = concat(
            postcode,
            " ",
            take(letters, rng.integers(0, len(letters), size)),
            take(letters, rng.integers(0, len(letters), size)),
        )
    return postcode


def landlines(rng: np.random.Generator, country: np.ndarray, area_code: pa.Array) -> PhoneNumber:
    """A distinct landline per row, in the row's city."""
    area_length = np.asarray(pc.utf8_length(area_code))

    def build(code: str, rows: np.ndarray) -> dict[str, pa.Array]:
        subscriber_length = np.minimum(LANDLINE_LENGTH[code] - area_length[rows], 8)
        if code == "AT":
            subscriber_length = np.minimum(subscriber_length, 7)
        # US landlines use exchanges 2xx-5xx, mobiles 6xx-9xx: the two never collide.
        digit_ranges = {
            c.area_code: (2, 5) if code == "US" else c.subscriber_first_digits for c in CITIES[code]
        }
        areas = area_code.take(pa.array(rows))
        first_digits = np.array([digit_ranges[a] for a in areas.to_pylist()]).reshape(-1, 2)
        plan = subscriber_length * 100 + first_digits[:, 0] * 10 + first_digits[:, 1]
        positions, drawn = [], []
        for key in np.unique(plan):
            at = np.flatnonzero(plan == key)
            positions.append(at)
            drawn.append(unique_numbers(rng, len(at), int(key // 100), (int(key // 10 % 10), int(key % 10))))
        return {"area": areas, "subscriber": scatter(len(rows), positions, drawn)}

    return PhoneNumber(**by_country(country, build))


def mobiles(rng: np.random.Generator, country: np.ndarray, area_code: pa.Array) -> PhoneNumber:
    """A distinct mobile number per row."""

    def build(code: str, rows: np.ndarray) -> dict[str, pa.Array]:
        size = len(rows)
        prefixes, length, first_digits = MOBILE_PLANS[code]
        if prefixes:
            prefix = take(list(prefixes), rng.integers(0, len(prefixes), size))
        else:
            prefix = area_code.take(pa.array(rows))
        return {"area": prefix, "subscriber": unique_numbers(rng, size, length, first_digits)}

    return PhoneNumber(**by_country(country, build))
