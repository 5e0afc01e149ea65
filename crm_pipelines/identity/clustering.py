"""From accepted pairwise links to clusters of records, one per person, with over-merge guards.

Connected components alone over-merge: a stub carrying a family email links to both spouses, and
through it the spouses join, although their first names disagree. So clustering honours
cannot-link constraints: two records whose first names or dates of birth disagree never share a
cluster. Components that contain such a pair, or that grow past ``max_cluster_size``, are rebuilt
greedily from their strongest links down, refusing any merge that would join two disagreeing
records: the guard holds for the clusters a link would merge, not only for the pair it joins.

A link's strength for that order is first what the pair shares (a declared identifier, then a link
that compares a given name or a birth date, then how many contact details: email and phone), then its
match weight: the model's weight leaves out the shared email or phone (a family shares either), and a
link that compares no given name or birth date (a *weak* link: surname and address are what a
household shares) must not decide between two people before the links that compare them. A record
that reaches two disagreeing people through weak links only, equally strong, is left on its own: there
is no evidence for either.

Only the few components that need it are rebuilt in Python; the rest stay as components.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

ACCEPTED = "accepted"
REJECTED_CONFLICT = "cluster_conflict"
REJECTED_AMBIGUOUS = "ambiguous"
REJECTED_OVERSIZE = "oversize_cluster"

FLAG_CONFLICT_SPLIT = "conflict_split"
FLAG_AMBIGUOUS = "ambiguous"
FLAG_OVERSIZE_SPLIT = "oversize_split"
FLAG_OVERSIZE_SINGLETON = "oversize_singleton"

_WEIGHT_TIE = 1e-6
# Strength = tier * _TIER + match weight (clipped), so the tier decides first and the weight breaks ties.
_TIER = 1000.0


@dataclass(frozen=True)
class Clusters:
    """``cluster`` maps each unique_id to its cluster (labelled by its smallest unique_id);
    ``flag`` says why a record's component was rebuilt (None when it was not);
    ``edge_status`` says, per input edge, whether it holds in the clusters or why not."""

    cluster: np.ndarray
    flag: np.ndarray
    edge_status: np.ndarray


def components(n_nodes: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected components over the links; each node's label is its component's smallest id."""
    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(n_nodes, n_nodes))
    _, labels = connected_components(graph, directed=False)
    smallest = np.full(labels.max() + 1 if n_nodes else 0, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(n_nodes, dtype=np.int64))
    return smallest[labels]


class _ConstrainedUnion:
    """Union-find whose sets never contain two records in conflict."""

    def __init__(self, nodes: np.ndarray, conflicts: dict[int, set[int]]):
        self.parent = {int(n): int(n) for n in nodes}
        self.members = {int(n): [int(n)] for n in nodes}
        self.conflicts = conflicts

    def find(self, node: int) -> int:
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:
            self.parent[node], node = root, self.parent[node]
        return root

    def try_union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        small, large = sorted((ra, rb), key=lambda r: len(self.members[r]))
        large_members = set(self.members[large])
        for member in self.members[small]:
            if self.conflicts.get(member, set()) & large_members:
                return False
        self.parent[small] = large
        self.members[large].extend(self.members.pop(small))
        return True


Edge = tuple[int, int, int, float, float, bool]
"""(position, uid_l, uid_r, strength, match_probability, weak), strongest first."""


def _greedy(
    nodes: list[int], edges: list[Edge], conflicts: dict[int, set[int]]
) -> tuple[dict[int, int], list[Edge]]:
    """Merge along edges from strongest to weakest, skipping merges that would join a conflict.

    Returns each node's root and the blocked edges.
    """
    union = _ConstrainedUnion(nodes, conflicts)
    blocked = [edge for edge in edges if not union.try_union(edge[1], edge[2])]
    return {n: union.find(n) for n in nodes}, blocked


