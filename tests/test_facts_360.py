"""The customer 360, the KPIs and the segments built from the warehouse facts equal the pandas reference,
on DuckDB and PostgreSQL."""

from __future__ import annotations

import pandas as pd
import pytest
from facts_support import AS_OF, assert_same, by_customer, core_frames_with_edges, load_and_build

from crm_pipelines.analytics.cross_sell import cross_sell_recommendations, recommendations_from_facts
from crm_pipelines.analytics.customer360 import customer_360
from crm_pipelines.analytics.kpis import crm_kpis
from crm_pipelines.analytics.segments import customer_segments, segments_from_facts
from crm_pipelines.assets.marts import CUSTOMER_360_EXTRAS
from crm_pipelines.facts.customer360 import customer_360_select
from crm_pipelines.facts.marts import read_crm_kpis
from crm_pipelines.schema import CORE, MARTS


@pytest.fixture(scope="module")
def core_frames() -> dict[str, pd.DataFrame]:
    return core_frames_with_edges()


def _extras(customers: pd.DataFrame) -> dict[str, pd.DataFrame]:
    ids = customers["customer_id"].astype("str")
    return {
        # Per-customer marts as the 360 finds them; some of their columns it leaves out or already has.
        "customer_segments": pd.DataFrame(
            {"customer_id": ids.iloc[::2], "rfm_segment": "Champions", "frequency": 3, "r_score": 5}
        ),
        "customer_lifetime_value": pd.DataFrame(
            {"customer_id": ids, "probability_alive": 0.5, "T": 10.0, "orders": 99}
        ),
    }


@pytest.fixture(scope="module")
def loaded(module_warehouse, core_frames):
    return load_and_build(module_warehouse, core_frames)


def test_customer_360_equals_the_reference(loaded, core_frames):
    wh = loaded
    c = core_frames
    extras = _extras(c["customers"])
    for table, frame in extras.items():
        wh.write_table(frame, MARTS, table)
    leave_out = dict(CUSTOMER_360_EXTRAS)
    expected = customer_360(
        c["customers"], c["orders"], c["order_items"], c["tickets"], c["subscriptions"], c["events"],
        c["surveys"], AS_OF, extra=[f.drop(columns=leave_out[t], errors="ignore") for t, f in extras.items()],
    )  # fmt: skip
    actual = wh.query(customer_360_select(wh, AS_OF, [(t, leave_out[t]) for t in extras]))
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected)
    assert_same(by_customer(actual), by_customer(expected))
    # The edge consents: undated withdrawal, undated opt-in, pending, opt-in after the cutoff.
    edge = by_customer(actual).loc[c["customers"]["customer_id"].iloc[5:9].tolist(), "marketing_consent"]
    assert edge.tolist()[:3] == ["unsubscribed", "subscribed", "pending"]


def test_customer_360_without_birth_dates_or_extras(warehouse, core_frames):
    frames = {**core_frames, "customers": core_frames["customers"].drop(columns=["date_of_birth"])}
    wh = load_and_build(warehouse, frames)
    actual = wh.query(customer_360_select(wh, AS_OF))
    assert list(actual.columns[:3]) == ["customer_id", "age", "age_band"]
    assert actual["age"].isna().all() and (actual["age_band"] == "unknown").all()
    assert len(actual) == wh.row_count(CORE, "unified_customers")


def test_customer_360_categories_sort_by_code_point(warehouse, core_frames):
    # Categories with accents, capitals and a space: sorted by code point ("Zubehör" before "garden",
    # "Éclair" after both), as the reference sorts them, on both engines.
    items = core_frames["order_items"].copy()
    names = ["garden", "Zubehör", "Éclair", "b ", "a-b", "Ärger", "z"]
    items["category"] = [names[i % len(names)] for i in range(len(items))]
    frames = {**core_frames, "order_items": items}
    wh = load_and_build(warehouse, frames)
    c = frames
    expected = customer_360(
        c["customers"], c["orders"], c["order_items"], c["tickets"], c["subscriptions"], c["events"],
        c["surveys"], AS_OF,
    )  # fmt: skip
    actual = wh.query(customer_360_select(wh, AS_OF))
    got, want = by_customer(actual)["categories"], by_customer(expected)["categories"]
    assert want.str.contains("Éclair").any() and want.str.contains(", ").any()
    assert got.fillna("").tolist() == want.fillna("").tolist()


def test_crm_kpis_equal_the_reference(loaded, core_frames):
    wh = loaded
    c = core_frames
    expected = crm_kpis(c["customers"], c["orders"], c["tickets"], c["events"], c["surveys"], AS_OF)
    actual = read_crm_kpis(wh, AS_OF)
    assert list(actual.columns) == list(expected.columns)
    assert len(actual) == len(expected) == 365
    assert_same(actual, expected)


def test_segments_from_facts_equal_the_reference(loaded, core_frames):
    c = core_frames
    customers = c["customers"].sort_values("customer_id", ignore_index=True)
    expected = customer_segments(customers, c["orders"], c["order_items"], c["tickets"], c["events"], c["surveys"],
                                 AS_OF)  # fmt: skip
    actual = segments_from_facts(
        loaded.read_table(CORE, "customer_order_facts"),
        loaded.read_table(CORE, "customer_engagement_facts"),
        loaded.read_table(CORE, "customer_category_facts"),
    )
    assert actual.core_categories == expected.core_categories
    assert actual.clusters.k == expected.clusters.k
    assert list(actual.segments.columns) == list(expected.segments.columns)
    assert_same(actual.segments, expected.segments)


def test_cross_sell_from_facts_equals_the_reference(loaded, core_frames):
    expected = cross_sell_recommendations(core_frames["order_items"], core_frames["orders"], as_of=AS_OF)
    actual = recommendations_from_facts(loaded.read_table(CORE, "customer_category_facts"))
    assert len(actual) == len(expected) > 0
    assert_same(actual, expected)


@pytest.mark.parametrize("min_support, min_lift", [(0.01, 1.0), (0.0, 0.0), (0.05, 1.1)])
def test_cross_sell_from_pair_counts_equals_the_reference(loaded, core_frames, min_support, min_lift):
    from crm_pipelines.analytics.cross_sell import association_rules
    from crm_pipelines.facts.cross_sell import category_pairs_select

    expected = cross_sell_recommendations(
        core_frames["order_items"], core_frames["orders"], as_of=AS_OF, min_support=min_support, min_lift=min_lift
    )
    pairs = loaded.query(category_pairs_select(loaded))
    facts = loaded.read_table(CORE, "customer_category_facts", columns=["customer_id", "category"])
    actual = recommendations_from_facts(facts, min_support=min_support, min_lift=min_lift, pair_counts=pairs)
    assert len(actual) == len(expected) > 0
    assert_same(actual, expected)
    # One row per pair of categories bought together: the diagonal counts each category's buyers.
    rules = association_rules(core_frames["order_items"], core_frames["orders"], as_of=AS_OF, min_support=0.0)
    both = pairs.set_index(["antecedent", "consequent"])["customers"]
    for row in rules.head(20).itertuples():
        assert both[(row.antecedent, row.consequent)] == row.baskets_with_both
