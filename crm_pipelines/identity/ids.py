"""Stable customer ids: a person keeps the same customer_id from run to run.

- A new customer's id is derived from its anchor record, the cluster's earliest record (by
  created_at, then source priority, source and record id): ``"C" + sha1("source|record_id")[:12]``.
  Never random and never dependent on row order; on the rare clash with an id in use or retired, a
  salt is appended to the hashed text (``|1``, ``|2``, ...).
- A cluster whose records all carried id X last run keeps X.
- When clusters merge, the older id survives: the one first seen earliest (``id_first_seen_at``,
  carried in the identity map), then the one whose anchor record is earliest. The others are
  recorded in the history as ``merge`` into it.
- When a customer splits, the part holding the id's anchor record keeps the id: the record the id
  was derived from if it is still there, else the id's earliest record. The other parts get new
  ids, and each is recorded as a ``split`` (retired_customer_id = the id that was split,
  merged_into_customer_id = the new id that took part of its records).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Container
from dataclasses import dataclass

import numpy as np
import pandas as pd

ID_PREFIX = "C"
HISTORY_COLUMNS = ("retired_customer_id", "merged_into_customer_id", "change", "run_id", "recorded_at")


def mint_id(source: str, source_record_id: str, salt: int = 0) -> str:
    text = f"{source}|{source_record_id}" + (f"|{salt}" if salt else "")
    return ID_PREFIX + hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def anchor_order(records: pd.DataFrame) -> pd.DataFrame:
    """Records sorted by the anchor order: earliest created first (unknown last), then priority,
    then ``key_rank`` (the rank of (source, source_record_id))."""
    return records.sort_values(["created_at", "priority", "key_rank"], na_position="last", kind="stable")


@dataclass(frozen=True)
class IdAssignment:
    """``customer_ids``: cluster -> customer_id, id_first_seen_at and anchor (the anchor record's
    unique_id); ``history``: merges and splits."""

    customer_ids: pd.DataFrame
    history: pd.DataFrame


def _id_anchor(members: pd.DataFrame, customer_id: str) -> pd.Series:
    """The record an id is anchored to among its present members: its origin, else the earliest."""
    origin = members[
        [
            mint_id(s, r) == customer_id
            for s, r in zip(members["source"], members["source_record_id"], strict=True)
        ]
    ]
    return (origin if len(origin) else anchor_order(members)).iloc[0]


def assign_ids(
    records: pd.DataFrame,
    previous_map: pd.DataFrame | None,
    previous_history: pd.DataFrame | None,
    run_id: str,
    recorded_at: dt.datetime,
    reserved_ids: Container[str] = (),
) -> IdAssignment:
    """Give every cluster its customer id.

    ``records``: unique_id, source, source_record_id, created_at, priority, key_rank, cluster.
    ``previous_map``: the last run's identity map (source, source_record_id, customer_id and, when
    present, id_first_seen_at). ``reserved_ids``: further ids that must not be minted again.
    """
    ordered = anchor_order(records)
    anchors = ordered.drop_duplicates("cluster").set_index("cluster")
    anchor_rank = pd.Series(np.arange(len(ordered)), index=ordered["unique_id"].to_numpy())

    used: set[str] = set()
    if previous_history is not None and len(previous_history):
        used |= set(previous_history["retired_customer_id"].dropna().astype(str))
    first_seen: dict[str, pd.Timestamp] = {}
    claims: dict[int, list[str]] = {}
    id_anchor_rank: dict[str, int] = {}
    spread_ids: dict[str, pd.DataFrame] = {}
    if previous_map is not None and len(previous_map):
        used |= set(previous_map["customer_id"].dropna().astype(str))
        if "id_first_seen_at" in previous_map.columns:
            # A warehouse may hand the times back zone-aware: compare them as naive UTC.
            when = pd.to_datetime(previous_map["id_first_seen_at"], errors="coerce", utc=True).dt.tz_localize(
                None
            )
            seen = when.groupby(previous_map["customer_id"]).min()
            first_seen = {k: v for k, v in seen.items() if pd.notna(v)}
        previous = records.merge(
            previous_map[["source", "source_record_id", "customer_id"]].dropna(),
            on=["source", "source_record_id"],
            how="inner",
        )
        clusters_per_id = previous.groupby("customer_id")["cluster"].nunique()
        whole = previous[previous["customer_id"].map(clusters_per_id) == 1]
        for customer_id, cluster in whole.drop_duplicates("customer_id")[
            ["customer_id", "cluster"]
        ].itertuples(index=False):
            claims.setdefault(int(cluster), []).append(customer_id)
        for customer_id, members in previous[previous["customer_id"].map(clusters_per_id) > 1].groupby(
            "customer_id", sort=True
        ):
            anchor = _id_anchor(members, customer_id)
            claims.setdefault(int(anchor["cluster"]), []).append(customer_id)
            spread_ids[customer_id] = members
        ranks = pd.Series(anchor_rank.loc[previous["unique_id"].to_numpy()].to_numpy(), index=previous.index)
        id_anchor_rank = ranks.groupby(previous["customer_id"]).min().to_dict()

    history: list[tuple[str, str, str]] = []
    kept: dict[int, tuple[str, pd.Timestamp | None]] = {}
    for cluster, claimed in sorted(claims.items()):
        # Unknown first-seen times belong to ids older than tracking: they sort first.
        claimed = sorted(
            claimed,
            key=lambda c: (c in first_seen, first_seen.get(c, pd.Timestamp.min), id_anchor_rank.get(c, 0), c),
        )
        kept[cluster] = (claimed[0], first_seen.get(claimed[0]))
        history.extend((loser, claimed[0], "merge") for loser in claimed[1:])
    fresh = anchors[~anchors.index.isin(list(kept))]
    minted: list[str] = []
    for source, record_id in zip(fresh["source"].tolist(), fresh["source_record_id"].tolist(), strict=True):
        salt = 0
        candidate = mint_id(source, record_id)
        while candidate in used or candidate in reserved_ids:
            salt += 1
            candidate = mint_id(source, record_id, salt)
        used.add(candidate)
        minted.append(candidate)
    id_of = dict(zip(fresh.index.tolist(), minted, strict=True))
    id_of.update({cluster: value[0] for cluster, value in kept.items()})
    claimer = {customer_id: cluster for cluster, claimed in claims.items() for customer_id in claimed}
    for customer_id, members in spread_ids.items():
        for cluster in sorted(set(members["cluster"].astype(int))):
            if cluster != claimer[customer_id]:
                history.append((customer_id, id_of[cluster], "split"))

    kept_clusters = list(kept)
    customer_ids = pd.DataFrame(
        {
            "cluster": np.r_[fresh.index.to_numpy(dtype=np.int64), np.asarray(kept_clusters, dtype=np.int64)],
            "customer_id": pd.array(minted + [kept[c][0] for c in kept_clusters], dtype="str"),
            "id_first_seen_at": pd.to_datetime(
                np.r_[
                    np.full(len(fresh), np.datetime64(pd.Timestamp(recorded_at).to_datetime64(), "us")),
                    np.array(
                        [
                            kept[c][1] if kept[c][1] is not None else np.datetime64("NaT")
                            for c in kept_clusters
                        ],
                        dtype="datetime64[us]",
                    ),
                ]
            ),
            "anchor": np.r_[
                fresh["unique_id"].to_numpy(dtype=np.int64),
                anchors.loc[kept_clusters, "unique_id"].to_numpy(dtype=np.int64),
            ],
        }
    )
    history_frame = pd.DataFrame(
        history, columns=["retired_customer_id", "merged_into_customer_id", "change"]
    )
    history_frame = history_frame.drop_duplicates().sort_values(list(history_frame.columns), kind="stable")
    history_frame["run_id"] = run_id
    history_frame["recorded_at"] = pd.Timestamp(recorded_at)
    return IdAssignment(
        customer_ids=customer_ids, history=history_frame.reset_index(drop=True)[list(HISTORY_COLUMNS)]
    )
