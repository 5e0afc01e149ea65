"""Regular customers, daily regulars, campaign window outcomes and month activity computed in the warehouse
equal the pandas reference, on DuckDB and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from facts_support import AS_OF, assert_same, core_frames_with_edges, load_core

from crm_pipelines.analytics.campaign_performance import window_outcomes
from crm_pipelines.analytics.campaigns import empty_assignments
from crm_pipelines.analytics.cycle_settings import LoyaltySettings
from crm_pipelines.analytics.loyalty import daily_loyalty_kpis, regular_customers
from crm_pipelines.analytics.portfolio import month_activity
from crm_pipelines.facts.activity import (
    read_daily_regulars,
    read_month_activity,
    read_window_outcomes,
    regular_customers_select,
)
from crm_pipelines.schema import MARTS


@pytest.fixture(scope="module")
def core_frames() -> dict[str, pd.DataFrame]:
    frames = core_frames_with_edges()
    orders = frames["orders"]
    # Purchases of one customer on the same day, and a refund record with a negative amount.
    who = frames["customers"]["customer_id"].iloc[40]
    extra = orders.iloc[:4].assign(
        customer_id=who, source="edge2", order_id=[f"x-{i}" for i in range(4)], status="completed",
        is_refund=[False, False, False, True], total_amount_reporting=[10.0, 20.0, 30.0, -5.0],
        ordered_at=pd.to_datetime(
            ["2025-06-01 08:00", "2025-06-01 09:00", "2025-06-10 00:00", "2025-06-11 00:00"], utc=True
        ).astype("datetime64[us, UTC]"),
    )  # fmt: skip
    return {**frames, "orders": pd.concat([orders, extra], ignore_index=True)}


@pytest.fixture(scope="module")
def loaded(module_warehouse, core_frames):
    load_core(module_warehouse, core_frames)
    return module_warehouse


@pytest.mark.parametrize("k, window", [(1, 30), (2, 90), (3, 180)])
def test_regular_customers_equal_the_reference(loaded, core_frames, k, window):
    settings = LoyaltySettings(regular_min_purchases=k, regular_window_days=window)
    customers = core_frames["customers"]
    expected = customers.loc[regular_customers(customers, core_frames["orders"], AS_OF, settings), "customer_id"]
    actual = loaded.query(regular_customers_select(loaded, AS_OF, window, k))["customer_id"]
    assert sorted(actual.astype("str")) == sorted(expected.astype("str"))
    assert 0 < len(actual) < len(customers)
    # Without the join (customer_360 tests its own customers' membership) the unified customers it
    # names are the same.
    unjoined = loaded.query(regular_customers_select(loaded, AS_OF, window, k, unified_only=False))["customer_id"]
    unjoined = unjoined.astype("str")
    assert sorted(unjoined[unjoined.isin(customers["customer_id"].astype("str"))]) == sorted(expected.astype("str"))


@pytest.mark.parametrize("k, window", [(1, 30), (2, 90), (3, 180)])
def test_daily_regulars_equal_the_reference(loaded, core_frames, k, window):
    settings = LoyaltySettings(regular_min_purchases=k, regular_window_days=window)
    dates = pd.Series(pd.date_range("2024-07-01", "2025-06-30", freq="D"))
    expected = daily_loyalty_kpis(dates, core_frames["orders"], core_frames["customers"], set(), settings)
    actual = read_daily_regulars(loaded, dates, window, k)
    np.testing.assert_array_equal(actual, expected["regular_customers"].to_numpy())
    assert actual.max() > 0


def test_window_outcomes_equal_the_reference(loaded, core_frames):
    ids = core_frames["customers"]["customer_id"].astype("str")
    rows = pd.DataFrame(
        {
            "campaign": "winback",
            "customer_id": ids.iloc[::3].to_numpy(),
            "campaign_group": np.where(np.arange(len(ids.iloc[::3])) % 4 == 0, "control", "treatment"),
            "enrolled_at": pd.Timestamp("2025-05-20 15:30", tz="UTC"),
            "assigned_by": "hash",
            "loyalty_member": False,
        }
    )
    other = rows.iloc[:10].assign(campaign="other", enrolled_at=pd.Timestamp("2024-01-01", tz="UTC"))
    table = pd.concat([rows, other], ignore_index=True).astype(empty_assignments().dtypes.to_dict())
    loaded.write_table(table, MARTS, "campaign_assignments")
    for days in (7, 60):
        expected = window_outcomes(rows, core_frames["orders"], days, AS_OF)
        actual = read_window_outcomes(loaded, "campaign_assignments", rows, days, AS_OF)
        assert_same(actual, expected)
        assert expected["converted"].any() and expected["revenue"].abs().sum() > 0


@pytest.mark.parametrize(
    "month, until", [("2025-06-01", "2025-06-30 23:59:59.999999"), ("2025-03-01", "2025-03-31 23:59:59.999999")]
)
def test_month_activity_equals_the_reference(loaded, core_frames, month, until):
    customers = core_frames["customers"].iloc[::2]
    month, until = pd.Timestamp(month, tz="UTC"), pd.Timestamp(until, tz="UTC")
    revenue, bought = month_activity(customers, core_frames["orders"], month, until)
    actual_revenue, actual_bought = read_month_activity(loaded, customers, month, until)
    np.testing.assert_allclose(actual_revenue, revenue, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(actual_bought, bought)
    assert bought.any()


@pytest.mark.parametrize("month_end", ["2025-06-30 23:59:59.999999", "2024-11-30 23:59:59.999999"])
def test_backfill_inputs_equal_the_reference(loaded, core_frames, month_end):
    """The RFM scores and segments of a past month end, and its CLV summary, as the backfill of
    customer_segment_history reads them."""
    from functools import partial

    from crm_pipelines.analytics.clv.settings import ClvSettings
    from crm_pipelines.analytics.portfolio import backfill_segments
    from crm_pipelines.analytics.predictive_tables import clv_summary
    from crm_pipelines.analytics.segments import rfm_scores
    from crm_pipelines.facts.activity import read_rfm_scores
    from crm_pipelines.facts.build import build_purchases, utc_day
    from crm_pipelines.facts.clv import clv_summary_from_purchases

    month_end = pd.Timestamp(month_end, tz="UTC")
    customers, orders = core_frames["customers"], core_frames["orders"]
    assert_same(read_rfm_scores(loaded, customers, month_end), rfm_scores(orders, customers, month_end))
    expected = backfill_segments(customers, orders, month_end, 0.2)
    actual = backfill_segments(customers, partial(read_rfm_scores, loaded), month_end, 0.2)
    assert len(actual) == len(expected) > 0
    assert_same(actual.reset_index(drop=True), expected.reset_index(drop=True))
    build_purchases(loaded, AS_OF, ("completed",))
    settings = ClvSettings()
    assert_same(
        clv_summary_from_purchases(loaded, utc_day(month_end), settings.time_unit_days),
        clv_summary(orders, month_end, settings),
    )
