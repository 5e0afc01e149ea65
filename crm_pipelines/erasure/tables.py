"""Which rows of which table an erasure deletes: one WHERE clause per table, from its columns.

Every base table of the schemas the project writes is visited (``raw``, ``staging``, ``core``, ``marts``,
``quarantine``; ``audit`` holds counts and hashes only), so a table added later is covered when it
names its rows the way every table does:

- a unified customer id: ``customer_id`` or any ``*_customer_id`` but ``source_customer_id``
  (``retired_customer_id``, ``merged_into_customer_id``);
- a customer record: ``source`` with ``source_record_id`` (also the ``_l``/``_r`` pairs of
  ``core.identity_links``);
- an order: ``source`` with ``order_id``;
- a source's customer reference: ``source`` with ``source_customer_id`` (read in the entity's
  ``customer_source``);
- a value: ``email``, ``requester_email``, ``phone``, and the suppression list's ``address``;
- ``quarantine.rejected_rows``: its record id, and the keys inside its ``raw_values`` JSON.

``audit`` holds counts and hashes, with two exceptions that name records by their ids:
``audit.source_deletes`` (the records a source deleted) and ``audit.staged_records`` (the batch each
staged record came from). Their rows whose ``<source>:<record id>`` is tombstoned (a customer record or
an order of the erased person) are deleted too; left in the index, an erased record would come back as
"deleted by the source" in ``audit.source_deletes`` the next time its source is restaged whole.

Tables in a source's own columns (``raw.<source>__<entity>``, ``quarantine.<source>__<entity>__delivery``)
are searched with the keys of :mod:`crm_pipelines.erasure.keys`: the distinct values of each key column
are normalized and hashed, and the rows holding a tombstoned one are deleted.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from crm_pipelines.config import CrmConfig, SourceConfig
from crm_pipelines.erasure.hashing import ORDER, SOURCE_RECORD
from crm_pipelines.erasure.keys import (
    PHONE,
    KeyColumn,
    KeyHashes,
    hashes_of,
    key_frame_columns,
    matching_rows,
    raw_key_columns,
)
from crm_pipelines.erasure.plan import ErasurePlan
from crm_pipelines.schema import AUDIT, CORE, ENTITIES, MARTS, QUARANTINE, RAW, STAGING, raw_table_name
from crm_pipelines.warehouse import Warehouse, col

log = logging.getLogger(__name__)

ERASED_SCHEMAS = (RAW, STAGING, CORE, MARTS, QUARANTINE)
REJECTED_ROWS = "rejected_rows"
DELIVERY_SUFFIX = "__delivery"
# A refused delivery, a scratch table of a killed load, a table half-published: all in source columns.
_LEFTOVER_SUFFIX = re.compile(r"(__delivery|__in_[0-9a-f]{8}|__new)$")
EMAIL_VALUE_COLUMNS = ("email", "requester_email")
SOURCE_DELETES = "source_deletes"
STAGED_RECORDS = "staged_records"
# audit tables that name records by entity, source and record id.
_RECORD_ID_AUDIT_TABLES = (SOURCE_DELETES, STAGED_RECORDS)
# The entities whose record ids are erasure keys, and the kind of key they are.
_DELETED_RECORD_KEYS = {"customers": SOURCE_RECORD, "orders": ORDER}


@dataclass(frozen=True)
class TableTarget:
    schema: str
    table: str
    where: sa.ColumnElement[bool] | None
    """None: no row of the table can hold the person."""
    note: str = ""

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"


def base_tables(wh: Warehouse, schemas: tuple[str, ...] = ERASED_SCHEMAS) -> list[tuple[str, str]]:
    tables = sa.table(
        "tables", sa.column("table_schema"), sa.column("table_name"), sa.column("table_type"),
        schema="information_schema",
    )
    stmt = (
        sa.select(tables.c.table_schema, tables.c.table_name)
        .where(tables.c.table_schema.in_(schemas), tables.c.table_type == "BASE TABLE")
        .order_by(tables.c.table_schema, tables.c.table_name)
    )
    with wh.connect() as conn:
        return [(r[0], r[1]) for r in conn.execute(stmt)]


def _raw_owner(config: CrmConfig, table: str) -> tuple[SourceConfig, str] | None:
    """The (source, entity) whose raw or refused delivery ``table`` holds."""
    name = _LEFTOVER_SUFFIX.sub("", table)
    for source in config.sources:
        for entity in source.entities:
            if raw_table_name(source.name, entity) == name:
                return source, entity
    return None


def _in_by_source(
    source_column: str, id_column: str, ids: dict[str, list[str]]
) -> list[sa.ColumnElement[bool]]:
    return [sa.and_(col(source_column) == s, col(id_column).in_(values)) for s, values in ids.items() if values]


def _entity_of(schema: str, table: str) -> str | None:
    if table in ENTITIES:
        return table
    for entity in ENTITIES:  # quarantine.<schema>__<entity>__rejected: a refused version of a table
        if table in (f"{STAGING}__{entity}__rejected", f"{CORE}__{entity}__rejected"):
            return entity
    return None


def generic_where(
    config: CrmConfig, plan: ErasurePlan, schema: str, table: str, columns: list[str]
) -> sa.ColumnElement[bool] | None:
    """The rows of a table in canonical columns that belong to the plan's customers, records or values."""
    present = set(columns)
    clauses: list[sa.ColumnElement[bool]] = []
    customer_ids = sorted(plan.customer_ids)
    for name in columns:
        if customer_ids and (name == "customer_id" or (name.endswith("_customer_id") and name != "source_customer_id")):
            clauses.append(col(name).in_(customer_ids))
    records = plan.ids_by_source(plan.records)
    for suffix in ("", "_l", "_r"):
        if {f"source{suffix}", f"source_record_id{suffix}"} <= present:
            clauses += _in_by_source(f"source{suffix}", f"source_record_id{suffix}", records)
    if {"source", "order_id"} <= present:
        clauses += _in_by_source("source", "order_id", plan.ids_by_source(plan.orders))
    if {"source", "source_customer_id"} <= present:
        entity = _entity_of(schema, table)
        for source in config.sources:
            settings = source.entities.get(entity) if entity else None
            customer_source = (settings.customer_source if settings else None) or source.name
            if records.get(customer_source):
                clauses.append(
                    sa.and_(col("source") == source.name, col("source_customer_id").in_(records[customer_source]))
                )
    emails, phones = sorted(plan.emails), sorted(plan.phones)
    for name in EMAIL_VALUE_COLUMNS:
        if name in present and emails:
            clauses.append(col(name).in_(emails))
    if "phone" in present and phones:
        clauses.append(col("phone").in_(phones))
    if {"address_kind", "address"} <= present and (emails or phones):
        clauses.append(col("address").in_(emails + phones))
    return sa.or_(*clauses) if clauses else None


