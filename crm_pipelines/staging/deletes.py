"""Records a source deleted: flagged as deleted in the delivery, or missing from it.

- A source entity may declare how it marks deleted records (crm.yaml ``deleted_column`` or
  ``deleted_flag``). When the current version of a record carries the mark, the record is not staged:
  its raw rows count as *deleted* in the reconciliation, and everything built from staging loses it
  on the same run.
- A record staged by the previous run that has no row at all in the source's raw table any more (a
  full export without it) is gone from the source: staging rebuilds from raw, so it simply is not
  staged again, and it is recorded as deleted.

Either way the removal is written to ``audit.source_deletes`` for the run that made it, so a record
leaving the marts can always be traced to what the source did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from crm_pipelines.config import EntitySourceConfig
from crm_pipelines.staging.values import clean_text, parse_booleans, parse_timestamps

if TYPE_CHECKING:
    import pandas as pd

INVALID_DELETED_MARK = "invalid_deleted_mark"
FLAGGED_DELETED = "flagged_deleted"
MISSING_FROM_DELIVERY = "missing_from_delivery"


@dataclass(frozen=True)
class DeleteMarks:
    """Per raw row: whether the source marks it deleted, or marks it with a value that means nothing."""

    deleted: pd.Series
    invalid: pd.Series
    column: str | None
    values: pd.Series | None
    """The mark column's cleaned text (for reasons)."""
    problem: str = ""


def delete_marks(settings: EntitySourceConfig, raw: pd.DataFrame) -> DeleteMarks:
    """Read the declared delete mark of every raw row (no mark declared: nothing is deleted)."""
    import pandas as pd
    nothing = pd.Series(False, index=raw.index)
    if settings.deleted_flag is not None:
        column = settings.deleted_flag.column
        if column not in raw.columns:
            return DeleteMarks(nothing, nothing, column, None)
        text, _ = clean_text(raw[column])
        marks = {v.strip().lower() for v in settings.deleted_flag.values}
        return DeleteMarks(text.str.lower().isin(marks).fillna(False).astype(bool), nothing, column, text)
    column = settings.deleted_column
    if column is None or column not in raw.columns:
        return DeleteMarks(nothing, nothing, column, None)
    text, _ = clean_text(raw[column])
    flags = parse_booleans(text)
    unflagged = text.notna() & flags.isna()
    # A deleted_at style column: any time in it marks the record deleted.
    times = parse_timestamps(text.where(unflagged), settings.timestamp_format, settings.timezone)
    deleted = flags.fillna(False).astype(bool) | times.notna()
    invalid = unflagged & times.isna()
    problem = "is neither yes/no nor a time, so it does not say whether the record is deleted"
    return DeleteMarks(deleted, invalid, column, text, problem)


def removed_records(
    previous_ids: pd.Series | None, raw_ids: pd.Series, flagged_ids: pd.Series
) -> pd.DataFrame:
    """Records staged last run that this run removes: ``record_id`` and ``kind``.

    ``previous_ids``: record ids the previous run staged for this source and entity (None on a first
    run); ``raw_ids``: every record id in the raw table now; ``flagged_ids``: the records whose current
    version is marked deleted.
    """
    import pandas as pd
    if previous_ids is None or previous_ids.empty:
        return pd.DataFrame({"record_id": pd.Series([], dtype="str"), "kind": pd.Series([], dtype="str")})
    previous = pd.Index(previous_ids.dropna().astype("str").unique())
    missing = previous.difference(pd.Index(raw_ids.dropna().astype("str").unique()), sort=False)
    flagged = previous.intersection(pd.Index(flagged_ids.dropna().astype("str").unique()), sort=False)
    return pd.DataFrame(
        {
            "record_id": [*missing, *flagged],
            "kind": [MISSING_FROM_DELIVERY] * len(missing) + [FLAGGED_DELETED] * len(flagged),
        }
    ).astype("str")


def removal_reason(kind: str, source: str, entity: str) -> str:
    if kind == FLAGGED_DELETED:
        return f"the current version of this {entity} record in source {source!r} is marked deleted"
    return f"this {entity} record, staged by the previous run, is no longer in source {source!r}'s delivery"
