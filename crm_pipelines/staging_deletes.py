"""Records that a staging run removes because their source deleted them, written to
``audit.source_deletes`` inside the staging transaction.

Incremental staging replaces records by key (:mod:`crm_pipelines.staging_batches`). A record whose
current version in a new batch is marked deleted (crm.yaml ``deleted_column`` / ``deleted_flag``) has
its staged row deleted by key and nothing inserted; a source restaged whole (a full delivery replaced
its raw table, or the entity is restaged) simply does not stage the records its raw table no longer
holds. Either way, every record that was staged before the run and is not after it is listed once,
as ``flagged_deleted`` or ``missing_from_delivery``, with the run that removed it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crm_pipelines.schema import AUDIT, SOURCE_DELETE_COLUMNS, Column
from crm_pipelines.staging.deletes import FLAGGED_DELETED, MISSING_FROM_DELIVERY
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection

SOURCE_DELETES = "source_deletes"
RUN_KEYS_COLUMNS = (
    Column("source", "string", "Source system."),
    Column("record_id", "string", "A record the run's batches hold."),
    Column("deleted", "boolean", "Its current version after the run's last batch holding it is marked deleted."),
)


def record_removed(
    conn: Connection,
    wh: Warehouse,
    entity: str,
    index: sa.TableClause,
    keys_table: str,
    keys_schema: str,
    whole_sources: list[str],
    *,
    run_id: str,
    stamp: pd.Timestamp,
) -> None:
    """Before the run changes anything: write to ``audit.source_deletes`` the records ``index``
    (``audit.staged_records``) holds as staged that the run removes: those the run's batches leave
    marked deleted, and, in ``whole_sources`` (restaged whole), those no batch of the run holds."""
    import sqlalchemy as sa
    deletes = wh.table(AUDIT, SOURCE_DELETES, [c.name for c in SOURCE_DELETE_COLUMNS])
    keys = wh.table(keys_schema, keys_table, [c.name for c in RUN_KEYS_COLUMNS])
    flagged = keys.c.deleted.is_(True)
    missing = sa.and_(keys.c.record_id.is_(None), index.c.source.in_(whole_sources)) if whole_sources else sa.false()
    quoted = sa.literal("'") + index.c.source + sa.literal("'")
    reason = sa.case(
        (flagged, sa.literal(f"the current version of this {entity} record in source ") + quoted
         + sa.literal(" is marked deleted")),
        else_=sa.literal(f"this {entity} record, staged by the previous run, is no longer in source ") + quoted
        + sa.literal("'s delivery"),
    )
    select = (
        sa.select(
            sa.literal(run_id, sa.String).label("run_id"),
            sa.literal(stamp.to_pydatetime(), sa.DateTime(timezone=True)).label("recorded_at"),
            sa.literal(entity, sa.String).label("entity"),
            index.c.source,
            index.c.record_id,
            sa.case((flagged, sa.literal(FLAGGED_DELETED)), else_=sa.literal(MISSING_FROM_DELIVERY)).label("kind"),
            reason.label("reason"),
        )
        .select_from(index.outerjoin(keys, sa.and_(keys.c.source == index.c.source,
                                                   keys.c.record_id == index.c.record_id)))
        .where(index.c.entity == entity, index.c.outcome == "staged", sa.or_(flagged, missing))
    )
    names = ["run_id", "recorded_at", "entity", "source", "record_id", "kind", "reason"]
    conn.execute(sa.insert(deletes).from_select([deletes.c[n] for n in names], select))


def removed_this_run(wh: Warehouse, entity: str, run_id: str) -> pd.DataFrame:
    """kind, records: what ``run_id`` removed from ``entity`` because its sources deleted it."""
    import sqlalchemy as sa
    deletes = wh.table(AUDIT, SOURCE_DELETES, ["run_id", "entity", "kind"])
    stmt = (
        sa.select(deletes.c.kind, sa.func.count().label("records"))
        .where(deletes.c.run_id == run_id, deletes.c.entity == entity)
        .group_by(deletes.c.kind)
        .order_by(deletes.c.kind)
    )
    return wh.query(stmt)
