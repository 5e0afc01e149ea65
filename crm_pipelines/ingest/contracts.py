"""Volume contracts of a source delivery, judged before it replaces anything in ``raw``.

A header-only or truncated export looks like mass deletion to everything downstream: customers
vanish, their consent withdrawals with them, and identities are reshuffled. So a delivery that is
empty (unless the entity is declared ``optional``) or that holds ``checks.max_row_drop_pct`` percent
fewer rows than the rows it replaces, or more, is refused: its rows go to
``quarantine.<source>__<entity>__delivery`` with a line in ``quarantine.rejected_deliveries``, and the
raw table and the ingest state stay as the last good delivery left them.

Cursor-mode loads only append, so only their first (rebuilding) load is judged.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crm_pipelines.ingest.errors import SourceError
from crm_pipelines.schema import QUARANTINE, Column
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pyarrow as pa

REJECTED_DELIVERIES = "rejected_deliveries"
REJECTED_DELIVERY_COLUMNS = (
    Column("source", "string", "Source system (crm.yaml)."),
    Column("entity", "string", "Canonical entity."),
    Column("location", "string", "The file, table or endpoint that delivered."),
    Column("batch_id", "string", "The run that received the delivery."),
    Column("rows_delivered", "integer", "Rows in the refused delivery."),
    Column("rows_replaced", "integer", "Rows of the last good delivery it would have replaced."),
    Column("reason", "string", "Which contract failed."),
    Column("quarantine_table", "string", "Where the refused rows are kept, in schema quarantine."),
    Column("refused_at", "timestamp", "When (UTC)."),
)


class SourceContractError(SourceError):
    """A delivery failed its volume contract; nothing in ``raw`` changed."""


@dataclass(frozen=True)
class VolumeVerdict:
    rows_delivered: int
    rows_replaced: int | None
    """Rows the delivery would replace (None when nothing is replaced: a first load, or cursor appends)."""
    problem: str | None = None

    @property
    def passed(self) -> bool:
        return self.problem is None


def judge_volume(
    rows_delivered: int, rows_replaced: int | None, *, optional: bool, max_drop_pct: float
) -> VolumeVerdict:
    """The contract itself: pure arithmetic, so it is tested without a warehouse.

    An optional entity may deliver nothing at all; when it delivers rows, the drop rule applies to it too.
    """
    if rows_delivered == 0 and optional:
        return VolumeVerdict(rows_delivered, rows_replaced)
    if rows_delivered == 0:
        before = f" where the last good delivery had {rows_replaced}" if rows_replaced else ""
        return VolumeVerdict(
            rows_delivered, rows_replaced,
            f"delivered no rows{before} (a header-only or empty export?); declare the entity "
            "`optional: true` in crm.yaml if an empty delivery is normal",
        )
    drop = 100 * (1 - rows_delivered / rows_replaced) if rows_replaced else 0.0
    if rows_replaced and rows_delivered < rows_replaced and drop >= max_drop_pct:
        return VolumeVerdict(
            rows_delivered, rows_replaced,
            f"delivered {rows_delivered} rows where the last good delivery had {rows_replaced} "
            f"({drop:.0f}% fewer; checks.max_row_drop_pct refuses a drop of {max_drop_pct:g}% or more)",
        )
    return VolumeVerdict(rows_delivered, rows_replaced)


def delivery_quarantine_table(raw_table: str) -> str:
    return f"{raw_table}__delivery"


def quarantine_delivery(
    warehouse: Warehouse,
    raw_table: str,
    rows: pa.Table,
    *,
    source: str,
    entity: str,
    location: str,
    batch_id: str,
    verdict: VolumeVerdict,
    now: dt.datetime,
) -> str:
    """Keep the refused rows and why, for the operator to inspect; returns the quarantine table name."""
    import sqlalchemy as sa
    table = delivery_quarantine_table(raw_table)
    warehouse.ensure_schemas(QUARANTINE)
    warehouse.write_table(rows, QUARANTINE, table, mode="replace")
    if not warehouse.table_exists(QUARANTINE, REJECTED_DELIVERIES):
        warehouse.create_table(QUARANTINE, REJECTED_DELIVERIES, REJECTED_DELIVERY_COLUMNS)
    log_table = warehouse.table(QUARANTINE, REJECTED_DELIVERIES, [c.name for c in REJECTED_DELIVERY_COLUMNS])
    warehouse.execute(
        sa.insert(log_table).values(
            source=source,
            entity=entity,
            location=location,
            batch_id=batch_id,
            rows_delivered=verdict.rows_delivered,
            rows_replaced=verdict.rows_replaced,
            reason=verdict.problem,
            quarantine_table=table,
            refused_at=now,
        )
    )
    return table
