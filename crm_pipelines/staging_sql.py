"""Set-based parts of incremental staging, run inside the warehouse: reconciliation, table statistics
and the 'referenced' customer stubs. Nothing here reads a whole staged table into memory."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

from crm_pipelines.attribution import EMAIL_COLUMN, reference_expressions
from crm_pipelines.config import CrmConfig
from crm_pipelines.schema import (
    AUDIT,
    CUSTOMERS,
    QUARANTINE,
    QUARANTINE_COLUMNS,
    RAW,
    RECONCILIATION_COLUMNS,
    STAGING,
    raw_table_name,
)
from crm_pipelines.staging.references import EMAIL_PREFIX, EVENT_TIME_COLUMNS, REFERENCED
from crm_pipelines.staging.values import typed_frame
from crm_pipelines.staging_batches import QUARANTINE_TABLE, STAGED_BATCHES, STAGED_BATCHES_COLUMNS, staged_records_only
from crm_pipelines.staging_scratch import row_level
from crm_pipelines.warehouse import Warehouse, col

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection


def reconciliation(
    wh: Warehouse, config: CrmConfig, entity: str, *, run_id: str, now: dt.datetime | None = None
) -> pd.DataFrame:
    """One RECONCILIATION_COLUMNS row per source, counted in the warehouse.

    ``rows_in`` (raw rows), ``rows_out`` (staged records) and ``rows_quarantined`` (row-level quarantine
    rows) are counted in their tables; ``rows_superseded`` and ``rows_deleted`` are the sums over the
    source's staged batches of the versions each superseded and of its rows whose record it marks
    deleted. Raw rows that changed outside staging, a lost or duplicated
    quarantine row, or a staged record counted twice all break the equation.
    """
    import pandas as pd
    import sqlalchemy as sa
    stamp = pd.Timestamp(now or dt.datetime.now(dt.UTC))
    staged = wh.table(STAGING, entity, ["source", "record_kind"] if entity == "customers" else ["source"])
    quarantine = wh.table(QUARANTINE, QUARANTINE_TABLE, [c.name for c in QUARANTINE_COLUMNS])
    audit = wh.table(AUDIT, STAGED_BATCHES, [c.name for c in STAGED_BATCHES_COLUMNS])
    rows = []
    with wh.connect() as conn:
        for source in config.sources_for(entity):
            table = raw_table_name(source.name, entity)
            if not wh.table_exists(RAW, table):
                continue
            rows_in = conn.execute(sa.select(sa.func.count()).select_from(wh.table(RAW, table))).scalar_one()
            rows_out = conn.execute(
                sa.select(sa.func.count()).select_from(staged)
                .where(staged.c.source == source.name, staged_records_only(entity, staged))
            ).scalar_one()
            quarantined = conn.execute(
                sa.select(sa.func.count()).select_from(quarantine).where(
                    quarantine.c.layer == STAGING, quarantine.c.entity == entity,
                    quarantine.c.source == source.name, row_level(quarantine),
                )
            ).scalar_one()
            superseded, deleted = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(audit.c.rows_superseded), 0),
                          sa.func.coalesce(sa.func.sum(audit.c.rows_deleted), 0))
                .where(audit.c.entity == entity, audit.c.source == source.name)
            ).one()
            rows.append({
                "run_id": run_id, "recorded_at": stamp, "layer": STAGING, "table_name": entity,
                "source": source.name, "rows_in": int(rows_in), "rows_out": int(rows_out),
                "rows_quarantined": int(quarantined), "rows_superseded": int(superseded),
                "rows_deleted": int(deleted),
                "reconciles": int(rows_in) == int(rows_out) + int(quarantined) + int(superseded) + int(deleted),
            })
    frame = pd.DataFrame(rows, columns=[c.name for c in RECONCILIATION_COLUMNS])
    return typed_frame(RECONCILIATION_COLUMNS, frame.to_dict("series"), len(frame))


def table_stats_sql(wh: Warehouse, schema: str, table: str, columns: list[str]) -> dict:
    """Like :func:`crm_pipelines.checks.table_stats`, counted in the warehouse."""
    import sqlalchemy as sa
    t = wh.table(schema, table, columns)
    stmt = sa.select(sa.func.count(), *(sa.func.count(t.c[c]) for c in columns)).select_from(t)
    with wh.connect() as conn:
        total, *present = conn.execute(stmt).one()
    total = int(total)
    rates = {c: round(1 - int(n) / total, 6) if total else 0.0 for c, n in zip(columns, present, strict=True)}
    return {"row_count": total, "null_rates": rates}


def _references(wh: Warehouse, config: CrmConfig, entity: str) -> sa.Select:
    """(source, source_record_id, email, created_at) of the customers a staged table's rows name: one row
    per distinct (source, source_customer_id, email) of the table, with its earliest event time.

    The reference and its email depend on those columns only, so grouping by them first gives the stubs'
    minimum times unchanged while the expressions run once per distinct reference instead of once per
    row (the stub query took about a quarter less on the 1.5 million referencing rows of 100,000 people).
    """
    import sqlalchemy as sa
    ref_source, ref_id = reference_expressions(config, entity)
    email_column = EMAIL_COLUMN.get(entity)
    by_email = ref_id.startswith(EMAIL_PREFIX, autoescape=True)
    email = sa.case((by_email, col(email_column)), else_=sa.null()) if email_column else sa.null()
    time = EVENT_TIME_COLUMNS[entity]
    keys = [col("source"), col("source_customer_id"), *([col(email_column)] if email_column else [])]
    distinct = (
        sa.select(*keys, sa.func.min(col(time)).label(time))
        .select_from(wh.table(STAGING, entity))
        .group_by(*keys)
        .subquery(f"{entity}_references")
    )
    return (
        sa.select(
            ref_source.label("source"),
            ref_id.label("source_record_id"),
            sa.cast(email, sa.Text).label("email"),
            col(time).label("created_at"),
        )
        .select_from(distinct)
    )


def refresh_referenced_customers(
    conn: Connection, wh: Warehouse, config: CrmConfig, entities: list[str]
) -> None:
    """Bring the stub customers (``record_kind = 'referenced'``) in line with the staged tables, in SQL.

    The same stubs as :func:`crm_pipelines.staging.referenced_customers`: one per (source, record id)
    that ``entities`` name but no staged customer record has, its email for email references and its
    earliest referencing time as created_at. Stubs that did not change keep their rows (they are not
    counted: that would scan both tables twice more).
    """
    import sqlalchemy as sa
    customers = wh.table(STAGING, "customers", [c.name for c in CUSTOMERS.staged_columns])
    stub = customers.c.record_kind == REFERENCED
    if not entities:
        conn.execute(sa.delete(customers).where(stub))
        return
    named = sa.union_all(*(_references(wh, config, e) for e in entities)).subquery("named")
    records = customers.alias("records")
    wanted = (
        sa.select(
            named.c.source, named.c.source_record_id,
            sa.func.min(named.c.email).label("email"), sa.func.min(named.c.created_at).label("created_at"),
        )
        .where(named.c.source.is_not(None), named.c.source_record_id.is_not(None))
        .where(~sa.exists().where(
            records.c.source == named.c.source, records.c.source_record_id == named.c.source_record_id,
            sa.func.coalesce(records.c.record_kind, "record") != REFERENCED,
        ))
        .group_by(named.c.source, named.c.source_record_id)
    )
    scratch = f"_stage_customers_stubs_{uuid.uuid4().hex[:12]}"
    target = wh.qualified(STAGING, scratch)
    sql = wanted.compile(dialect=wh.engine.dialect, compile_kwargs={"literal_binds": True})
    conn.execute(sa.text(f"CREATE TABLE {target} AS {sql}"))
    new = wh.table(STAGING, scratch, ["source", "source_record_id", "email", "created_at"])
    same = sa.and_(
        new.c.source == customers.c.source, new.c.source_record_id == customers.c.source_record_id,
        new.c.email.is_not_distinct_from(customers.c.email),
        new.c.created_at.is_not_distinct_from(customers.c.created_at),
    )
    conn.execute(sa.delete(customers).where(stub, ~sa.exists().where(same)))
    present = customers.alias("present")
    fresh = sa.select(
        new.c.source, new.c.source_record_id, new.c.email, new.c.created_at, sa.literal(REFERENCED)
    ).where(~sa.exists().where(
        present.c.source == new.c.source, present.c.source_record_id == new.c.source_record_id,
        present.c.record_kind == REFERENCED,
    ))
    names = ["source", "source_record_id", "email", "created_at", "record_kind"]
    conn.execute(sa.insert(customers).from_select([customers.c[n] for n in names], fresh))
    conn.execute(sa.text(f"DROP TABLE {target}"))







