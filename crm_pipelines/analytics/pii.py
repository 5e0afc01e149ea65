"""Keep, mask, hash or drop the personal data of a mart, per class, as ``pii:`` in crm.yaml decides.

The classes and the columns in them are declared in
:data:`crm_pipelines.analytics.mart_columns.PII_COLUMNS`; :func:`protect_frame` is applied to every
mart at its boundary (:func:`crm_pipelines.analytics.mart_boundary.to_published_mart`), so the
warehouse's marts, the BI file copied from them, the validation reports and the asset previews all
hold the same protected values.

- ``hash``: the column is renamed ``<col>_sha256`` and holds the lower-case hex SHA-256 of the
  normalized value (:func:`normalized`): the form marketing platforms hash for audience matching, so
  the same person gives the same digest in every run and every tool. Nulls stay null.
- ``mask``: the column keeps its name and becomes text a person can read but not use to reach
  anybody: ``j***@example.com``, ``+49 *** ** 12``, ``J.`` for a name, the year of a birth date,
  ``***`` for a street line and the first two characters of a postcode (``10***``).
- ``drop``: the column is not published.

A hashed or masked column is text whatever it was before; :func:`protected_columns` declares the
published columns, so the warehouse types, the comments and ``dagster/column_schema`` follow.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from crm_pipelines.analytics.pii_settings import PiiClass, PiiMode, PiiSettings
from crm_pipelines.schema import Column

HASH_SUFFIX = "_sha256"
_COUNTRY_CODES = pa.array(sorted(str(code) for code in COUNTRY_CODE_TO_REGION_CODE), type=pa.string())

# Each function takes the non-null values of a column as an Arrow string array and works on the whole
# column at once in Arrow's compute kernels: a mart has a row per customer, a million or more.
Transform = Callable[[pa.Array], pa.Array]
_END = 2**31 - 1


def _text(values: pa.Array) -> pa.Array:
    """Unicode NFC, whitespace collapsed and trimmed."""
    collapsed = pc.replace_substring_regex(pc.utf8_normalize(values, "NFC"), r"\s+", " ")
    return pc.utf8_trim_whitespace(collapsed)


def _lower_text(values: pa.Array) -> pa.Array:
    return pc.utf8_lower(_text(values))


def _email(values: pa.Array) -> pa.Array:
    return pc.utf8_lower(pc.utf8_trim_whitespace(values))


def _phone(values: pa.Array) -> pa.Array:
    """E.164 as staging writes it (``+4930123456``); punctuation a source may have kept is removed."""
    return pc.replace_substring_regex(values, r"[\s\-./()]", "")


def _postcode(values: pa.Array) -> pa.Array:
    return pc.utf8_upper(pc.replace_substring_regex(values, r"\s+", ""))


def _birth_date(values: pa.Array) -> pa.Array:
    """ISO 8601 date, ``1984-03-07``: the first ten characters of a date, timestamp or ISO text."""
    return pc.utf8_slice_codeunits(pc.utf8_trim_whitespace(values), 0, 10)


# How each column is normalized before hashing (docs/marts.md, "Personal data", lists them).
_NORMALIZE: dict[str, Transform] = {
    "first_name": _lower_text,
    "last_name": _lower_text,
    "email": _email,
    "phone": _phone,
    "date_of_birth": _birth_date,
    "address_line1": _lower_text,
    "address_line2": _lower_text,
    "postcode": _postcode,
}


def _as_text(values: pd.Series) -> pa.Array:
    """Non-null values as an Arrow string array; dates and timestamps as ISO text (``1984-03-07``)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        values = values.dt.strftime("%Y-%m-%d")
    elif len(values) and isinstance(values.iloc[0], dt.date | pd.Timestamp):
        values = values.map(lambda v: v.isoformat())
    return pa.array(values.astype("string").tolist(), type=pa.string())


def _digests(values: pa.Array) -> pa.Array:
    """SHA-256 of each value, computed once per distinct value (names, birth dates and postcodes repeat)."""
    distinct = pc.unique(values)
    digests = pa.array([hashlib.sha256(v.encode("utf-8")).hexdigest() for v in distinct.to_pylist()], type=pa.string())
    return pc.take(digests, pc.index_in(values, value_set=distinct))


def normalized(column: str, value: object) -> str:
    """The form of ``value`` that :func:`sha256` hashes, for a column of :data:`PII_COLUMNS`."""
    return _NORMALIZE[column](_as_text(pd.Series([value])))[0].as_py()


def sha256(column: str, value: object) -> str:
    """Lower-case hex SHA-256 of the UTF-8 bytes of the normalized value."""
    return hashlib.sha256(normalized(column, value).encode("utf-8")).hexdigest()


def _mask_email(values: pa.Array) -> pa.Array:
    email = _email(values)
    masked = pc.replace_substring_regex(email, r"^([^@]?)[^@]*@(.*)$", r"\1***@\2")
    return pc.if_else(pc.match_substring(email, "@"), masked, "***")


