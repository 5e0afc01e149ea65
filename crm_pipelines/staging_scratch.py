"""The scratch tables of one staging run: what each batch stages is written to the warehouse once.

Staging judges a raw batch in pandas (:mod:`crm_pipelines.staging`); its staged, quarantined and
deleted rows are written with the warehouse's bulk path, once, before anything is validated. Everything
else the run needs of them is derived in SQL, inside the warehouse, without a second trip through
pandas and Arrow: the rows the staging contract validates (:meth:`StagingScratch.contract_table`),
the keys whose older versions a batch replaces, the run's keys for the deletes, and the
``audit.staged_records`` rows. The scratch tables are dropped inside the staging transaction, or,
when the contract fails, right after it; a table a killed run left behind is dropped by the entity's
next run (:func:`drop_leftover_scratch`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crm_pipelines.schema import (
    CUSTOMER_IDENTIFIERS_COLUMNS,
    ENTITIES,
    QUARANTINE_COLUMNS,
    STAGING,
    Column,
)
from crm_pipelines.staging.rejections import FIELD_NULLED
from crm_pipelines.staging.values import typed_frame
from crm_pipelines.staging_deletes import RUN_KEYS_COLUMNS
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection

    from crm_pipelines.staging.stage import StagingResult

KEY_COLUMNS = (Column("source", "string", ""), Column("record_id", "string", ""))
UNLOGGED_FROM_ROWS = 50_000
"""On PostgreSQL, scratch tables this big are UNLOGGED: rows that live one step do not go through the
write-ahead log (at 100,000 people 186 MB a first night for the order lines alone; CREATE TABLE
AS of their 1,252,477 rows took 0.51-0.52 s against 0.97-1.48 s; their binary COPY, bound by the client, gains
little on a quiet server and most when checkpoints crowd it). They are read only to fill logged
tables inside the staging transaction, so a crash loses nothing published: it empties them, and the
entity's next run drops them (:func:`drop_leftover_scratch`). Below this size the extra create and
ALTER cost about what the log would."""
_ORDER, _PART, _RANK = "_batch_order", "_part", "_rank"


def row_level(quarantine: sa.TableClause) -> sa.ColumnElement[bool]:
    """Quarantine rows that stand for a whole raw row (not a field nulled in a staged record)."""
    import sqlalchemy as sa
    return sa.not_(sa.func.coalesce(quarantine.c.reason, "").endswith(FIELD_NULLED, autoescape=True))


def scratch_prefix(entity: str) -> str:
    return f"_stage_{entity}_"


def drop_leftover_scratch(wh: Warehouse, entity: str) -> None:
    """Scratch tables of this entity a killed or failed run left behind (one run stages an entity at a
    time): in ``staging`` (where earlier versions kept them on DuckDB too) and in the scratch location."""
    import sqlalchemy as sa
    if wh.dialect not in ("duckdb", "postgresql"):
        return
    tables = sa.table("tables", sa.column("table_schema"), sa.column("table_name"), schema="information_schema")
    prefix = scratch_prefix(entity)
    for schema in dict.fromkeys((STAGING, wh.scratch_schema(STAGING))):
        stmt = sa.select(tables.c.table_name).where(
            wh.in_schema(tables, schema), tables.c.table_name.startswith(prefix, autoescape=True)
        )
        with wh.connect() as conn:
            for name in conn.execute(stmt).scalars().all():
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {wh.qualified(schema, name)}"))


@dataclass
class ScratchBatch:
    """The scratch tables of one staged batch (names in the ``staging`` schema)."""

    source: str
    batch_id: str
    staged: str
    """The staged rows, exactly the entity's staged columns."""
    quarantined: str
    """QUARANTINE_COLUMNS."""
    deleted: str
    """source, record_id of the records whose current version here is marked deleted."""
    identifiers: str | None
    """CUSTOMER_IDENTIFIERS_COLUMNS (customers only)."""
    staged_rows: int

    @property
    def has_staged(self) -> bool:
        return self.staged_rows > 0


