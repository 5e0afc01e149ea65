"""Cross-sell: association rules over customer baskets computed by hand, and recommendations from them."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from crm_pipelines.analytics import cross_sell
from crm_pipelines.analytics.activity import core_frame
from crm_pipelines.analytics.cross_sell import association_rules, cross_sell_recommendations
from crm_pipelines.analytics.mart_boundary import to_mart_frame
from crm_pipelines.analytics.mart_columns import CROSS_SELL_COLUMNS

AS_OF = pd.Timestamp("2024-06-30 23:59:59.999999", tz="UTC")

# Seven customer baskets. Counts: A 4, B 3, C 3, D 2; together: AB 2, AC 1, BC 1, CD 1.
BASKETS = {
    "c1": ["A", "B"],
    "c2": ["A", "B"],
    "c3": ["A", "C"],
    "c4": ["B", "C"],
    "c5": ["A"],
    "c6": ["C", "D"],
    "c7": ["D"],
}


def _frames(baskets: dict[str, list[str]], status: str = "completed") -> tuple[pd.DataFrame, pd.DataFrame]:
    """One order per bought category (so baskets span orders), with product p<category>."""
    orders, items = [], []
    for customer, categories in baskets.items():
        for n, category in enumerate(categories):
            order_id = f"{customer}-{n}"
            orders.append({"customer_id": customer, "source": "shop", "order_id": order_id,
                           "ordered_at": AS_OF - pd.Timedelta(days=n + 1), "status": status,
                           "total_amount_reporting": 10.0, "is_refund": False})  # fmt: skip
            items.append({"customer_id": customer, "source": "shop", "order_id": order_id,
                          "product_id": f"p{category}", "product_name": f"Product {category}",
                          "category": category})  # fmt: skip
    return core_frame("order_items", items), core_frame("orders", orders)


def test_rules_match_the_hand_computed_support_confidence_and_lift() -> None:
    items, orders = _frames(BASKETS)
    rules = association_rules(items, orders, min_support=0.0).set_index(["antecedent", "consequent"])
    # Only positive associations (lift > 1) remain: A-C (7/12) and B-C (7/9) are below 1.
    assert sorted(rules.index) == [("A", "B"), ("B", "A"), ("C", "D"), ("D", "C")]
    expected = {
        ("A", "B"): (2, 2 / 7, 2 / 4, (2 / 4) / (3 / 7)),
        ("B", "A"): (2, 2 / 7, 2 / 3, (2 / 3) / (4 / 7)),
        ("C", "D"): (1, 1 / 7, 1 / 3, (1 / 3) / (2 / 7)),
        ("D", "C"): (1, 1 / 7, 1 / 2, (1 / 2) / (3 / 7)),
    }
    for rule, (both, support, confidence, lift) in expected.items():
        row = rules.loc[rule]
        assert row["baskets_with_both"] == both
        assert row["support"] == pytest.approx(support)
        assert row["confidence"] == pytest.approx(confidence)
        assert row["lift"] == pytest.approx(lift)
    assert lift == pytest.approx(7 / 6)


def test_recommendations_are_unbought_items_ranked_by_lift_then_confidence() -> None:
    items, orders = _frames(BASKETS)
    recs = cross_sell_recommendations(items, orders, min_support=0.0)
    mart = to_mart_frame("cross_sell_recommendations", recs, CROSS_SELL_COLUMNS)
    assert list(mart.columns) == [c.name for c in CROSS_SELL_COLUMNS]
    got = {(r.customer_id, r.rank): (r.recommendation, r.based_on) for r in recs.itertuples()}
    assert got == {
        ("c3", 1): ("B", "A"),  # lift 7/6, confidence 1/2
        ("c3", 2): ("D", "C"),  # lift 7/6, confidence 1/3
        ("c4", 1): ("A", "B"),
        ("c4", 2): ("D", "C"),
        ("c5", 1): ("B", "A"),
        ("c7", 1): ("C", "D"),
    }  # c1, c2 already own every associated category; c6's associations are all bought
    c3 = recs.loc[recs["customer_id"] == "c3"].iloc[0]
    assert (c3["lift"], c3["confidence"], c3["support"]) == pytest.approx((7 / 6, 1 / 2, 2 / 7))
    assert set(recs["level"]) == {"category"}


def test_minimum_support_drops_rare_rules_and_top_n_limits() -> None:
    items, orders = _frames(BASKETS)
    recs = cross_sell_recommendations(items, orders, min_support=0.2)
    assert recs[["customer_id", "recommendation"]].values.tolist() == [["c3", "B"], ["c4", "A"], ["c5", "B"]]
    top1 = cross_sell_recommendations(items, orders, top_n=1, min_support=0.0)
    assert top1.groupby("customer_id").size().max() == 1
    with pytest.raises(ValueError, match="top_n"):
        cross_sell_recommendations(items, orders, top_n=0)


def test_exact_ties_break_by_name() -> None:
    # X -> P and X -> Q have identical support, confidence and lift.
    items, orders = _frames({"u1": ["X", "P"], "u2": ["X", "Q"], "u3": ["X"], "u4": ["Y"], "u5": ["Y"]})
    recs = cross_sell_recommendations(items, orders, min_support=0.0)
    u3 = recs.loc[recs["customer_id"] == "u3"]
    assert u3["recommendation"].tolist() == ["P", "Q"]
    assert u3["lift"].tolist() == pytest.approx([5 / 3, 5 / 3])


def test_only_purchases_up_to_as_of_form_baskets() -> None:
    items, orders = _frames(BASKETS)
    cancelled_items, cancelled_orders = _frames({"c9": ["A", "C"], "c8": ["A", "C"]}, status="cancelled")
    with_cancelled = cross_sell_recommendations(
        pd.concat([items, cancelled_items]), pd.concat([orders, cancelled_orders]), min_support=0.0
    )
    pd.testing.assert_frame_equal(with_cancelled, cross_sell_recommendations(items, orders, min_support=0.0))
    # As of two days before the end, only each customer's first category (bought a day before) is known...
    early = association_rules(items, orders, min_support=0.0, as_of=AS_OF - pd.Timedelta(days=1.5))
    assert early.empty  # ...and single-item baskets have no pairs.


def test_product_level_names_the_product() -> None:
    items, orders = _frames(BASKETS)
    recs = cross_sell_recommendations(items, orders, level="product", min_support=0.0)
    c3 = recs.loc[recs["customer_id"] == "c3"].iloc[0]
    assert (c3["recommendation"], c3["recommendation_name"], c3["based_on"]) == ("pB", "Product B", "pA")
    with pytest.raises(ValueError, match="level"):
        cross_sell_recommendations(items, orders, level="brand")  # type: ignore[arg-type]


def _brute_force(baskets: dict[str, set[str]], top_n: int, min_support: float) -> dict[str, list[str]]:
    n = len(baskets)
    has = {i: {c for c, b in baskets.items() if i in b} for i in set().union(*baskets.values())}
    rules = {}
    for a, b in itertools.permutations(sorted(has), 2):
        both = len(has[a] & has[b])
        support, confidence = both / n, both / len(has[a])
        lift = confidence / (len(has[b]) / n)
        if both and support >= min_support and lift > 1:
            rules[(a, b)] = (lift, confidence, support)
    out = {}
    for customer, bought in baskets.items():
        best: dict[str, tuple[float, float, float]] = {}
        for a in bought:
            for (x, b), score in rules.items():
                if x == a and b not in bought and score > best.get(b, (-1, -1, -1)):
                    best[b] = score
        ranked = sorted(best, key=lambda b: (-best[b][0], -best[b][1], -best[b][2], b))[:top_n]
        if ranked:
            out[customer] = ranked
    return out


@pytest.mark.parametrize("basket_bits", [62, 4])
@pytest.mark.parametrize("chunk_rows", [3, 5_000_000])
def test_vectorized_recommendations_equal_a_brute_force_reference(
    monkeypatch, chunk_rows: int, basket_bits: int
) -> None:
    monkeypatch.setattr(cross_sell, "_CHUNK_ROWS", chunk_rows)  # small chunks split the work per customer
    # Nine categories: baskets as bits of an int64, or (more items than bits) looked up by binary search.
    monkeypatch.setattr(cross_sell, "_BASKET_BITS", basket_bits)
    rng = np.random.default_rng(5)
    categories = [f"k{i}" for i in range(9)]
    weights = np.linspace(2, 0.5, len(categories))
    baskets = {}
    for i in range(150):
        size = int(rng.integers(1, 6))
        baskets[f"u{i:03d}"] = set(
            rng.choice(categories, size=size, replace=False, p=weights / weights.sum())
        )
    items, orders = _frames({c: sorted(b) for c, b in baskets.items()})
    recs = cross_sell_recommendations(items, orders, top_n=3, min_support=0.02)
    got = recs.groupby("customer_id")["recommendation"].agg(list).to_dict()
    assert got == _brute_force(baskets, top_n=3, min_support=0.02)
    assert (recs["lift"] > 1).all()
