"""Identity resolution end to end: staged customer records in, one customer per real person out.

:func:`resolve` re-resolves everything; :func:`resolve_incremental` matches only new or changed
records against the existing ones and re-clusters just the customers they touch.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from crm_pipelines.identity.clustering import ACCEPTED, cluster_records, components
from crm_pipelines.identity.engine import duckdb_session, fetch_frame, register_frame
from crm_pipelines.identity.golden import build_golden_records
from crm_pipelines.identity.ids import HISTORY_COLUMNS, assign_ids
from crm_pipelines.identity.matching import METHOD_RANK, Scorer, conflict_pairs
from crm_pipelines.identity.prepare import (
    build_match_records,
    clean_records,
    fetch_state,
    load_records,
    register_state,
)
from crm_pipelines.identity.settings import IdentitySettings
from crm_pipelines.schema import IDENTITY_MAP_COLUMNS

MAP_COLUMNS = (*(c.name for c in IDENTITY_MAP_COLUMNS), "cluster_flag", "id_first_seen_at")
LINK_COLUMNS = (
    "source_l", "source_record_id_l", "source_r", "source_record_id_r",
    "match_method", "match_weight", "match_probability", "evidence",
)
REJECTED_LINK_COLUMNS = (*LINK_COLUMNS, "reason")
DETERMINISTIC = ("identifier", "email", "phone")


@dataclass
class IdentityResult:
    """Everything one resolution run produces.

    identity_map: one row per (source, source_record_id): its customer_id, how it joined
        (seed, email, phone, identifier, probabilistic or singleton), the probability of that link
        (1.0 for exact identifiers), ``cluster_flag`` (why its cluster was rebuilt: conflict_split,
        ambiguous, oversize_split, oversize_singleton; null when it was not) and
        ``id_first_seen_at`` (when its customer_id was first assigned; keep it for the next run).
    links: the links that hold within customers; match_probability is the model's, match_method
        says whether a shared identifier made it a link regardless.
    rejected_links: candidate links that were refused, with the reason (the guard, a conflict in
        the cluster, an ambiguous stub, an oversize cluster).
    unified_customers, golden_lineage: the golden records and the record each field came from.
    customer_id_history: ids retired by merges, and splits, of this run.
    summary: figures for the run's metadata.
    affected_customer_ids: incremental runs only: the customer ids (new and retired) whose golden
        records must be replaced; unified_customers holds only those.
    match_records: the matching state, each record's normalized junk-free matching values; pass it
        to the next :func:`resolve_incremental` so existing records need no normalizing again.
    """

    identity_map: pd.DataFrame
    links: pd.DataFrame
    rejected_links: pd.DataFrame
    unified_customers: pd.DataFrame
    golden_lineage: pd.DataFrame
    customer_id_history: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    affected_customer_ids: list[str] | None = None
    match_records: pd.DataFrame | None = None


def _now(recorded_at: dt.datetime | None) -> dt.datetime:
    moment = recorded_at or dt.datetime.now(dt.UTC)
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _candidates(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    frame = fetch_frame(
        con,
        "SELECT uid_l, uid_r, match_weight, match_probability, method, conflict FROM candidates "
        "ORDER BY uid_l, uid_r",
    )
    return frame.drop_duplicates(["uid_l", "uid_r"]).reset_index(drop=True)


def _clusters(con: duckdb.DuckDBPyConnection, n_nodes: int, edges: pd.DataFrame, scope: np.ndarray,
              settings: IdentitySettings) -> Any:
    """Cluster the records in ``scope`` (unique ids) along ``edges`` with the guard's conflicts."""
    component = components(n_nodes, edges["uid_l"].to_numpy(np.int64), edges["uid_r"].to_numpy(np.int64))
    sizes = np.bincount(component, minlength=n_nodes)
    large = scope[sizes[component[scope]] >= 3]
    conflicts = conflict_pairs(con, pd.DataFrame({"unique_id": large, "component": component[large]}))
    nameless = con.execute(
        "SELECT unique_id FROM match_records WHERE first_name IS NULL AND date_of_birth IS NULL"
    ).fetchnumpy()["unique_id"]
    nameless_mask = np.zeros(n_nodes, dtype=bool)
    nameless_mask[nameless] = True
    return cluster_records(n_nodes, edges, conflicts, nameless_mask, settings.max_cluster_size,
                           settings.split_threshold)


