"""Behavioural clusters: k-means on scaled RFM and engagement features, k chosen by silhouette.

Features are counts, amounts and day spans with long right tails, so each is log1p-transformed (negative
values clipped to 0) before standard scaling; otherwise a handful of big spenders would get clusters of
their own. The number of clusters is the k in ``k_range`` with the best silhouette score, computed on one
fixed random sample of customers so every k is judged on the same points and 100k customers stay cheap.
Clusters are numbered by descending mean of the first feature (monetary value when it leads), so
cluster 0 is the most valuable, and get a readable label from the features where they stand out.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

# How a feature reads when a cluster's mean is well above (first) or below (second) the population's.
# None: say nothing (a low ticket count, for instance, is not worth a word).
FEATURE_WORDS: dict[str, tuple[str | None, str | None]] = {
    "monetary": ("high value", "low value"),
    "frequency": ("frequent", "one-off"),
    "recency_days": ("lapsed", "recent"),
    "engagement": ("engaged", "unengaged"),
    "tickets_opened": ("support-heavy", None),
    "survey_responses": ("survey responders", None),
    "campaign_clicks": ("email clickers", None),
}
# A cluster "stands out" on a feature when its mean is this many standard deviations from the overall mean.
STANDOUT_Z = 0.5
MAX_LABEL_PARTS = 4
SILHOUETTE_CHUNK_MB = 16
"""Memory of one strip of pairwise distances in :func:`sampled_silhouettes` (the first, widest one; the
later ones are narrower). Each strip is written and multiplied in turn; at 16 MB (200 rows of the
10,000-point sample) those passes find it in the processor's cache, where 64 MB chunks went to memory
for each. At 100,000 customers the segmentation took 1.2-1.4 CPU seconds against 1.6-1.7 with 64 MB
(load 4); below 8 MB the per-strip overhead takes the gain back."""


@dataclass(frozen=True)
class ClusterResult:
    """Cluster of every customer, the silhouette of every k tried, and a profile per cluster."""

    labels: pd.Series
    """Cluster id per row of the features (same index)."""
    k: int
    silhouette_by_k: dict[int, float] = field(default_factory=dict)
    profiles: pd.DataFrame = field(default_factory=pd.DataFrame)
    """cluster_id, cluster_label, customers, share, then mean_<feature> for each feature."""


def _label(z_means: pd.Series, words: Mapping[str, tuple[str | None, str | None]]) -> str:
    """Words for the features where the cluster stands out most, in the features' own order."""
    strongest = z_means.abs().sort_values(ascending=False, kind="stable")
    chosen = set(strongest[strongest >= STANDOUT_Z].index[:MAX_LABEL_PARTS])
    parts = []
    for feature, z in z_means.items():
        if feature in chosen:
            high, low = words.get(str(feature), (f"high {feature}", f"low {feature}"))
            word = high if z > 0 else low
            if word:
                parts.append(word)
    return ", ".join(parts) or "average"


