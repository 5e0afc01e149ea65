"""RFM scoring (ties included), segment names, value tiers, relationship types, clusters, assembly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from crm_pipelines.analytics import clusters
from crm_pipelines.analytics.activity import core_frame
from crm_pipelines.analytics.clusters import behavioral_clusters, sampled_silhouettes
from crm_pipelines.analytics.mart_boundary import to_mart_frame
from crm_pipelines.analytics.mart_columns import CUSTOMER_SEGMENTS_COLUMNS
from crm_pipelines.analytics.reporting import (
    cluster_profiles_markdown,
    png_markdown,
    segment_chart_png,
    segment_sizes_markdown,
)
from crm_pipelines.analytics.segments import (
    NO_PURCHASES,
    RFM_GRID,
    RFM_SEGMENTS,
    SegmentationSettings,
    core_categories,
    core_categories_from_counts,
    customer_segments,
    quintile_scores,
    relationship_type,
    rfm_scores,
    rfm_segment,
    value_tier,
)

AS_OF = pd.Timestamp("2024-06-30 23:59:59.999999", tz="UTC")


def _order(customer: str, days_ago: int, amount: float, status: str = "completed", n: int = 0) -> dict:
    return {
        "customer_id": customer,
        "source": "shop",
        "order_id": f"{customer}-{days_ago}-{n}-{status}",
        "ordered_at": AS_OF.floor("D") - pd.Timedelta(days=days_ago) + pd.Timedelta(hours=12),
        "status": status,
        "total_amount_reporting": amount,
        "is_refund": status == "refunded" or amount < 0,
    }


def _customers(ids: list[str]) -> pd.DataFrame:
    return core_frame("unified_customers", [{"customer_id": c} for c in ids])


# --- RFM scores ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5, 7, 10, 11, 49])
def test_quintiles_are_the_qcut_bins_of_distinct_ranks(n: int) -> None:
    values = np.zeros(n)  # all tied on the first key: ranks come from the tie-breaker alone
    scores = quintile_scores([values, np.arange(n)])
    expected = pd.qcut(np.arange(n), 5, labels=False) + 1
    assert scores.tolist() == expected.tolist()


def test_a_single_buyer_scores_three() -> None:
    assert quintile_scores([np.array([7.0])]).tolist() == [3]


def test_ties_keep_every_quintile_filled_and_break_by_the_other_dimensions() -> None:
    # Ten one-order customers with equal spend: frequency and monetary tie completely, so the
    # tie-breaker (recency, then customer_id) decides; c0 bought most recently.
    ids = [f"c{i}" for i in range(10)]
    orders = core_frame("orders", [_order(c, days_ago=10 * (i + 1), amount=50.0) for i, c in enumerate(ids)])
    rfm = rfm_scores(orders, _customers(ids), AS_OF).set_index("customer_id")
    expected = [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert rfm.loc[ids, "r_score"].tolist() == expected
    assert rfm.loc[ids, "f_score"].tolist() == expected
    assert rfm.loc[ids, "m_score"].tolist() == expected
    for score in ("r_score", "f_score", "m_score"):
        assert rfm[score].value_counts().sort_index().tolist() == [2, 2, 2, 2, 2]


def test_exact_ties_fall_to_customer_id_and_input_order_does_not_matter() -> None:
    ids = [f"c{i}" for i in range(5)]
    orders = core_frame("orders", [_order(c, days_ago=3, amount=20.0) for c in ids])
    forward = rfm_scores(orders, _customers(ids), AS_OF).set_index("customer_id")
    backward = rfm_scores(orders.iloc[::-1], _customers(ids[::-1]), AS_OF).set_index("customer_id")
    assert forward.loc[ids, "f_score"].tolist() == [1, 2, 3, 4, 5]
    pd.testing.assert_frame_equal(forward.loc[ids], backward.loc[ids])


def test_rfm_values_count_purchases_only_and_net_revenue() -> None:
    orders = core_frame(
        "orders",
        [
            _order("a", 5, 100.0),
            _order("a", 40, 60.0),
            _order("a", 2, 999.0, status="cancelled"),
            _order("a", 1, 500.0, status="pending"),
            _order("a", 3, -30.0, status="completed"),  # a refund record: subtracts
            _order("a", 1, 80.0, status="refunded"),  # refunded order: neither purchase nor subtraction
            _order("b", 200, 10.0),
            _order("b", 0, 10.0, status="completed", n=1),
            _order("c", 1, 10.0, status="cancelled"),
            _order("a", -1, 70.0),  # after as-of: does not exist yet
        ],
    )
    rfm = rfm_scores(orders, _customers(["a", "b", "c"]), AS_OF, growth_window_days=30).set_index(
        "customer_id"
    )
    assert rfm.loc["a", "frequency"] == 2
    assert rfm.loc["a", "monetary"] == pytest.approx(130.0)
    assert rfm.loc["a", "recency_days"] == 5
    assert rfm.loc["b", "recency_days"] == 0
    assert (rfm.loc["a", "orders_recent"], rfm.loc["a", "orders_previous"]) == (1, 1)
    assert (rfm.loc["b", "orders_recent"], rfm.loc["b", "orders_previous"]) == (1, 0)
    # No purchase: kept, recency null, all scores 1.
    assert rfm.loc["c", "frequency"] == 0
    assert pd.isna(rfm.loc["c", "recency_days"])
    assert rfm.loc["c", ["r_score", "f_score", "m_score"]].tolist() == [1, 1, 1]


# --- segment names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("r", "f", "m", "name"),
    [
        (5, 5, 5, "Champions"),
        (4, 4, 5, "Champions"),
        (3, 5, 4, "Loyal Customers"),
        (5, 3, 3, "Loyal Customers"),
        (5, 2, 3, "Potential Loyalists"),
        (5, 1, 2, "New Customers"),
        (4, 1, 1, "Promising"),
        (3, 3, 3, "Need Attention"),
        (3, 1, 2, "About to Sleep"),
        (2, 5, 4, "At Risk"),
        (1, 3, 4, "At Risk"),
        (1, 5, 5, "Can't Lose Them"),
        (2, 2, 1, "Hibernating"),
        (1, 1, 1, "Lost"),
    ],
)
def test_segment_names_follow_the_r_by_fm_grid(r: int, f: int, m: int, name: str) -> None:
    assert rfm_segment(r, f, m) == name


def test_segment_naming_is_vectorized_and_covers_every_name() -> None:
    names = rfm_segment(np.array([5, 1]), np.array([5, 1]), np.array([5, 1]))
    assert names.tolist() == ["Champions", "Lost"]
    grid_names = {name for row in RFM_GRID.values() for name in row}
    assert grid_names == set(RFM_SEGMENTS) - {NO_PURCHASES}
    assert len(grid_names) == 11


def test_scores_outside_one_to_five_are_refused() -> None:
    with pytest.raises(ValueError, match="1 to 5"):
        rfm_segment(0, 3, 3)


# --- value tiers and relationship types -----------------------------------------------------------


def _rfm_frame(monetary: list[float], recent: list[int] | None = None, previous: list[int] | None = None):
    n = len(monetary)
    frequency = [1 if m > 0 else 0 for m in monetary]
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "recency_days": pd.array([10 if f else None for f in frequency], dtype="Int64"),
            "frequency": frequency,
            "monetary": monetary,
            "orders_recent": recent or [0] * n,
            "orders_previous": previous or [0] * n,
        }
    )


def test_value_tier_key_is_the_top_share_by_net_revenue() -> None:
    rfm = _rfm_frame([10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
    assert value_tier(rfm, key_share=0.2).tolist() == ["ordinary"] * 8 + ["key", "key"]


def test_value_tier_potential_from_purchase_growth_or_predicted_value() -> None:
    rfm = _rfm_frame(
        [10, 20, 30, 40, 50, 60, 70, 80, 90, 0],
        recent=[3, 2, 0, 0, 0, 0, 0, 0, 0, 0],
        previous=[1, 2, 0, 0, 0, 0, 0, 0, 0, 0],
    )
    predicted = pd.Series({f"c{i}": float(i) for i in range(10)} | {"c2": 500.0, "c9": 400.0})
    tiers = value_tier(rfm, key_share=0.2, predicted_value=predicted).tolist()
    # c0 buys faster (3 > 1); c1 does not grow (2 = 2); c2 and the non-buyer c9 lead the predictions.
    assert tiers[0] == "potential"
    assert tiers[1] == "ordinary"
    assert tiers[2] == "potential"
    assert tiers[9] == "potential"
    assert tiers[7:9] == ["key", "key"]


def test_relationship_types_follow_the_precedence() -> None:
    rows = [
        # frequency, nps, csat, tickets, surveys, clicks, add-on -> expected
        (3, 9, None, 1, 1, 0, True, "emotional"),
        (2, None, 4.5, 0, 0, 0, False, "emotional"),
        (2, None, 4.4, 0, 0, 0, False, "repeat"),
        (1, 10, None, 0, 1, 0, False, "social"),  # one purchase: a promoter is not yet emotional
        (1, None, None, 0, 0, 0, True, "complementary"),
        (4, 8, None, 2, 0, 0, True, "complementary"),
        (0, None, None, 0, 0, 3, False, "social"),
        (5, None, None, 0, 0, 0, False, "repeat"),
        (1, None, None, 0, 0, 0, False, "transactional"),
        (0, None, None, 0, 0, 0, False, "none"),
    ]
    features = pd.DataFrame(
        rows,
        columns=[
            "frequency", "latest_nps", "avg_satisfaction", "tickets_opened", "survey_responses",
            "campaign_clicks", "bought_add_on", "expected",
        ],
    )  # fmt: skip
    features["latest_nps"] = features["latest_nps"].astype("Int64")
    assert relationship_type(features).tolist() == features["expected"].tolist()


def test_core_categories_are_the_top_categories_covering_the_share() -> None:
    items = pd.DataFrame({"category": ["A"] * 5 + ["B"] * 3 + ["D", "C"]})
    assert core_categories(items, 0.5) == ("A",)
    assert core_categories(items, 0.6) == ("A", "B")
    assert core_categories(items, 0.85) == ("A", "B", "C")  # C and D tie: the name decides


@pytest.mark.parametrize("seed", range(5))
def test_core_categories_from_counts_equal_those_from_the_lines(seed) -> None:
    # From the customer-by-category facts the segments get line counts per category, not the lines.
    rng = np.random.default_rng(seed)
    names = np.array(["A", "B", "b", "Ä", "C c", "", None], dtype=object)
    items = pd.DataFrame({"category": rng.choice(names, size=400, p=[0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1])})
    counts = items["category"].value_counts(dropna=False)
    for share in (0.0, 0.3, 0.5, 0.77, 1.0):
        assert core_categories_from_counts(counts, share) == core_categories(items, share)
    assert core_categories_from_counts(pd.Series({"A": 0}, dtype="int64")) == ()


# --- clusters -------------------------------------------------------------------------------------


def _blobs(per_cluster: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    centres = [(2000, 20, 5, 6), (300, 4, 60, 1), (40, 1, 400, 0)]
    rows = [
        rng.normal(loc=c, scale=np.array(c) * 0.1 + 0.2, size=(per_cluster, 4)).clip(min=0) for c in centres
    ]
    return pd.DataFrame(np.vstack(rows), columns=["monetary", "frequency", "recency_days", "engagement"])


def test_clusters_find_the_separated_groups_numbered_by_value_with_labels() -> None:
    features = _blobs()
    result = behavioral_clusters(features, k_range=(2, 6), silhouette_sample=400)
    assert result.k == 3
    truth = np.repeat([0, 1, 2], 200)
    assert (result.labels.to_numpy() == truth).mean() > 0.98
    profile = result.profiles.set_index("cluster_id")
    assert profile["mean_monetary"].is_monotonic_decreasing
    assert profile.loc[0, "cluster_label"] == "high value, frequent, recent, engaged"
    assert "lapsed" in profile.loc[2, "cluster_label"]
    assert profile["customers"].sum() == 600
    assert set(result.silhouette_by_k) == {2, 3, 4, 5, 6}


def test_clusters_are_deterministic_and_degrade_to_one_cluster() -> None:
    features = _blobs(per_cluster=50, seed=3)
    first = behavioral_clusters(features, random_state=7)
    second = behavioral_clusters(features.copy(), random_state=7)
    pd.testing.assert_series_equal(first.labels, second.labels)
    flat = pd.DataFrame({"monetary": [5.0] * 10, "frequency": [1.0] * 10})
    single = behavioral_clusters(flat)
    assert single.k == 1 and set(single.labels) == {0}
    assert single.profiles["cluster_label"].tolist() == ["average"]


def test_shared_distance_silhouettes_equal_scikit_learn() -> None:
    features = _blobs(per_cluster=60, seed=1).to_numpy()
    labels = {k: np.arange(len(features)) % k for k in (2, 3, 5)}
    labels[4] = np.r_[np.zeros(len(features) - 1, dtype=int), 3]  # a singleton and empty ids 1, 2
    ours = sampled_silhouettes(features, labels)
    for k, assigned in labels.items():
        assert ours[k] == pytest.approx(silhouette_score(features, assigned), abs=1e-12)


@pytest.mark.parametrize("chunk_mb", [1, 16, 64])
def test_silhouettes_of_every_k_from_one_product_per_chunk_equal_scikit_learn(monkeypatch, chunk_mb: int) -> None:
    """Enough points for several distance chunks (about 150, 10 or 3 at these sizes), each multiplied once
    by every k's one-hot labels."""
    monkeypatch.setattr(clusters, "SILHOUETTE_CHUNK_MB", chunk_mb)
    points = np.random.default_rng(3).normal(size=(4_500, 4))
    labels = {k: KMeans(n_clusters=k, n_init=1, random_state=0).fit(points).labels_ for k in (2, 3, 6)}
    ours = sampled_silhouettes(points, labels)
    for k, assigned in labels.items():
        assert ours[k] == pytest.approx(silhouette_score(points, assigned), abs=1e-12)


