"""The facts layer in the warehouse equals the pandas reference, on DuckDB and on PostgreSQL.

Inputs are synthetic core tables for 600 customers (skewed buyers, tickets, events, surveys) plus hand
made edge rows: a status in odd case and spacing, a negative refund record, a pending order, an order
after the cutoff, an order without an amount.
"""

from __future__ import annotations

import pandas as pd
import pytest
from facts_support import (
    AS_OF,
    WINDOW_DAYS,
    assert_same,
    by_customer,
    core_frames_with_edges,
    load_and_build,
    load_core,
)
from pandas.testing import assert_frame_equal

from crm_pipelines import table_changes
from crm_pipelines.analytics.activity import bounded_orders, customer_index, engagement_summary, order_summary
from crm_pipelines.analytics.churn import FrameOrderHistory, churn_features, service_features
from crm_pipelines.analytics.clv.summary import summary_from_orders
from crm_pipelines.analytics.retention import retention_cohorts, retention_summary
from crm_pipelines.analytics.segments import rfm_scores
from crm_pipelines.facts.build import build_all, build_purchases, utc_day
from crm_pipelines.facts.churn import WarehouseOrderHistory, service_features_from_warehouse
from crm_pipelines.facts.clv import clv_calibration_summary, clv_summary_from_facts
from crm_pipelines.facts.marts import read_retention_cohorts, read_retention_summary
from crm_pipelines.facts.orders import purchases_select
from crm_pipelines.schema import CORE, core_entity_columns
from crm_pipelines.table_changes import change_names
from crm_pipelines.warehouse import Warehouse


@pytest.fixture(scope="module")
def core_frames() -> dict[str, pd.DataFrame]:
    return core_frames_with_edges()


@pytest.fixture(scope="module")
def loaded(module_warehouse, core_frames) -> Warehouse:
    """Read-only tests share one load per warehouse; tests that rebuild the facts use ``reloaded``."""
    return load_and_build(module_warehouse, core_frames)


@pytest.fixture
def reloaded(warehouse, core_frames) -> Warehouse:
    return load_and_build(warehouse, core_frames)


def test_customer_order_facts_equal_the_reference(loaded, core_frames):
    customers, orders = core_frames["customers"], core_frames["orders"]
    index = customer_index(customers)
    expected = order_summary(bounded_orders(orders, index, AS_OF), len(index)).assign(customer_id=index.to_numpy())
    rfm = rfm_scores(orders, customers, AS_OF, WINDOW_DAYS)
    expected["days_since_last_order"] = rfm["recency_days"].to_numpy()
    expected["orders_recent"] = rfm["orders_recent"].to_numpy()
    expected["orders_previous"] = rfm["orders_previous"].to_numpy()
    facts = loaded.read_table(CORE, "customer_order_facts")
    assert len(facts) == len(customers)
    assert_same(by_customer(facts), by_customer(expected))
    # The edge rows: odd-case "completed" counts, a missing amount counts 0, the negative refund is netted,
    # pending is not a purchase by default, and the order after the cutoff does not exist yet.
    edge = by_customer(facts).loc[customers["customer_id"].iloc[:5].tolist()]
    reference = by_customer(expected).loc[edge.index]
    assert (edge["orders"] == reference["orders"]).all()


def test_purchases_hold_each_purchase_once(loaded, core_frames):
    purchases = loaded.read_table(CORE, "purchases")
    assert not purchases.duplicated(["source", "order_id"]).any()
    assert set(purchases["order_id"]) >= {"e-1", "e-5"}
    assert not set(purchases["order_id"]) & {"e-2", "e-3", "e-4", "e-6"}
    assert (pd.to_datetime(purchases["ordered_at"], utc=True) <= AS_OF).all()


def test_engagement_facts_equal_the_reference(loaded, core_frames):
    c = core_frames
    index = customer_index(c["customers"])
    expected = engagement_summary(c["tickets"], c["events"], c["surveys"], index, AS_OF)
    expected["customer_id"] = index.to_numpy()
    facts = loaded.read_table(CORE, "customer_engagement_facts")
    assert_same(by_customer(facts), by_customer(expected))


