"""Erase a person: tombstones first, then every table in one transaction, then the BI file.

Order, so that a killed erasure never leaves a half-erased person behind for good:

1. resolve the request (:mod:`.plan`) and the rows of every table (:mod:`.tables`), reading only;
2. write the tombstones (``audit.erasure_tombstones``) and commit: from here on no ingest brings the
   person back, whatever happens next;
3. in ONE transaction: delete from every table, put the erased addresses on the suppression list by
   hash, write the ``audit.erasures`` row. Killed here, the database rolls it all back;
4. rewrite the BI file (``data/bi.duckdb``) from the erased marts, if it exists.

A rerun of the same request resolves what is left (nothing, after a complete run) and finishes the job.
A dry run does 1, counts what 3 would delete, and writes only its ``audit.erasures`` row.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa

from crm_pipelines.bi_file import export_marts_file
from crm_pipelines.config import CrmConfig
from crm_pipelines.erasure.keys import EMAIL, PHONE, KeyHashes, key_hash
from crm_pipelines.erasure.plan import ErasurePlan, resolve
from crm_pipelines.erasure.tables import TableTarget, erasure_targets
from crm_pipelines.erasure.tombstones import (
    ERASED_REASON,
    HASHED_ADDRESS_KINDS,
    TOMBSTONE_COLUMNS,
    TOMBSTONES_TABLE,
    read_tombstones,
)
from crm_pipelines.schema import AUDIT, CORE, Column
from crm_pipelines.warehouse import Warehouse, arrow_type

log = logging.getLogger(__name__)

ERASURES_TABLE = "erasures"
SUPPRESSION_TABLE = "suppression_list"

ERASURE_COLUMNS = (
    Column("erasure_id", "string", "Id of the erasure."),
    Column("run_id", "string", "The Dagster run (crm_erasure) that did it, if any."),
    Column("requested_by", "string", "Who asked, as given (free text)."),
    Column("dry_run", "boolean", "True: counted only, nothing deleted."),
    Column("started_at", "timestamp", "When it started (UTC)."),
    Column("finished_at", "timestamp", "When its deletions were committed (UTC)."),
    Column("requested_key_hashes", "string", "JSON list of <kind>:<sha256> the request named (no plain keys)."),
    Column("customer_ids", "integer", "Unified customers resolved from the request."),
    Column("source_records", "integer", "Customer records of those customers."),
    Column("tombstones", "integer", "Key hashes recorded in audit.erasure_tombstones."),
    Column("rows_deleted", "integer", "Rows deleted (or, for a dry run, that would be) in all tables."),
    Column("rows_by_table", "string", "JSON object: <schema>.<table> -> rows deleted; tables with none left out."),
)


@dataclass
class ErasureResult:
    erasure_id: str
    dry_run: bool
    plan: ErasurePlan
    tombstones: KeyHashes
    rows_by_table: dict[str, int] = field(default_factory=dict)
    not_searched: list[str] = field(default_factory=list)
    bi_file: Path | None = None
    """The BI file rewritten (or, for a dry run, that would be)."""

    @property
    def rows_deleted(self) -> int:
        return sum(self.rows_by_table.values())

    def summary_lines(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        lines = [
            f"erasure {self.erasure_id}{' (dry run: nothing changed)' if self.dry_run else ''}: "
            f"{len(self.plan.customer_ids)} customer(s), {len(self.plan.records)} source record(s), "
            f"{len(self.tombstones)} key hash(es) {'to tombstone' if self.dry_run else 'tombstoned'}",
        ]
        width = max([len(t) for t in self.rows_by_table] + [5])
        lines += [f"  {table:<{width}}  {verb} {rows:>7,}" for table, rows in self.rows_by_table.items() if rows]
        lines.append(f"  {'total':<{width}}  {verb} {self.rows_deleted:>7,}")
        lines += [f"  {table}: not searched (its source is not in crm.yaml)" for table in self.not_searched]
        if self.bi_file is not None:
            lines.append(f"  BI file {self.bi_file}: {'would be rewritten' if self.dry_run else 'rewritten'}")
        return lines


def _arrow(columns: tuple[Column, ...], rows: list[dict[str, object]]) -> pa.Table:
    return pa.table({c.name: pa.array([r[c.name] for r in rows], arrow_type(c.dtype)) for c in columns})


def ensure_audit_tables(wh: Warehouse) -> None:
    wh.ensure_schemas(AUDIT)
    wh.create_table(AUDIT, TOMBSTONES_TABLE, TOMBSTONE_COLUMNS)
    wh.create_table(AUDIT, ERASURES_TABLE, ERASURE_COLUMNS)


def _write_tombstones(wh: Warehouse, tombstones: KeyHashes, erasure_id: str, now: dt.datetime) -> int:
    """Record the hashes not yet recorded, and commit (before anything is deleted)."""
    known = set(read_tombstones(wh).pairs())
    new = [(kind, digest) for kind, digest in tombstones.pairs() if (kind, digest) not in known]
    rows = [{"key_kind": k, "key_hash": h, "erasure_id": erasure_id, "recorded_at": now} for k, h in new]
    if rows:
        wh.write_table(_arrow(TOMBSTONE_COLUMNS, rows), AUDIT, TOMBSTONES_TABLE, mode="append")
    return len(rows)


def _hashed_suppression(wh: Warehouse, conn: sa.Connection, plan: ErasurePlan, now: dt.datetime) -> None:
    """The erased addresses stay suppressed by hash: never marketed to again, never stored in plain."""
    if not wh.table_exists(CORE, SUPPRESSION_TABLE):
        return
    present = set(wh.columns(CORE, SUPPRESSION_TABLE))
    hashed = [(HASHED_ADDRESS_KINDS[EMAIL], key_hash(e)) for e in sorted(plan.emails)]
    hashed += [(HASHED_ADDRESS_KINDS[PHONE], key_hash(p)) for p in sorted(plan.phones)]
    if not hashed or not {"address_kind", "address", "reason"} <= present:
        return
    table = wh.table(CORE, SUPPRESSION_TABLE, ["address_kind", "address", "reason", "suppressed_since"])
    conn.execute(sa.delete(table).where(table.c.address.in_([h for _, h in hashed])))
    values = [{"address_kind": kind, "address": digest, "reason": ERASED_REASON} for kind, digest in hashed]
    if "suppressed_since" in present:
        values = [{**v, "suppressed_since": now} for v in values]
    conn.execute(sa.insert(table), values)


def _count(conn: sa.Connection, wh: Warehouse, target: TableTarget) -> int:
    stmt = sa.select(sa.func.count()).select_from(wh.table(target.schema, target.table)).where(target.where)
    return int(conn.execute(stmt).scalar_one())


def erase(
    wh: Warehouse,
    config: CrmConfig,
    requested: KeyHashes,
    customer_ids: Iterable[str] = (),
    *,
    requested_by: str,
    dry_run: bool,
    run_id: str | None = None,
    bi_file: Path | None = None,
) -> ErasureResult:
    """Erase the people a request names (see the module docstring for the order of the steps).

    ``bi_file``: the BI file of the marts (crm.yaml ``bi.marts_file``), rewritten when it exists.
    """
    if not requested_by.strip():
        raise ValueError("requested_by is required: say who asked for the erasure (e.g. a ticket number)")
    customer_ids = sorted({c.strip() for c in customer_ids if c.strip()})
    if not requested and not customer_ids:
        raise ValueError("an erasure needs at least one email, phone, source record or customer id")
    started = dt.datetime.now(dt.UTC)
    erasure_id = f"E{started:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:8]}"
    ensure_audit_tables(wh)
    plan = resolve(wh, config, requested, customer_ids)
    tombstones = plan.tombstones
    targets = erasure_targets(wh, config, plan, tombstones)
    result = ErasureResult(erasure_id, dry_run, plan, tombstones)
    result.not_searched = [t.name for t in targets if t.note]
    if not dry_run:
        written = _write_tombstones(wh, tombstones, erasure_id, started)
        log.info("erasure %s: %d new tombstone(s) committed before deleting", erasure_id, written)
    with wh.connect() as conn:
        for target in targets:
            if target.where is None:
                continue
            rows = _count(conn, wh, target)
            result.rows_by_table[target.name] = rows
            if rows and not dry_run:
                conn.execute(sa.delete(wh.table(target.schema, target.table)).where(target.where))
        if not dry_run:
            _hashed_suppression(wh, conn, plan, started)
        audit = wh.table(AUDIT, ERASURES_TABLE, [c.name for c in ERASURE_COLUMNS])
        conn.execute(
            sa.insert(audit).values(
                erasure_id=erasure_id,
                run_id=run_id,
                requested_by=requested_by,
                dry_run=dry_run,
                started_at=started,
                finished_at=dt.datetime.now(dt.UTC),
                requested_key_hashes=json.dumps([f"{k}:{h}" for k, h in requested.pairs()]),
                customer_ids=len(plan.customer_ids),
                source_records=len(plan.records),
                tombstones=len(tombstones),
                rows_deleted=result.rows_deleted,
                rows_by_table=json.dumps({t: n for t, n in result.rows_by_table.items() if n}, sort_keys=True),
            )
        )
    if bi_file is not None and bi_file.exists():
        result.bi_file = bi_file
        if not dry_run:
            export_marts_file(wh, bi_file)
    return result
