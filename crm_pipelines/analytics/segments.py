"""marts.customer_segments: RFM scores and segments, value tiers, relationship types, behavioural clusters.

The rules, in short (docs/marts.md, "Segments", has the full text):

- **RFM scores** 1-5 are quintiles among customers with at least one purchase. Ties are broken by the
  other two dimensions and then by customer_id, so every quintile holds a fifth of the buyers, and
  identical customers always score the same way run to run. Recency is reversed: most recent scores 5.
  Customers without a purchase are kept, score 1 on all three and get the segment "No Purchases".
- **Segment names** come from the R-vs-FM grid :data:`RFM_GRID`, with FM = floor((F + M) / 2).
- **Value tier**: ``key`` = top ``key_share`` of buyers by net revenue; ``potential`` = not key, but a
  predicted value (CLV) in the top ``key_share``, or buying faster: at least 2 purchases in the last
  ``growth_window_days`` and more than in the window before; ``ordinary`` = everyone else.
- **Relationship type**, first rule that holds: emotional > complementary > social > repeat >
  transactional > none (see :func:`relationship_type`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from crm_pipelines.analytics.activity import (
    as_of_day,
    as_of_timestamp,
    bounded_orders,
    customer_codes,
    customer_index,
    engagement_summary,
    order_summary,
    purchased_items,
)
from crm_pipelines.analytics.clusters import ClusterResult, behavioral_clusters
from crm_pipelines.analytics.segment_settings import SegmentationSettings

NO_PURCHASES = "No Purchases"
NO_CLUSTER_LABEL = "no purchases"

# Segment name by FM score (rows) and recency score R = 1..5 (columns).
RFM_GRID: dict[int, tuple[str, str, str, str, str]] = {
    5: ("Can't Lose Them", "At Risk", "Loyal Customers", "Champions", "Champions"),
    4: ("Can't Lose Them", "At Risk", "Loyal Customers", "Champions", "Champions"),
    3: ("At Risk", "At Risk", "Need Attention", "Loyal Customers", "Loyal Customers"),
    2: ("Hibernating", "Hibernating", "About to Sleep", "Potential Loyalists", "Potential Loyalists"),
    1: ("Lost", "Hibernating", "About to Sleep", "Promising", "New Customers"),
}
RFM_SEGMENTS = (
    "Champions", "Loyal Customers", "Potential Loyalists", "New Customers", "Promising", "Need Attention",
    "About to Sleep", "At Risk", "Can't Lose Them", "Hibernating", "Lost", NO_PURCHASES,
)  # fmt: skip
_GRID = np.full((6, 6), None, dtype=object)
for _fm, _names in RFM_GRID.items():
    _GRID[_fm, 1:] = _names

VALUE_TIERS = ("key", "potential", "ordinary")
RELATIONSHIP_TYPES = ("emotional", "complementary", "social", "repeat", "transactional", "none")
SEGMENT_ORDER_FACTS = ("customer_id", "orders", "days_since_last_order", "revenue", "orders_recent", "orders_previous")
"""The columns of core.customer_order_facts that :func:`segments_from_facts` reads."""
_RFM_CELLS = tuple(str(number) for number in range(556))
"""Every rfm_cell by its number, 100 R + 10 F + M (111 to 555)."""


def named(names: Sequence[str], codes: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``names[codes]`` as a string array, taken in Arrow from the few names: building it from one
    Python string per row cost 5-15 ms per 100,000 rows and column."""
    return pd.array(list(names), dtype="str").take(codes)


@dataclass(frozen=True)
class SegmentationResult:
    segments: pd.DataFrame
    """One row per customer; columns in docs/marts.md (marts.customer_segments)."""
    clusters: ClusterResult
    """Clusters of the customers with purchases (the others are cluster -1)."""
    core_categories: tuple[str, ...]