class StagingScratch:
    """The scratch tables of one run of one entity, written with :meth:`write`."""

    def __init__(self, wh: Warehouse, entity: str):
        self.wh, self.entity, self.names = wh, entity, []
        self.schema = wh.scratch_schema(STAGING)
        self.record_id = ENTITIES[entity].record_id
        self.batches: list[ScratchBatch] = []
        self._contract: str | None = None

    @classmethod
    def write(cls, wh: Warehouse, entity: str, results: Sequence[tuple[str, str, StagingResult]]) -> StagingScratch:
        """Write (source, batch_id, result) of each batch, in the order they are applied."""
        scratch = cls(wh, entity)
        try:
            for source, batch_id, res in results:
                scratch.add(source, batch_id, res)
        except BaseException:
            scratch.drop()
            raise
        return scratch

    def add(self, source: str, batch_id: str, res: StagingResult, into: ScratchBatch | None = None) -> ScratchBatch:
        """Write the next batch to be applied; with ``into``, append a further part of that batch to its
        tables instead (parts hold disjoint records, see :mod:`crm_pipelines.staging_parts`)."""
        ent = ENTITIES[self.entity]
        names = (into.staged, into.quarantined, into.deleted, into.identifiers) if into else (None,) * 4
        staged = self._write(res.staged, ent.staged_columns, names[0])
        quarantined = self._write(res.quarantined, QUARANTINE_COLUMNS, names[1])
        deleted = self._write(res.deleted.astype("str"), KEY_COLUMNS, names[2])
        identifiers = (
            self._write(res.identifiers, CUSTOMER_IDENTIFIERS_COLUMNS, names[3]) if self.entity == "customers" else None
        )
        if into is not None:
            into.staged_rows += len(res.staged)
            return into
        batch = ScratchBatch(source, batch_id, staged, quarantined, deleted, identifiers, staged_rows=len(res.staged))
        self.batches.append(batch)
        return batch

    # -- writing ------------------------------------------------------------------------------------
    def _name(self) -> str:
        name = f"{scratch_prefix(self.entity)}{uuid.uuid4().hex[:12]}"
        self.names.append(name)
        return name

    def _write(self, frame: pd.DataFrame, columns: Sequence[Column], append_to: str | None = None) -> str:
        name = append_to or self._name()
        types = {c.name: c.dtype for c in columns}
        frame = frame[[c.name for c in columns]]
        mode = "append" if append_to else "replace"
        if append_to is None and self.wh.dialect == "postgresql" and len(frame) >= UNLOGGED_FROM_ROWS:
            # The table exactly as the bulk write would create it, then UNLOGGED while it is empty.
            self.wh.write_table(frame.iloc[:0], self.schema, name, mode="replace", column_types=types)
            self.wh.execute(f"ALTER TABLE {self.wh.qualified(self.schema, name)} SET UNLOGGED")
            mode = "append"
        self.wh.write_table(frame, self.schema, name, mode=mode, column_types=types)
        return name

    @property
    def _unlogged(self) -> str:
        return "UNLOGGED " if self.wh.dialect == "postgresql" else ""

    def _create_as(self, select: sa.Select) -> str:
        """A scratch table made from ``select`` inside the warehouse."""
        import sqlalchemy as sa
        name = self._name()
        target = self.wh.qualified(self.schema, name)
        sql = select.compile(dialect=self.wh.engine.dialect, compile_kwargs={"literal_binds": True})
        with self.wh.connect() as conn:
            conn.execute(sa.text(f"CREATE {self._unlogged}TABLE {target} AS {sql}"))
            if self.wh.dialect == "postgresql":  # the joins that follow need its statistics (see warehouse.py)
                conn.execute(sa.text(f"ANALYZE {target}"))
        return name

    def _table(self, name: str, columns: Sequence[Column] | Sequence[str]) -> sa.TableClause:
        return self.wh.table(self.schema, name, [c if isinstance(c, str) else c.name for c in columns])

    def _ids(self, batch: ScratchBatch, batch_order: int) -> list[sa.Select]:
        """(source, record_id, deleted, batch order, part) of the records a batch holds: present ones
        (staged or quarantined, part 0) and those it marks deleted (part 1, after them)."""
        import sqlalchemy as sa
        source = sa.cast(sa.literal(batch.source), sa.Text).label("source")
        staged = self._table(batch.staged, [self.record_id])
        quarantined = self._table(batch.quarantined, ["record_id"])
        deleted = self._table(batch.deleted, KEY_COLUMNS)

        def ids(table: sa.TableClause, column: str, is_deleted: bool, part: int) -> sa.Select:
            record_id = table.c[column]
            return sa.select(
                source, sa.cast(record_id, sa.Text).label("record_id"),
                (sa.true() if is_deleted else sa.false()).label("deleted"),
                sa.literal(batch_order).label(_ORDER), sa.literal(part).label(_PART),
            ).where(record_id.is_not(None))

        return [ids(staged, self.record_id, False, 0), ids(quarantined, "record_id", False, 0),
                ids(deleted, "record_id", True, 1)]

    def keys(self, batch: ScratchBatch) -> str:
        """source, record_id of every record ``batch`` holds (staged, quarantined or deleted), once."""
        import sqlalchemy as sa
        ids = sa.union_all(*self._ids(batch, 0)).subquery("ids")
        return self._create_as(sa.select(ids.c.source, ids.c.record_id).distinct())

    # -- derived in SQL -----------------------------------------------------------------------------
    @staticmethod
    def _latest(parts: list[sa.Select], columns: list[str], record_id: str, order: list[str]) -> sa.Select:
        """Of each (source, ``record_id``), the row that comes last by ``order``: pandas'
        ``drop_duplicates(keep="last")`` over the parts concatenated in that order."""
        import sqlalchemy as sa
        union = sa.union_all(*parts).subquery("parts")
        rank = sa.func.row_number().over(
            partition_by=[union.c.source, union.c[record_id]], order_by=[union.c[o].desc() for o in order]
        )
        ranked = sa.select(*(union.c[c] for c in columns), rank.label(_RANK)).subquery("ranked")
        return sa.select(*(ranked.c[c] for c in columns)).where(ranked.c[_RANK] == 1)

    def run_keys(self) -> str:
        """Every record the run's batches hold, in the state the last of them leaves it (RUN_KEYS_COLUMNS)."""
        if not self.batches:
            return self._write(typed_frame(RUN_KEYS_COLUMNS, {}, 0), RUN_KEYS_COLUMNS)
        parts = [select for i, batch in enumerate(self.batches) for select in self._ids(batch, i)]
        return self._create_as(self._latest(parts, ["source", "record_id", "deleted"], "record_id", [_ORDER, _PART]))

    def contract_table(self) -> str:
        """The rows this run stages, as the staging contract validates them: a record staged by two
        batches counts once, in its newest version. One batch's staged table serves as it is, batches of
        different sources are appended. Made once per run."""
        if self._contract is None:
            self._contract = self._contract_table()
        return self._contract

    def _contract_table(self) -> str:
        import sqlalchemy as sa
        columns = [c.name for c in ENTITIES[self.entity].staged_columns]
        staged = [(i, b) for i, b in enumerate(self.batches) if b.has_staged]
        if not staged:
            empty = ENTITIES[self.entity].staged_columns
            return self._write(typed_frame(empty, {}, 0), empty)
        if len(staged) == 1:
            return staged[0][1].staged
        if len({batch.source for _, batch in staged}) == len(staged):
            # One batch per source (a first night of customers from two sources): no record is in two
            # of them, so nothing needs ranking.
            return self._create_as(sa.union_all(*(sa.select(*self._table(b.staged, columns).c) for _, b in staged)))
        parts = []
        for i, batch in staged:
            table = self._table(batch.staged, columns)
            parts.append(sa.select(*table.c, sa.literal(i).label(_ORDER)))
        return self._create_as(self._latest(parts, columns, self.record_id, [_ORDER]))

    def insert_index(self, conn: Connection, index: sa.TableClause, batch: ScratchBatch, stamp) -> None:
        """``audit.staged_records`` rows of a batch: its staged records and its row-level quarantined ones."""
        import sqlalchemy as sa
        staged = self._table(batch.staged, [self.record_id])
        quarantined = self._table(batch.quarantined, QUARANTINE_COLUMNS)

        def rows(record_id: sa.ColumnElement, outcome: str) -> list[sa.ColumnElement]:
            return [
                sa.literal(batch.source, sa.String), sa.literal(self.entity, sa.String),
                sa.cast(record_id, sa.Text), sa.literal(batch.batch_id, sa.String),
                sa.literal(stamp.to_pydatetime(), sa.DateTime(timezone=True)), sa.literal(outcome, sa.String),
            ]

        select = sa.union_all(
            sa.select(*rows(staged.c[self.record_id], "staged")),
            sa.select(*rows(quarantined.c.record_id, "quarantined"))
            .where(quarantined.c.record_id.is_not(None), row_level(quarantined)),
        )
        names = ["source", "entity", "record_id", "batch_id", "staged_at", "outcome"]
        conn.execute(sa.insert(index).from_select([index.c[n] for n in names], select))

    def drop(self) -> None:
        """Drop every scratch table, in a transaction of its own (see Warehouse.scratch_schema)."""
        import sqlalchemy as sa
        with self.wh.connect() as conn:
            for name in self.names:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {self.wh.qualified(self.schema, name)}"))
        self.names, self._contract = [], None
