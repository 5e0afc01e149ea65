"""Which raw row is the current version of a record, and which rows are not: the versioning rules.

A record (one record id of one source) may arrive many times. Between deliveries, the later batch
wins and the older rows are *superseded*. Within one delivery (one ``_batch_id``):

- rows that say the same thing (identical canonical values) are one record delivered twice: one is
  kept, the others are counted as superseded;
- rows that differ are ordered by the source's update time where it has one (the canonical
  ``updated_at``, else the cursor column of a cursor-mode entity): the one newest row wins and the
  others are superseded;
- otherwise nobody can say which row is right, so every row of that record in that delivery is
  quarantined as ``duplicate_key_conflict`` (say, a subscription both ``granted`` and ``withdrawn``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crm_pipelines.config import SourceConfig
from crm_pipelines.schema import RAW_BATCH_ID, RAW_INGESTED_AT, Entity
from crm_pipelines.staging.values import clean_text, parse_numbers, parse_timestamps

if TYPE_CHECKING:
    import pandas as pd

DUPLICATE_KEY_CONFLICT = "duplicate_key_conflict"
_RECORD, _BATCH, _ROW = "_record_id", "_batch", "_row"


@dataclass(frozen=True)
class Versions:
    """The verdicts of :func:`resolve_versions`, on the raw frame's index."""

    superseded: pd.Series
    """Older versions, and repeats of a row identical to the kept one."""
    conflicting: pd.Series
    """Rows of a record that one delivery holds in different, unordered versions."""
    conflict_reasons: pd.Series
    """The reason of each conflicting row (only those rows)."""
    identical_repeats: int
    """How many of the superseded rows repeat another row of the same delivery exactly."""


def resolve_versions(
    record_ids: pd.Series,
    content: pd.DataFrame,
    raw: pd.DataFrame,
    order: Callable[[pd.Index], tuple[str | None, pd.Series | None]] | None = None,
    *,
    record_column: str = "record_id",
) -> Versions:
    """Judge the rows of one source: ``record_ids`` (null when missing), ``content`` (the values that
    make two rows the same record version), the raw lineage columns, and ``order``, which gives for
    the rows it is passed the name and the typed values of what orders a record's rows (an update time
    or cursor; None when nothing does). It is only called for differing rows of one delivery."""
    import pandas as pd
    index = record_ids.index
    superseded = pd.Series(False, index=index)
    conflicting = pd.Series(False, index=index)
    reasons = pd.Series([], index=pd.Index([], dtype=index.dtype), dtype="str")
    repeated = record_ids.notna() & record_ids.duplicated(keep=False)
    if not repeated.any():
        return Versions(superseded, conflicting, reasons, 0)

    lineage = [c for c in (RAW_INGESTED_AT, RAW_BATCH_ID) if c in raw.columns]
    versions = raw.loc[repeated, lineage].assign(
        **{_RECORD: record_ids[repeated], _ROW: index[repeated]},
        **{_BATCH: raw[RAW_BATCH_ID][repeated].astype("str").fillna("") if RAW_BATCH_ID in raw.columns else ""},
    )
    versions = versions.sort_values([*lineage, _ROW], kind="stable", na_position="first")
    latest_batch = versions.groupby(_RECORD, sort=False)[_BATCH].transform("last")
    older = versions[_BATCH] != latest_batch
    superseded[versions.index[older.to_numpy()]] = True

    latest = versions[~older.to_numpy()]
    same = content.loc[latest.index].assign(**{_RECORD: latest[_RECORD]})
    repeats = same.duplicated(keep="last")  # identical to a later row of the same record and delivery
    distinct = latest[~repeats.to_numpy()]
    differing = distinct[distinct[_RECORD].duplicated(keep=False).to_numpy()]
    if differing.empty:
        superseded[repeats[repeats].index] = True
        return Versions(superseded, conflicting, reasons, int(repeats.sum()))

    unresolved = set(differing[_RECORD])
    order_column, order_values = order(differing.index) if order is not None else (None, None)
    if order_values is not None:
        ordered = order_values.reindex(differing.index)
        newest = ordered.groupby(differing[_RECORD], sort=False).transform("max")
        is_newest = ordered.notna() & ordered.eq(newest)
        winners = is_newest.groupby(differing[_RECORD], sort=False).transform("sum")
        resolved = winners.eq(1)
        superseded[differing.index[(resolved & ~is_newest).to_numpy()]] = True
        unresolved = set(differing.loc[~resolved.to_numpy(), _RECORD])

    in_conflict = latest[_RECORD].isin(unresolved).to_numpy()
    conflicting[latest.index[in_conflict]] = True
    repeats_kept = repeats & ~in_conflict
    superseded[repeats_kept[repeats_kept].index] = True
    reasons = _conflict_reasons(latest[in_conflict], content, record_column, order_column)
    return Versions(superseded, conflicting, reasons, int(repeats_kept.sum()))


def _conflict_reasons(
    rows: pd.DataFrame, content: pd.DataFrame, record_column: str, order_column: str | None
) -> pd.Series:
    """One reason per conflicting row, naming the record, the delivery and the columns that differ."""
    values = content.loc[rows.index]
    varying = values.groupby(rows[_RECORD], sort=False).nunique(dropna=False).gt(1)
    sizes = rows.groupby(_RECORD, sort=False).size()
    why = (
        f"and {order_column} does not single out the newest" if order_column else "and nothing orders them"
    )
    by_record = {
        record: (
            f"{record_column} {record!r} comes {sizes[record]} times in one delivery (batch "
            f"{batch}) with different {', '.join(varying.columns[varying.loc[record].to_numpy()])} {why}; "
            "all its rows of that delivery are quarantined rather than one picked at random"
        )
        for record, batch in rows.groupby(_RECORD, sort=False)[_BATCH].first().items()
    }
    return rows[_RECORD].map(by_record).astype("str")


def version_order(
    entity: Entity, source: SourceConfig, text: pd.DataFrame, raw: pd.DataFrame
) -> tuple[str | None, pd.Series | None]:
    """What orders the versions of a record within one delivery: the canonical ``updated_at`` where the
    source maps it, else a cursor-mode entity's cursor column; None when nothing does."""
    settings = source.entities[entity.name]
    if "updated_at" in settings.columns and "updated_at" in entity.column_names:
        return "updated_at", parse_timestamps(text["updated_at"], settings.timestamp_format, settings.timezone)
    column = settings.incremental.column
    if settings.incremental.mode != "cursor" or column is None or column not in raw.columns:
        return None, None
    values, _ = clean_text(raw[column])
    if settings.incremental.cursor_type == "integer":
        return column, parse_numbers(values)
    return column, parse_timestamps(values, settings.timestamp_format, settings.timezone)


def version_content(entity: Entity, source: SourceConfig, text: pd.DataFrame, raw: pd.DataFrame) -> pd.DataFrame:
    """The values two rows of one record must share to be the same version: the canonical ones, plus
    what staging also reads from raw (declared identifiers, the delete mark, the cursor that orders)."""
    import pandas as pd
    settings = source.entities[entity.name]
    extra = [*settings.identifiers.values(), settings.deleted_column, settings.incremental.column]
    extra.append(settings.deleted_flag.column if settings.deleted_flag else None)
    names = [c for c in dict.fromkeys(extra) if c is not None and c in raw.columns and c not in text.columns]
    if not names:
        return text
    return pd.concat([text, raw[names].astype("str")], axis=1)
