"""Erasure keys: the values that identify a person's rows, normalized as staging normalizes them, hashed.

An erased person is remembered only as SHA-256 hashes of normalized keys (``audit.erasure_tombstones``):

- ``email``: the address as staging stores it (validated, lower case);
- ``phone``: the number in E.164;
- ``source_record``: ``<source>:<record id>`` of a customer record (``shop:1042``);
- ``order``: ``<source>:<order id>`` of an order, so its lines (which name only their order) are known.

The same normalization applies to a raw row of a source export (:func:`raw_key_columns`,
:func:`matching_rows`), so an old export that still holds the person is recognized at ingest without the
warehouse keeping any of their values. Pure code: no Dagster, no warehouse.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crm_pipelines.config import CrmConfig, SourceConfig
from crm_pipelines.erasure.hashing import (
    EMAIL,
    ORDER,
    PHONE,
    SOURCE_RECORD,
    ErasureKeyError,
    KeyHashes,
    key_hash,
    record_key,
)
from crm_pipelines.staging.contacts import EmailNormalizer, normalize_countries, normalize_emails
from crm_pipelines.staging.phones import normalize_phones, phone_keys, phone_verdict
from crm_pipelines.staging.references import EMAIL_COLUMNS
from crm_pipelines.staging.values import apply_unique, clean_text


# -- keys typed by a person (the CLI, the job's config) -------------------------------------------------------
def normalize_email(raw: str) -> str:
    verdict = EmailNormalizer()(raw)
    if verdict.value is None:
        raise ErasureKeyError(f"email {raw!r} " + (verdict.problem or "is a placeholder, not an address"))
    return verdict.value


def normalize_phone(raw: str, default_country: str) -> str:
    """E.164; a number without a country code is read in ``default_country`` (crm.yaml)."""
    key = phone_keys(pd.Series([raw], dtype="str"), pd.Series([default_country], dtype="str")).iloc[0]
    verdict = phone_verdict(key)
    if verdict.value is None:
        raise ErasureKeyError(f"phone {raw!r} " + (verdict.problem or "is a placeholder, not a number"))
    return verdict.value


def parse_source_record(text: str, source_names: Iterable[str]) -> tuple[str, str]:
    """``SOURCE:ID`` as (source, record id), the source one crm.yaml declares."""
    source, sep, record_id = text.partition(":")
    names = sorted(source_names)
    if not sep or not record_id.strip():
        raise ErasureKeyError(f"source record {text!r}: write it as SOURCE:ID, e.g. shop:1042")
    if source not in names:
        raise ErasureKeyError(f"source record {text!r}: no source {source!r} in crm.yaml (known: {names})")
    return source, record_id.strip()


def request_hashes(
    *,
    emails: Iterable[str] = (),
    phones: Iterable[str] = (),
    source_records: Iterable[str] = (),
    config: CrmConfig,
) -> KeyHashes:
    """The hashed keys of an erasure request typed by a person. Raises :class:`ErasureKeyError`."""
    pairs = [(EMAIL, key_hash(normalize_email(e))) for e in emails]
    pairs += [(PHONE, key_hash(normalize_phone(p, config.default_country))) for p in phones]
    names = [s.name for s in config.sources]
    pairs += [(SOURCE_RECORD, key_hash(record_key(*parse_source_record(r, names)))) for r in source_records]
    return KeyHashes.of(pairs)


# -- keys of raw source rows ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyColumn:
    """A raw column that holds a key: its kind, and what turns its text into the key."""

    kind: str
    column: str
    record_source: str | None = None
    """Record keys: the source the id belongs to (``<record_source>:<id>``)."""
    country_column: str | None = None
    """Phones: the raw column with the row's country (numbers without a country code are read there)."""
    default_country: str | None = None


def raw_key_columns(config: CrmConfig, source: SourceConfig, entity: str) -> list[KeyColumn]:
    """The key columns of ``raw.<source>__<entity>``, under the source's own column names."""
    settings = source.entities[entity]
    mapping = settings.columns
    customer_source = settings.customer_source or source.name
    keys: list[KeyColumn] = []

    def add(kind: str, canonical: str, record_source: str | None = None, **extra: str | None) -> None:
        if canonical in mapping:
            keys.append(KeyColumn(kind, mapping[canonical], record_source, **extra))

    if entity == "customers":
        add(SOURCE_RECORD, "source_record_id", source.name)
        add(EMAIL, "email")
        add(
            PHONE, "phone",
            country_column=mapping.get("country"),
            default_country=(source.default_country or config.default_country).upper(),
        )
    elif entity == "order_items":
        add(ORDER, "order_id", source.name)
    else:
        if entity == "orders":
            add(ORDER, "order_id", source.name)
        add(SOURCE_RECORD, "source_customer_id", customer_source)
        if entity in EMAIL_COLUMNS:
            add(EMAIL, EMAIL_COLUMNS[entity])
    return keys


def key_values(frame: pd.DataFrame, key: KeyColumn) -> pd.Series:
    """The normalized key of each row of a raw ``frame`` (null where the row has none)."""
    if key.column not in frame.columns:
        return pd.Series(pd.NA, index=frame.index, dtype="str")
    text, _ = clean_text(frame[key.column])
    if key.kind == EMAIL:
        return normalize_emails(text).values
    if key.kind == PHONE:
        if key.country_column and key.country_column in frame.columns:
            countries = normalize_countries(clean_text(frame[key.country_column])[0]).values
        else:
            countries = pd.Series(pd.NA, index=frame.index, dtype="str")
        return normalize_phones(text, countries.fillna(key.default_country or "")).values
    return (key.record_source or "") + ":" + text


def hashes_of(values: pd.Series) -> pd.Series:
    """SHA-256 of each value, computed once per distinct value (null stays null)."""
    codes, digests = apply_unique(values, key_hash)
    return pd.Series(digests[codes], index=values.index, dtype=object)


def matching_rows(frame: pd.DataFrame, keys: Iterable[KeyColumn], tombstones: KeyHashes) -> np.ndarray:
    """Boolean mask of the rows of a raw ``frame`` that hold any tombstoned key."""
    matched = np.zeros(len(frame), dtype=bool)
    for key in keys:
        wanted = tombstones.get(key.kind)
        if not wanted or key.column not in frame.columns:
            continue
        matched |= hashes_of(key_values(frame, key)).isin(wanted).to_numpy(dtype=bool)
    return matched


def key_frame_columns(keys: Iterable[KeyColumn]) -> list[str]:
    """The raw columns :func:`matching_rows` reads."""
    columns: list[str] = []
    for key in keys:
        for name in (key.column, key.country_column):
            if name and name not in columns:
                columns.append(name)
    return columns