def _ambiguous_nodes(edges: list[Edge], roots: dict[int, int], blocked: list[Edge]) -> set[int]:
    """Records whose blocked weak link was as strong as the strongest link that holds for them, all
    of their held links being weak too: they were pulled equally towards two disagreeing people."""
    if not blocked:
        return set()
    best_held: dict[int, float] = defaultdict(lambda: -np.inf)
    compared: set[int] = set()
    for _, a, b, strength, _, weak in edges:
        if roots[a] == roots[b]:
            best_held[a] = max(best_held[a], strength)
            best_held[b] = max(best_held[b], strength)
            if not weak:
                compared.update((a, b))
    return {
        node
        for _, a, b, strength, _, weak in blocked
        for node in (a, b)
        if weak
        and node not in compared
        and np.isfinite(best_held[node])
        and strength >= best_held[node] - _WEIGHT_TIE
    }


def link_tiers(
    shares_identifier: np.ndarray, weak: np.ndarray, shares_email: np.ndarray, shares_phone: np.ndarray
) -> np.ndarray:
    """What a link's pair shares, as a number that orders links before their weight: a declared
    identifier, then a given name or birth date compared (not weak), then the number of contact
    details shared (email, phone: a family shares either, so neither outranks the other)."""
    return (
        8 * np.asarray(shares_identifier, dtype=int)
        + 4 * ~np.asarray(weak, dtype=bool)
        + np.asarray(shares_email, dtype=int)
        + np.asarray(shares_phone, dtype=int)
    )


def _rebuild_component(
    nodes: list[int],
    edges: list[Edge],
    conflicts: dict[int, set[int]],
    max_size: int,
    split_probability: float,
) -> tuple[dict[int, int], dict[int, str], dict[int, str]]:
    """Rebuild one component; returns node -> root, node -> flag, edge position -> rejection."""
    flags: dict[int, str] = {}
    rejected: dict[int, str] = {}
    oversize = len(nodes) > max_size
    working = edges
    if oversize:
        rejected.update({e[0]: REJECTED_OVERSIZE for e in edges if e[4] < split_probability})
        working = [e for e in edges if e[4] >= split_probability]
        flags.update({n: FLAG_OVERSIZE_SPLIT for n in nodes})
    ambiguous: set[int] = set()
    for _ in range(3):
        roots, blocked = _greedy(nodes, working, conflicts)
        found = _ambiguous_nodes(working, roots, blocked) - ambiguous
        if not found:
            break
        ambiguous |= found
        rejected.update({e[0]: REJECTED_AMBIGUOUS for e in working if e[1] in found or e[2] in found})
        working = [e for e in working if e[1] not in found and e[2] not in found]
    rejected.update({e[0]: REJECTED_CONFLICT for e in blocked if e[0] not in rejected})
    groups: dict[int, list[int]] = defaultdict(list)
    for node, root in roots.items():
        groups[root].append(node)
    if len(groups) > 1 and not oversize:
        flags.update({n: FLAG_CONFLICT_SPLIT for n in nodes})
    flags.update({n: FLAG_AMBIGUOUS for n in ambiguous})
    for members in groups.values():
        if len(members) > max_size:
            for node in members:
                roots[node] = node
                flags[node] = FLAG_OVERSIZE_SINGLETON
    return roots, flags, rejected


