"""Staging of one canonical entity: raw source rows in, typed and normalized rows out.

Every raw row ends as exactly one of four things, and the reconciliation says how many of each per
source: staged (the current version of a good record), superseded (an older version of a record that
a later load replaced, or an identical repeat; see :mod:`.versions`), quarantined (with the first rule
it failed and the raw row as JSON), or deleted (its current version is marked deleted; see
:mod:`.deletes`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from crm_pipelines.config import CrmConfig, SourceConfig
from crm_pipelines.schema import (
    CUSTOMER_IDENTIFIERS_COLUMNS,
    ENTITIES,
    QUARANTINE_COLUMNS,
    RAW_METADATA_COLUMNS,
    RECONCILIATION_COLUMNS,
    SOURCE_DELETE_COLUMNS,
    STAGING,
    Entity,
)
from crm_pipelines.staging.deletes import INVALID_DELETED_MARK, delete_marks, removal_reason, removed_records
from crm_pipelines.staging.entities import ENTITY_RULES
from crm_pipelines.staging.rules import (
    EntityRows,
    StagingStats,
    check_future_timestamps,
    check_required,
    type_columns,
)
from crm_pipelines.staging.values import as_utc_timestamp, clean_text, null_text, typed_frame
from crm_pipelines.staging.versions import DUPLICATE_KEY_CONFLICT, resolve_versions, version_content, version_order

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MISSING_RECORD_ID = "missing_record_id"
PandasData = TypeVar("PandasData", "pd.Series", "pd.DataFrame")


def _nothing_deleted() -> pd.DataFrame:
    import pandas as pd
    return pd.DataFrame({"source": [], "record_id": []})


@dataclass
class StagingResult:
    """What staging made of one entity.

    ``staged`` has exactly the entity's staged columns: text as ``str``, timestamps as
    ``datetime64[us, UTC]``, dates as ``datetime.date`` objects (None when missing), floats as
    ``float64``, integers as ``Int64`` and flags as ``boolean``.
    """

    staged: pd.DataFrame
    quarantined: pd.DataFrame
    """QUARANTINE_COLUMNS, one row per rejected record."""
    reconciliation: pd.DataFrame
    """RECONCILIATION_COLUMNS, one row per source."""
    identifiers: pd.DataFrame
    """CUSTOMER_IDENTIFIERS_COLUMNS (customers only; empty otherwise)."""
    summary: dict[str, Any]
    """Counts for asset metadata (plain JSON types)."""
    deletes: pd.DataFrame = field(default_factory=lambda: typed_frame(SOURCE_DELETE_COLUMNS, {}, 0))
    """SOURCE_DELETE_COLUMNS: records staged by the previous run that the source deleted since."""
    deleted: pd.DataFrame = field(default_factory=_nothing_deleted)
    """``source``, ``record_id`` (text) of the records whose current version here is marked deleted."""


@dataclass
class _SourceOutcome:
    source: str
    rows_in: int
    rows_superseded: int
    rows_deleted: int
    removed: pd.DataFrame
    """record_id, kind: records the previous run staged that the source deleted."""
    deleted_ids: pd.Series
    """Record ids whose current version is marked deleted."""
    staged: pd.DataFrame
    rejected: pd.DataFrame
    """record_id, rule, column_name, reason, raw_values."""
    identifiers: pd.DataFrame
    by_rule: Counter[str]
    stats: StagingStats
    unmapped: list[str] = field(default_factory=list)
    nulled_fields: pd.DataFrame | None = None
    """Like ``rejected``, for malformed optional fields nulled in staged records (not counted as rows)."""


def stage_entity(
    config: CrmConfig,
    entity: str,
    raw: Sequence[tuple[SourceConfig, pd.DataFrame]],
    *,
    run_id: str,
    as_of_end: dt.datetime,
    now: dt.datetime | None = None,
    previous: pd.DataFrame | None = None,
) -> StagingResult:
    """Type, normalize and check one entity's raw rows from every source that delivers it.

    ``raw`` holds, per source, the raw table as ingested: the source's own column names, text
    values, and the lineage columns ``_source``, ``_ingested_at``, ``_batch_id``. Timestamps after
    ``as_of_end`` (a naive value is UTC) are rejected as from the future; ``now`` stamps the
    quarantine and reconciliation rows (default: the current time). ``previous`` holds ``source`` and
    the record id of the records the previous run staged (not stubs): those that the source has
    deleted since are listed in ``deletes``.
    """
    if entity not in ENTITIES:
        raise ValueError(f"unknown entity {entity!r}; known: {sorted(ENTITIES)}")
    spec = ENTITIES[entity]
    stamp = as_utc_timestamp(now or dt.datetime.now(dt.UTC))
    end = as_utc_timestamp(as_of_end)
    outcomes = [
        _stage_source(config, spec, source, frame, end, _previous_ids(previous, spec, source.name))
        for source, frame in _by_source(entity, raw)
    ]

    staged = _concat([o.staged for o in outcomes], typed_frame(spec.staged_columns, {}, 0))
    identifiers = _concat([o.identifiers for o in outcomes], typed_frame(CUSTOMER_IDENTIFIERS_COLUMNS, {}, 0))
    return StagingResult(
        staged=staged,
        quarantined=_quarantine_frame(outcomes, run_id, entity, stamp),
        reconciliation=_reconciliation_frame(outcomes, run_id, entity, stamp),
        identifiers=identifiers,
        summary=_summary(outcomes),
        deletes=_deletes_frame(outcomes, run_id, entity, stamp),
        deleted=_deleted_frame(outcomes),
    )


def _deleted_frame(outcomes: list[_SourceOutcome]) -> pd.DataFrame:
    import pandas as pd
    ids = [pd.DataFrame({"source": o.source, "record_id": o.deleted_ids.astype("str").to_numpy()})
           for o in outcomes]
    return pd.concat(ids, ignore_index=True) if ids else pd.DataFrame({"source": [], "record_id": []})


def _previous_ids(previous: pd.DataFrame | None, entity: Entity, source: str) -> pd.Series | None:
    if previous is None:
        return None
    return previous.loc[previous["source"] == source, entity.record_id]


def _deletes_frame(outcomes: list[_SourceOutcome], run_id: str, entity: str, stamp: pd.Timestamp) -> pd.DataFrame:
    import pandas as pd
    frames = [o.removed.assign(source=o.source) for o in outcomes if len(o.removed)]
    removed = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["record_id", "kind", "source"])
    reasons = [removal_reason(k, s, entity) for k, s in zip(removed["kind"], removed["source"], strict=True)]
    data = {**removed.to_dict("series"), "reason": reasons, "run_id": run_id, "entity": entity, "recorded_at": stamp}
    return typed_frame(SOURCE_DELETE_COLUMNS, data, len(removed))


def _quarantine_frame(
    outcomes: list[_SourceOutcome], run_id: str, entity: str, stamp: pd.Timestamp
) -> pd.DataFrame:
    import pandas as pd
    frames = [f for o in outcomes for f in (o.rejected, o.nulled_fields) if f is not None]
    rejected = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    data: dict[str, Any] = {"run_id": run_id, "layer": STAGING, "entity": entity, "rejected_at": stamp}
    for name in ("source", "record_id", "rule", "column_name", "reason", "raw_values"):
        data[name] = rejected.get(name)
    return typed_frame(QUARANTINE_COLUMNS, data, len(rejected))


def _reconciliation_frame(
    outcomes: list[_SourceOutcome], run_id: str, entity: str, stamp: pd.Timestamp
) -> pd.DataFrame:
    """One row per source: rows in = rows out + quarantined + superseded + deleted."""
    import pandas as pd
    rows = [
        {
            "run_id": run_id,
            "recorded_at": stamp,
            "layer": STAGING,
            "table_name": entity,
            "source": o.source,
            "rows_in": o.rows_in,
            "rows_out": len(o.staged),
            "rows_quarantined": len(o.rejected),
            "rows_superseded": o.rows_superseded,
            "reconciles": o.rows_in == len(o.staged) + len(o.rejected) + o.rows_superseded + o.rows_deleted,
            "rows_deleted": o.rows_deleted,
        }
        for o in outcomes
    ]
    frame = pd.DataFrame(rows, columns=[c.name for c in RECONCILIATION_COLUMNS])
    return typed_frame(RECONCILIATION_COLUMNS, frame.to_dict("series"), len(frame))


def _by_source(
    entity: str, raw: Sequence[tuple[SourceConfig, pd.DataFrame]]
) -> list[tuple[SourceConfig, pd.DataFrame]]:
    """One frame per source (a source listed twice has its frames concatenated), in input order."""
    import pandas as pd
    grouped: dict[str, tuple[SourceConfig, list[pd.DataFrame]]] = {}
    for source, frame in raw:
        if entity not in source.entities:
            raise ValueError(
                f"source {source.name!r} does not deliver {entity} (crm.yaml has no entities.{entity} for it)"
            )
        grouped.setdefault(source.name, (source, []))[1].append(frame)
    return [
        (source, frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True))
        for source, frames in grouped.values()
    ]


def _stage_source(
    config: CrmConfig,
    entity: Entity,
    source: SourceConfig,
    raw: pd.DataFrame,
    as_of_end: pd.Timestamp,
    previous_ids: pd.Series | None = None,
) -> _SourceOutcome:
    import pandas as pd
    raw = raw.reset_index(drop=True)
    stats = StagingStats()
    text, unmapped = _canonical_text(entity, source, raw, stats)
    record_ids = text[entity.record_id]
    missing_id = record_ids.isna()
    versions = resolve_versions(
        record_ids, version_content(entity, source, text, raw), raw,
        lambda rows: version_order(entity, source, text.loc[rows], raw.loc[rows]), record_column=entity.record_id,
    )
    superseded = versions.superseded
    latest = ~(missing_id | superseded | versions.conflicting)
    marks = delete_marks(source.entities[entity.name], raw)
    deleted, bad_mark = latest & marks.deleted, latest & marks.invalid
    current = latest & ~deleted & ~bad_mark

    rows = EntityRows(entity, _subset(text, current), config, source, as_of_end, stats)
    check_required(rows)
    type_columns(rows)
    check_future_timestamps(rows)
    ENTITY_RULES[entity.name](rows)

    accepted = rows.checks.accepted
    kept = {name: _subset(values, accepted) for name, values in rows.typed.items()}
    staged = typed_frame(entity.staged_columns, {**kept, "source": source.name}, int(accepted.sum()))

    reason = _missing_id_reason(entity, source)
    missing = pd.DataFrame(
        {"rule": MISSING_RECORD_ID, "column_name": entity.record_id, "reason": reason},
        index=raw.index[missing_id],
    )
    conflicts = pd.DataFrame(
        {"rule": DUPLICATE_KEY_CONFLICT, "column_name": entity.record_id, "reason": versions.conflict_reasons}
    )
    marks_rejected = pd.DataFrame(index=raw.index[bad_mark], columns=["rule", "column_name", "reason"])
    if len(marks_rejected):
        marks_rejected = marks_rejected.assign(
            rule=INVALID_DELETED_MARK,
            column_name=marks.column,
            reason=[f"{marks.column} {v!r} {marks.problem}" for v in marks.values[bad_mark]],
        )
    parts = [f for f in (conflicts, marks_rejected) if len(f)]
    rejected = pd.concat([missing, *parts, rows.checks.frame()]).sort_index()
    rejected.insert(0, "record_id", record_ids.reindex(rejected.index))
    rejected.insert(0, "source", source.name)
    rejected["raw_values"] = _raw_json(raw, rejected.index)
    nulled = rows.checks.field_frame()
    stats.fields_nulled.update(Counter(nulled["rule"]))
    nulled.insert(0, "record_id", record_ids.reindex(nulled.index))
    nulled.insert(0, "source", source.name)
    nulled["raw_values"] = _raw_json(raw, nulled.index)
    by_rule = Counter(rows.checks.by_rule)
    for rule, frame in ((MISSING_RECORD_ID, missing), (DUPLICATE_KEY_CONFLICT, conflicts),
                        (INVALID_DELETED_MARK, marks_rejected)):
        if len(frame):
            by_rule[rule] += len(frame)
    stats.identical_repeats += versions.identical_repeats

    identifiers = typed_frame(CUSTOMER_IDENTIFIERS_COLUMNS, {}, 0)
    if entity.name == "customers":
        identifiers = _identifiers(source, raw, rows.typed, accepted)
    return _SourceOutcome(
        source=source.name,
        rows_in=len(raw),
        rows_superseded=int(superseded.sum()),
        rows_deleted=int(deleted.sum()),
        removed=removed_records(previous_ids, record_ids, record_ids[deleted]),
        deleted_ids=record_ids[deleted].drop_duplicates(),
        staged=staged,
        rejected=rejected.reset_index(drop=True),
        identifiers=identifiers,
        by_rule=by_rule,
        stats=stats,
        unmapped=unmapped,
        nulled_fields=nulled.reset_index(drop=True),
    )


def _subset(data: PandasData, mask: pd.Series) -> PandasData:
    """Rows where ``mask`` holds; no copy in the common case where it always does."""
    return data if mask.all() else data[mask]


def _derives_item_id(entity: Entity, source: SourceConfig) -> bool:
    """Order lines of a source without line ids are identified as ``order_id:product_id``."""
    return entity.name == "order_items" and "item_id" not in source.entities[entity.name].columns


def _missing_id_reason(entity: Entity, source: SourceConfig) -> str:
    reason = f"{entity.record_id} is missing, so the record cannot be told apart from others"
    if _derives_item_id(entity, source):
        return f"{reason} (derived from order_id and product_id, one of which is missing)"
    return reason


def _canonical_text(
    entity: Entity, source: SourceConfig, raw: pd.DataFrame, stats: StagingStats
) -> tuple[pd.DataFrame, list[str]]:
    """Cleaned text under canonical names; unmapped columns are null. Also the mapped source columns
    the raw table does not have (they are null too, and named in the summary)."""
    import pandas as pd
    mapping = source.entities[entity.name].columns
    defaults = source.entities[entity.name].defaults
    columns: dict[str, pd.Series] = {}
    absent: list[str] = []
    for name in entity.column_names:
        source_column = mapping.get(name)
        if name in defaults:
            columns[name], _ = clean_text(pd.Series(defaults[name], index=raw.index, dtype="str"))
            continue
        if source_column is None or source_column not in raw.columns:
            if source_column is not None:
                absent.append(source_column)
            columns[name] = null_text(len(raw), raw.index)
            continue
        columns[name], placeholders = clean_text(raw[source_column])
        if placeholders:
            stats.junk_nulled[name] += placeholders
    if absent:
        log.warning("source %s, %s: mapped columns missing from raw: %s", source.name, entity.name, absent)
    if _derives_item_id(entity, source):
        columns["item_id"] = columns["order_id"] + ":" + columns["product_id"]
    return pd.DataFrame(columns, index=raw.index), absent


def _raw_json(raw: pd.DataFrame, rows: pd.Index) -> list[str]:
    """The source's own columns of ``rows`` as one JSON object each (lineage columns left out)."""
    if not len(rows):
        return []
    data = raw.loc[rows, [c for c in raw.columns if c not in RAW_METADATA_COLUMNS]]
    lines = data.to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
    # pandas escapes every "/" as "\/"; since it does so always, "\/" is never the tail of an escaped
    # backslash, and undoing it is safe. Newlines inside values are escaped: one line per row.
    return lines.replace("\\/", "/").rstrip("\n").split("\n")