def _mask_phone(values: pa.Array) -> pa.Array:
    digits = pc.replace_substring_regex(_phone(values), r"^\+", "")
    code = pa.nulls(len(digits), pa.string())
    for size in (1, 2, 3):  # country codes are prefix-free: at most one length matches
        prefix = pc.utf8_slice_codeunits(digits, 0, size)
        code = pc.if_else(pc.is_in(prefix, value_set=_COUNTRY_CODES), prefix, code)
    masked = pc.binary_join_element_wise("+", code, " *** ** ", pc.utf8_slice_codeunits(digits, -2, _END), "")
    return pc.fill_null(masked, "***")


def _mask_name(values: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(pc.utf8_upper(pc.utf8_slice_codeunits(_text(values), 0, 1)), ".", "")


def _stars(values: pa.Array) -> pa.Array:
    return pa.array(["***"] * len(values), type=pa.string())


_MASK: dict[str, Transform] = {
    "first_name": _mask_name,
    "last_name": _mask_name,
    "email": _mask_email,
    "phone": _mask_phone,
    "date_of_birth": lambda v: pc.utf8_slice_codeunits(_birth_date(v), 0, 4),
    "address_line1": _stars,
    "address_line2": _stars,
    "postcode": lambda v: pc.binary_join_element_wise(pc.utf8_slice_codeunits(_postcode(v), 0, 2), "***", ""),
}

MASK_DESCRIPTIONS: dict[str, str] = {
    "first_name": "the initial (J.)",
    "last_name": "the initial (S.)",
    "email": "the first character and the domain (j***@example.com)",
    "phone": "the country code and the last two digits (+49 *** ** 12)",
    "date_of_birth": "the year (1984)",
    "address_line1": "*** when there is one",
    "address_line2": "*** when there is one",
    "postcode": "the first two characters (10***)",
}

HASH_DESCRIPTIONS: dict[str, str] = {
    "first_name": "trimmed, whitespace collapsed, Unicode NFC, lower case",
    "last_name": "trimmed, whitespace collapsed, Unicode NFC, lower case",
    "email": "trimmed, lower case",
    "phone": "E.164 with the + (+4930123456)",
    "date_of_birth": "ISO date (1984-03-07)",
    "address_line1": "trimmed, whitespace collapsed, Unicode NFC, lower case",
    "address_line2": "trimmed, whitespace collapsed, Unicode NFC, lower case",
    "postcode": "spaces removed, upper case",
}


def _protect(series: pd.Series, column: str, mode: PiiMode) -> pd.Series:
    """The hashed or masked column; nulls stay null."""
    out = pd.Series(pd.NA, index=series.index, dtype="string")
    present = series.notna()
    if present.any():
        values = _as_text(series[present])
        protected = _digests(_NORMALIZE[column](values)) if mode == "hash" else _MASK[column](values)
        out[present] = pd.array(protected, dtype="string")
    return out


@dataclass(frozen=True)
class ProtectedMart:
    """A mart after the policy: its frame, its published columns, and what changed."""

    frame: pd.DataFrame
    columns: tuple[Column, ...]
    renamed: Mapping[str, str] = field(default_factory=dict)
    """Original column -> published column (hashed columns)."""
    dropped: frozenset[str] = frozenset()


def column_modes(
    table: str, names: Sequence[str], settings: PiiSettings, classes: Mapping[str, PiiClass]
) -> dict[str, PiiMode]:
    """The policy's mode for each personal-data column among ``names`` that is not kept."""
    modes = {n: settings.mode(table, classes[n]) for n in names if n in classes}
    return {n: m for n, m in modes.items() if m != "keep"}


def protected_column(column: Column, mode: PiiMode) -> Column | None:
    """How ``column`` is declared once ``mode`` applies: renamed and text for hash, text for mask."""
    if mode == "drop":
        return None
    if mode == "hash":
        return Column(
            f"{column.name}{HASH_SUFFIX}",
            "string",
            f"SHA-256 (lower-case hex) of {column.name}, {HASH_DESCRIPTIONS[column.name]}; null when unknown "
            "(crm.yaml pii).",
        )
    if mode == "mask":
        return Column(
            column.name, "string", f"{column.description} Masked to {MASK_DESCRIPTIONS[column.name]} (crm.yaml pii)."
        )
    return column


def protect_frame(
    table: str,
    frame: pd.DataFrame,
    columns: Sequence[Column],
    settings: PiiSettings,
    classes: Mapping[str, PiiClass],
) -> ProtectedMart:
    """``frame`` and its declared ``columns`` with the policy applied to every personal-data column."""
    names = list(dict.fromkeys([*frame.columns, *(c.name for c in columns)]))
    modes = column_modes(table, names, settings, classes)
    if not modes:
        return ProtectedMart(frame, tuple(columns))
    out = frame.copy()
    renamed: dict[str, str] = {}
    for name, mode in modes.items():
        if mode == "drop" or name not in out.columns:
            continue
        out[name] = _protect(out[name], name, mode)
        if mode == "hash":
            renamed[name] = f"{name}{HASH_SUFFIX}"
    dropped = frozenset(n for n, m in modes.items() if m == "drop")
    out = out.drop(columns=[n for n in dropped if n in out.columns]).rename(columns=renamed)
    declared = []
    for column in columns:
        protected = protected_column(column, modes[column.name]) if column.name in modes else column
        if protected is not None:
            declared.append(protected)
    return ProtectedMart(out, tuple(declared), renamed, dropped)