def test_clv_summaries_equal_the_reference(loaded, core_frames):
    orders = core_frames["orders"]
    expected = summary_from_orders(orders, AS_OF, 7)
    actual = clv_summary_from_facts(loaded, utc_day(AS_OF), 7)
    assert list(actual["customer_id"]) == list(expected["customer_id"])
    assert_same(actual, expected)

    calibration_end = pd.Timestamp("2025-03-31", tz="UTC")
    expected = summary_from_orders(orders, AS_OF, 7, calibration_end=calibration_end)
    actual = clv_calibration_summary(loaded, utc_day(AS_OF), utc_day(calibration_end), 7)
    assert list(actual.columns) == list(expected.columns)
    assert_same(actual, expected)


def test_retention_tables_equal_the_reference(loaded, core_frames):
    orders = core_frames["orders"]
    expected = retention_cohorts(orders, AS_OF)
    actual = read_retention_cohorts(loaded, AS_OF)
    assert len(actual) == len(expected) > 0
    assert_same(actual, expected)

    expected = retention_summary(orders, AS_OF)
    actual = read_retention_summary(loaded, AS_OF)
    assert len(actual) == len(expected) > 0
    assert_same(actual, expected)


def test_mid_month_as_of_flags_the_incomplete_month(reloaded, core_frames):
    loaded = reloaded
    as_of = pd.Timestamp("2025-06-15 23:59:59.999999", tz="UTC")
    build_all(loaded, as_of, ("completed",), WINDOW_DAYS)
    summary = read_retention_summary(loaded, as_of)
    assert summary["period_complete"].tolist()[-2:] == [True, False]
    assert_same(summary, retention_summary(core_frames["orders"], as_of))


def test_configured_purchase_statuses_reach_every_fact(reloaded, core_frames):
    loaded = reloaded
    statuses = ("completed", "pending")
    build_all(loaded, AS_OF, statuses, WINDOW_DAYS)
    orders, customers = core_frames["orders"], core_frames["customers"]
    index = customer_index(customers)
    expected = order_summary(bounded_orders(orders, index, AS_OF, statuses), len(index))
    facts = loaded.read_table(CORE, "customer_order_facts", columns=["customer_id", "orders"])
    assert_same(
        by_customer(facts), by_customer(expected[["orders"]].assign(customer_id=index.to_numpy()))
    )
    clv = clv_summary_from_facts(loaded, utc_day(AS_OF), 7)
    assert_same(clv, summary_from_orders(orders, AS_OF, 7, purchase_statuses=statuses))
    # customer_360's orders and the CLV frequency now count the same purchases.
    per_customer = by_customer(loaded.read_table(CORE, "customer_order_facts")).loc[clv["customer_id"]]
    assert (per_customer["purchase_days"].to_numpy() - 1 == clv["frequency"].to_numpy()).all()


def test_rebuilt_purchases_equal_a_rewrite_and_only_changes_are_written(reloaded, core_frames, monkeypatch):
    wh = reloaded
    staged = []
    stage = table_changes.stage_select_change
    monkeypatch.setattr(
        table_changes, "stage_select_change", lambda *args: staged.append(stage(*args)) or staged[-1]
    )
    orders = core_frames["orders"].copy()
    completed = orders.index[orders["status"] == "completed"]
    orders.loc[completed[0], "status"] = "cancelled"  # a purchase no more
    orders.loc[completed[1], "total_amount_reporting"] = 1234.5  # a purchase changed
    orders.loc[orders["order_id"] == "e-3", "status"] = "completed"  # a purchase more
    orders = orders.drop(completed[2])  # a purchase gone
    wh.write_table(orders, CORE, "orders", column_types={c.name: c.dtype for c in core_entity_columns("orders")})
    before = wh.read_table(CORE, "purchases")
    expected = wh.query(purchases_select(wh, AS_OF, ("completed",)))
    assert len(expected) == len(before) - 1

    # A gate refusing the new version leaves the published table and nothing else behind.
    assert build_purchases(wh, AS_OF, ("completed",), gate=lambda schema, name: False) == len(expected)
    assert_frame_equal(_sorted_purchases(wh.read_table(CORE, "purchases")), _sorted_purchases(before))
    assert build_purchases(wh, AS_OF, ("completed",)) == len(expected)

    assert_frame_equal(_sorted_purchases(wh.read_table(CORE, "purchases")), _sorted_purchases(expected))
    leftovers = [n for n in change_names("purchases") if wh.table_exists(CORE, n)]
    assert not leftovers and not wh.table_exists(CORE, "purchases__new")
    # DuckDB wrote the changed rows only (both times); PostgreSQL rewrites the table.
    expected_stages = [("purchases__night", len(expected))] * 2 if wh.dialect == "duckdb" else [None, None]
    assert staged == expected_stages


