"""Daily CRM KPIs: formulas pinned on hand-computed data and checked against a day-by-day reference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crm_pipelines.analytics.activity import core_frame
from crm_pipelines.analytics.kpis import crm_kpis
from crm_pipelines.analytics.mart_boundary import to_mart_frame
from crm_pipelines.analytics.mart_columns import CRM_KPIS_COLUMNS
from crm_pipelines.analytics.reporting import kpi_chart_png, kpi_trend_markdown

AS_OF = pd.Timestamp("2024-01-10 23:59:59.999999", tz="UTC")
NAN = float("nan")
SMALL_WINDOWS = {
    "active_window_days": 3,
    "retention_window_days": 2,
    "service_window_days": 3,
    "nps_window_days": 3,
    "conversion_days": 2,
    "conversion_window_days": 3,
}


def _t(day: int, hour: int = 12) -> pd.Timestamp:
    """January ``day`` 2024 (0 = 31 December 2023) at ``hour`` UTC."""
    return pd.Timestamp("2023-12-31", tz="UTC") + pd.Timedelta(days=day, hours=hour)


def _order(customer: str, day: int, amount: float, status: str = "completed") -> dict:
    return {"customer_id": customer, "source": "shop", "order_id": f"{customer}{day}{status}{amount}",
            "ordered_at": _t(day), "status": status, "total_amount_reporting": amount,
            "is_refund": status == "refunded" or amount < 0}  # fmt: skip


def _hand_made() -> pd.DataFrame:
    customers = core_frame(
        "unified_customers",
        [
            {"customer_id": "a", "created_at": _t(-30)},
            {"customer_id": "b", "created_at": _t(4)},
            {"customer_id": "c"},
        ],
    )
    orders = core_frame(
        "orders",
        [
            _order("a", 1, 100.0),
            _order("a", 5, 50.0),
            _order("a", 7, 40.0),
            _order("b", 5, 30.0),
            _order("b", 6, -20.0),  # refund record
            _order("c", 3, 70.0, "cancelled"),
        ],
    )
    tickets = core_frame(
        "support_tickets",
        [
            {"customer_id": "a", "ticket_id": "t1", "opened_at": _t(2, 10), "first_response_at": _t(2, 12),
             "resolved_at": _t(4, 9), "satisfaction_score": 4.0},
            {"customer_id": "b", "ticket_id": "t2", "opened_at": _t(3, 8), "first_response_at": _t(3, 14),
             "resolved_at": _t(3, 20), "satisfaction_score": 2.0},
            {"customer_id": "c", "ticket_id": "t3", "opened_at": _t(5, 9), "first_response_at": _t(7, 9)},
            {"customer_id": "c", "ticket_id": "t4", "opened_at": _t(9, 9), "status": "closed"},
        ],
    )  # fmt: skip
    surveys = core_frame(
        "survey_responses",
        [
            {"customer_id": c, "response_id": f"r{day}", "nps_score": score, "responded_at": _t(day)}
            for c, day, score in [("a", 2, 10), ("b", 3, 6), ("c", 4, 8), ("a", 9, 9)]
        ],
    )
    events = core_frame(
        "campaign_events",
        [
            {
                "customer_id": c,
                "event_id": f"e{c}{day}{hour}",
                "event_type": kind,
                "occurred_at": _t(day, hour),
            }
            for c, kind, day, hour in [
                ("c", "click", 1, 9),
                ("a", "click", 4, 9),
                ("b", "click", 6, 8),
                ("a", "click", 6, 10),
                ("a", "click", 6, 15),  # the same customer and day: counted once
                ("a", "open", 6, 9),
            ]
        ],
    )
    return crm_kpis(customers, orders, tickets, events, surveys, AS_OF, days=10, **SMALL_WINDOWS)


def _column(kpis: pd.DataFrame, name: str) -> list[float]:
    return kpis[name].astype("float64").tolist()


def _same(actual: list[float], expected: list[float]) -> bool:
    return actual == pytest.approx(expected, nan_ok=True)


def test_one_row_per_day_with_the_documented_columns() -> None:
    kpis = _hand_made()
    assert list(to_mart_frame("crm_kpis", kpis, CRM_KPIS_COLUMNS).columns) == [c.name for c in CRM_KPIS_COLUMNS]
    assert kpis["date"].dt.strftime("%m-%d").tolist() == [f"01-{d:02d}" for d in range(1, 11)]
    assert str(kpis["date"].dtype) == "datetime64[us]"


def test_customer_counts() -> None:
    kpis = _hand_made()
    assert kpis["customers_total"].tolist() == [2, 2, 2, 3, 3, 3, 3, 3, 3, 3]
    assert kpis["purchasing_customers"].tolist() == [1, 0, 0, 0, 2, 0, 1, 0, 0, 0]
    assert kpis["new_customers"].tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert kpis["repeat_customers"].tolist() == [0, 0, 0, 0, 1, 0, 1, 0, 0, 0]
    assert kpis["orders"].tolist() == [1, 0, 0, 0, 2, 0, 1, 0, 0, 0]
    # Active in the 3 days ending each day.
    assert kpis["active_customers"].tolist() == [1, 1, 1, 0, 2, 2, 2, 1, 1, 0]


def test_revenue_is_net_of_refund_records() -> None:
    assert _column(_hand_made(), "revenue") == [100.0, 0, 0, 0, 80.0, -20.0, 40.0, 0, 0, 0]


def test_retention_and_churn_over_two_day_windows() -> None:
    kpis = _hand_made()
    # Day 7: previous window (days 4-5) {a, b}, current (6-7) {a} -> 1/2.
    expected = [NAN, NAN, 0.0, 0.0, NAN, NAN, 0.5, 0.5, 0.0, 0.0]
    assert _same(_column(kpis, "retention_rate"), expected)
    assert _same(_column(kpis, "churn_rate"), [1 - x for x in expected])


def test_service_kpis() -> None:
    kpis = _hand_made()
    assert kpis["tickets_opened"].tolist() == [0, 1, 1, 0, 1, 0, 0, 0, 1, 0]
    assert _same(_column(kpis, "avg_satisfaction"), [NAN, NAN, 2.0, 3.0, 3.0, 4.0, NAN, NAN, NAN, NAN])
    assert _same(
        _column(kpis, "median_first_response_hours"), [NAN, 2.0, 4.0, 4.0, 6.0, NAN, 48.0, NAN, NAN, NAN]
    )
    assert _same(_column(kpis, "resolved_share"), [NAN, 0.0, 0.5, 1.0, 0.5, 0.0, 0.0, NAN, 1.0, 1.0])


def test_nps_over_the_trailing_window() -> None:
    kpis = _hand_made()
    assert _same(_column(kpis, "nps"), [NAN, 100.0, 0.0, 0.0, -50.0, 0.0, NAN, NAN, 100.0, 100.0])
    assert kpis["nps_responses"].tolist() == [0, 1, 2, 3, 2, 1, 0, 0, 1, 1]


def test_email_conversion_of_matured_clicks() -> None:
    kpis = _hand_made()
    # Clicks of days d-4..d-2 (matured: 2 days have passed), converted within 2 days.
    expected = [NAN, NAN, 0.0, 0.0, 0.0, 1.0, 1.0, 2 / 3, 0.5, 0.5]
    assert _same(_column(kpis, "email_conversion_rate"), expected)


# --- against a day-by-day reference on random data --------------------------------------------------


def _random_inputs(seed: int = 3) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    end = AS_OF + pd.Timedelta(days=80)
    start = end - pd.Timedelta(days=150)
    ids = [f"c{i:02d}" for i in range(40)]

    def times(n: int) -> list[pd.Timestamp]:
        return list(start + pd.to_timedelta(rng.uniform(0, 152, n), unit="D"))  # a few after as-of

    n = 300
    statuses = rng.choice(["completed", "completed", "completed", "cancelled", "refunded"], n)
    orders = core_frame(
        "orders",
        [{"customer_id": ids[rng.integers(0, 40)], "source": "s", "order_id": f"o{i}", "ordered_at": t,
          "status": s, "total_amount_reporting": 10.0, "is_refund": s == "refunded"}
         for i, (t, s) in enumerate(zip(times(n), statuses, strict=True))],
    )  # fmt: skip
    tickets = []
    for i, opened in enumerate(times(120)):
        response = opened + pd.Timedelta(hours=float(rng.exponential(30)))
        resolved = response + pd.Timedelta(hours=float(rng.exponential(60)))
        tickets.append(
            {
                "customer_id": ids[rng.integers(0, 40)],
                "ticket_id": f"t{i}",
                "opened_at": opened,
                "first_response_at": response if rng.random() < 0.8 else None,
                "resolved_at": resolved if rng.random() < 0.7 else None,
                "status": "closed" if rng.random() < 0.3 else "open",
                "satisfaction_score": float(rng.integers(1, 6)) if rng.random() < 0.5 else None,
            }
        )
    events = core_frame(
        "campaign_events",
        [
            {
                "customer_id": ids[rng.integers(0, 40)],
                "event_id": f"e{i}",
                "event_type": "click",
                "occurred_at": t,
            }
            for i, t in enumerate(times(200))
        ],
    )
    surveys = core_frame(
        "survey_responses",
        [
            {
                "customer_id": ids[rng.integers(0, 40)],
                "response_id": f"r{i}",
                "nps_score": int(v),
                "responded_at": t,
            }
            for i, (t, v) in enumerate(zip(times(80), rng.integers(0, 11, 80), strict=True))
        ],
    )
    customers = core_frame("unified_customers", [{"customer_id": c} for c in ids])
    return {"customers": customers, "orders": orders, "tickets": core_frame("support_tickets", tickets),
            "events": events, "surveys": surveys}  # fmt: skip


def _reference(
    inputs: dict[str, pd.DataFrame], as_of: pd.Timestamp, days: int, w: dict[str, int]
) -> pd.DataFrame:
    """The definitions of docs/marts.md, evaluated literally, one day at a time."""
    day = lambda ts: ts.floor("D")  # noqa: E731
    last = day(as_of)
    orders = inputs["orders"]
    buys = orders.loc[
        (orders["status"] == "completed") & ~orders["is_refund"] & (orders["ordered_at"] <= as_of)
    ]
    buy_days = [(r.customer_id, day(r.ordered_at), r.ordered_at) for r in buys.itertuples()]
    first = {}
    for c, d, _ in sorted(buy_days, key=lambda x: x[1]):
        first.setdefault(c, d)
    t = inputs["tickets"]
    t = t.loc[t["opened_at"] <= as_of]
    clicks = {}
    for e in inputs["events"].itertuples():
        if e.occurred_at <= as_of:
            key = (e.customer_id, day(e.occurred_at))
            clicks[key] = min(clicks.get(key, e.occurred_at), e.occurred_at)
    s = inputs["surveys"]
    s = s.loc[s["responded_at"] <= as_of]
    rows = []
    for offset in range(days - 1, -1, -1):
        d = last - pd.Timedelta(days=offset)

        def active(lo: int, hi: int, d: pd.Timestamp = d) -> set[str]:
            return {
                c for c, bd, _ in buy_days if d - pd.Timedelta(days=lo) <= bd <= d - pd.Timedelta(days=hi)
            }

        r = w["retention_window_days"]
        prev, cur = active(2 * r - 1, r), active(r - 1, 0)
        sw = pd.Timedelta(days=w["service_window_days"] - 1)
        in_window = t.loc[(t["opened_at"].dt.floor("D") >= d - sw) & (t["opened_at"].dt.floor("D") <= d)]
        resolved_day = in_window["resolved_at"].where(in_window["resolved_at"] <= as_of).dt.floor("D")
        resolved_day = resolved_day.fillna(
            in_window["opened_at"].dt.floor("D").where(in_window["status"] == "closed")
        )
        answered = in_window.loc[
            (in_window["first_response_at"] <= as_of) & (in_window["first_response_at"].dt.floor("D") <= d)
        ]
        hours = (answered["first_response_at"] - answered["opened_at"]).dt.total_seconds() / 3600
        cd, cw = w["conversion_days"], w["conversion_window_days"]
        matured = [(c, at) for (c, cday), at in clicks.items()
                   if d - pd.Timedelta(days=cd + cw - 1) <= cday <= d - pd.Timedelta(days=cd)]  # fmt: skip
        converted = [any(bc == c and at <= bt <= at + pd.Timedelta(days=cd) for bc, _, bt in buy_days)
                     for c, at in matured]  # fmt: skip
        rated = t.loc[t["satisfaction_score"].notna()]
        rating_day = (
            rated["resolved_at"].where(rated["resolved_at"] <= as_of).fillna(rated["opened_at"]).dt.floor("D")
        )
        ratings = rated.loc[(rating_day >= d - sw) & (rating_day <= d), "satisfaction_score"]
        nw = pd.Timedelta(days=w["nps_window_days"] - 1)
        scores = s.loc[
            (s["responded_at"].dt.floor("D") >= d - nw) & (s["responded_at"].dt.floor("D") <= d), "nps_score"
        ]
        rows.append(
            {
                "active_customers": len(active(w["active_window_days"] - 1, 0)),
                "new_customers": sum(1 for f in first.values() if f == d),
                "repeat_customers": len({c for c, bd, _ in buy_days if bd == d and first[c] < d}),
                "retention_rate": len(prev & cur) / len(prev) if prev else NAN,
                "resolved_share": float((resolved_day <= d).mean()) if len(in_window) else NAN,
                "median_first_response_hours": float(hours.median()) if len(hours) else NAN,
                "avg_satisfaction": float(ratings.mean()) if len(ratings) else NAN,
                "email_conversion_rate": float(np.mean(converted)) if matured else NAN,
                "nps": 100 * ((scores >= 9).mean() - (scores <= 6).mean()) if len(scores) else NAN,
            }
        )
    return pd.DataFrame(rows)


def test_vectorized_kpis_equal_the_day_by_day_definitions() -> None:
    inputs = _random_inputs()
    windows = {"active_window_days": 7, "retention_window_days": 10, "service_window_days": 5,
               "nps_window_days": 9, "conversion_days": 3, "conversion_window_days": 6}  # fmt: skip
    kpis = crm_kpis(**inputs, as_of=AS_OF, days=60, **windows)
    reference = _reference(inputs, AS_OF, 60, windows)
    for column in reference.columns:
        assert _same(_column(kpis, column), reference[column].astype("float64").tolist()), column
    assert kpis["active_customers"].max() > 5 and kpis["retention_rate"].notna().sum() > 40


def test_kpi_metadata_renders_the_recent_trend_and_a_png() -> None:
    kpis = _hand_made()
    trend = kpi_trend_markdown(kpis, days=3)
    lines = trend.splitlines()
    assert lines[0].startswith("| date | customers_total | active_customers |")
    assert lines[2].startswith("| 2024-01-10 |") and len(lines) == 5
    assert kpi_chart_png(kpis).startswith(b"\x89PNG")


def test_days_must_be_positive() -> None:
    inputs = _random_inputs()
    with pytest.raises(ValueError, match="days"):
        crm_kpis(**inputs, as_of=AS_OF, days=0)