def _identifiers(
    source: SourceConfig, raw: pd.DataFrame, typed: dict[str, pd.Series], accepted: pd.Series
) -> pd.DataFrame:
    """Declared identifier fields of the staged customer records, trimmed and upper-cased."""
    import pandas as pd
    declared = source.entities["customers"].identifiers
    record_ids = typed["source_record_id"][accepted]
    parts = []
    for identifier_type, source_column in declared.items():
        if source_column not in raw.columns:
            continue
        values, _ = clean_text(raw.loc[record_ids.index, source_column])
        present = values.notna()
        parts.append(
            pd.DataFrame(
                {
                    "source": source.name,
                    "source_record_id": record_ids[present],
                    "identifier_type": identifier_type,
                    "identifier_value": values[present].str.upper(),
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return typed_frame(CUSTOMER_IDENTIFIERS_COLUMNS, frame.to_dict("series"), len(frame))


def _concat(frames: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else empty


def _summary(outcomes: list[_SourceOutcome]) -> dict[str, Any]:
    stats = StagingStats()
    by_rule: Counter[str] = Counter()
    for outcome in outcomes:
        stats.add(outcome.stats)
        by_rule.update(outcome.by_rule)
    summary: dict[str, Any] = {
        "rows_in": sum(o.rows_in for o in outcomes),
        "rows_staged": sum(len(o.staged) for o in outcomes),
        "rows_quarantined": sum(len(o.rejected) for o in outcomes),
        "rows_superseded": sum(o.rows_superseded for o in outcomes),
        "identical_repeats": stats.identical_repeats,
        "rows_deleted": sum(o.rows_deleted for o in outcomes),
        "records_removed": dict(sorted(Counter(k for o in outcomes for k in o.removed["kind"]).items())),
        "quarantined_by_rule": dict(sorted(by_rule.items())),
        "fields_nulled_by_rule": dict(sorted(stats.fields_nulled.items())),
        "values_normalized": dict(sorted(stats.values_normalized.items())),
        "junk_nulled": dict(sorted(stats.junk_nulled.items())),
    }
    if stats.defaults_applied:
        summary["defaults_applied"] = dict(sorted(stats.defaults_applied.items()))
    unmapped = {o.source: o.unmapped for o in outcomes if o.unmapped}
    if unmapped:
        summary["mapped_columns_missing_from_raw"] = unmapped
    return summary
