"""Golden records computed in ranges of customers equal the golden records computed in one pass."""

import numpy as np
import pandas as pd
import pytest

from crm_pipelines.identity.engine import duckdb_session, register_frame
from crm_pipelines.identity.golden import build_golden_records
from crm_pipelines.identity.prepare import load_records
from crm_pipelines.identity.settings import IdentitySettings
from crm_pipelines.identity.synthetic import synthetic_customers

SETTINGS = IdentitySettings()
PRIORITY = {"crm": 10, "shop": 20}
FIELD_PRIORITY = {"email": ["shop"], "address_line1": ["shop", "crm"]}


def _golden(customers: pd.DataFrame, customer_of: np.ndarray, chunk_records: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    with duckdb_session(SETTINGS) as con:
        records = load_records(con, customers, PRIORITY)
        ids = pd.DataFrame({"unique_id": np.arange(records, dtype=np.int64), "customer_id": customer_of[:records]})
        register_frame(con, "assignments", ids)
        return build_golden_records(con, "assignments", FIELD_PRIORITY, chunk_records=chunk_records)


@pytest.mark.parametrize("chunk_records", [1, 7, 250])
def test_golden_records_in_ranges_equal_one_pass(chunk_records: int):
    customers = synthetic_customers(400, seed=3).customers
    rng = np.random.default_rng(5)
    # Customers of one record up to a few dozen (a range never splits one), ids in no particular order.
    sizes = np.minimum(rng.geometric(0.35, len(customers)), 40)
    sizes[:3] = 40
    owner = np.repeat(np.arange(len(sizes)), sizes)[: len(customers)]
    customer_of = np.array([f"C-{h:012x}" for h in rng.permutation(len(sizes))[owner]], dtype=object)

    whole_unified, whole_lineage = _golden(customers, customer_of, chunk_records=10**9)
    unified, lineage = _golden(customers, customer_of, chunk_records=chunk_records)

    assert whole_unified["customer_id"].nunique() > 100 and len(whole_lineage) > len(whole_unified)
    pd.testing.assert_frame_equal(unified, whole_unified)
    pd.testing.assert_frame_equal(lineage, whole_lineage)
    assert whole_unified["customer_id"].is_monotonic_increasing


def test_golden_records_of_no_records_in_ranges():
    customers = synthetic_customers(5, seed=1).customers.iloc[:0]
    unified, lineage = _golden(customers, np.array([], dtype=object), chunk_records=1)
    assert unified.empty and lineage.empty
    assert list(lineage.columns) == ["customer_id", "field", "source", "source_record_id"]
    assert "record_count" in unified.columns


def test_ties_fall_to_the_source_then_the_record_id_and_unknown_update_times_last():
    """The record order each field's choice follows, past the listed sources: priority, the latest
    update (an unknown one last), then source and record id (the ranks numbered once per run)."""

    def record(source: str, record_id: str, updated: str | None, **fields) -> dict:
        keys = {"source": source, "source_record_id": record_id, "updated_at": updated, "record_kind": "record"}
        return keys | fields

    customers = pd.DataFrame(
        [
            record("shop", "b", "2024-01-01", first_name="Shop-b", email="b@shop.de", phone="1"),
            record("shop", "a", "2024-01-01", first_name="Shop-a", email="a@shop.de"),
            record("web", "z", None, first_name="Web-z", email="z@web.de", phone="3", city="Köln"),
            record("crm", "1", None, first_name="Crm-1", city="Bonn"),
            record("crm", "2", "2020-01-01", last_name="Crm-2", phone="2"),
            record("shop", "0", None, first_name="Shop-0", phone="9"),
        ]
    )
    with duckdb_session(SETTINGS) as con:
        records = load_records(con, customers, {"crm": 10, "shop": 20, "web": 20})
        register_frame(con, "assignments", pd.DataFrame({"unique_id": np.arange(records), "customer_id": "C1"}))
        unified, lineage = build_golden_records(con, "assignments", {"email": ["web"]})
    chosen = lineage.set_index("field")["source_record_id"]
    assert unified.loc[0, "first_name"] == "Crm-1" and chosen["first_name"] == "1"
    assert unified.loc[0, "last_name"] == "Crm-2"
    assert unified.loc[0, "phone"] == "2"  # crm before shop and web
    assert unified.loc[0, "city"] == "Bonn"  # crm's undated record before web's
    assert unified.loc[0, "email"] == "z@web.de"  # the listed source first, though never updated
    # Among equal priority and update time, the source then the record id: shop a before shop b.
    with duckdb_session(SETTINGS) as con:
        records = load_records(con, customers[customers["source"] == "shop"], {"shop": 20})
        register_frame(con, "assignments", pd.DataFrame({"unique_id": np.arange(records), "customer_id": "C1"}))
        unified, lineage = build_golden_records(con, "assignments", {})
    # ...and an unknown update time after every known one: shop 0 comes last, though its id is first.
    assert unified.loc[0, "first_name"] == "Shop-a" and unified.loc[0, "phone"] == "1"
