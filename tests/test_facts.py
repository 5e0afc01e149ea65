"""The facts layer in the warehouse equals the pandas reference, on DuckDB and on PostgreSQL.

Inputs are synthetic core tables for 600 customers (skewed buyers, tickets, events, surveys) plus hand
made edge rows: a status in odd case and spacing, a negative refund record, a pending order, an order
after the cutoff, an order without an amount.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crm_pipelines.analytics.activity import bounded_orders, customer_index, engagement_summary, order_summary
from crm_pipelines.analytics.clv.summary import summary_from_orders
from crm_pipelines.analytics.retention import retention_cohorts, retention_summary
from crm_pipelines.analytics.segments import rfm_scores
from crm_pipelines.facts.build import build_all, utc_day
from crm_pipelines.facts.clv import clv_calibration_summary, clv_summary_from_facts
from crm_pipelines.facts.marts import read_retention_cohorts, read_retention_summary
from crm_pipelines.facts.synthetic import synthetic_core
from crm_pipelines.schema import CORE, core_entity_columns
from crm_pipelines.warehouse import Warehouse

AS_OF = pd.Timestamp("2025-06-30 23:59:59.999999", tz="UTC")
WINDOW_DAYS = 180
CORE_NAMES = {"tickets": "support_tickets", "events": "campaign_events", "surveys": "survey_responses"}


def _edge_orders(customers: pd.DataFrame) -> pd.DataFrame:
    who = customers["customer_id"].iloc[:5].tolist()
    rows = [
        (who[0], "e-1", "2025-03-01 10:00", " Completed ", 50.0, False),
        (who[0], "e-2", "2025-03-05 10:00", "refunded", -20.0, True),
        (who[1], "e-3", "2025-06-30 23:30", "pending", 30.0, False),
        (who[2], "e-4", "2025-07-01 00:00", "completed", 99.0, False),  # after the cutoff
        (who[3], "e-5", "2025-05-01 12:00", "COMPLETED", None, False),
        (who[4], "e-6", "2025-05-01 12:00", "cancelled", 15.0, False),
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "order_id", "ordered_at", "status", "total", "is_refund"])
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "source": "edge",
            "order_id": frame["order_id"],
            "ordered_at": pd.to_datetime(frame["ordered_at"], utc=True).astype("datetime64[us, UTC]"),
            "status": frame["status"],
            "currency": "EUR",
            "total_amount": frame["total"],
            "total_amount_reporting": frame["total"],
            "is_refund": frame["is_refund"],
        }
    )


@pytest.fixture(scope="module")
def core_frames() -> dict[str, pd.DataFrame]:
    frames = synthetic_core(600, seed=3)
    frames["orders"] = pd.concat([frames["orders"], _edge_orders(frames["customers"])], ignore_index=True)
    return frames


def load_core(wh: Warehouse, frames: dict[str, pd.DataFrame]) -> None:
    wh.write_table(frames["customers"], CORE, "unified_customers")
    for name, frame in frames.items():
        if name == "customers":
            continue
        table = CORE_NAMES.get(name, name)
        types = {c.name: c.dtype for c in core_entity_columns(table)}
        wh.write_table(frame, CORE, table, column_types=types)


@pytest.fixture
def loaded(warehouse, core_frames) -> Warehouse:
    load_core(warehouse, core_frames)
    build_all(warehouse, AS_OF, ("completed",), WINDOW_DAYS)
    return warehouse


def _by_customer(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({"customer_id": "str"}).set_index("customer_id").sort_index()


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal values column by column: counts exactly, amounts to float rounding, times to the microsecond."""
    for name in expected.columns:
        a, e = actual[name], expected[name]
        if str(e.dtype).startswith("datetime64"):
            a = pd.to_datetime(a, utc=True).astype("datetime64[us, UTC]")
            e = pd.to_datetime(e, utc=True).astype("datetime64[us, UTC]")
            pd.testing.assert_series_equal(a, e, check_names=False, obj=name)
        elif e.dtype.kind == "f" or a.dtype.kind == "f":
            np.testing.assert_allclose(
                a.astype("float64").to_numpy(), e.astype("float64").to_numpy(), rtol=1e-9, atol=1e-9, err_msg=name
            )
        else:
            assert a.astype("object").where(a.notna(), None).tolist() == e.astype("object").where(
                e.notna(), None
            ).tolist(), name


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
    assert_same(_by_customer(facts), _by_customer(expected))
    # The edge rows: odd-case "completed" counts, a missing amount counts 0, the negative refund is netted,
    # pending is not a purchase by default, and the order after the cutoff does not exist yet.
    edge = _by_customer(facts).loc[customers["customer_id"].iloc[:5].tolist()]
    reference = _by_customer(expected).loc[edge.index]
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
    assert_same(_by_customer(facts), _by_customer(expected))


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


def test_mid_month_as_of_flags_the_incomplete_month(loaded, core_frames):
    as_of = pd.Timestamp("2025-06-15 23:59:59.999999", tz="UTC")
    build_all(loaded, as_of, ("completed",), WINDOW_DAYS)
    summary = read_retention_summary(loaded, as_of)
    assert summary["period_complete"].tolist()[-2:] == [True, False]
    assert_same(summary, retention_summary(core_frames["orders"], as_of))


def test_configured_purchase_statuses_reach_every_fact(loaded, core_frames):
    statuses = ("completed", "pending")
    build_all(loaded, AS_OF, statuses, WINDOW_DAYS)
    orders, customers = core_frames["orders"], core_frames["customers"]
    index = customer_index(customers)
    expected = order_summary(bounded_orders(orders, index, AS_OF, statuses), len(index))
    facts = loaded.read_table(CORE, "customer_order_facts", columns=["customer_id", "orders"])
    assert_same(
        _by_customer(facts), _by_customer(expected[["orders"]].assign(customer_id=index.to_numpy()))
    )
    clv = clv_summary_from_facts(loaded, utc_day(AS_OF), 7)
    assert_same(clv, summary_from_orders(orders, AS_OF, 7, purchase_statuses=statuses))
    # customer_360's orders and the CLV frequency now count the same purchases.
    per_customer = _by_customer(loaded.read_table(CORE, "customer_order_facts")).loc[clv["customer_id"]]
    assert (per_customer["purchase_days"].to_numpy() - 1 == clv["frequency"].to_numpy()).all()


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