def _sorted_purchases(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["source", "order_id"]).reset_index(drop=True)


def test_no_orders_at_all(warehouse, core_frames):
    frames = {**core_frames, "orders": core_frames["orders"].iloc[0:0]}
    load_core(warehouse, frames)
    counts = build_all(warehouse, AS_OF, ("completed",), WINDOW_DAYS)
    assert counts["purchases"] == 0 and counts["customer_order_facts"] == len(frames["customers"])
    assert clv_summary_from_facts(warehouse, utc_day(AS_OF), 7).empty
    assert read_retention_cohorts(warehouse, AS_OF).empty and read_retention_summary(warehouse, AS_OF).empty


def test_missing_engagement_sources_give_zeros(warehouse, core_frames):
    wh = warehouse
    wh.write_table(core_frames["customers"], CORE, "unified_customers")
    types = {c.name: c.dtype for c in core_entity_columns("orders")}
    wh.write_table(core_frames["orders"], CORE, "orders", column_types=types)
    build_all(wh, AS_OF, ("completed",), WINDOW_DAYS)
    facts = wh.read_table(CORE, "customer_engagement_facts")
    assert len(facts) == len(core_frames["customers"])
    assert (facts["tickets_opened"] == 0).all() and facts["latest_nps"].isna().all()


@pytest.mark.parametrize("cutoff", ["2025-06-30", "2024-12-31"])
def test_churn_features_equal_the_reference(loaded, core_frames, cutoff):
    day = utc_day(pd.Timestamp(cutoff, tz="UTC"))
    expected = churn_features(core_frames["orders"], cutoff)
    actual = WarehouseOrderHistory(loaded).features(day)
    assert list(actual.index) == list(expected.index) and list(actual.columns) == list(expected.columns)
    assert_same(actual.reset_index(), expected.reset_index())
    reference = FrameOrderHistory(core_frames["orders"])
    assert sorted(WarehouseOrderHistory(loaded).buyers(day - 90, day)) == sorted(reference.buyers(day - 90, day))


def test_churn_features_of_several_cutoffs_from_one_query_equal_the_reference(loaded, core_frames):
    """Training's cutoffs (two horizons back, one back, the as-of day) and one before any purchase."""
    days = [utc_day(pd.Timestamp(c, tz="UTC")) for c in ("2024-12-31", "2025-03-31", "2025-06-30", "2019-01-01")]
    together = WarehouseOrderHistory(loaded).features_at(days)
    reference = FrameOrderHistory(core_frames["orders"]).features_at(days)
    assert [len(f) for f in together] == [len(f) for f in reference] and len(together[-1]) == 0
    assert len(together[0]) < len(together[2])
    for actual, expected in zip(together[:-1], reference[:-1], strict=True):
        assert list(actual.index) == list(expected.index) and list(actual.columns) == list(expected.columns)
        assert_same(actual.reset_index(), expected.reset_index())


def test_service_features_equal_the_reference(loaded, core_frames):
    reference = service_features(core_frames["tickets"], core_frames["surveys"])
    warehouse = service_features_from_warehouse(loaded)
    for cutoff in ("2025-06-30", "2024-12-31"):
        day = pd.Timestamp(cutoff, tz="UTC")
        expected = reference(day).dropna(how="all", subset=reference(day).columns[1:])
        actual = warehouse(day)
        actual = actual.dropna(how="all", subset=actual.columns[1:])
        assert_same(by_customer(actual).reset_index(), by_customer(expected).reset_index())
