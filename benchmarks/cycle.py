"""Speed of the verification marts' logic at scale, on synthetic customers and orders.

    flock /tmp/crm-heavy.lock python benchmarks/cycle.py [--customers 1000000] [--months 13]

Reports the wall time of: the campaign group hash for every customer; campaign_performance for a
campaign enrolling a fifth of them (purchase and revenue uplift); a monthly snapshot; writing
``--months`` monthly snapshots to DuckDB and the portfolio and migration SQL over them; the daily
regular-customer count over a year.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crm_pipelines.analytics.activity import core_frame  # noqa: E402
from crm_pipelines.analytics.campaign_performance import campaign_performance  # noqa: E402
from crm_pipelines.analytics.campaigns import assign_groups  # noqa: E402
from crm_pipelines.analytics.cycle_columns import SEGMENT_HISTORY_COLUMNS  # noqa: E402
from crm_pipelines.analytics.cycle_settings import CampaignSettings, LoyaltySettings, PortfolioSettings  # noqa: E402
from crm_pipelines.analytics.loyalty import daily_loyalty_kpis  # noqa: E402
from crm_pipelines.analytics.portfolio import (  # noqa: E402
    HISTORY_COLUMNS,
    customer_portfolio,
    migrations_query,
    portfolio_query,
    segment_migrations,
    snapshot,
)
from crm_pipelines.warehouse import Warehouse  # noqa: E402

AS_OF = pd.Timestamp("2026-06-30 23:59:59", tz="UTC")


def timed(label: str, fn):
    started = time.perf_counter()
    result = fn()
    print(f"{label:<58} {time.perf_counter() - started:>8.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=13)
    args = parser.parse_args()
    n = args.customers
    rng = np.random.default_rng(0)
    ids = pd.array([f"C{i:09d}" for i in range(n)], dtype="str")
    orders_n = 3 * n
    orders = core_frame("orders").reindex(range(orders_n))
    orders = orders.assign(
        order_id=pd.array([f"O{i}" for i in range(orders_n)], dtype="str"),
        customer_id=ids[rng.integers(0, n, orders_n)],
        ordered_at=AS_OF - pd.to_timedelta(rng.integers(0, 730 * 86_400, orders_n), unit="s"),
        status=pd.array(np.where(rng.random(orders_n) < 0.93, "completed", "cancelled"), dtype="str"),
        total_amount_reporting=rng.gamma(2, 40, orders_n),
        is_refund=False,
    )
    print(f"{n:,} customers, {orders_n:,} orders")

    timed("campaign groups (SHA-256 hash) for every customer", lambda: assign_groups("spring", ids, 0.1))
    enrolled = ids[rng.random(n) < 0.2]
    assignments = pd.DataFrame(
        {
            "campaign": "spring",
            "customer_id": enrolled,
            "campaign_group": assign_groups("spring", enrolled, 0.1),
            "enrolled_at": AS_OF - pd.Timedelta(days=60),
            "assigned_by": "hash",
            "loyalty_member": rng.random(len(enrolled)) < 0.3,
        }
    )
    campaign = CampaignSettings(name="spring", source_campaign_id="X", loyalty_comparison=True)
    timed(
        f"campaign_performance ({len(enrolled):,} enrolled, 3 subgroups)",
        lambda: campaign_performance([campaign], assignments, orders, AS_OF),
    )
    segments = pd.DataFrame(
        {
            "customer_id": ids,
            "rfm_segment": rng.choice(["Champions", "At Risk", "Lost", "Promising"], n),
            "value_tier": rng.choice(["key", "potential", "ordinary"], n),
            "r_score": rng.integers(1, 6, n),
            "f_score": rng.integers(1, 6, n),
        }
    )
    clv = pd.Series(rng.gamma(2, 50, n), index=ids)
    snap = timed("monthly snapshot", lambda: snapshot(segments, clv, orders, AS_OF, PortfolioSettings()))
    with tempfile.TemporaryDirectory() as tmp:
        wh = Warehouse(f"duckdb:///{tmp}/bench.duckdb")
        types = {c.name: c.dtype for c in SEGMENT_HISTORY_COLUMNS}

        def write_months() -> None:
            for k in range(args.months):
                month = snap.assign(month_index=snap["month_index"] - k, month=snap["month"] - pd.DateOffset(months=k))
                moved = rng.random(n) < 0.1
                month.loc[moved, "rfm_segment"] = "At Risk"
                wh.write_table(month, "marts", "customer_segment_history", mode="append", column_types=types)

        timed(f"write {args.months} monthly snapshots ({args.months * n:,} rows)", write_months)
        table = wh.table("marts", "customer_segment_history", list(HISTORY_COLUMNS))
        timed(
            "customer_portfolio (SQL + change per month)",
            lambda: customer_portfolio(wh.query(portfolio_query(table)), AS_OF),
        )
        timed(
            "segment_migrations (SQL self-join)",
            lambda: segment_migrations(wh.query(migrations_query(table))),
        )
        wh.dispose()
    dates = pd.Series(pd.date_range("2025-07-01", "2026-06-30"))
    timed(
        "regular customers per day over a year",
        lambda: daily_loyalty_kpis(dates, orders, segments[["customer_id"]], set(ids[:1000]), LoyaltySettings()),
    )
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2:.2f} GB")


if __name__ == "__main__":
    main()
