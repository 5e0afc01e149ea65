"""Portfolio snapshots, month aggregation and migrations (SQL on DuckDB and PostgreSQL), goals, loyalty."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from crm_pipelines.analytics.activity import core_frame
from crm_pipelines.analytics.cycle_columns import SEGMENT_HISTORY_COLUMNS
from crm_pipelines.analytics.cycle_settings import GoalSettings, LoyaltySettings, PortfolioSettings
from crm_pipelines.analytics.goals import UnknownKpiError, crm_goals
from crm_pipelines.analytics.loyalty import daily_loyalty_kpis, loyalty_members_query, regular_customers
from crm_pipelines.analytics.portfolio import (
    HISTORY_COLUMNS,
    backfill_segments,
    customer_portfolio,
    migrations_query,
    months_to_backfill,
    portfolio_cell,
    portfolio_query,
    segment_migrations,
    snapshot,
)
from crm_pipelines.schema import MARTS
from crm_pipelines.warehouse import Warehouse

AS_OF = pd.Timestamp("2026-03-15 23:59:59", tz="UTC")


def _orders(rows) -> pd.DataFrame:
    return core_frame(
        "orders",
        [
            {"order_id": f"O{i}", "customer_id": c, "ordered_at": pd.Timestamp(t, tz="UTC"), "status": "completed",
             "total_amount_reporting": a, "is_refund": False}
            for i, (c, t, a) in enumerate(rows)
        ],
    )  # fmt: skip


def _history(rng: np.random.Generator, customers: int = 60, months: int = 3) -> pd.DataFrame:
    segments = ["Champions", "At Risk", "Lost"]
    tiers = ["key", "potential", "ordinary"]
    parts = []
    for k in range(months):
        month = pd.Timestamp(2026, 1 + k, 1)
        present = rng.random(customers) < 0.9
        ids = np.array([f"C{i:03d}" for i in range(customers)])[present]
        n = len(ids)
        parts.append(
            pd.DataFrame(
                {
                    "month": month,
                    "month_index": month.year * 12 + month.month - 1,
                    "customer_id": ids,
                    "rfm_segment": rng.choice(segments, n),
                    "value_tier": rng.choice(tiers, n),
                    "portfolio_cell": rng.choice(["stars", "develop", "maintain", "reconsider"], n),
                    "expected_clv": np.where(rng.random(n) < 0.1, np.nan, rng.gamma(2, 50, n)),
                    "revenue_month": rng.gamma(1, 20, n),
                    "active_month": rng.random(n) < 0.4,
                    "snapshot_as_of": month + pd.offsets.MonthEnd(0),
                    "snapshot_kind": "backfill",
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_portfolio_and_migrations_in_sql_match_pandas(warehouse_url):
    wh = Warehouse(warehouse_url)
    history = _history(np.random.default_rng(0))
    types = {c.name: c.dtype for c in SEGMENT_HISTORY_COLUMNS}
    wh.write_table(history, MARTS, "customer_segment_history", mode="replace", column_types=types)
    table = wh.table(MARTS, "customer_segment_history", list(HISTORY_COLUMNS))

    portfolio = customer_portfolio(wh.query(portfolio_query(table)), AS_OF)
    tiers = portfolio[portfolio["dimension"] == "value_tier"].set_index(["month", "segment"])
    expected = history.groupby(["month", "value_tier"]).agg(
        customers=("customer_id", "size"),
        active=("active_month", "sum"),
        net_revenue=("revenue_month", "sum"),
        equity=("expected_clv", "sum"),
    )
    for (month, tier), row in expected.iterrows():
        got = tiers.loc[(month, tier)]
        assert got["customers"] == row["customers"] and got["active_customers"] == row["active"]
        assert got["net_revenue"] == pytest.approx(row["net_revenue"]) and got["customer_equity"] == pytest.approx(
            row["equity"]
        )
    totals = portfolio[portfolio["dimension"] == "total"].sort_values("month")
    equity = history.groupby("month")["expected_clv"].sum().to_numpy()
    assert totals["customer_equity"].to_numpy() == pytest.approx(equity)
    assert np.isnan(totals["equity_change"].iloc[0])
    assert totals["equity_change"].iloc[1:].to_numpy() == pytest.approx(np.diff(equity))
    assert totals["month_complete"].tolist() == [True, True, False]
    shares = portfolio[portfolio["dimension"] == "portfolio_cell"].groupby("month")["equity_share"].sum()
    assert shares.to_numpy() == pytest.approx(1.0)

    migrations = segment_migrations(wh.query(migrations_query(table)))
    rfm = migrations[migrations["dimension"] == "rfm_segment"]
    feb, mar = history[history["month_index"] == 24313], history[history["month_index"] == 24314]
    pairs = feb.merge(mar, on="customer_id", suffixes=("_from", "_to"))
    expected_moves = pairs.groupby(["rfm_segment_from", "rfm_segment_to"]).size()
    got = rfm[rfm["month"] == pd.Timestamp(2026, 3, 1)].set_index(["from_segment", "to_segment"])["customers"]
    assert got.sort_index().to_dict() == expected_moves.sort_index().to_dict()
    assert set(rfm["month"]) == {pd.Timestamp(2026, 2, 1), pd.Timestamp(2026, 3, 1)}
    assert rfm.groupby(["month", "from_segment"])["share_of_from"].sum().to_numpy() == pytest.approx(1.0)
    assert (migrations["moved"] == (migrations["from_segment"] != migrations["to_segment"])).all()


def test_snapshot_and_backfill_from_orders():
    orders = _orders(
        [("A", "2025-12-20", 100.0), ("A", "2026-03-02", 50.0), ("B", "2026-01-05", 10.0), ("C", "2026-03-10", 5.0)]
    )
    customers = pd.DataFrame({"customer_id": ["A", "B", "C", "D"], "created_at": pd.to_datetime(
        ["2025-01-01", "2025-01-01", "2026-03-01", "2026-03-01"], utc=True)})  # fmt: skip
    january = backfill_segments(customers, orders, pd.Timestamp("2026-01-31 23:59:59", tz="UTC"), 0.2)
    assert sorted(january["customer_id"]) == ["A", "B"]  # C and D did not exist yet
    settings = PortfolioSettings()
    snap = snapshot(january.assign(customer_id=january["customer_id"]), pd.Series({"A": 80.0}), orders,
                    pd.Timestamp("2026-01-31 23:59:59", tz="UTC"), settings, kind="backfill")  # fmt: skip
    by_id = snap.set_index("customer_id")
    assert by_id.loc["B", "active_month"] and by_id.loc["B", "revenue_month"] == 10.0
    assert not by_id.loc["A", "active_month"] and by_id.loc["A", "expected_clv"] == 80.0
    assert np.isnan(by_id.loc["B", "expected_clv"])
    assert (snap["month"] == pd.Timestamp(2026, 1, 1)).all() and (snap["month_index"] == 2026 * 12).all()
    cells = portfolio_cell(pd.Series(["key", "key", "ordinary", "ordinary"]), pd.Series([5, 1, 5, 1]),
                           pd.Series([4, 1, 3, 1]), 3.5)  # fmt: skip
    assert cells.tolist() == ["stars", "develop", "maintain", "reconsider"]
    # Backfill only while no month before the as-of month has a snapshot.
    assert len(months_to_backfill(AS_OF, set(), settings)) == 12
    assert months_to_backfill(AS_OF, {2026 * 12 + 2}, settings)[-1] == pd.Timestamp(
        "2026-02-28 23:59:59.999999", tz="UTC"
    )
    assert months_to_backfill(AS_OF, {2026 * 12 + 1}, settings) == []
    assert months_to_backfill(AS_OF, set(), PortfolioSettings(backfill_months=0)) == []


def test_goals_sum_flows_and_take_levels_at_period_end():
    days = pd.date_range("2026-01-01", "2026-03-15")
    kpis = pd.DataFrame({"kpi_date": days, "net_revenue": 100.0, "active_customers": np.arange(len(days), dtype=float),
                         "churn_rate": 0.5})  # fmt: skip
    portfolio = pd.DataFrame({"month": pd.to_datetime(["2026-01-01", "2026-02-01", "2026-03-01"]), "dimension": "total",
                              "customers": [10, 11, 12], "active_customers": [1, 2, 3], "net_revenue": [5.0, 6.0, 7.0],
                              "customer_equity": [100.0, 90.0, 120.0]})  # fmt: skip
    goals = [
        GoalSettings(name="rev", kpi="net_revenue", target=3000, start=dt.date(2026, 1, 1)),
        GoalSettings(name="active", kpi="active_customers", target=50, period="quarter", start=dt.date(2026, 1, 1)),
        GoalSettings(name="churn", kpi="churn_rate", target=0.4, direction="at_most", start=dt.date(2026, 1, 1)),
        GoalSettings(name="equity", kpi="customer_equity", target=95, start=dt.date(2025, 12, 1)),
    ]
    frame = crm_goals(goals, kpis, portfolio, AS_OF).set_index(["goal", "period"])
    assert frame.loc[("rev", "2026-01"), "actual"] == 3100 and frame.loc[("rev", "2026-01"), "met"]
    assert frame.loc[("rev", "2026-02"), "actual"] == 2800 and not frame.loc[("rev", "2026-02"), "met"]
    assert frame.loc[("rev", "2026-02"), "gap"] == -200 and frame.loc[("rev", "2026-02"), "period_complete"]
    assert not frame.loc[("rev", "2026-03"), "period_complete"]
    assert frame.loc[("active", "2026Q1"), "actual"] == len(days) - 1  # the level on the last day seen
    assert not frame.loc[("churn", "2026-01"), "met"]
    assert pd.isna(frame.loc[("equity", "2025-12"), "met"]) and np.isnan(frame.loc[("equity", "2025-12"), "actual"])
    assert frame.loc[("equity", "2026-02"), "actual"] == 90 and not frame.loc[("equity", "2026-02"), "met"]
    with pytest.raises(UnknownKpiError, match="goal 'x': kpi 'revenu'.*net_revenue"):
        crm_goals([GoalSettings(name="x", kpi="revenu", target=1)], kpis, portfolio, AS_OF)


def test_regular_customers_per_day_match_the_definition():
    rng = np.random.default_rng(5)
    ids = [f"C{i}" for i in range(40)]
    rows = [(rng.choice(ids), str(pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(d))), 10.0)
            for d in rng.integers(0, 800, 600)]  # fmt: skip
    orders = _orders(rows)
    customers = pd.DataFrame({"customer_id": ids})
    settings = LoyaltySettings(regular_min_purchases=4, regular_window_days=120)
    dates = pd.Series(pd.date_range("2024-03-01", "2026-03-01", freq="17D"))
    daily = daily_loyalty_kpis(dates, orders, customers, {"C1", "C2", "nobody"}, settings)
    for i in range(0, len(dates), 5):
        as_of = pd.Timestamp(dates[i]).tz_localize("UTC") + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
        assert daily["regular_customers"].iloc[i] == regular_customers(customers, orders, as_of, settings).sum()
    assert (daily["loyalty_members"] == 2).all()


def test_loyalty_members_are_found_in_the_warehouse(warehouse_url):
    wh = Warehouse(warehouse_url)
    identifiers = pd.DataFrame({"source": ["crm", "shop", "shop", "crm"], "source_record_id": ["1", "7", "8", "2"],
                                "identifier_type": ["loyalty_card", "loyalty_card", "tax_id", "loyalty_card"],
                                "identifier_value": ["L1", "L1", "T9", None]})  # fmt: skip
    identity_map = pd.DataFrame({"source": ["crm", "shop", "shop", "crm"], "source_record_id": ["1", "7", "8", "2"],
                                 "customer_id": ["A", "A", "B", "C"]})  # fmt: skip
    wh.write_table(identifiers, "staging", "customer_identifiers", mode="replace")
    wh.write_table(identity_map, "core", "customer_identity_map", mode="replace")
    query = loyalty_members_query(
        wh.table("staging", "customer_identifiers", list(identifiers.columns)),
        wh.table("core", "customer_identity_map", list(identity_map.columns)),
        LoyaltySettings(),
    )
    assert sorted(wh.query(query)["customer_id"]) == ["A"]