def raw_where(
    wh: Warehouse, schema: str, table: str, keys: list[KeyColumn], tombstones: KeyHashes, columns: list[str]
) -> sa.ColumnElement[bool] | None:
    """Rows of a table in a source's own columns holding a tombstoned key (distinct values hashed)."""
    clauses: list[sa.ColumnElement[bool]] = []
    for key in keys:
        if key.column not in columns or not tombstones.get(key.kind):
            continue
        country = key.country_column if key.kind == PHONE and key.country_column in columns else None
        selected = [col(key.column)] + ([col(country)] if country else [])
        stmt = sa.select(*selected).select_from(wh.table(schema, table)).where(col(key.column).is_not(None))
        distinct = wh.query(stmt.distinct()).astype("str")
        hits = distinct[matching_rows(distinct, [key], tombstones)]
        if hits.empty:
            continue
        if country is None:
            clauses.append(col(key.column).in_(sorted(set(hits[key.column]))))
            continue
        for phone, where in hits[[key.column, country]].itertuples(index=False):
            same_country = col(country).is_(None) if pd.isna(where) else col(country) == where
            clauses.append(sa.and_(col(key.column) == phone, same_country))
    return sa.or_(*clauses) if clauses else None


def canonical_key_columns(config: CrmConfig, source: SourceConfig, entity: str) -> list[KeyColumn]:
    """Key columns of the same entity under canonical names (rows a later layer quarantined)."""
    canonical = source.model_copy(
        update={
            "entities": {
                entity: source.entities[entity].model_copy(
                    update={"columns": {c: c for c in ENTITIES[entity].column_names}}
                )
            }
        }
    )
    return raw_key_columns(config, canonical, entity)


