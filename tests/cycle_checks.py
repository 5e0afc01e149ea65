"""Checks of the verification marts after a nightly run on demo data (used by the end-to-end tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from crm_pipelines.schema import MARTS
from crm_pipelines.warehouse import Warehouse


def assert_cycle_marts(wh: Warehouse, demo_data: Path) -> dict[str, pd.DataFrame]:
    """The demo campaign's interval covers the generator's true uplift; portfolio, migrations, goals and
    loyalty columns are filled; control customers of a measured campaign are not exported."""
    truth = json.loads((demo_data / "campaign_truth.json").read_text())
    perf = wh.read_table(MARTS, "campaign_performance")
    demo = perf[(perf["campaign"] == "winback_demo") & (perf["metric"] == "purchase") & (perf["subgroup"] == "all")]
    assert len(demo) == 1, perf
    row = demo.iloc[0]
    assert row["window_complete"]
    # Identity resolution may merge or miss a few people, so the group sizes are close, not equal.
    assert abs(row["customers_treatment"] - truth["customers_treatment"]) <= 0.05 * truth["customers_treatment"] + 2
    assert abs(row["customers_control"] - truth["customers_control"]) <= 0.05 * truth["customers_control"] + 2
    assert row["uplift_absolute_low"] <= truth["true_uplift_absolute"] <= row["uplift_absolute_high"], (row, truth)
    assert set(perf.loc[perf["campaign"] == "winback_demo", "subgroup"]) == {"all", "loyalty_member", "non_member"}

    assignments = wh.read_table(MARTS, "campaign_assignments")
    program = assignments[assignments["campaign"] == "at_risk_program"]
    assert len(program) > 0 and set(program["campaign_group"]) <= {"treatment", "control"}
    audiences = wh.read_table(MARTS, "marketing_audiences")
    assert not set(audiences["customer_id"]) & set(program.loc[program["campaign_group"] == "control", "customer_id"])
    treated = audiences[audiences["audience_group"] == "campaign"]
    assert set(treated["customer_id"]) <= set(program.loc[program["campaign_group"] == "treatment", "customer_id"])
    assert len(treated) > 0 and (treated["campaign_group"] == "treatment").all()

    portfolio = wh.read_table(MARTS, "customer_portfolio")
    totals = portfolio[portfolio["dimension"] == "total"].sort_values("month")
    assert len(totals) == 13 and totals["customer_equity"].notna().all()  # 12 backfilled months and this one
    assert totals["equity_change"].iloc[1:].notna().all()
    migrations = wh.read_table(MARTS, "segment_migrations")
    assert set(migrations["dimension"]) == {"rfm_segment", "value_tier"} and migrations["moved"].any()
    goals = wh.read_table(MARTS, "crm_goals")
    assert set(goals["goal"]) >= {"monthly_revenue", "customer_equity"} and goals["actual"].notna().any()
    c360 = wh.read_table(MARTS, "customer_360", columns=["loyalty_member", "regular_customer"])
    assert c360["loyalty_member"].any() and c360["regular_customer"].any()
    kpis = wh.read_table(MARTS, "crm_kpis", columns=["loyalty_members", "regular_customers"])
    assert (kpis["loyalty_members"] > 0).all()
    return {"assignments": assignments, "history": wh.read_table(MARTS, "customer_segment_history")}
