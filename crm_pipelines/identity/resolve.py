"""Identity resolution end to end: staged customer records in, one customer per real person out.

:func:`resolve` re-resolves everything; :func:`~crm_pipelines.identity.incremental.resolve_incremental`
matches only new or changed records against the existing ones and re-clusters just the customers they
touch. Both share :func:`resolve_scope`: cluster, give ids, choose golden records.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from crm_pipelines.identity.block_limits import drop_block_counts
from crm_pipelines.identity.clustering import ACCEPTED, cluster_records, components, link_tiers
from crm_pipelines.identity.engine import Stopwatch, duckdb_session, fetch_frame, register_frame
from crm_pipelines.identity.golden import build_golden_records
from crm_pipelines.identity.guard import OVERRIDE_FLAG
from crm_pipelines.identity.ids import assign_ids
from crm_pipelines.identity.matching import METHOD_RANK, Scorer, conflict_pairs
from crm_pipelines.identity.model import delivered_count
from crm_pipelines.identity.prepare import (
    build_match_records,
    clean_records,
    fetch_state,
    load_records,
)
from crm_pipelines.identity.settings import DETERMINISTIC_METHODS, IdentitySettings
from crm_pipelines.schema import IDENTITY_MAP_COLUMNS

MAP_COLUMNS = (*(c.name for c in IDENTITY_MAP_COLUMNS), "cluster_flag", "id_first_seen_at")
LINK_COLUMNS = (
    "source_l",
    "source_record_id_l",
    "source_r",
    "source_record_id_r",
    "match_method",
    "match_weight",
    "match_probability",
    "evidence",
)
REJECTED_LINK_COLUMNS = (*LINK_COLUMNS, "reason")


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


def utc_now(recorded_at: dt.datetime | None) -> dt.datetime:
    moment = recorded_at or dt.datetime.now(dt.UTC)
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _candidates(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Scored candidate pairs, with what each pair shares and whether it compares a given name or a
    birth date (``weak`` when it compares neither), for the order clustering merges in."""
    frame = fetch_frame(
        con,
        """
        SELECT c.uid_l, c.uid_r, c.match_weight, c.match_probability, c.method, c.conflict, c.guard_override,
               c.method = 'identifier' AS shares_identifier,
               coalesce(l.email = r.email, false) AS shares_email,
               coalesce(l.phone = r.phone, false) AS shares_phone,
               (l.first_name IS NULL OR r.first_name IS NULL)
                 AND (l.date_of_birth IS NULL OR r.date_of_birth IS NULL) AS weak
        FROM candidates AS c
        JOIN match_records AS l ON l.unique_id = c.uid_l
        JOIN match_records AS r ON r.unique_id = c.uid_r
        ORDER BY c.uid_l, c.uid_r
        """,
    )
    frame = frame.drop_duplicates(["uid_l", "uid_r"]).reset_index(drop=True)
    frame["tier"] = link_tiers(frame["shares_identifier"], frame["weak"], frame["shares_email"], frame["shares_phone"])
    return frame.drop(columns=["shares_identifier", "shares_email", "shares_phone"])


def _clusters(
    con: duckdb.DuckDBPyConnection,
    n_nodes: int,
    edges: pd.DataFrame,
    scope: np.ndarray,
    settings: IdentitySettings,
) -> Any:
    """Cluster the records in ``scope`` (unique ids) along ``edges`` with the guard's conflicts."""
    component = components(n_nodes, edges["uid_l"].to_numpy(np.int64), edges["uid_r"].to_numpy(np.int64))
    sizes = np.bincount(component, minlength=n_nodes)
    large = scope[sizes[component[scope]] >= 3]
    conflicts = conflict_pairs(con, pd.DataFrame({"unique_id": large, "component": component[large]}), settings)
    return cluster_records(n_nodes, edges, conflicts, settings.max_cluster_size, settings.split_threshold)