def rejected_rows_where(
    wh: Warehouse, config: CrmConfig, plan: ErasurePlan, tombstones: KeyHashes
) -> sa.ColumnElement[bool] | None:
    """``quarantine.rejected_rows`` of the person: by record id, or by a key inside ``raw_values``."""
    clauses: list[sa.ColumnElement[bool]] = []
    for entity, which in (("customers", plan.records), ("orders", plan.orders)):
        for source, ids in plan.ids_by_source(which).items():
            clauses.append(sa.and_(col("entity") == entity, col("source") == source, col("record_id").in_(ids)))
    rows = wh.read_table(QUARANTINE, REJECTED_ROWS, columns=["entity", "source", "raw_values"]).drop_duplicates()
    for (entity, source_name), group in rows.groupby(["entity", "source"], dropna=True):
        try:
            source = config.source(str(source_name))
        except KeyError:
            continue
        if entity not in source.entities:
            continue
        keys = raw_key_columns(config, source, entity) + canonical_key_columns(config, source, entity)
        parsed = pd.DataFrame([_json_object(v) for v in group["raw_values"]], index=group.index)
        for name in key_frame_columns(keys):
            present = parsed[name] if name in parsed else pd.Series(pd.NA, index=parsed.index)
            parsed[name] = present.astype("str")
        hits = group.loc[matching_rows(parsed, keys, tombstones), "raw_values"]
        if len(hits):
            clauses.append(
                sa.and_(col("entity") == entity, col("source") == source_name, col("raw_values").in_(sorted(set(hits))))
            )
    return sa.or_(*clauses) if clauses else None


def record_ids_where(wh: Warehouse, table_name: str, tombstones: KeyHashes) -> sa.ColumnElement[bool] | None:
    """Rows of ``audit.<table_name>`` (entity, source, record_id) naming a tombstoned customer record or
    order (distinct keys hashed)."""
    table = wh.table(AUDIT, table_name, ["entity", "source", "record_id"])
    stmt = (sa.select(table.c.entity, table.c.source, table.c.record_id)
            .where(table.c.entity.in_(list(_DELETED_RECORD_KEYS)), table.c.record_id.is_not(None)).distinct())
    keys = wh.query(stmt).astype("str")
    if keys.empty:
        return None
    digests = hashes_of(keys["source"] + ":" + keys["record_id"])
    hit = [digest in tombstones.get(_DELETED_RECORD_KEYS[entity])
           for entity, digest in zip(keys["entity"], digests, strict=True)]
    found = keys[hit]
    clauses = [
        sa.and_(col("entity") == entity, col("source") == source, col("record_id").in_(sorted(group["record_id"])))
        for (entity, source), group in found.groupby(["entity", "source"])
    ]
    return sa.or_(*clauses) if clauses else None


def _json_object(text: object) -> dict[str, object]:
    try:
        value = json.loads(str(text))
    except (TypeError, ValueError):
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: (None if v is None else str(v)) for k, v in value.items()}


def erasure_targets(wh: Warehouse, config: CrmConfig, plan: ErasurePlan, tombstones: KeyHashes) -> list[TableTarget]:
    """One :class:`TableTarget` per base table of the erased schemas."""
    targets = []
    for schema, table in base_tables(wh):
        columns = wh.columns(schema, table)
        owner = _raw_owner(config, table) if schema == RAW or table.endswith(DELIVERY_SUFFIX) else None
        if owner is not None:
            keys = raw_key_columns(config, *owner)
            targets.append(TableTarget(schema, table, raw_where(wh, schema, table, keys, tombstones, columns)))
        elif schema == RAW:
            log.warning("raw.%s belongs to no source in crm.yaml: not searched", table)
            targets.append(TableTarget(schema, table, None, note="no source in crm.yaml: not searched"))
        elif schema == QUARANTINE and table == REJECTED_ROWS:
            targets.append(TableTarget(schema, table, rejected_rows_where(wh, config, plan, tombstones)))
        else:
            targets.append(TableTarget(schema, table, generic_where(config, plan, schema, table, columns)))
    for table in _RECORD_ID_AUDIT_TABLES:
        if wh.table_exists(AUDIT, table):
            targets.append(TableTarget(AUDIT, table, record_ids_where(wh, table, tombstones)))
    return targets
