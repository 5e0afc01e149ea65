"""The customer 360: profile and age bands, purchases and net revenue, service, surveys, consent, joins."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from crm_pipelines.analytics.activity import core_frame
from crm_pipelines.analytics.customer360 import age_band, age_in_years, customer_360
from crm_pipelines.analytics.mart_boundary import to_mart_frame
from crm_pipelines.analytics.mart_columns import (
    CUSTOMER_360_COLUMNS,
    MART_COLUMNS,
    column_types,
    columns_markdown,
)

AS_OF = pd.Timestamp("2024-06-30 23:59:59.999999", tz="UTC")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "marts.md"


def _at(days_ago: float) -> pd.Timestamp:
    return AS_OF.floor("D") - pd.Timedelta(days=days_ago) + pd.Timedelta(hours=12)


def _order(customer: str, order_id: str, days_ago: float, amount: float, status: str = "completed",
           source: str = "shop") -> dict:  # fmt: skip
    return {
        "customer_id": customer,
        "source": source,
        "order_id": order_id,
        "ordered_at": _at(days_ago),
        "status": status,
        "total_amount_reporting": amount,
        "is_refund": status == "refunded" or amount < 0,
    }


def _item(customer: str, order_id: str, category: str, source: str = "shop") -> dict:
    return {"customer_id": customer, "source": source, "order_id": order_id, "product_id": category[:2],
            "category": category}  # fmt: skip


def _view(
    customers: list[dict],
    orders: list[dict] = (),  # type: ignore[assignment]
    items: list[dict] = (),  # type: ignore[assignment]
    tickets: list[dict] = (),  # type: ignore[assignment]
    subscriptions: list[dict] = (),  # type: ignore[assignment]
    events: list[dict] = (),  # type: ignore[assignment]
    surveys: list[dict] = (),  # type: ignore[assignment]
    extra: list[pd.DataFrame] = (),  # type: ignore[assignment]
) -> pd.DataFrame:
    view = customer_360(
        core_frame("unified_customers", customers),
        core_frame("orders", orders),
        core_frame("order_items", items),
        core_frame("support_tickets", tickets),
        core_frame("subscriptions", subscriptions),
        core_frame("campaign_events", events),
        core_frame("survey_responses", surveys),
        AS_OF,
        extra=extra,
    )
    return view.set_index("customer_id", drop=False)


def test_one_row_per_customer_in_input_order_with_the_documented_columns() -> None:
    view = _view([{"customer_id": "b"}, {"customer_id": "a"}])
    assert view["customer_id"].tolist() == ["b", "a"]
    # As published: the model's names renamed and ordered at the mart boundary.
    mart = to_mart_frame("customer_360", view, CUSTOMER_360_COLUMNS)
    assert list(mart.columns) == [c.name for c in CUSTOMER_360_COLUMNS]


def test_repeated_customer_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="one row per customer_id"):
        _view([{"customer_id": "a"}, {"customer_id": "a"}])


@pytest.mark.parametrize(
    ("born", "age", "band"),
    [
        ("1990-07-01", 33, "25-34"),  # birthday tomorrow
        ("2000-06-30", 24, "<25"),  # birthday today
        ("1999-06-30", 25, "25-34"),
        ("1959-06-30", 65, "65+"),
        ("1959-07-01", 64, "55-64"),
        ("2030-01-01", None, "unknown"),  # in the future
        ("1890-01-01", None, "unknown"),  # implausible
        (None, None, "unknown"),
    ],
)
def test_age_in_completed_years_and_bands(born: str | None, age: int | None, band: str) -> None:
    ages = age_in_years(pd.Series([born], dtype="datetime64[us]"), AS_OF)
    assert (pd.isna(ages.iloc[0]) and age is None) or ages.iloc[0] == age
    assert age_band(ages).tolist() == [band]


def test_band_edges() -> None:
    ages = pd.Series([0, 24, 25, 34, 35, 44, 45, 54, 55, 64, 65, 120], dtype="Int64")
    assert age_band(ages).tolist() == [
        "<25", "<25", "25-34", "25-34", "35-44", "35-44", "45-54", "45-54", "55-64", "55-64", "65+", "65+",
    ]  # fmt: skip


def test_purchases_exclude_cancellations_refunds_and_pending_and_revenue_is_net() -> None:
    view = _view(
        [{"customer_id": "a"}, {"customer_id": "b"}],
        orders=[
            _order("a", "o1", 40, 60.0),
            _order("a", "o2", 5, 100.0),
            _order("a", "o3", 4, 999.0, "cancelled"),
            _order("a", "o4", 3, 500.0, "pending"),
            _order("a", "o5", 2, 80.0, "refunded"),
            _order("a", "o6", 1, -30.0),  # refund record
            _order("a", "o7", -1, 70.0),  # after the as-of day
            _order("b", "o8", 3, 10.0, "cancelled"),
        ],
    )
    a, b = view.loc["a"], view.loc["b"]
    assert (a["orders"], a["cancelled_orders"], a["refunded_orders"]) == (2, 1, 2)
    assert a["gross_revenue"] == pytest.approx(160.0)
    assert a["revenue"] == pytest.approx(130.0)
    assert a["average_order_value"] == pytest.approx(80.0)
    assert a["first_order_at"] == _at(40) and a["last_order_at"] == _at(5)
    assert a["days_since_last_order"] == 5
    assert (b["orders"], b["revenue"]) == (0, 0.0)
    assert pd.isna(b["first_order_at"]) and pd.isna(b["days_since_last_order"])
    assert pd.isna(b["average_order_value"])


def test_categories_are_distinct_sorted_and_from_purchases_only() -> None:
    view = _view(
        [{"customer_id": "a"}, {"customer_id": "b"}],
        orders=[
            _order("a", "o1", 10, 50.0),
            _order("a", "o2", 9, 50.0, "cancelled"),
            # The same order id in another source is another order (cancelled here).
            _order("a", "o1", 8, 50.0, "cancelled", source="pos"),
            _order("b", "o3", 8, 50.0),
        ],
        items=[
            _item("a", "o1", "Shoes"),
            _item("a", "o1", "Bags"),
            _item("a", "o1", "Shoes"),
            _item("a", "o2", "Hats"),
            _item("a", "o1", "Gloves", source="pos"),
        ],
    )
    assert view.loc["a", "categories"] == "Bags, Shoes"
    assert pd.isna(view.loc["b", "categories"])


def test_service_survey_and_email_activity() -> None:
    view = _view(
        [{"customer_id": "a"}],
        tickets=[
            {
                "customer_id": "a",
                "ticket_id": "t1",
                "opened_at": _at(9),
                "resolved_at": _at(8),
                "satisfaction_score": 5.0,
            },
            {
                "customer_id": "a",
                "ticket_id": "t2",
                "opened_at": _at(3),
                "resolved_at": _at(-2),
                "satisfaction_score": 2.0,
            },
            {"customer_id": "a", "ticket_id": "t3", "opened_at": _at(2), "status": "closed"},
            {"customer_id": "a", "ticket_id": "t4", "opened_at": _at(-1), "satisfaction_score": 1.0},
        ],  # fmt: skip
        surveys=[
            {"customer_id": "a", "response_id": "r1", "nps_score": 10, "responded_at": _at(30)},
            {"customer_id": "a", "response_id": "r2", "nps_score": 6, "responded_at": _at(2)},
            {"customer_id": "a", "response_id": "r3", "nps_score": 9, "responded_at": _at(-3)},
        ],
        events=[
            {"customer_id": "a", "event_id": "e1", "event_type": "open", "occurred_at": _at(3)},
            {"customer_id": "a", "event_id": "e2", "event_type": "Click", "occurred_at": _at(3)},
            {"customer_id": "a", "event_id": "e3", "event_type": "click", "occurred_at": _at(-3)},
        ],
    )
    a = view.loc["a"]
    assert (a["tickets_opened"], a["tickets_resolved"]) == (3, 2)
    assert a["avg_satisfaction"] == pytest.approx(3.5)
    assert (a["survey_responses"], a["latest_nps"]) == (2, 6)
    assert (a["campaign_opens"], a["campaign_clicks"]) == (1, 1)


def test_marketing_consent_is_the_latest_signal_across_lists_and_sources() -> None:
    view = _view(
        [{"customer_id": c} for c in ("in", "out", "pending", "none", "event")],
        subscriptions=[
            {
                "customer_id": "in",
                "subscription_id": "s1",
                "list_name": "news",
                "consent_status": "subscribed",
                "consent_at": _at(20),
            },
            {
                "customer_id": "out",
                "subscription_id": "s2",
                "list_name": "news",
                "consent_status": "subscribed",
                "consent_at": _at(20),
            },
            {
                "customer_id": "out",
                "subscription_id": "s3",
                "list_name": "offers",
                "source": "crm",
                "consent_status": "unsubscribed",
                "consent_at": _at(10),
            },
            {
                "customer_id": "pending",
                "subscription_id": "s4",
                "consent_status": "pending",
                "consent_at": _at(5),
            },
            {
                "customer_id": "event",
                "subscription_id": "s5",
                "consent_status": "subscribed",
                "consent_at": _at(5),
            },
        ],  # fmt: skip
        events=[
            {"customer_id": "event", "event_id": "e", "event_type": "unsubscribe", "occurred_at": _at(1)}
        ],
    )
    assert view["marketing_consent"].to_dict() == {
        "in": "subscribed",
        "out": "unsubscribed",
        "pending": "pending",
        "none": "unknown",
        "event": "unsubscribed",
    }
    assert view.loc["in", "consent_at"] == _at(20)
    assert view.loc["out", "consent_at"] == _at(10)
    assert pd.isna(view.loc["none", "consent_at"])


def test_extra_frames_join_by_customer_and_never_override_the_360() -> None:
    segments = pd.DataFrame({"customer_id": ["a"], "rfm_segment": ["Champions"], "orders": [99]})
    clv = pd.DataFrame({"customer_id": ["b", "a"], "clv_12m": [10.0, 20.0]})
    view = _view([{"customer_id": "a"}, {"customer_id": "b"}], extra=[segments, clv])
    assert view["rfm_segment"].tolist()[0] == "Champions" and pd.isna(view["rfm_segment"].iloc[1])
    assert view["clv_12m"].tolist() == [20.0, 10.0]
    assert view["orders"].tolist() == [0, 0]
    with pytest.raises(ValueError, match="repeats customer_id"):
        _view([{"customer_id": "a"}], extra=[pd.DataFrame({"customer_id": ["a", "a"], "x": [1, 2]})])
    with pytest.raises(ValueError, match="no customer_id"):
        _view([{"customer_id": "a"}], extra=[pd.DataFrame({"id": ["a"]})])


def test_docs_list_every_mart_column_as_rendered() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    for table in MART_COLUMNS:
        assert f"marts.{table}" in docs
        for line in columns_markdown(table).splitlines():
            assert line in docs, f"docs/marts.md lacks: {line}"
    assert column_types("crm_kpis")["kpi_date"] == "date"