def _join_methods(members: pd.DataFrame, held: pd.DataFrame) -> pd.DataFrame:
    """Each record's method and probability: its strongest held link, 'seed' for the anchor record."""
    both = pd.concat(
        [held.rename(columns={"uid_l": "unique_id"}).drop(columns="uid_r"),
         held.rename(columns={"uid_r": "unique_id"}).drop(columns="uid_l")],
        ignore_index=True,
    )
    both["map_probability"] = np.where(both["method"].isin(DETERMINISTIC), 1.0, both["match_probability"])
    both["rank"] = both["method"].map(METHOD_RANK)
    best = both.sort_values(["unique_id", "map_probability", "rank"], ascending=[True, False, True])
    best = best.drop_duplicates("unique_id").set_index("unique_id")
    out = members.copy()
    out["match_method"] = out["unique_id"].map(best["method"])
    out["match_probability"] = out["unique_id"].map(best["map_probability"])
    sizes = out.groupby("customer_id")["unique_id"].transform("size")
    out.loc[out["is_anchor"], ["match_method", "match_probability"]] = ["seed", 1.0]
    out.loc[sizes == 1, "match_method"] = "singleton"
    out.loc[sizes == 1, "match_probability"] = np.nan
    return out


def _link_frames(con: duckdb.DuckDBPyConnection, candidates: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Held and rejected links with record keys and evidence, from candidates with a ``status``."""
    register_frame(con, "decided", candidates[["uid_l", "uid_r", "status"]])
    frame = fetch_frame(
        con,
        """
        SELECT l.source AS source_l, l.source_record_id AS source_record_id_l,
               r.source AS source_r, r.source_record_id AS source_record_id_r,
               c.method AS match_method, c.match_weight, c.match_probability, c.evidence,
               coalesce(c.conflict, d.status) AS status
        FROM decided AS d
        JOIN candidates AS c USING (uid_l, uid_r)
        JOIN records AS l ON l.unique_id = c.uid_l
        JOIN records AS r ON r.unique_id = c.uid_r
        ORDER BY source_l, source_record_id_l, source_r, source_record_id_r
        """,
    )
    con.execute("DROP TABLE decided")
    frame = frame.drop_duplicates(["source_l", "source_record_id_l", "source_r", "source_record_id_r"])
    held = frame["status"] == ACCEPTED
    links = frame[held][list(LINK_COLUMNS)].reset_index(drop=True)
    rejected = frame[~held].rename(columns={"status": "reason"})[list(REJECTED_LINK_COLUMNS)].reset_index(drop=True)
    return links, rejected


def _summary(identity_map: pd.DataFrame, links: pd.DataFrame, rejected: pd.DataFrame,
             history: pd.DataFrame) -> dict[str, Any]:
    weights = links["match_weight"].dropna()
    bins = np.floor(weights / 5) * 5
    histogram = {f"{int(b)}..{int(b) + 5}": int(n) for b, n in bins.value_counts().sort_index().items()}
    cluster_sizes = identity_map.groupby("customer_id").size()
    return {
        "records": int(len(identity_map)),
        "customers": int(cluster_sizes.size),
        "match_weight_histogram": histogram,
        "cluster_size_distribution": {int(k): int(v) for k, v in cluster_sizes.value_counts().sort_index().items()},
        "largest_cluster": int(cluster_sizes.max()) if len(cluster_sizes) else 0,
        "records_by_method": {str(k): int(v) for k, v in identity_map["match_method"].value_counts().items()},
        "links_by_method": {str(k): int(v) for k, v in links["match_method"].value_counts().items()},
        "rejected_by_reason": {str(k): int(v) for k, v in rejected["reason"].value_counts().items()},
        "records_flagged": {str(k): int(v) for k, v in identity_map["cluster_flag"].value_counts().items()},
        "merges": int((history["change"] == "merge").sum()),
        "splits": int((history["change"] == "split").sum()),
    }


def _resolve_scope(
    con: duckdb.DuckDBPyConnection,
    scope: np.ndarray,
    settings: IdentitySettings,
    previous_map: pd.DataFrame | None,
    previous_history: pd.DataFrame | None,
    run_id: str,
    recorded_at: dt.datetime,
    reserved_ids: set[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Cluster the records in ``scope`` along the scored ``candidates`` and give them ids and
    golden records. Returns map rows, links, rejected links, golden records, lineage, history."""
    n_nodes = int(con.execute("SELECT coalesce(max(unique_id) + 1, 0) FROM match_records").fetchone()[0])
    candidates = _candidates(con)
    edges = candidates[candidates["conflict"].isna()].reset_index(drop=True)
    clusters = _clusters(con, n_nodes, edges, scope, settings)
    edges["status"] = clusters.edge_status
    register_frame(con, "scope", pd.DataFrame({"unique_id": scope}))
    members = fetch_frame(
        con,
        "SELECT unique_id, source, source_record_id, created_at, priority FROM records "
        "WHERE unique_id IN (SELECT unique_id FROM scope) ORDER BY unique_id",
    )
    members["cluster"] = clusters.cluster[members["unique_id"].to_numpy()]
    members["cluster_flag"] = clusters.flag[members["unique_id"].to_numpy()]
    assignment = assign_ids(members, previous_map, previous_history, run_id, recorded_at, reserved_ids)
    members = members.merge(assignment.customer_ids, on="cluster", how="left")
    members["is_anchor"] = members["unique_id"] == members["anchor"]
    held = edges[edges["status"] == ACCEPTED]
    members = _join_methods(members, held)
    identity_map = members[list(MAP_COLUMNS)].sort_values(["source", "source_record_id"]).reset_index(drop=True)
    decided = pd.concat(
        [edges, candidates[candidates["conflict"].notna()].assign(status=lambda f: f["conflict"])],
        ignore_index=True,
    )
    links, rejected = _link_frames(con, decided)
    register_frame(con, "assignments", members[["unique_id", "customer_id"]])
    unified, lineage = build_golden_records(con, "assignments", settings.field_priority)
    return identity_map, links, rejected, unified, lineage, assignment.history


def resolve(
    customers: pd.DataFrame,
    identifiers: pd.DataFrame | None,
    settings: IdentitySettings,
    model: dict[str, Any],
    previous_map: pd.DataFrame | None = None,
    previous_history: pd.DataFrame | None = None,
    run_id: str = "",
    *,
    source_priority: Mapping[str, int] | None = None,
    recorded_at: dt.datetime | None = None,
) -> IdentityResult:
    """Resolve all staged customer records into customers.

    ``customers``: staging.customers rows; ``identifiers``: staging.customer_identifiers rows;
    ``model``: from :func:`~crm_pipelines.identity.model.ensure_model`; ``previous_map`` and
    ``previous_history``: the last run's identity map and id history, to keep ids stable;
    ``source_priority``: each source's default priority (lower wins; ``SourceConfig.priority``).
    """
    started = time.perf_counter()
    now = _now(recorded_at)
    with duckdb_session(settings) as con:
        n_records = load_records(con, customers, source_priority)
        cleaning = clean_records(con, identifiers, settings)
        cleaning |= build_match_records(con, settings)
        scorer = Scorer(con, model, settings)
        scorer.score_all()
        scope = np.arange(n_records, dtype=np.int64)
        identity_map, links, rejected, unified, lineage, history = _resolve_scope(
            con, scope, settings, previous_map, previous_history, run_id, now
        )
        state = fetch_state(con, ("cleaned",))
    summary = _summary(identity_map, links, rejected, history)
    summary.update(pairs_scored=scorer.pairs_scored, cleaning=cleaning,
                   seconds=round(time.perf_counter() - started, 2))
    return IdentityResult(identity_map, links, rejected, unified, lineage, history, summary, match_records=state)


def _existing_state(
    con: duckdb.DuckDBPyConnection,
    existing_customers: pd.DataFrame,
    existing_match_records: pd.DataFrame | None,
    identifiers: pd.DataFrame | None,
    settings: IdentitySettings,
    source_priority: Mapping[str, int] | None,
) -> None:
    """Create ``state_cleaned``: the existing records' matching values, numbered in key order."""
    if existing_match_records is not None:
        register_state(con, existing_match_records, "state_cleaned")
        return
    load_records(con, existing_customers, source_priority)
    clean_records(con, identifiers, settings)
    con.execute("CREATE OR REPLACE TABLE state_cleaned AS SELECT * FROM cleaned")
    con.execute("DROP TABLE cleaned")
    con.execute("DROP TABLE records")


def _records_of_keys(customers: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``customers`` whose (source, source_record_id) is in ``keys``, cheaply."""
    ids = set(keys["source_record_id"].astype(str))
    candidates = customers[customers["source_record_id"].astype("str").isin(ids)]
    wanted = set(zip(keys["source"].astype(str), keys["source_record_id"].astype(str)))
    exact = [k in wanted for k in zip(candidates["source"].astype(str), candidates["source_record_id"].astype(str))]
    return candidates[exact]


def resolve_incremental(
    new_or_changed_customers: pd.DataFrame,
    existing_customers: pd.DataFrame,
    existing_map: pd.DataFrame,
    identifiers: pd.DataFrame | None,
    settings: IdentitySettings,
    model: dict[str, Any],
    previous_history: pd.DataFrame | None = None,
    run_id: str = "",
    *,
    existing_match_records: pd.DataFrame | None = None,
    source_priority: Mapping[str, int] | None = None,
    recorded_at: dt.datetime | None = None,
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
    many records, are only picked up by :func:`resolve`.
    """
    started = time.perf_counter()
    now = _now(recorded_at)
    with duckdb_session(settings) as con:
        _existing_state(con, existing_customers, existing_match_records, identifiers, settings, source_priority)
        register_frame(con, "new_keys", new_or_changed_customers[["source", "source_record_id"]].astype("str"))
        con.execute(
            "DELETE FROM state_cleaned AS s USING new_keys AS k "
            "WHERE s.source = k.source AND s.source_record_id = k.source_record_id"
        )
        first_new_id = int(con.execute("SELECT coalesce(max(unique_id) + 1, 0) FROM state_cleaned").fetchone()[0])
        load_records(con, new_or_changed_customers, source_priority, first_unique_id=first_new_id)
        cleaning = clean_records(con, identifiers, settings)
        cleaning |= build_match_records(con, settings, ("state_cleaned", "cleaned"))
        scorer = Scorer(con, model, settings)
        scorer.score_new_against_existing(first_new_id)
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
        scope_map = existing_map[existing_map["customer_id"].isin(set(touched))]
        scope_existing = _records_of_keys(existing_customers, scope_map)
        load_records(con, scope_existing, source_priority, unique_ids_from="state_cleaned")
        scope = con.execute("SELECT unique_id FROM records ORDER BY unique_id").fetchnumpy()["unique_id"]
        scope = scope.astype(np.int64)
        register_frame(con, "scope", pd.DataFrame({"unique_id": scope}))
        scorer.score_within("scope")
        reserved = set(existing_map["customer_id"].dropna())
        identity_map, links, rejected, unified, lineage, history = _resolve_scope(
            con, scope, settings, scope_map, previous_history, run_id, now, reserved
        )
        state = fetch_state(con, ("state_cleaned", "cleaned"))
    map_keys = pd.MultiIndex.from_frame(existing_map[["source", "source_record_id"]].astype("str"))
    scope_keys = pd.MultiIndex.from_frame(identity_map[["source", "source_record_id"]].astype("str"))
    full_map = pd.concat([existing_map[~map_keys.isin(scope_keys)], identity_map], ignore_index=True)
    full_map = full_map.reindex(columns=list(MAP_COLUMNS)).sort_values(["source", "source_record_id"])
    affected = sorted(set(touched) | set(identity_map["customer_id"]))
    summary = _summary(identity_map, links, rejected, history)
    summary.update(
        pairs_scored=scorer.pairs_scored, cleaning=cleaning,
        new_or_changed_records=int(len(new_or_changed_customers)), records_reclustered=int(len(scope)),
        seconds=round(time.perf_counter() - started, 2),
    )
    return IdentityResult(
        full_map.reset_index(drop=True), links, rejected, unified, lineage,
        history.reindex(columns=list(HISTORY_COLUMNS)), summary, affected, match_records=state,
    )