def _join_methods(members: pd.DataFrame, held: pd.DataFrame) -> pd.DataFrame:
    """Each record's method and probability: its strongest held link, 'seed' for the anchor record."""
    both = pd.concat(
        [
            held.rename(columns={"uid_l": "unique_id"}).drop(columns="uid_r"),
            held.rename(columns={"uid_r": "unique_id"}).drop(columns="uid_l"),
        ],
        ignore_index=True,
    )
    both["map_probability"] = np.where(both["method"].isin(DETERMINISTIC_METHODS), 1.0, both["match_probability"])
    both["rank"] = both["method"].map(METHOD_RANK)
    best = both.sort_values(["unique_id", "map_probability", "rank"], ascending=[True, False, True])
    best = best.drop_duplicates("unique_id").set_index("unique_id")
    out = members.copy()
    sizes = out.groupby("customer_id")["unique_id"].transform("size").to_numpy()
    method = out["unique_id"].map(best["method"]).to_numpy(dtype=object)
    probability = out["unique_id"].map(best["map_probability"]).to_numpy(dtype=float)
    anchor = out["is_anchor"].to_numpy(dtype=bool)
    out["match_method"] = pd.array(
        np.where(sizes == 1, "singleton", np.where(anchor, "seed", method)).astype(object), dtype="str"
    )
    out["match_probability"] = np.where(sizes == 1, np.nan, np.where(anchor, 1.0, probability))
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
               coalesce(c.conflict, d.status::VARCHAR) AS status
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


def run_summary(
    identity_map: pd.DataFrame, links: pd.DataFrame, rejected: pd.DataFrame, history: pd.DataFrame
) -> dict[str, Any]:
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


