"""summary_from_orders: purchases, day granularity, time units, calibration/holdout split."""

from __future__ import annotations

import pandas as pd
import pytest
from factories import order_rows

from crm_pipelines.analytics.clv.summary import summary_from_orders

_orders = order_rows


ORDERS = _orders(
    [
        # a: first purchase 1 Jan; 8 Jan two orders (one visit, 30 + 10); 29 Jan; a refund and a
        # cancelled order that must not count; a pending one, left out by default.
        ("a", "2024-01-01 09:00", "completed", 20.0, False),
        ("a", "2024-01-08 10:00", "completed", 30.0, False),
        ("a", "2024-01-08 18:30", "completed", 10.0, False),
        ("a", "2024-01-29 12:00", "completed", 50.0, False),
        ("a", "2024-01-30 12:00", "refunded", -50.0, True),
        ("a", "2024-02-05 12:00", "cancelled", 99.0, False),
        ("a", "2024-02-10 12:00", "pending", 15.0, False),
        # b: one purchase only.
        ("b", "2024-01-15 23:59", "completed", 12.5, False),
        # c: only cancelled: not a customer of this summary.
        ("c", "2024-01-03 08:00", "cancelled", 40.0, False),
        # d: bought after as_of, invisible.
        ("d", "2024-03-01 00:00", "completed", 5.0, False),
        # e: a completed order flagged as refund (negative total) is not a purchase.
        ("e", "2024-01-05 08:00", "completed", 25.0, False),
        ("e", "2024-01-20 08:00", "completed", -25.0, True),
    ]
)


def test_summary_counts_purchase_days_in_weeks() -> None:
    summary = summary_from_orders(ORDERS, "2024-02-12").set_index("customer_id")
    assert list(summary.index) == ["a", "b", "e"]
    a = summary.loc["a"]
    # Purchase days 1, 8 and 29 Jan: two repeat days, last one 28 days after the first; 42 days old.
    assert a["frequency"] == 2
    assert a["recency"] == pytest.approx(28 / 7)
    assert a["T"] == pytest.approx(42 / 7)
    assert a["monetary_value"] == pytest.approx((40.0 + 50.0) / 2)  # 8 Jan visit is 30 + 10
    b = summary.loc["b"]
    assert (b["frequency"], b["recency"], b["monetary_value"]) == (0, 0.0, 0.0)
    assert b["T"] == pytest.approx(28 / 7)
    assert summary.loc["e", "frequency"] == 0


def test_summary_dtypes_and_time_unit() -> None:
    summary = summary_from_orders(ORDERS, "2024-02-12", time_unit_days=1)
    assert str(summary["customer_id"].dtype) == "str"
    assert str(summary["frequency"].dtype) == "int64"
    a = summary.set_index("customer_id").loc["a"]
    assert (a["recency"], a["T"]) == (28.0, 42.0)


def test_pending_orders_count_only_when_asked() -> None:
    summary = summary_from_orders(ORDERS, "2024-02-12", purchase_statuses=("completed", "pending"))
    a = summary.set_index("customer_id").loc["a"]
    assert a["frequency"] == 3
    assert a["recency"] == pytest.approx(40 / 7)


def test_as_of_includes_the_whole_day() -> None:
    # b's purchase at 23:59 on 15 Jan counts as of 15 Jan, with age 0.
    summary = summary_from_orders(ORDERS, pd.Timestamp("2024-01-15"), time_unit_days=1).set_index(
        "customer_id"
    )
    assert summary.loc["b", "T"] == 0.0
    assert summary.loc["a", "frequency"] == 1  # 29 Jan is not there yet


def test_calibration_and_holdout_columns() -> None:
    summary = summary_from_orders(ORDERS, "2024-02-12", time_unit_days=1, calibration_end="2024-01-10")
    summary = summary.set_index("customer_id")
    # b's first purchase comes after the calibration end: not in the calibration frame.
    assert list(summary.index) == ["a", "e"]
    a = summary.loc["a"]
    assert (a["frequency"], a["recency"], a["T"]) == (1, 7.0, 9.0)
    assert a["frequency_holdout"] == 1  # 29 Jan; the pending order does not count
    assert a["monetary_value_holdout"] == pytest.approx(50.0)
    assert a["duration_holdout"] == pytest.approx(33.0)
    e = summary.loc["e"]
    assert (e["frequency"], e["frequency_holdout"], e["monetary_value_holdout"]) == (0, 0, 0.0)


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="is_refund"):
        summary_from_orders(ORDERS.drop(columns=["is_refund"]), "2024-02-12")
    with pytest.raises(ValueError, match="before as_of"):
        summary_from_orders(ORDERS, "2024-02-12", calibration_end="2024-02-12")


def test_empty_when_no_purchases() -> None:
    summary = summary_from_orders(ORDERS, "2023-12-31")
    assert summary.empty
    assert list(summary.columns) == ["customer_id", "frequency", "recency", "T", "monetary_value"]