# --- assembly -------------------------------------------------------------------------------------


def _shop(n_customers: int = 60, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = [f"c{i:03d}" for i in range(n_customers)]
    orders, items = [], []
    for i, c in enumerate(ids[:-5]):  # the last five never buy
        for n in range(1 + i % 6):
            order = _order(c, int(rng.integers(0, 700)), float(rng.integers(5, 300)), n=n)
            orders.append(order)
            category = ["Shoes", "Bags", "Socks"][(i + n) % 3]
            items.append(
                {"customer_id": c, "source": "shop", "order_id": order["order_id"], "product_id": f"p{n}",
                 "category": category}
            )  # fmt: skip
    return {
        "customers": _customers(ids),
        "orders": core_frame("orders", orders),
        "order_items": core_frame("order_items", items),
        "tickets": core_frame(
            "support_tickets", [{"customer_id": ids[0], "ticket_id": "t", "opened_at": AS_OF}]
        ),
        "events": core_frame("campaign_events"),
        "surveys": core_frame(
            "survey_responses",
            [{"customer_id": ids[5], "response_id": "r", "nps_score": 10, "responded_at": AS_OF}],
        ),
    }


def test_customer_segments_has_one_row_per_customer_with_the_documented_columns() -> None:
    shop = _shop()
    result = customer_segments(**shop, as_of=AS_OF, settings=SegmentationSettings(k_min=2, k_max=4))
    segments = result.segments
    mart = to_mart_frame("customer_segments", segments, CUSTOMER_SEGMENTS_COLUMNS)
    assert list(mart.columns) == [c.name for c in CUSTOMER_SEGMENTS_COLUMNS]
    assert segments["customer_id"].tolist() == shop["customers"]["customer_id"].tolist()
    idle = segments.tail(5)
    assert set(idle["rfm_segment"]) == {NO_PURCHASES}
    assert set(idle["cluster_id"]) == {-1}
    assert set(idle["relationship_type"]) == {"none"}
    assert set(segments["rfm_segment"]) <= set(RFM_SEGMENTS)
    assert set(segments["value_tier"]) <= {"key", "potential", "ordinary"}
    buyers = segments.loc[segments["frequency"] > 0]
    assert (buyers["cluster_id"] >= 0).all()
    assert buyers["rfm_cell"].str.fullmatch(r"[1-5]{3}").all()
    assert result.core_categories  # some categories form the core offer
    assert segments.loc[segments["customer_id"] == "c005", "relationship_type"].item() == "emotional"


def test_settings_are_frozen_and_validated() -> None:
    settings = SegmentationSettings()
    assert (settings.k_min, settings.k_max, settings.silhouette_sample, settings.key_share) == (
        3,
        8,
        10_000,
        0.2,
    )
    assert (settings.emotional_nps, settings.emotional_csat, settings.random_state) == (9, 4.5, 0)
    with pytest.raises(ValidationError):
        settings.k_min = 4  # type: ignore[misc]
    with pytest.raises(ValidationError, match="k_max"):
        SegmentationSettings(k_min=5, k_max=4)
    with pytest.raises(ValidationError):
        SegmentationSettings(clusters=3)  # type: ignore[call-arg]


def test_segment_metadata_renders_tables_and_a_png() -> None:
    result = customer_segments(**_shop(), as_of=AS_OF, settings=SegmentationSettings(k_min=2, k_max=3))
    text = segment_sizes_markdown(result.segments)
    assert "**rfm_segment**" in text and "| No Purchases | 5 |" in text
    assert cluster_profiles_markdown(result.clusters.profiles).startswith("| cluster_id | cluster_label |")
    png = segment_chart_png(result.segments)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
    assert png_markdown(png, "segments").startswith("![segments](data:image/png;base64,iVBOR")
