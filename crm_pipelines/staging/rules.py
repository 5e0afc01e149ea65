"""The rules every entity shares: required columns, typing, and no timestamps from the future.

:class:`EntityRows` carries one source's rows of one entity through the rules: the cleaned text, the
typed columns built so far, the verdicts, and the counts reported as asset metadata. Rules run in
this order (the first failing one rejects a row): ``missing_required``; per column in schema order
``invalid_timestamp`` (also before 1900) / ``invalid_date`` / ``invalid_number`` /
``invalid_quantity`` / ``invalid_boolean``; ``future_date``; then the entity's own rules
(:mod:`.entities`). A missing record id (``missing_record_id``) is judged before all of them, as
versions of a record cannot be resolved without it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from crm_pipelines.config import CrmConfig, EntitySourceConfig, SourceConfig
from crm_pipelines.schema import Entity
from crm_pipelines.staging.rejections import Rejections
from crm_pipelines.staging.values import (
    changed,
    parse_booleans,
    parse_dates,
    parse_numbers,
    parse_timestamps,
    whole_numbers,
)

if TYPE_CHECKING:
    import pandas as pd

EARLIEST_TIMESTAMP = "1900-01-01"
"""The earliest plausible timestamp, UTC (ISO text: no pandas at load time)."""
# Integer columns whose non-whole values break a rule of their own rather than plain typing.
WHOLE_NUMBER_RULES = {"quantity": "invalid_quantity"}


@dataclass
class StagingStats:
    """Counts for asset metadata: values changed by normalization, junk nulled, defaults applied."""

    values_normalized: Counter[str] = field(default_factory=Counter)
    junk_nulled: Counter[str] = field(default_factory=Counter)
    defaults_applied: Counter[str] = field(default_factory=Counter)
    fields_nulled: Counter[str] = field(default_factory=Counter)
    """Malformed optional fields nulled (and quarantined as fields), by rule."""
    identical_repeats: int = 0
    """Rows repeating another row of the same record and delivery exactly (counted as superseded)."""

    def add(self, other: StagingStats) -> None:
        self.identical_repeats += other.identical_repeats
        self.fields_nulled.update(other.fields_nulled)
        self.values_normalized.update(other.values_normalized)
        self.junk_nulled.update(other.junk_nulled)
        self.defaults_applied.update(other.defaults_applied)


@dataclass
class EntityRows:
    """One source's current rows of one entity, while they are typed and checked."""

    entity: Entity
    text: pd.DataFrame
    """Cleaned text (trimmed, blanks and placeholders null) under canonical column names."""
    config: CrmConfig
    source: SourceConfig
    as_of_end: pd.Timestamp
    stats: StagingStats
    typed: dict[str, pd.Series] = field(default_factory=dict)
    checks: Rejections = field(init=False)

    def __post_init__(self) -> None:
        self.checks = Rejections(self.text.index)

    @property
    def settings(self) -> EntitySourceConfig:
        return self.source.entities[self.entity.name]

    def set_normalized(self, column: str, values: pd.Series) -> None:
        """Publish ``values`` for ``column``, counting how many differ from the cleaned source text."""
        count = changed(self.text[column], values)
        if count:
            self.stats.values_normalized[column] += count
        self.typed[column] = values

    def note_junk(self, column: str, junk: pd.Series) -> None:
        count = int(junk.sum())
        if count:
            self.stats.junk_nulled[column] += count


# Optional customer fields whose malformed value is nulled (and quarantined as a field), not the record:
# losing a whole person for a bad phone number changes identities and drops their other fields.
FIELD_LEVEL_COLUMNS = {"customers": frozenset({"email", "phone", "date_of_birth", "country"})}


def reject_or_null(
    rows: EntityRows, failing: pd.Series, rule: str, column: str, values: pd.Series, problem: str | pd.Series
) -> None:
    """Reject the rows where ``failing``, or, for a field-level column, null the field and keep the row."""
    if column not in FIELD_LEVEL_COLUMNS.get(rows.entity.name, ()):
        rows.checks.reject_values(failing, rule, column, values, problem)
        return
    nulled = rows.checks.null_field(failing, rule, column, values, problem)
    if column in rows.typed and nulled.any():
        rows.typed[column] = rows.typed[column].mask(nulled)


def check_required(rows: EntityRows) -> None:
    """``missing_required``: a required column is null (blank or a placeholder counts as null)."""
    for column in rows.entity.required_columns:
        if column == rows.entity.record_id:
            continue  # a missing record id is rejected before versions are resolved
        rows.checks.reject(
            rows.text[column].isna(),
            "missing_required",
            column,
            lambda labels, c=column: [f"{c} is missing but required for {rows.entity.name}"] * len(labels),
        )


def type_columns(rows: EntityRows) -> None:
    """Parse every column to its schema type; a present value that does not parse rejects the row."""
    import pandas as pd
    settings = rows.settings
    for column in rows.entity.columns:
        text = rows.text[column.name]
        if column.dtype == "string":
            rows.typed.setdefault(column.name, text)
            continue
        if column.dtype == "timestamp":
            typed = parse_timestamps(text, settings.timestamp_format, settings.timezone)
            expected = "ISO 8601"
            if settings.timestamp_format:
                expected = f"format {settings.timestamp_format!r} or ISO 8601"
            problem = f"is not a timestamp ({expected})"
            _reject_unparsed(rows, column.name, typed, "invalid_timestamp", problem)
            # Year-0001 style values are system placeholders, not times anything happened.
            rows.checks.reject_values(
                typed.lt(pd.Timestamp(EARLIEST_TIMESTAMP, tz="UTC")), "invalid_timestamp", column.name, text,
                f"is before {EARLIEST_TIMESTAMP}",
            )
        elif column.dtype == "date":
            typed = parse_dates(text, settings.timestamp_format)
            _reject_unparsed(rows, column.name, typed, "invalid_date", "is not a date (expected ISO 8601)")
        elif column.dtype == "float":
            typed = parse_numbers(text)
            _reject_unparsed(rows, column.name, typed, "invalid_number", "is not a number")
        elif column.dtype == "integer":
            numbers = parse_numbers(text)
            _reject_unparsed(rows, column.name, numbers, "invalid_number", "is not a number")
            fraction = numbers.notna() & ~whole_numbers(numbers)
            rule = WHOLE_NUMBER_RULES.get(column.name, "invalid_number")
            rows.checks.reject_values(fraction, rule, column.name, text, "is not a whole number")
            typed = numbers.where(whole_numbers(numbers)).astype("Int64")
        else:
            typed = parse_booleans(text)
            _reject_unparsed(rows, column.name, typed, "invalid_boolean", "is not yes/no or true/false")
        rows.typed[column.name] = typed


def _reject_unparsed(rows: EntityRows, column: str, typed: pd.Series, rule: str, problem: str) -> None:
    text = rows.text[column]
    reject_or_null(rows, typed.isna() & text.notna(), rule, column, text, problem)


def check_future_timestamps(rows: EntityRows) -> None:
    """``future_date``: a timestamp later than the end of the run's as-of day."""
    limit = rows.as_of_end
    for column in rows.entity.columns:
        if column.dtype != "timestamp":
            continue
        rows.checks.reject_values(
            rows.typed[column.name].gt(limit),
            "future_date",
            column.name,
            rows.text[column.name],
            f"is later than the run's as-of end {limit.isoformat()}",
        )
