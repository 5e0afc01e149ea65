"""Phone numbers in E.164, validated with phonenumbers (libphonenumber's metadata).

Numbers are judged once per distinct (digits, region). ``phonenumbers.parse`` is most of the cost
of a verdict, and for the common shapes (``+4930123456``, or ``030123456`` in a region whose trunk
prefix is a plain ``0``) all it does is split off the country code or trunk prefix: those numbers are
split here and only validated by phonenumbers. Anything else, and every number that fails
validation, goes through the full parse, so errors read the same whichever path found them.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

from crm_pipelines.staging.contacts import JUNK, Normalized, Verdict, judge

if TYPE_CHECKING:
    import pandas as pd
    from phonenumbers import PhoneNumber

_PUNCTUATION = r"[\s\-./()]"
_KEY_SEPARATOR = "\x1f"
_PARSE_ERROR_CODE = re.compile(r"^\(\d+\)\s*")
_SEQUENCES = ("01234567890123456789", "98765432109876543210")
_DIGITS = re.compile(r"\+?\d+")
_NSN_LENGTHS = range(2, 18)  # phonenumbers' bounds on a national significant number


def _placeholder_digits(digits: str) -> bool:
    """0000000, 1111111, 1234567890, 9876543: numbers people type to get past a required field."""
    return len(set(digits)) <= 1 or (len(digits) >= 6 and any(digits in s for s in _SEQUENCES))


@functools.cache
def _plain_trunk_prefix(region: str) -> tuple[int, str | None] | None:
    """(country code, trunk prefix) of a region whose prefix parsing is a plain digit string.

    None when parsing national numbers involves more (carrier codes, transform rules, patterns).
    """
    from phonenumbers import PhoneMetadata
    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.national_prefix_transform_rule is not None:
        return None
    prefix = metadata.national_prefix_for_parsing
    if prefix is not None and not prefix.isdigit():
        return None
    return metadata.country_code, prefix


def _split(number: str, region: str) -> PhoneNumber | None:
    """What ``phonenumbers.parse`` would make of a plain digit string, when that is a mere split."""
    import phonenumbers
    from phonenumbers import COUNTRY_CODE_TO_REGION_CODE, PhoneNumber
    if not _DIGITS.fullmatch(number):
        return None
    if number.startswith("+"):
        digits = number[1:]
        if digits.startswith("0"):
            return None  # no country code starts with 0
        size = next((n for n in (1, 2, 3) if int(digits[:n] or 0) in COUNTRY_CODE_TO_REGION_CODE), None)
        if size is None:
            return None
        country_code, national = int(digits[:size]), digits[size:]
        plain = _plain_trunk_prefix(phonenumbers.region_code_for_country_code(country_code))
        if plain is None or (plain[1] and national.startswith(plain[1])):
            return None  # parse would try to strip a trunk prefix
    else:
        plain = _plain_trunk_prefix(region) if region else None
        if plain is None or not plain[1] or not number.startswith(plain[1]):
            return None
        country_code, national = plain[0], number[len(plain[1]) :]
    if national.startswith("0") or len(national) not in _NSN_LENGTHS:
        return None  # leading zeros (Italy) and odd lengths: leave them to parse
    return PhoneNumber(country_code=country_code, national_number=int(national))


def phone_verdict(key: str) -> Verdict:
    """The verdict on one ``<digits><separator><region>`` key (see :func:`normalize_phones`)."""
    import phonenumbers
    number, _, region = key.partition(_KEY_SEPARATOR)
    digits = re.sub(r"\D", "", number)
    if _placeholder_digits(digits):
        return JUNK
    split = _split(number, region)
    if split is not None and phonenumbers.is_valid_number(split):
        national = str(split.national_number)
        return JUNK if _placeholder_digits(national) else Verdict(f"+{split.country_code}{national}")
    try:
        parsed = phonenumbers.parse(number, region or None)
    except phonenumbers.NumberParseException as e:
        return Verdict(problem=f"is not a phone number ({_PARSE_ERROR_CODE.sub('', str(e))})")
    if _placeholder_digits(str(parsed.national_number)):
        return JUNK
    if not phonenumbers.is_valid_number(parsed):
        where = f"country code +{parsed.country_code}" if number.startswith("+") else f"region {region}"
        return Verdict(problem=f"is not a valid phone number for {where}")
    return Verdict(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def phone_keys(text: pd.Series, regions: pd.Series) -> pd.Series:
    """Cache keys: the number without punctuation (``00`` as ``+``), plus the region when national."""
    compact = text.str.replace(_PUNCTUATION, "", regex=True)
    compact = compact.mask(compact.str.startswith("00"), "+" + compact.str.slice(2))
    international = compact.str.startswith("+").fillna(False)
    region = regions.astype("str").where(~international, "")
    return compact + _KEY_SEPARATOR + region.fillna("")


def normalize_phones(text: pd.Series, regions: pd.Series) -> Normalized:
    """Phones in E.164; ``regions`` (alpha-2 per row) reads numbers written without a country code.

    ``030 123456``, ``(030) 123-456`` and ``030/123456`` in Germany share one verdict.
    """
    import phonenumbers

    # Validation matches each number against its region's metadata patterns, hundreds across regions:
    # more than the re module's bounded cache keeps, so without this they are looked up (or compiled
    # again) per number. Kept for the process; the patterns and verdicts are the same.
    phonenumbers.enable_pattern_cache()
    return judge(phone_keys(text, regions), phone_verdict)