def resolve_scope(
    con: duckdb.DuckDBPyConnection,
    scope: np.ndarray,
    settings: IdentitySettings,
    previous_map: pd.DataFrame | None,
    previous_history: pd.DataFrame | None,
    run_id: str,
    recorded_at: dt.datetime,
    reserved_ids: Container[str] = (),
    watch: Stopwatch | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Cluster the records in ``scope`` along the scored ``candidates`` and give them ids and
    golden records. Returns map rows, links, rejected links, golden records, lineage, history.
    ``watch`` times its stages (candidates, clusters, ids, links, golden)."""
    watch = watch or Stopwatch()
    n_nodes = int(con.execute("SELECT coalesce(max(unique_id) + 1, 0) FROM match_records").fetchall()[0][0])
    candidates = _candidates(con)
    edges = candidates[candidates["conflict"].isna()].reset_index(drop=True)
    watch.lap("candidates")
    clusters = _clusters(con, n_nodes, edges, scope, settings)
    edges["status"] = clusters.edge_status
    watch.lap("clusters")
    register_frame(con, "scope", pd.DataFrame({"unique_id": scope}))
    members = fetch_frame(
        con,
        "SELECT unique_id, source, source_record_id, created_at, priority, "
        "row_number() OVER (ORDER BY source, source_record_id) AS key_rank FROM records "
        "WHERE unique_id IN (SELECT unique_id FROM scope) ORDER BY unique_id",
    )
    members["cluster"] = clusters.cluster[members["unique_id"].to_numpy()]
    members["cluster_flag"] = clusters.flag[members["unique_id"].to_numpy()]
    assignment = assign_ids(members, previous_map, previous_history, run_id, recorded_at, reserved_ids)
    members = members.merge(assignment.customer_ids, on="cluster", how="left")
    members["is_anchor"] = members["unique_id"] == members["anchor"]
    held = edges[edges["status"] == ACCEPTED]
    members = _join_methods(members, held)
    # A trusted identifier joined records the guard would have kept apart: say so on the map.
    overridden = held.loc[held["guard_override"].notna(), ["uid_l", "uid_r"]].to_numpy().ravel()
    flag_override = members["unique_id"].isin(overridden) & members["cluster_flag"].isna()
    members.loc[flag_override, "cluster_flag"] = OVERRIDE_FLAG
    identity_map = members[list(MAP_COLUMNS)].sort_values(["source", "source_record_id"]).reset_index(drop=True)
    register_frame(con, "assignments", members[["unique_id", "customer_id"]])
    del members, held, clusters
    watch.lap("ids")
    decided = pd.concat(
        [edges, candidates[candidates["conflict"].notna()].assign(status=lambda f: f["conflict"])],
        ignore_index=True,
    )
    del edges, candidates
    links, rejected = _link_frames(con, decided)
    del decided
    _drop_matching_tables(con)
    watch.lap("links")
    unified, lineage = build_golden_records(con, "assignments", settings.field_priority)
    watch.lap("golden")
    return identity_map, links, rejected, unified, lineage, assignment.history


def _drop_matching_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Drop what only matching and linking read (the candidates, the matching values with their block
    sizes, Splink's term frequencies) before the golden records, the largest aggregation of a run:
    at a million people these held gigabytes of the engine's memory that it then had to work beside.
    The ``records`` and the cleaned tables stay (golden records and the matching state read them)."""
    tables = con.execute(
        "SELECT table_name FROM duckdb_tables() "
        "WHERE table_name IN ('candidates', 'match_records', 'match_scope', 'scope', 'match_new', 'match_existing') "
        "OR starts_with(table_name, '__splink__')"
    ).fetchall()
    for (table,) in tables:
        con.execute(f'DROP TABLE "{table}"')
    drop_block_counts(con)


ModelTrainer = Callable[[duckdb.DuckDBPyConnection, int, Stopwatch], dict[str, Any]]
"""Trains the model on the records :func:`resolve` has loaded and cleaned: given its engine, the number
of delivered staged rows and its stopwatch (see :func:`~crm_pipelines.identity.model.train_model_on_prepared`)."""


def resolve(
    customers: pd.DataFrame,
    identifiers: pd.DataFrame | None,
    settings: IdentitySettings,
    model: dict[str, Any] | ModelTrainer,
    previous_map: pd.DataFrame | None = None,
    previous_history: pd.DataFrame | None = None,
    run_id: str = "",
    *,
    source_priority: Mapping[str, int] | None = None,
    recorded_at: dt.datetime | None = None,
) -> IdentityResult:
    """Resolve all staged customer records into customers.

    ``customers``: staging.customers rows; ``identifiers``: staging.customer_identifiers rows;
    ``model``: from :func:`~crm_pipelines.identity.model.ensure_model`, or, to train one on these
    records as this run prepares them, a :data:`ModelTrainer`; ``previous_map`` and
    ``previous_history``: the last run's identity map and id history, to keep ids stable;
    ``source_priority``: each source's default priority (lower wins; ``SourceConfig.priority``).
    """
    watch = Stopwatch()
    now = utc_now(recorded_at)
    with duckdb_session(settings) as con:
        delivered = delivered_count(customers)
        n_records = load_records(con, customers, source_priority)
        del customers  # the engine holds the records now; a caller that kept no reference frees them here
        cleaning = clean_records(con, identifiers, settings)
        cleaning |= build_match_records(con, settings)
        watch.lap("prepare")
        if callable(model):
            model = model(con, delivered, watch)
            watch.lap("model")
        scorer = Scorer(con, model, settings)
        watch.lap("block_sizes")
        scorer.score_all()
        watch.lap("score")
        scope = np.arange(n_records, dtype=np.int64)
        identity_map, links, rejected, unified, lineage, history = resolve_scope(
            con, scope, settings, previous_map, previous_history, run_id, now, watch=watch
        )
        state = fetch_state(con, ("cleaned",))
        watch.lap("state")
    summary = run_summary(identity_map, links, rejected, history)
    summary.update(
        pairs_scored=scorer.pairs_scored,
        pairs_by_rule=scorer.pairs_by_rule,
        oversized_blocks=sum(r["blocks"] for r in scorer.oversized_blocks.values()),
        oversized_blocks_by_rule=scorer.oversized_blocks,
        cleaning=cleaning,
        seconds=watch.total,
        stage_seconds=watch.stages,
        stage_peak_mb=watch.peak_mb,
    )
    return IdentityResult(identity_map, links, rejected, unified, lineage, history, summary, match_records=state)
