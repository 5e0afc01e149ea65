"""marts.customer_360 built in the warehouse (one CREATE TABLE ... AS) equals the mart published through
pandas (the query read back, the loyalty flags joined, the frame written with its declared types):
same columns, same types, same values, on DuckDB and PostgreSQL."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from factories import write_identity_records
from facts_support import AS_OF, core_frames_with_edges, load_and_build

from crm_pipelines.analytics.cycle_settings import LoyaltySettings
from crm_pipelines.analytics.mart_boundary import CUSTOMER_360_EXTRAS, MART_RENAMES, customer_360_columns, to_mart_frame
from crm_pipelines.assets.cycle_glue import loyalty_frame
from crm_pipelines.facts.customer360 import customer_360_mart_select, customer_360_select
from crm_pipelines.facts.sql import compiled
from crm_pipelines.schema import MARTS

LOYALTY = LoyaltySettings(regular_min_purchases=2, regular_window_days=365)


def _per_customer_marts(wh, customers: pd.DataFrame) -> None:
    """The marts the 360 joins, typed as published; some customers missing (nulls in integer columns)."""
    ids = customers["customer_id"].astype("str")
    n = len(ids)
    segments = pd.DataFrame({
        "customer_id": ids.iloc[::2].to_numpy(),
        "r_score": np.arange(n)[::2] % 5 + 1,
        "rfm_segment": "Champions",
        "bought_add_on": np.arange(n)[::2] % 3 == 0,
        "cluster_id": np.arange(n)[::2] % 4,
        "purchases": 99,  # restates the 360's own figure: left out
    })  # fmt: skip
    clv = pd.DataFrame({
        "customer_id": ids.to_numpy(),
        "probability_alive": np.where(np.arange(n) % 7 == 0, np.nan, 0.5),
        "clv_12m": np.linspace(0, 500, n),
        "customer_age_weeks": 10.0,  # left out
    })  # fmt: skip
    churn = pd.DataFrame({"customer_id": ids.iloc[1::3].to_numpy(), "churn_probability": 0.25, "risk_decile": 3})
    types = {"r_score": "integer", "cluster_id": "integer", "risk_decile": "integer", "purchases": "integer"}
    for table, frame in (("customer_segments", segments), ("customer_lifetime_value", clv), ("churn_risk", churn)):
        wh.write_table(frame, MARTS, table, column_types={k: v for k, v in types.items() if k in frame})


def _identities(wh, customers: pd.DataFrame) -> None:
    """Two source records per customer for the first 60; every third holds a loyalty card."""
    ids = customers["customer_id"].astype("str").iloc[:60].tolist()
    records = [(f"r{i}-{k}", cid) for i, cid in enumerate(ids) for k in range(2)]
    write_identity_records(wh, records, [i % 3 == 0 for i in range(len(records))])


def _column_types(wh, table: str) -> list[tuple[str, str]]:
    frame = wh.query(
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = '{MARTS}' AND table_name = '{table}' ORDER BY ordinal_position"
    )
    return list(frame.itertuples(index=False, name=None))


def _through_pandas(wh, extras, columns) -> None:
    """Today's reference: the query read into pandas, the loyalty flags joined, the frame published."""
    view = wh.query(customer_360_select(wh, AS_OF, extras))
    flags = loyalty_frame(wh, SimpleNamespace(loyalty=LOYALTY), view[["customer_id"]], AS_OF)
    frame = to_mart_frame("customer_360", view.merge(flags, on="customer_id", how="left"), columns)
    types = {c.name: c.dtype for c in columns if c.name in frame.columns}
    wh.write_table(frame, MARTS, "c360_pandas", mode="replace", column_types=types)


def _in_warehouse(wh, extras, columns) -> None:
    statement = customer_360_mart_select(wh, AS_OF, extras, LOYALTY, columns, MART_RENAMES["customer_360"])
    wh.drop_table(MARTS, "c360_sql")
    wh.execute(f"CREATE TABLE {wh.qualified(MARTS, 'c360_sql')} AS {compiled(wh, statement)}")


def _sorted(wh, table: str) -> pd.DataFrame:
    return wh.read_table(MARTS, table).sort_values("customer_id").reset_index(drop=True)


@pytest.mark.parametrize("with_identities", [True, False])
def test_customer_360_in_the_warehouse_equals_the_pandas_mart(warehouse, with_identities):
    frames = core_frames_with_edges()
    wh = load_and_build(warehouse, frames)
    _per_customer_marts(wh, frames["customers"])
    if with_identities:
        _identities(wh, frames["customers"])
    extras = [(t, drop) for t, drop in CUSTOMER_360_EXTRAS if wh.table_exists(MARTS, t)]
    columns = customer_360_columns()
    _through_pandas(wh, extras, columns)
    _in_warehouse(wh, extras, columns)

    assert _column_types(wh, "c360_sql") == _column_types(wh, "c360_pandas")
    expected, actual = _sorted(wh, "c360_pandas"), _sorted(wh, "c360_sql")
    pd.testing.assert_frame_equal(actual, expected)
    # The data exercises what the query must get right: flags both ways, nulls from the joined marts.
    assert actual["regular_customer"].any() and not actual["regular_customer"].all()
    assert actual["loyalty_member"].any() == with_identities
    assert actual["r_score"].isna().any() and actual["probability_alive"].isna().any()


def test_customer_360_in_the_warehouse_without_extras(warehouse):
    wh = load_and_build(warehouse, core_frames_with_edges())
    columns = customer_360_columns()
    _through_pandas(wh, [], columns)
    _in_warehouse(wh, [], columns)
    assert _column_types(wh, "c360_sql") == _column_types(wh, "c360_pandas")
    pd.testing.assert_frame_equal(_sorted(wh, "c360_sql"), _sorted(wh, "c360_pandas"))
