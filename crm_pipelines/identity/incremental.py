"""Incremental identity resolution: new and changed records against the existing customers.

New records are scored against the existing ones only (Splink ``predict_between``), never existing
against existing; the customers they touch are re-clustered with them (``predict_within`` over that
small scope); everyone else keeps their records and id. The existing records' normalized matching
values come from the previous run's ``match_records``, so a night with ten thousand new records
does not normalize a million old ones again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from crm_pipelines.identity.engine import duckdb_session, fetch_frame, register_frame
from crm_pipelines.identity.ids import HISTORY_COLUMNS
from crm_pipelines.identity.matching import Scorer
from crm_pipelines.identity.prepare import (
    build_match_records,
    clean_records,
    fetch_state,
    load_records,
    register_state,
)
from crm_pipelines.identity.resolve import (
    MAP_COLUMNS,
    IdentityResult,
    Stopwatch,
    resolve_scope,
    run_summary,
    utc_now,
)
from crm_pipelines.identity.settings import IdentitySettings

CustomerRecords = pd.DataFrame | Callable[[pd.DataFrame], pd.DataFrame]
"""The existing staged customer records: a frame of all of them, or a function returning the rows of
the given keys (source, source_record_id), so a night reads only the records it re-resolves."""


def _rows_of(customers: CustomerRecords, keys: pd.DataFrame) -> pd.DataFrame:
    return customers(keys) if callable(customers) else _records_of_keys(customers, keys)


def _existing_state(
    con: duckdb.DuckDBPyConnection,
    existing_customers: CustomerRecords,
    existing_map: pd.DataFrame,
    existing_match_records: pd.DataFrame | pa.Table | None,
    identifiers: pd.DataFrame | None,
    settings: IdentitySettings,
    source_priority: Mapping[str, int] | None,
) -> None:
    """Create ``state_cleaned``: the existing records' matching values, numbered in key order."""
    if existing_match_records is not None:
        register_state(con, existing_match_records, "state_cleaned")
        return
    records = existing_customers if isinstance(existing_customers, pd.DataFrame) else existing_customers(existing_map)
    load_records(con, records, source_priority)
    clean_records(con, identifiers, settings)
    con.execute("CREATE OR REPLACE TABLE state_cleaned AS SELECT * FROM cleaned")
    con.execute("DROP TABLE cleaned")
    con.execute("DROP TABLE records")