def _unique_labels(labels: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def sampled_silhouettes(points: np.ndarray, labels_by_k: Mapping[int, np.ndarray]) -> dict[int, float]:
    """Mean silhouette of ``points`` under each labelling, equal to ``sklearn.metrics.silhouette_score``.

    The pairwise distances, the expensive part, are computed once and shared by every k: each distance
    times the one-hot label matrices of every k side by side (one product, so it is read once, not once
    per k) gives every point's summed distance per cluster. Distances are symmetric, so each strip of
    rows is measured only against itself and the rows after it, and its block serves both sides: the
    strip's sums (the block times the later rows' labels) and the later rows' (its transpose times the
    strip's). Half the distances of the full matrix; at 10,000 points and six k the silhouettes took
    0.40-0.43 CPU s against 0.59-0.65 (load 5), equal to 1e-16.
    """
    n = len(points)
    ks = list(labels_by_k)
    one_hots = [np.eye(int(labels_by_k[k].max()) + 1)[labels_by_k[k]] for k in ks]
    columns = np.cumsum([0, *(hot.shape[1] for hot in one_hots)])
    one_hot = np.hstack(one_hots) if ks else np.empty((n, 0))
    all_sizes = one_hot.sum(axis=0)
    all_sums = np.zeros(one_hot.shape)
    strip_rows = max(1, SILHOUETTE_CHUNK_MB * 2**20 // (8 * max(n, 1)))

    def add_block(block: np.ndarray, start: int, stop: int) -> None:
        all_sums[start:stop] += block @ one_hot[start:]
        all_sums[stop:] += block[:, stop - start:].T @ one_hot[start:stop]

    # While the next strip's distances are computed, the last one is added on a second thread (both
    # mostly outside the GIL), one strip after the other.
    pending = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        for start in range(0, n, strip_rows):
            stop = min(start + strip_rows, n)
            block = cdist(points[start:stop], points[start:])
            if pending is not None:
                pending.result()
            pending = pool.submit(add_block, block, start, stop)
        if pending is not None:
            pending.result()

    rows = np.arange(n)
    found = {}
    for i, k in enumerate(ks):
        sums, sizes = all_sums[:, columns[i]:columns[i + 1]], all_sizes[columns[i]:columns[i + 1]]
        own = labels_by_k[k]
        own_size = sizes[own]
        with np.errstate(invalid="ignore", divide="ignore"):
            inside = sums[rows, own] / (own_size - 1)
            others = sums / sizes
        others[rows, own] = np.inf
        others[:, sizes == 0] = np.inf  # unused cluster ids are nobody's neighbours
        nearest = others.min(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = (nearest - inside) / np.maximum(inside, nearest)
        # Points alone in their cluster score 0, as in scikit-learn.
        found[k] = float(np.nansum(np.where(own_size > 1, score, 0.0))) / n
    return found


def behavioral_clusters(
    features: pd.DataFrame,
    k_range: tuple[int, int] = (3, 8),
    random_state: int = 0,
    silhouette_sample: int = 10_000,
    n_init: int = 3,
    words: Mapping[str, tuple[str | None, str | None]] = FEATURE_WORDS,
) -> ClusterResult:
    """Cluster the rows of ``features`` (numeric columns, no nulls) with k-means.

    k runs over ``k_range`` (inclusive), capped below the number of distinct rows in the sample; when
    fewer than two clusters are possible every row gets cluster 0. Deterministic for a given
    ``random_state``. Runs single-threaded: on a few features and a 10k sample, OpenMP start-up and
    spin-waits cost more than they save, and on a busy machine (a nightly run beside other jobs) they
    made it 20-50 times slower.
    """
    with threadpool_limits(limits=1):
        return _fit_clusters(features, k_range, random_state, silhouette_sample, n_init, words)


def _fit_clusters(
    features: pd.DataFrame,
    k_range: tuple[int, int],
    random_state: int,
    silhouette_sample: int,
    n_init: int,
    words: Mapping[str, tuple[str | None, str | None]],
) -> ClusterResult:
    if features.isna().any().any():
        missing = features.columns[features.isna().any()].tolist()
        raise ValueError(f"cluster features must not be null; nulls in {missing}")
    k_min, k_max = k_range
    if k_min < 2 or k_max < k_min:
        raise ValueError(f"k_range must satisfy 2 <= k_min <= k_max, got {k_range}")
    transformed = np.log1p(features.to_numpy(dtype="float64").clip(min=0))
    scaled = StandardScaler().fit_transform(transformed) if len(transformed) else transformed
    # Candidate models are fitted on one fixed sample and judged by silhouette on it; only the winner
    # is refitted on every row, starting from the sample's centres.
    rng = np.random.default_rng(random_state)
    points = scaled[np.sort(rng.permutation(len(scaled))[:silhouette_sample])]
    distinct = len(np.unique(points, axis=0)) if len(points) else 0
    candidates = [k for k in range(k_min, k_max + 1) if k < distinct]
    if not candidates:
        labels = np.zeros(len(features), dtype="int64")
        return ClusterResult(
            pd.Series(labels, index=features.index, name="cluster_id"),
            1 if len(features) else 0,
            {},
            _profiles(features, labels, np.zeros(transformed.shape), words),
        )
    models = {
        k: KMeans(n_clusters=k, n_init=n_init, random_state=random_state).fit(points) for k in candidates
    }
    silhouettes = sampled_silhouettes(points, {k: model.labels_ for k, model in models.items()})
    k = max(silhouettes, key=lambda key: (silhouettes[key], -key))
    final = KMeans(n_clusters=k, init=models[k].cluster_centers_, n_init=1, random_state=random_state)
    raw_labels = final.fit(scaled).labels_
    # Renumber clusters by descending mean of the first (transformed) feature: stable ids run to run.
    lead = pd.Series(transformed[:, 0]).groupby(raw_labels).mean().sort_values(ascending=False, kind="stable")
    renumber = np.zeros(k, dtype="int64")
    renumber[lead.index.to_numpy()] = np.arange(len(lead))  # a cluster emptied by the refit gets no id
    labels = renumber[raw_labels]
    return ClusterResult(
        pd.Series(labels, index=features.index, name="cluster_id"),
        k,
        silhouettes,
        _profiles(features, labels, scaled, words),
    )


def _profiles(
    features: pd.DataFrame,
    labels: np.ndarray,
    scaled: np.ndarray,
    words: Mapping[str, tuple[str | None, str | None]],
) -> pd.DataFrame:
    columns = list(features.columns)
    raw_means = features.groupby(labels).mean()
    z_means = pd.DataFrame(scaled, columns=columns).groupby(labels).mean()
    sizes = pd.Series(labels).value_counts().sort_index()
    profile = pd.DataFrame(
        {
            "cluster_id": raw_means.index.to_numpy(dtype="int64"),
            "cluster_label": _unique_labels([_label(z_means.loc[c], words) for c in raw_means.index]),
            "customers": sizes.reindex(raw_means.index).to_numpy(dtype="int64"),
        }
    )
    profile["share"] = profile["customers"] / max(len(labels), 1)
    for column in columns:
        profile[f"mean_{column}"] = raw_means[column].to_numpy(dtype="float64")
    return profile
