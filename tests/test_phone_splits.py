"""The column-wise split of plain numbers (crm_pipelines.staging.phone_splits) against the one-by-one one."""

import random

import numpy as np
import phonenumbers

from crm_pipelines.staging.phone_splits import plain_splits
from crm_pipelines.staging.phones import _placeholder_digits, _split_parts, phone_verdict, phone_verdicts


def _keys(seed: int) -> list[str]:
    """Plain digit strings in the shapes whose split takes a branch of its own: international dialling
    prefixes, a region's own country code in front, trunk prefixes that capture or are rewritten
    (Argentina, Brazil, Mexico), placeholders, short numbers, no region."""
    rng = random.Random(seed)
    keys = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        code, trunk = metadata.country_code, metadata.national_prefix or ""
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        national = str(example.national_number) if example else "123456"
        abroad = "011" if region == "US" else "00"
        for _ in range(3):
            digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 16)))
            shapes = [national, f"{trunk}{national}", f"{trunk}{digits}", f"{code}{national}",
                      f"{code}{trunk}{digits}", f"{abroad}49{digits}", f"+{code}{digits}", f"+{code}{trunk}{national}",
                      digits, f"+{digits}", rng.choice(["1234567", "0000", "9876543210", "+49111111", "55"])]
            keys += [f"{s}\x1f{'' if s.startswith('+') else region}" for s in shapes]
    keys += ["0301234567\x1f", "+\x1fDE", "+0301234\x1f"]
    return list(dict.fromkeys(keys))


def test_plain_numbers_split_in_columns_get_the_verdicts_of_one_by_one() -> None:
    keys = _keys(seed=31)
    one_by_one = [phone_verdict(key) for key in keys]
    assert phone_verdicts(keys).as_list() == one_by_one
    assert sum(v.value is not None for v in one_by_one) > 500
    assert sum(v.junk for v in one_by_one) > 50


def test_plain_numbers_split_in_columns_as_one_by_one() -> None:
    # Compared split by split: a wrong split that fails validation would still get the right verdict
    # (the long way), so the verdicts alone do not show it.
    keys = _keys(seed=7) + _keys(seed=8)
    junk, judged = np.zeros(len(keys), dtype=bool), np.zeros(len(keys), dtype=bool)
    handled, by_country = plain_splits(keys, junk, judged)
    columns = {i: (code, national) for code, numbers in by_country.items() for i, national in numbers}
    expected = {}
    for i, key in enumerate(keys):
        number, _, region = key.partition("\x1f")
        if not handled[i]:
            continue
        if _placeholder_digits(number.removeprefix("+")):
            assert junk[i] and judged[i], key
            continue
        parts = _split_parts(number, region)
        if parts is not None:
            expected[i] = (parts[0], str(int(parts[1])))
    assert columns == expected
    assert handled.sum() > 0.9 * len(keys) and len(expected) > 0.5 * len(keys)