def _records_of_keys(customers: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``customers`` whose (source, source_record_id) is in ``keys``, cheaply.

    The mask is a boolean array, never a list: indexing a frame with an empty list selects zero
    columns, and a night whose new records touch no existing customer would lose every column.
    """
    ids = set(keys["source_record_id"].astype(str))
    candidates = customers[customers["source_record_id"].astype("str").isin(ids)]
    wanted = set(zip(keys["source"].astype(str), keys["source_record_id"].astype(str), strict=True))
    exact = np.fromiter(
        (
            k in wanted
            for k in zip(candidates["source"].astype(str), candidates["source_record_id"].astype(str), strict=True)
        ),
        dtype=bool,
        count=len(candidates),
    )
    return candidates[exact]


def resolve_incremental(
    new_or_changed_customers: pd.DataFrame,
    existing_customers: CustomerRecords,
    existing_map: pd.DataFrame,
    identifiers: pd.DataFrame | None,
    settings: IdentitySettings,
    model: dict[str, Any],
    previous_history: pd.DataFrame | None = None,
    run_id: str = "",
    *,
    existing_match_records: pd.DataFrame | pa.Table | None = None,
    source_priority: Mapping[str, int] | None = None,
    recorded_at: dt.datetime | None = None,
    whole_state: bool = True,
) -> IdentityResult:
    """Match new or changed records against the existing ones, and update only what they touch.

    New records are scored against existing records (Splink ``predict_between``, term frequencies
    from all records, computed first); the customers they link to, and those of changed records,
    are re-clustered together with the new records (``predict_within``); every other customer keeps
    its records and id. ``existing_match_records`` is the previous result's ``match_records``: with
    it the existing records need no normalizing again (without it they are normalized here, which
    costs about as much as the rest of the run). ``identity_map`` and ``match_records`` of the
    result are whole; golden records, lineage and links cover the affected customers only
    (``affected_customer_ids``: replace those). Removed records, and values that became shared by
    many records, are only picked up by :func:`resolve`. ``existing_customers`` may be a function of
    keys (see :data:`CustomerRecords`); with ``whole_state=False`` the result's ``match_records`` hold
    the new and changed records only (what a night writes).
    """
    watch = Stopwatch()
    now = utc_now(recorded_at)
    with duckdb_session(settings) as con:
        _existing_state(
            con, existing_customers, existing_map, existing_match_records, identifiers, settings, source_priority
        )
        register_frame(con, "new_keys", new_or_changed_customers[["source", "source_record_id"]].astype("str"))
        con.execute(
            "DELETE FROM state_cleaned AS s USING new_keys AS k "
            "WHERE s.source = k.source AND s.source_record_id = k.source_record_id"
        )
        first_new_id = int(con.execute("SELECT coalesce(max(unique_id) + 1, 0) FROM state_cleaned").fetchall()[0][0])
        load_records(con, new_or_changed_customers, source_priority, first_unique_id=first_new_id)
        cleaning = clean_records(con, identifiers, settings)
        cleaning |= build_match_records(con, settings, ("state_cleaned", "cleaned"))
        watch.lap("prepare")
        scorer = Scorer(con, model, settings, size_every_record=False)
        scorer.score_new_against_existing(first_new_id)
        watch.lap("score_new_against_existing")
        register_frame(con, "existing_map", existing_map[["source", "source_record_id", "customer_id"]])
        touched = fetch_frame(
            con,
            """
            WITH linked AS (
                SELECT uid_l AS unique_id FROM candidates WHERE conflict IS NULL
                UNION SELECT uid_r FROM candidates WHERE conflict IS NULL
            )
            SELECT DISTINCT m.customer_id FROM linked
            JOIN state_cleaned AS s USING (unique_id)
            JOIN existing_map AS m USING (source, source_record_id)
            UNION
            SELECT m.customer_id FROM existing_map AS m JOIN new_keys USING (source, source_record_id)
            """,
        )["customer_id"].dropna()
        touched_ids = set(touched)
        con.execute("DROP TABLE existing_map")
        scope_map = existing_map[existing_map["customer_id"].isin(touched_ids)]
        scope_existing = _rows_of(existing_customers, scope_map)
        load_records(con, scope_existing, source_priority, unique_ids_from="state_cleaned")
        scope = con.execute("SELECT unique_id FROM records ORDER BY unique_id").fetchnumpy()["unique_id"]
        scope = scope.astype(np.int64)
        register_frame(con, "scope", pd.DataFrame({"unique_id": scope}))
        scorer.score_within("scope")
        watch.lap("scope_and_score_within")
        reserved = pd.Index(existing_map["customer_id"].dropna().unique())
        identity_map, links, rejected, unified, lineage, history = resolve_scope(
            con, scope, settings, scope_map, previous_history, run_id, now, reserved, watch=watch
        )
        state = fetch_state(con, ("state_cleaned", "cleaned") if whole_state else ("cleaned",))
    # Every existing row of a touched customer (changed records included) was re-resolved.
    untouched = existing_map[~existing_map["customer_id"].isin(touched_ids)]
    full_map = pd.concat([untouched, identity_map], ignore_index=True).reindex(columns=list(MAP_COLUMNS))
    watch.lap("state_and_map")
    affected = sorted(touched_ids | set(identity_map["customer_id"]))
    summary = run_summary(identity_map, links, rejected, history)
    summary.update(
        pairs_scored=scorer.pairs_scored,
        oversized_blocks=sum(r["blocks"] for r in scorer.oversized_blocks.values()),
        oversized_blocks_by_rule=scorer.oversized_blocks,
        cleaning=cleaning,
        new_or_changed_records=int(len(new_or_changed_customers)),
        records_reclustered=int(len(scope)),
    )
    watch.lap("assemble")
    summary.update(seconds=watch.total, stage_seconds=watch.stages, stage_peak_mb=watch.peak_mb)
    return IdentityResult(
        full_map.reset_index(drop=True),
        links,
        rejected,
        unified,
        lineage,
        history.reindex(columns=list(HISTORY_COLUMNS)),
        summary,
        affected,
        match_records=state,
    )