def cluster_records(
    n_nodes: int,
    edges: pd.DataFrame,
    conflict_pairs: pd.DataFrame,
    max_cluster_size: int,
    split_probability: float,
) -> Clusters:
    """Cluster records along ``edges`` (uid_l, uid_r, match_weight, match_probability, and optionally
    ``tier``: what the pair shares, higher first, see :func:`link_tiers`; ``weak``: the pair compares
    no given name or birth date).

    ``conflict_pairs`` (uid_l, uid_r) lists every pair of records that disagree on first name or date
    of birth within a component of three or more records (a two-record component's only pair is
    its link, already vetoed if it conflicted). ``edges`` must have a default index; ``edge_status``
    follows its order. Edge order does not matter: ties are broken by ids.
    """
    tier = edges["tier"].to_numpy(dtype=float) if "tier" in edges else np.zeros(len(edges))
    weight = np.clip(edges["match_weight"].to_numpy(dtype=float), -_TIER / 2, _TIER / 2)
    edges = edges.assign(
        strength=tier * _TIER + np.nan_to_num(weight, nan=-_TIER / 2),
        weak=edges["weak"].to_numpy(dtype=bool) if "weak" in edges else np.zeros(len(edges), dtype=bool),
    )
    edges = edges.sort_values(["strength", "uid_l", "uid_r"], ascending=[False, True, True], kind="stable")
    left = edges["uid_l"].to_numpy(dtype=np.int64)
    right = edges["uid_r"].to_numpy(dtype=np.int64)
    cluster = components(n_nodes, left, right)
    flag = np.full(n_nodes, None, dtype=object)
    edge_status = pd.Series(ACCEPTED, index=edges.index, dtype=object)
    sizes = np.bincount(cluster, minlength=n_nodes)
    rebuild = set(np.flatnonzero(sizes > max_cluster_size).tolist())
    if len(conflict_pairs):
        rebuild |= set(cluster[conflict_pairs["uid_l"].to_numpy(dtype=np.int64)].tolist())
    if rebuild:
        conflicts: dict[int, set[int]] = defaultdict(set)
        for a, b in zip(conflict_pairs["uid_l"].tolist(), conflict_pairs["uid_r"].tolist(), strict=True):
            conflicts[a].add(b)
            conflicts[b].add(a)
        rebuilt = np.fromiter(rebuild, dtype=np.int64)
        positions = np.flatnonzero(np.isin(cluster[left], rebuilt))
        edge_lists: dict[int, list[Edge]] = defaultdict(list)
        strengths, probabilities = edges["strength"].to_numpy(), edges["match_probability"].to_numpy()
        weak = edges["weak"].to_numpy()
        labels = edges.index.to_numpy()
        # positions are in strength order already (edges were sorted above)
        for p in positions.tolist():
            edge_lists[int(cluster[left[p]])].append(
                (
                    int(labels[p]),
                    int(left[p]),
                    int(right[p]),
                    float(strengths[p]),
                    float(probabilities[p]),
                    bool(weak[p]),
                )
            )
        node_ids = np.flatnonzero(np.isin(cluster, rebuilt))
        node_lists: dict[int, list[int]] = defaultdict(list)
        for node, component in zip(node_ids.tolist(), cluster[node_ids].tolist(), strict=True):
            node_lists[component].append(node)
        statuses = edge_status.to_dict()
        for component in sorted(node_lists):
            roots, flags, rejected = _rebuild_component(
                node_lists[component],
                edge_lists[component],
                conflicts,
                max_cluster_size,
                split_probability,
            )
            members: dict[int, list[int]] = defaultdict(list)
            for node, root in roots.items():
                members[root].append(node)
            for group in members.values():
                cluster[group] = min(group)
            for node, reason in flags.items():
                flag[node] = reason
            statuses.update(rejected)
        edge_status = pd.Series(statuses, dtype=object).reindex(edges.index)
        # An edge never blocked may still end up between two clusters (its endpoints were split
        # apart by an oversize rebuild): it does not hold either.
        split = (cluster[left] != cluster[right]) & (edge_status.to_numpy() == ACCEPTED)
        oversize = np.isin(flag[left], [FLAG_OVERSIZE_SPLIT, FLAG_OVERSIZE_SINGLETON]) | np.isin(
            flag[right], [FLAG_OVERSIZE_SPLIT, FLAG_OVERSIZE_SINGLETON]
        )
        edge_status[split] = np.where(oversize[split], REJECTED_OVERSIZE, REJECTED_CONFLICT)
    return Clusters(cluster=cluster, flag=flag, edge_status=edge_status.sort_index().to_numpy())