def quintile_scores(order_keys: list[np.ndarray]) -> np.ndarray:
    """Scores 1-5 by equal-count quintiles of the rows sorted by ``order_keys`` (first key most significant).

    Every row gets a distinct rank, so quintiles hold (nearly) equal counts even when many rows tie on the
    first key; a single row scores 3, as there is nothing to compare it with.
    """
    n = len(order_keys[0])
    if n == 0:
        return np.empty(0, dtype="int64")
    if n == 1:
        return np.array([3])
    order = np.lexsort(order_keys[::-1])
    rank = np.empty(n, dtype="int64")
    rank[order] = np.arange(n)
    # The quantile bin of pandas.qcut(rank, 5), in integers: ceil(5 * rank / (n - 1)), at least 1.
    return np.maximum(1, -(-5 * rank // (n - 1)))


def rfm_scores(
    orders: pd.DataFrame,
    customers: pd.DataFrame,
    as_of: pd.Timestamp,
    growth_window_days: int = 180,
) -> pd.DataFrame:
    """Recency, frequency, monetary value and their 1-5 scores, one row per customer of ``customers``.

    recency_days: days from the last purchase to the as-of day (null without purchases); frequency:
    purchases; monetary: net revenue; orders_recent / orders_previous: purchases in the last
    ``growth_window_days`` and in the same span before.
    """
    as_of = as_of_timestamp(as_of)
    index = customer_index(customers)
    n = len(index)
    facts = bounded_orders(orders, index, as_of)
    summary = order_summary(facts, n)
    today = as_of_day(as_of)
    purchases = facts.loc[facts["is_purchase"]]
    age_days = today - purchases["day"].to_numpy()
    code = purchases["code"].to_numpy()
    recent = np.bincount(code[age_days < growth_window_days], minlength=n)
    previous = np.bincount(
        code[(age_days >= growth_window_days) & (age_days < 2 * growth_window_days)], minlength=n
    )
    recency = np.full(n, -1, dtype="int64")
    if len(code):
        newest = pd.Series(age_days).groupby(code).min()
        recency[newest.index.to_numpy()] = newest.to_numpy()

    return scored_rfm(customers, recency, summary["orders"].to_numpy(), summary["revenue"].to_numpy(), recent, previous)


def scored_rfm(
    customers: pd.DataFrame,
    recency: np.ndarray,
    frequency: np.ndarray,
    monetary: np.ndarray,
    recent: np.ndarray,
    previous: np.ndarray,
) -> pd.DataFrame:
    """The rfm_scores frame from per-customer recency (-1 without purchases), frequency and monetary."""
    index = customer_index(customers)
    n = len(index)
    buyer = frequency > 0
    id_rank = pd.factorize(index, sort=True)[0]  # ids are unique: their sorted codes are their ranks
    r_score = np.ones(n, dtype="int64")
    f_score = np.ones(n, dtype="int64")
    m_score = np.ones(n, dtype="int64")
    rec, freq, mon, ids = recency[buyer], frequency[buyer], monetary[buyer], id_rank[buyer]
    # Worst first: long ago, rarely, little. Ties fall to the other dimensions, then to customer_id.
    r_score[buyer] = quintile_scores([-rec, freq, mon, ids])
    f_score[buyer] = quintile_scores([freq, -rec, mon, ids])
    m_score[buyer] = quintile_scores([mon, freq, -rec, ids])
    return pd.DataFrame(
        {
            "customer_id": pd.array(index.array, dtype="str"),
            "recency_days": pd.arrays.IntegerArray(np.where(buyer, recency, 0), mask=~buyer),
            "frequency": frequency.astype("int64"),
            "monetary": monetary.astype("float64"),
            "orders_recent": recent.astype("int64"),
            "orders_previous": previous.astype("int64"),
            "r_score": r_score,
            "f_score": f_score,
            "m_score": m_score,
        }
    )


def rfm_segment(r: ArrayLike, f: ArrayLike, m: ArrayLike) -> str | np.ndarray:
    """Segment name for R, F and M scores (1-5): a string for scalars, an array of strings for arrays.

    FM = floor((F + M) / 2); the name is :data:`RFM_GRID` [FM][R].
    """
    r_arr, f_arr, m_arr = (np.asarray(v, dtype="int64") for v in (r, f, m))
    for name, values in (("r", r_arr), ("f", f_arr), ("m", m_arr)):
        if values.size and (values.min() < 1 or values.max() > 5):
            raise ValueError(
                f"RFM scores run from 1 to 5; {name} has {sorted(set(values.ravel()) - set(range(1, 6)))}"
            )
    names = _GRID[(f_arr + m_arr) // 2, r_arr]
    return str(names) if r_arr.ndim == 0 else names


def value_tier(
    rfm: pd.DataFrame,
    key_share: float = 0.2,
    predicted_value: pd.Series | None = None,
) -> pd.Series:
    """key / potential / ordinary per row of ``rfm`` (the output of :func:`rfm_scores`).

    ``predicted_value`` (optional) is a predicted customer value such as 12-month CLV, indexed by
    customer_id; customers without a prediction are judged on purchases alone.
    """
    n = len(rfm)
    frequency = rfm["frequency"].to_numpy()
    monetary = rfm["monetary"].to_numpy(dtype="float64")
    buyer = frequency > 0
    recency = rfm["recency_days"].fillna(0).to_numpy(dtype="int64")
    ids = pd.factorize(rfm["customer_id"], sort=True)[0]

    key = np.zeros(n, dtype=bool)
    n_key = int(np.ceil(key_share * buyer.sum()))
    if n_key:
        # Most valuable first; ties: more purchases, more recent, then customer_id.
        positions = np.flatnonzero(buyer)
        order = np.lexsort((ids[positions], recency[positions], -frequency[positions], -monetary[positions]))
        top = positions[order[:n_key]]
        key[top[monetary[top] > 0]] = True

    growing = (rfm["orders_recent"].to_numpy() >= 2) & (
        rfm["orders_recent"] > rfm["orders_previous"]
    ).to_numpy()
    promising = np.zeros(n, dtype=bool)
    if predicted_value is not None:
        predicted = rfm["customer_id"].map(predicted_value).to_numpy(dtype="float64", na_value=np.nan)
        known = np.flatnonzero(~np.isnan(predicted))
        n_top = int(np.ceil(key_share * len(known)))
        order = np.lexsort((ids[known], -predicted[known]))
        top = known[order[:n_top]]
        promising[top[predicted[top] > 0]] = True

    tier = np.where(key, 0, np.where(promising | growing, 1, 2))  # positions in VALUE_TIERS
    return pd.Series(named(VALUE_TIERS, tier), index=rfm.index, name="value_tier")


def relationship_type(
    features: pd.DataFrame,
    emotional_nps: int = 9,
    emotional_csat: float = 4.5,
) -> pd.Series:
    """One primary relationship type per row; the first rule that holds wins.

    Needs columns frequency, latest_nps, avg_satisfaction, tickets_opened, survey_responses,
    campaign_clicks and bought_add_on.

    - emotional: a repeat buyer (2+ purchases) whose latest NPS >= ``emotional_nps`` or whose average
      satisfaction >= ``emotional_csat``;
    - complementary: bought a core category and an add-on (non-core) category;
    - social: engaged beyond purchases: opened a ticket, answered a survey or clicked a campaign;
    - repeat: 2+ purchases;
    - transactional: exactly one purchase;
    - none: no purchase and no engagement.
    """
    frequency = features["frequency"].to_numpy()
    nps = pd.to_numeric(features["latest_nps"]).to_numpy(dtype="float64", na_value=np.nan)
    csat = pd.to_numeric(features["avg_satisfaction"]).to_numpy(dtype="float64", na_value=np.nan)
    engaged = (
        features["tickets_opened"].to_numpy()
        + features["survey_responses"].to_numpy()
        + features["campaign_clicks"].to_numpy()
    ) > 0
    with np.errstate(invalid="ignore"):
        delighted = (nps >= emotional_nps) | (csat >= emotional_csat)
    rules = [
        (frequency >= 2) & delighted,
        features["bought_add_on"].to_numpy(dtype=bool),
        engaged,
        frequency >= 2,
        frequency == 1,
    ]
    kind = np.select(rules, range(len(rules)), len(rules))  # positions in RELATIONSHIP_TYPES
    return pd.Series(named(RELATIONSHIP_TYPES, kind), index=features.index, name="relationship_type")


def core_categories(items: pd.DataFrame, share: float = 0.5) -> tuple[str, ...]:
    """The shop's core offer: the most-bought categories that together make up ``share`` of purchased lines.

    ``items`` holds purchased lines with a ``category`` column; ties in line count go to the category name.
    """
    lines = items["category"].dropna()
    return core_categories_from_counts(lines[lines != ""].value_counts(), share)


def core_categories_from_counts(lines: pd.Series, share: float = 0.5) -> tuple[str, ...]:
    """:func:`core_categories` from the purchased lines per category (indexed by category)."""
    lines = lines[lines.index.notna() & (lines.index != "") & (lines > 0)]
    if lines.empty:
        return ()
    ranked = lines.rename_axis("category").reset_index(name="lines")
    ranked = ranked.sort_values(["lines", "category"], ascending=[False, True], ignore_index=True)
    covered = ranked["lines"].cumsum() / ranked["lines"].sum()
    needed = int(np.searchsorted(covered.to_numpy(), share - 1e-12)) + 1
    return tuple(ranked["category"].iloc[:needed].astype("str"))


def add_on_buyers(items: pd.DataFrame, core: tuple[str, ...], n_customers: int) -> np.ndarray:
    """Per customer position: bought at least one core and at least one non-core category."""
    bought = items.loc[items["category"].notna() & (items["category"] != ""), ["code", "category"]]
    is_core = bought["category"].isin(core).to_numpy()
    code = bought["code"].to_numpy()
    has_core = np.bincount(code[is_core], minlength=n_customers) > 0
    has_add_on = np.bincount(code[~is_core], minlength=n_customers) > 0
    return has_core & has_add_on


def customer_segments(
    customers: pd.DataFrame,
    orders: pd.DataFrame,
    order_items: pd.DataFrame,
    tickets: pd.DataFrame,
    events: pd.DataFrame,
    surveys: pd.DataFrame,
    as_of: pd.Timestamp,
    settings: SegmentationSettings | None = None,
    predicted_value: pd.Series | None = None,
) -> SegmentationResult:
    """All segmentations, one row per customer of ``customers`` (columns in docs/marts.md)."""
    settings = settings or SegmentationSettings()
    as_of = as_of_timestamp(as_of)
    index = customer_index(customers)
    n = len(index)

    rfm = rfm_scores(orders, customers, as_of, settings.growth_window_days)
    items = purchased_items(order_items, orders, index, as_of)
    core = core_categories(items, settings.core_category_share)
    engagement = engagement_summary(tickets, events, surveys, index, as_of)
    return _segmentation(rfm, engagement, core, add_on_buyers(items, core, n), settings, predicted_value)


def segments_from_facts(
    order_facts: pd.DataFrame,
    engagement_facts: pd.DataFrame,
    category_lines: pd.DataFrame,
    settings: SegmentationSettings | None = None,
    predicted_value: pd.Series | None = None,
) -> SegmentationResult:
    """:func:`customer_segments` from the warehouse facts, one row per customer (or customer and category).

    ``order_facts`` (core.customer_order_facts, built with ``settings.growth_window_days``) gives
    recency, frequency, net revenue and the purchases by window; ``engagement_facts``
    (core.customer_engagement_facts) the service, survey and email activity; ``category_lines``
    (core.customer_category_facts) the purchased lines per customer and category. Rows are taken in
    customer_id order, so the clustering does not depend on the warehouse's row order.
    """
    settings = settings or SegmentationSettings()
    facts = order_facts.astype({"customer_id": "str"}).sort_values("customer_id", ignore_index=True)
    customers = facts[["customer_id"]]
    frequency = facts["orders"].to_numpy(dtype="int64")
    recency = pd.to_numeric(facts["days_since_last_order"]).to_numpy(dtype="float64", na_value=np.nan)
    rfm = scored_rfm(
        customers,
        np.where(np.isnan(recency), -1, recency).astype("int64"),
        frequency,
        facts["revenue"].to_numpy(dtype="float64"),
        facts["orders_recent"].to_numpy(dtype="int64"),
        facts["orders_previous"].to_numpy(dtype="int64"),
    )
    # Each customer's engagement row by Arrow's hash look-up, several times faster than reindexing on ids.
    at = customer_codes(facts, pd.Index(engagement_facts["customer_id"].astype("str")))
    if (at < 0).any():
        missing = facts["customer_id"][at < 0].head(5).tolist()
        raise ValueError(f"customer engagement facts lack customers of the order facts: {missing}")
    engagement = engagement_facts.drop(columns="customer_id").take(at).reset_index(drop=True).astype(
        {c: "int64" for c in ("tickets_opened", "tickets_resolved", "survey_responses", "campaign_opens",
                              "campaign_clicks")}
    )  # fmt: skip
    engagement["latest_nps"] = pd.to_numeric(engagement["latest_nps"]).astype("Int64")
    lines = category_lines.astype({"customer_id": "str", "category": "str"})
    core = core_categories_from_counts(lines.groupby("category")["lines"].sum(), settings.core_category_share)
    code = customer_codes(lines, pd.Index(facts["customer_id"]))
    known = code >= 0
    bought = pd.DataFrame({"code": code[known], "category": lines["category"].to_numpy()[known]})
    return _segmentation(rfm, engagement, core, add_on_buyers(bought, core, len(facts)), settings, predicted_value)


def _segmentation(
    rfm: pd.DataFrame,
    engagement: pd.DataFrame,
    core: tuple[str, ...],
    bought_add_on: np.ndarray,
    settings: SegmentationSettings,
    predicted_value: pd.Series | None,
) -> SegmentationResult:
    n = len(rfm)
    buyer = rfm["frequency"].to_numpy() > 0
    segment = rfm_segment(rfm["r_score"], rfm["f_score"], rfm["m_score"])
    segment = np.where(buyer, segment, NO_PURCHASES)
    engagement_actions = (
        engagement["tickets_opened"] + engagement["survey_responses"] + engagement["campaign_clicks"]
    ).to_numpy()
    features = pd.concat([rfm, engagement], axis=1).assign(bought_add_on=bought_add_on)

    cluster_features = pd.DataFrame(
        {
            "monetary": rfm["monetary"].to_numpy(),
            "frequency": rfm["frequency"].to_numpy(),
            "recency_days": rfm["recency_days"].fillna(0).to_numpy(dtype="int64"),
            "engagement": engagement_actions,
        }
    )[buyer]
    clusters = behavioral_clusters(
        cluster_features,
        k_range=(settings.k_min, settings.k_max),
        random_state=settings.random_state,
        silhouette_sample=settings.silhouette_sample,
    )
    cluster_id = np.full(n, -1, dtype="int64")
    cluster_id[buyer] = clusters.labels.to_numpy()
    cluster_names = clusters.profiles.set_index("cluster_id")["cluster_label"]
    cluster_label = np.full(n, len(cluster_names))  # the last name: NO_CLUSTER_LABEL
    cluster_label[buyer] = cluster_names.index.get_indexer(clusters.labels.to_numpy())

    segments = rfm.assign(
        rfm_cell=named(
            _RFM_CELLS, 100 * rfm["r_score"].to_numpy() + 10 * rfm["f_score"].to_numpy() + rfm["m_score"].to_numpy()
        ),
        rfm_segment=pd.array(segment, dtype="str"),
        value_tier=value_tier(rfm, settings.key_share, predicted_value).array,
        relationship_type=relationship_type(features, settings.emotional_nps, settings.emotional_csat).array,
        bought_add_on=features["bought_add_on"].to_numpy(),
        engagement=engagement_actions,
        cluster_id=cluster_id,
        cluster_label=named([*cluster_names.astype("str"), NO_CLUSTER_LABEL], cluster_label),
    )
    return SegmentationResult(segments=segments, clusters=clusters, core_categories=core)
