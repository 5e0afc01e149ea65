"""The loyalty columns of customer_360 and crm_kpis (``assets.cycle_glue``) answer as the set-based
definitions: a customer is a member when her id is among the members' ids, and crm_kpis counts the
distinct members that are unified customers. On DuckDB and PostgreSQL."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
from factories import write_identity_records
from facts_support import AS_OF, core_frames_with_edges, load_and_build

from crm_pipelines.analytics.cycle_settings import LoyaltySettings
from crm_pipelines.assets.cycle_glue import loyalty_frame, loyalty_member_ids, loyalty_members, with_loyalty_kpis
from crm_pipelines.facts.activity import regular_customers_select
from crm_pipelines.schema import CORE

CONFIG = SimpleNamespace(loyalty=LoyaltySettings(regular_min_purchases=2, regular_window_days=365))


def _identities(wh, customer_ids: list[str]) -> None:
    """Two records for each of the first 30 customers, a card on every third record (some without a
    value), and one card whose customer is not (or no longer) a unified customer."""
    records = [(f"r{i}-{k}", cid) for i, cid in enumerate(customer_ids[:30]) for k in range(2)]
    records.append(("r-gone", "no-longer-a-customer"))
    write_identity_records(wh, records, [i % 3 == 0 or r == "r-gone" for i, (r, _) in enumerate(records)])


def test_loyalty_columns_equal_the_set_definitions(warehouse):
    frames = core_frames_with_edges()
    wh = load_and_build(warehouse, frames)
    customers = wh.read_table(CORE, "unified_customers", columns=["customer_id"])
    ids = customers["customer_id"].astype("str")

    assert loyalty_member_ids(wh, CONFIG).empty and loyalty_members(wh, CONFIG) == set()
    before = loyalty_frame(wh, CONFIG, customers, AS_OF)
    assert not before["loyalty_member"].any()

    _identities(wh, ids.tolist())
    members = loyalty_members(wh, CONFIG)
    assert sorted(loyalty_member_ids(wh, CONFIG)) == sorted(members)
    assert "no-longer-a-customer" in members

    regular = set(wh.query(regular_customers_select(wh, AS_OF, 365, 2))["customer_id"].astype("str"))
    flags = loyalty_frame(wh, CONFIG, customers, AS_OF)
    assert flags["customer_id"].tolist() == ids.tolist()
    assert flags["loyalty_member"].tolist() == [i in members for i in ids]
    assert flags["regular_customer"].tolist() == [i in regular for i in ids]
    assert flags["loyalty_member"].any() and not flags["loyalty_member"].all()
    assert flags["regular_customer"].any() and not flags["regular_customer"].all()

    kpis = pd.DataFrame({"date": pd.to_datetime(["2025-06-29", "2025-06-30"]), "orders": [1, 2]})
    daily = with_loyalty_kpis(wh, CONFIG, kpis)
    assert (daily["loyalty_members"] == len(members & set(ids))).all()
    assert 0 < len(members & set(ids)) < len(members)
    assert with_loyalty_kpis(wh, CONFIG, kpis.iloc[:0])["loyalty_members"].dtype == "int64"
