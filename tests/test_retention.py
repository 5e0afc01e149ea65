"""Retention cohorts and monthly retention summary, pinned on a hand-made order log."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from factories import order_rows

from crm_pipelines.analytics.retention import retention_cohorts, retention_summary

_orders = order_rows


ORDERS = _orders(
    [
        ("a", "2024-01-05 10:00", "completed", 100.0, False),
        ("a", "2024-01-20 10:00", "completed", 50.0, False),
        ("a", "2024-02-10 10:00", "completed", 30.0, False),
        ("a", "2024-04-02 10:00", "completed", 20.0, False),
        ("b", "2024-01-15 10:00", "completed", 40.0, False),
        ("b", "2024-02-01 10:00", "refunded", -40.0, True),  # not a purchase
        ("b", "2024-02-15 10:00", "cancelled", 10.0, False),  # not a purchase
        ("b", "2024-03-01 10:00", "completed", 60.0, False),
        ("c", "2024-02-03 10:00", "completed", 70.0, False),
        ("c", "2024-02-03 17:00", "completed", 10.0, False),  # same day: one purchase day
        ("c", "2024-02-20 10:00", "completed", 10.0, False),
        ("c", "2024-03-05 10:00", "completed", 25.0, False),
        ("d", "2024-02-28 10:00", "completed", 15.0, False),
        ("e", "2024-04-10 10:00", "completed", 5.0, False),  # after as_of
    ]
)
AS_OF = "2024-04-05"


def test_cohort_table_is_pinned() -> None:
    table = retention_cohorts(ORDERS, AS_OF)
    expected = pd.DataFrame(
        {
            "cohort_month": ["2024-01-01"] * 4 + ["2024-02-01"] * 3,
            "months_since_first": [0, 1, 2, 3, 0, 1, 2],
            "activity_month": [
                "2024-01-01",
                "2024-02-01",
                "2024-03-01",
                "2024-04-01",
                "2024-02-01",
                "2024-03-01",
                "2024-04-01",
            ],
            "cohort_size": [2, 2, 2, 2, 2, 2, 2],
            "customers_active": [2, 1, 1, 1, 2, 1, 0],
            "retention_rate": [1.0, 0.5, 0.5, 0.5, 1.0, 0.5, 0.0],
            "revenue": [190.0, 30.0, 60.0, 20.0, 105.0, 25.0, 0.0],
            "revenue_retention": [1.0, 30 / 190, 60 / 190, 20 / 190, 1.0, 25 / 105, 0.0],
            "period_complete": [True, True, True, False, True, True, False],
        }
    )
    for column in ("cohort_month", "activity_month"):
        expected[column] = pd.to_datetime(expected[column], utc=True).astype("datetime64[us, UTC]")
    pd.testing.assert_frame_equal(table, expected, check_dtype=True)


def test_summary_is_pinned() -> None:
    summary = retention_summary(ORDERS, AS_OF)
    assert summary["period_month"].dt.strftime("%Y-%m").tolist() == [
        "2024-01",
        "2024-02",
        "2024-03",
        "2024-04",
    ]
    assert summary["active_customers"].tolist() == [2, 3, 2, 1]
    assert summary["new_customers"].tolist() == [2, 2, 0, 0]
    assert summary["returning_customers"].tolist() == [0, 1, 2, 1]
    assert summary["active_previous_month"].tolist() == [0, 2, 3, 2]
    assert summary["retained_customers"].tolist() == [0, 1, 1, 0]
    np.testing.assert_allclose(summary["retention_rate"], [np.nan, 0.5, 1 / 3, 0.0])
    np.testing.assert_allclose(summary["churn_rate"], [np.nan, 0.5, 2 / 3, 1.0])
    assert summary["customers_acquired_before"].tolist() == [0, 2, 4, 4]
    # a repeats in January (5 and 20 Jan), c in February (3 and 20 Feb), b in March.
    assert summary["repeat_customers"].tolist() == [1, 2, 3, 3]
    np.testing.assert_allclose(summary["repeat_purchase_rate"], [0.5, 0.5, 0.75, 0.75])
    assert summary["period_complete"].tolist() == [True, True, True, False]
    assert retention_summary(ORDERS, AS_OF, months=2)["active_customers"].tolist() == [2, 1]


def test_month_end_as_of_completes_the_month() -> None:
    table = retention_cohorts(ORDERS, "2024-03-31")
    assert table["period_complete"].all()
    assert table["activity_month"].max() == pd.Timestamp("2024-03-01", tz="UTC")
    assert retention_summary(ORDERS, "2024-03-31")["period_complete"].all()


def test_pending_orders_on_request() -> None:
    with_pending = pd.concat(
        [ORDERS, _orders([("d", "2024-03-10 10:00", "pending", 9.0, False)])], ignore_index=True
    )
    default = retention_cohorts(with_pending, AS_OF)
    assert default.loc[5, "customers_active"] == 1  # Feb cohort in March: c only
    counted = retention_cohorts(with_pending, AS_OF, purchase_statuses=("completed", "pending"))
    assert counted.loc[5, "customers_active"] == 2
    assert counted.loc[5, "revenue"] == pytest.approx(34.0)


def test_no_purchases_give_empty_frames() -> None:
    assert retention_cohorts(ORDERS, "2023-12-31").empty
    assert retention_summary(ORDERS, "2023-12-31").empty
