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
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
from phonenumbers import COUNTRY_CODE_TO_REGION_CODE

from crm_pipelines.analytics.pii_settings import PiiClass, PiiMode, PiiSettings
from crm_pipelines.schema import Column

HASH_SUFFIX = "_sha256"
_SPACES = re.compile(r"\s+")
_PHONE_PUNCTUATION = re.compile(r"[\s\-./()]")


def _text(value: object) -> str:
    """Unicode NFC, whitespace collapsed and trimmed."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", str(value))).strip()


def _phone(value: object) -> str:
    """E.164 as staging writes it (``+4930123456``); punctuation a source may have kept is removed."""
    return _PHONE_PUNCTUATION.sub("", str(value).strip())


def _birth_date(value: object) -> str:
    """ISO 8601 date, ``1984-03-07``."""
    if isinstance(value, str):
        return dt.date.fromisoformat(value.strip()[:10]).isoformat()
    return pd.Timestamp(value).date().isoformat()


# How each column is normalized before hashing (docs/marts.md, "Personal data", lists them).
_NORMALIZE: dict[str, Callable[[object], str]] = {
    "first_name": lambda v: _text(v).lower(),
    "last_name": lambda v: _text(v).lower(),
    "email": lambda v: str(v).strip().lower(),
    "phone": _phone,
    "date_of_birth": _birth_date,
    "address_line1": lambda v: _text(v).lower(),
    "address_line2": lambda v: _text(v).lower(),
    "postcode": lambda v: _SPACES.sub("", str(v)).upper(),
}


def normalized(column: str, value: object) -> str:
    """The form of ``value`` that :func:`sha256` hashes, for a column of :data:`PII_COLUMNS`."""
    return _NORMALIZE[column](value)


def sha256(column: str, value: object) -> str:
    """Lower-case hex SHA-256 of the UTF-8 bytes of the normalized value."""
    return hashlib.sha256(normalized(column, value).encode("utf-8")).hexdigest()


def _mask_email(value: object) -> str:
    local, at, domain = str(value).strip().lower().rpartition("@")
    return f"{local[:1]}***@{domain}" if at else "***"


def _mask_phone(value: object) -> str:
    digits = _phone(value).lstrip("+")
    code = next(
        (digits[:n] for n in (1, 2, 3) if digits[:n].isdigit() and int(digits[:n]) in COUNTRY_CODE_TO_REGION_CODE), ""
    )
    return f"+{code} *** ** {digits[-2:]}" if code else "***"


def _mask_name(value: object) -> str:
    text = _text(value)
    return f"{text[:1].upper()}." if text else ""


_MASK: dict[str, Callable[[object], str]] = {
    "first_name": _mask_name,
    "last_name": _mask_name,
    "email": _mask_email,
    "phone": _mask_phone,
    "date_of_birth": lambda v: _birth_date(v)[:4],
    "address_line1": lambda v: "***",
    "address_line2": lambda v: "***",
    "postcode": lambda v: f"{_SPACES.sub('', str(v)).upper()[:2]}***",
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


def _apply(series: pd.Series, function: Callable[[object], str]) -> pd.Series:
    """``function`` of every non-null value, once per distinct value; nulls stay null."""
    present = series.notna()
    out = pd.Series(pd.NA, index=series.index, dtype="string")
    if present.any():
        distinct = series[present].unique()
        lookup = {value: function(value) for value in distinct}
        out[present] = series[present].map(lookup).astype("string")
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
        out[name] = _apply(out[name], (lambda v, n=name: sha256(n, v)) if mode == "hash" else _MASK[name])
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
