"""Values that cannot be right, duplicate keys within one delivery, and records a source deleted.

Pure staging (no warehouse): every raw row must end staged, quarantined, superseded or deleted.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_pipelines.config import ConfigError, CrmConfig, config_from_dict
from crm_pipelines.staging.rejections import FIELD_NULLED
from crm_pipelines.staging.stage import StagingResult, stage_entity

AS_OF_END = dt.datetime(2024, 6, 30, 23, 59, 59, tzinfo=dt.UTC)
INGESTED = pd.Timestamp("2024-07-01 01:00", tz="UTC")

CONFIG = """
fx_rates: {EUR: 1.0, USD: 0.5, JPY: 0.006}
sources:
  - name: shop
    connector: {type: csv}
    entities:
      customers:
        path: c.csv
        columns: {source_record_id: id, email: email, first_name: first, updated_at: changed}
        identifiers: {loyalty_card: card}
        deleted_column: is_deleted
      orders:
        path: o.csv
        columns: {order_id: id, source_customer_id: customer, ordered_at: at, status: status,
                  currency: cur, total_amount: total}
        incremental: {mode: cursor, column: modified}
        deleted_flag: {column: state, values: [Deleted, purged]}
      order_items:
        path: i.csv
        columns: {order_id: order, product_id: sku, quantity: qty, unit_price: price}
  - name: mail
    connector: {type: csv}
    entities:
      subscriptions:
        path: s.csv
        columns: {subscription_id: id, email: email, list_name: list, consent_status: consent, consent_at: at}
"""


@pytest.fixture(scope="module")
def config() -> CrmConfig:
    return config_from_dict(yaml.safe_load(CONFIG))


def raw(rows: list[dict[str, Any]], source: str, batch: str = "b1", ingested: Any = INGESTED) -> pd.DataFrame:
    frame = pd.DataFrame(rows).astype("str")
    frame["_source"], frame["_ingested_at"], frame["_batch_id"], frame["_partition_date"] = (
        source, ingested, batch, None,
    )
    return frame


def stage(
    config: CrmConfig, entity: str, source: str, *frames: pd.DataFrame, previous: pd.DataFrame | None = None
) -> StagingResult:
    frame = pd.concat(frames, ignore_index=True)
    result = stage_entity(
        config, entity, [(config.source(source), frame)], run_id="r", as_of_end=AS_OF_END, previous=previous
    )
    assert_reconciles(result)
    return result


def assert_reconciles(result: StagingResult) -> None:
    recon = result.reconciliation
    counted = recon["rows_out"] + recon["rows_quarantined"] + recon["rows_superseded"] + recon["rows_deleted"]
    assert (recon["rows_in"] == counted).all() and recon["reconciles"].all()
    rows_quarantined = ~result.quarantined["reason"].str.endswith(FIELD_NULLED)
    assert recon["rows_quarantined"].sum() == rows_quarantined.sum()


def order(**values: Any) -> dict[str, Any]:
    return {"id": "o1", "customer": "c1", "at": "2024-03-01T10:00:00Z", "status": "completed", "cur": "EUR",
            "total": "10.00", "modified": "2024-03-01T10:00:00Z", "state": "open", **values}


def customer(**values: Any) -> dict[str, Any]:
    return {"id": "c1", "email": "anna@example.com", "first": "Anna", "changed": "2024-01-01T00:00:00Z",
            "card": None, "is_deleted": None, **values}


def subscription(**values: Any) -> dict[str, Any]:
    return {"id": "s1", "email": "kim@example.com", "list": "news", "consent": "granted",
            "at": "2024-02-01T00:00:00Z", **values}


def counts(result: StagingResult) -> list[int]:
    row = result.reconciliation.iloc[0]
    return [int(row[c]) for c in ("rows_in", "rows_out", "rows_quarantined", "rows_superseded", "rows_deleted")]


# -- amounts above the ceiling ------------------------------------------------------------------
def test_an_order_of_1e12_is_quarantined_with_its_reason(config: CrmConfig) -> None:
    rows = [order(id="o1", total="1e12"), order(id="o2", total="999999"), order(id="o3", total="-2e6",
            status="refunded"), order(id="o4", total="1500000", cur="USD")]
    result = stage(config, "orders", "shop", raw(rows, "shop"))
    assert result.staged["order_id"].tolist() == ["o2", "o4"]  # 1.5M USD is 750k EUR
    rejected = result.quarantined.set_index("record_id")
    assert rejected["rule"].to_dict() == {"o1": "implausible_amount", "o3": "implausible_amount"}
    assert rejected.loc["o1", "column_name"] == "total_amount"
    reason = rejected.loc["o1", "reason"]
    assert "1e12" in reason and "1,000,000,000,000 EUR" in reason and "checks.max_order_amount" in reason
    assert counts(result) == [4, 2, 2, 0, 0]


def test_the_ceiling_is_configurable_and_must_be_positive(config: CrmConfig) -> None:
    data = yaml.safe_load(CONFIG)
    data["checks"] = {"max_order_amount": 50}
    low = config_from_dict(data)
    result = stage(low, "orders", "shop", raw([order(id="o1", total="60"), order(id="o2", total="40")], "shop"))
    assert result.staged["order_id"].tolist() == ["o2"]
    data["checks"] = {"max_order_amount": 0}
    with pytest.raises(ConfigError, match="max_order_amount"):
        config_from_dict(data)


def test_order_lines_above_the_ceiling_in_the_weakest_currency_are_quarantined(config: CrmConfig) -> None:
    # The weakest rate is JPY at 0.006: a line may be worth up to 1e6 / 0.006 = 166,666,667 units.
    rows = [{"order": "o1", "sku": "p1", "qty": "1", "price": "1e12"},
            {"order": "o1", "sku": "p2", "qty": "1000", "price": "150000"},
            {"order": "o1", "sku": "p3", "qty": "1000", "price": "200000"}]
    result = stage(config, "order_items", "shop", raw(rows, "shop"))
    assert result.staged["product_id"].tolist() == ["p2"]
    rejected = result.quarantined.set_index("record_id")
    assert set(rejected["rule"]) == {"implausible_amount"}
    assert "times quantity 1000 is 200,000,000" in rejected.loc["o1:p3", "reason"]


# -- duplicate keys within one delivery ---------------------------------------------------------
def test_identical_duplicates_are_counted_not_quarantined(config: CrmConfig) -> None:
    rows = [subscription(), subscription(), subscription(id="s2")]
    result = stage(config, "subscriptions", "mail", raw(rows, "mail"))
    assert sorted(result.staged["subscription_id"]) == ["s1", "s2"]
    assert result.quarantined.empty
    assert counts(result) == [3, 2, 0, 1, 0]
    assert result.summary["identical_repeats"] == 1


def test_conflicting_duplicates_in_one_delivery_are_all_quarantined(config: CrmConfig) -> None:
    rows = [subscription(consent="granted"), subscription(consent="withdrawn"), subscription(consent="granted"),
            subscription(id="s2")]
    result = stage(config, "subscriptions", "mail", raw(rows, "mail"))
    assert result.staged["subscription_id"].tolist() == ["s2"]
    rejected = result.quarantined
    assert rejected["rule"].tolist() == ["duplicate_key_conflict"] * 3
    assert rejected["record_id"].tolist() == ["s1"] * 3
    reason = rejected["reason"].iloc[0]
    assert "subscription_id 's1' comes 3 times in one delivery" in reason and "consent_status" in reason
    assert "list_name" not in reason
    assert counts(result) == [4, 1, 3, 0, 0]
    assert result.summary["quarantined_by_rule"] == {"duplicate_key_conflict": 3}


def test_a_later_delivery_supersedes_without_conflict(config: CrmConfig) -> None:
    first = raw([subscription(consent="granted")], "mail", "b1", INGESTED)
    second = raw([subscription(consent="withdrawn")], "mail", "b2", INGESTED + pd.Timedelta(days=1))
    result = stage(config, "subscriptions", "mail", second, first)
    assert result.staged["consent_status"].tolist() == ["unsubscribed"]
    assert counts(result) == [2, 1, 0, 1, 0]


def test_a_conflict_in_the_latest_delivery_does_not_fall_back_to_an_older_one(config: CrmConfig) -> None:
    first = raw([subscription(consent="granted")], "mail", "b1", INGESTED)
    second = raw([subscription(consent="granted"), subscription(consent="withdrawn")], "mail", "b2",
                 INGESTED + pd.Timedelta(days=1))
    result = stage(config, "subscriptions", "mail", first, second)
    assert result.staged.empty
    assert counts(result) == [3, 0, 2, 1, 0]


def test_an_update_time_orders_versions_within_one_delivery(config: CrmConfig) -> None:
    rows = [customer(first="Anna", changed="2024-01-02T00:00:00Z"), customer(first="Anne", changed="2024-01-03"),
            customer(id="c2", first="Ben", changed="2024-01-01"),
            customer(id="c2", first="Benno", changed="2024-01-01")]
    result = stage(config, "customers", "shop", raw(rows, "shop"))
    assert result.staged.set_index("source_record_id")["first_name"].to_dict() == {"c1": "Anne"}
    assert result.quarantined["record_id"].tolist() == ["c2", "c2"]  # same update time: a conflict
    assert "updated_at does not single out the newest" in result.quarantined["reason"].iloc[0]
    assert counts(result) == [4, 1, 2, 1, 0]


def test_a_cursor_column_orders_versions_within_one_delivery(config: CrmConfig) -> None:
    rows = [order(total="5", modified="2024-03-02T00:00:00Z"), order(total="7", modified="2024-03-01T00:00:00Z")]
    result = stage(config, "orders", "shop", raw(rows, "shop"))
    assert result.staged["total_amount"].tolist() == [5.0]
    assert counts(result) == [2, 1, 0, 1, 0]


def test_a_differing_identifier_is_a_conflict(config: CrmConfig) -> None:
    rows = [customer(card="A1", changed="2024-01-01"), customer(card="B2", changed="2024-01-01")]
    result = stage(config, "customers", "shop", raw(rows, "shop"))
    assert result.staged.empty
    assert "card" in result.quarantined["reason"].iloc[0]


# -- deleted marks ------------------------------------------------------------------------------
def test_a_deleted_flag_removes_the_record_and_counts_its_row(config: CrmConfig) -> None:
    first = raw([order(id="o1"), order(id="o2")], "shop", "b1", INGESTED)
    second = raw([order(id="o1", state="DELETED", total=None, modified="2024-03-05T00:00:00Z")], "shop", "b2",
                 INGESTED + pd.Timedelta(days=1))
    previous = pd.DataFrame({"source": ["shop", "shop"], "order_id": ["o1", "o2"]})
    result = stage(config, "orders", "shop", first, second, previous=previous)
    assert result.staged["order_id"].tolist() == ["o2"]
    assert counts(result) == [3, 1, 0, 1, 1]  # the tombstone needs no total: it is not staged
    assert result.deletes[["source", "entity", "record_id", "kind"]].values.tolist() == [
        ["shop", "orders", "o1", "flagged_deleted"]
    ]
    assert result.summary["rows_deleted"] == 1
    assert result.summary["records_removed"] == {"flagged_deleted": 1}


def test_a_record_recreated_after_its_delete_is_staged_again(config: CrmConfig) -> None:
    first = raw([order(state="deleted")], "shop", "b1", INGESTED)
    second = raw([order(state="open")], "shop", "b2", INGESTED + pd.Timedelta(days=1))
    result = stage(config, "orders", "shop", first, second)
    assert result.staged["order_id"].tolist() == ["o1"]
    assert counts(result) == [2, 1, 0, 1, 0]


@pytest.mark.parametrize(
    ("value", "verdict"),
    [("true", "deleted"), ("1", "deleted"), ("2024-05-01 10:00", "deleted"), ("no", "staged"), ("", "staged"),
     ("maybe", "quarantined")],
)
def test_deleted_column_values(config: CrmConfig, value: str, verdict: str) -> None:
    result = stage(config, "customers", "shop", raw([customer(is_deleted=value)], "shop"))
    outcome = {(1, 0, 0): "staged", (0, 1, 0): "quarantined", (0, 0, 1): "deleted"}
    recon = result.reconciliation.iloc[0]
    assert outcome[(recon["rows_out"], recon["rows_quarantined"], recon["rows_deleted"])] == verdict
    if verdict == "quarantined":
        row = result.quarantined.iloc[0]
        assert (row["rule"], row["column_name"]) == ("invalid_deleted_mark", "is_deleted")
        assert "'maybe' is neither yes/no nor a time" in row["reason"]


def test_a_record_missing_from_the_delivery_is_recorded_as_deleted(config: CrmConfig) -> None:
    previous = pd.DataFrame({"source": ["mail", "mail", "mail", "other"], "subscription_id": ["s1", "s2", "s3", "s9"]})
    rows = [subscription(id="s1"), subscription(id="s3", email="bad@")]  # s3 is still delivered (quarantined)
    result = stage(config, "subscriptions", "mail", raw(rows, "mail"), previous=previous)
    assert result.staged["subscription_id"].tolist() == ["s1"]
    deletes = result.deletes
    assert deletes[["source", "record_id", "kind"]].values.tolist() == [["mail", "s2", "missing_from_delivery"]]
    assert "no longer in source 'mail'" in deletes["reason"].iloc[0]
    assert deletes["run_id"].tolist() == ["r"]


def test_no_previous_run_means_no_deletes(config: CrmConfig) -> None:
    result = stage(config, "subscriptions", "mail", raw([subscription()], "mail"))
    assert result.deletes.empty and list(result.deletes.columns)[:3] == ["run_id", "recorded_at", "entity"]


def test_delete_markers_are_validated(config: CrmConfig) -> None:
    data = yaml.safe_load(CONFIG)
    data["sources"][0]["entities"]["customers"]["deleted_flag"] = {"column": "state", "values": ["x"]}
    with pytest.raises(ConfigError, match="deleted_column or deleted_flag, not both"):
        config_from_dict(data)
    data["sources"][0]["entities"]["customers"].pop("deleted_column")
    data["sources"][0]["entities"]["customers"]["deleted_flag"] = {"column": "state", "values": []}
    with pytest.raises(ConfigError, match="deleted_flag.values"):
        config_from_dict(data)


# -- every row accounted for, on deliveries nobody wrote by hand ---------------------------------
ROW = st.tuples(
    st.sampled_from(["o1", "o2", "o3"]),
    st.sampled_from(["b1", "b2"]),
    st.sampled_from(["5", "7"]),
    st.sampled_from(["open", "deleted"]),
    st.sampled_from(["2024-03-01T00:00:00Z", "2024-03-02T00:00:00Z"]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(ROW, max_size=10))
def test_every_row_is_staged_quarantined_superseded_or_deleted_once(config: CrmConfig, rows: list[tuple]) -> None:
    frames = [
        raw([order(id=i, total=t, state=s, modified=m)], "shop", b, INGESTED + pd.Timedelta(hours=int(b[1:])))
        for i, b, t, s, m in rows
    ]
    frame = pd.concat(frames, ignore_index=True) if frames else raw([order()], "shop").iloc[:0]
    result = stage(config, "orders", "shop", frame)
    staged = result.staged.set_index("order_id")
    assert staged.index.is_unique
    delivered = pd.DataFrame(rows, columns=["id", "batch", "total", "state", "modified"])
    for record, versions in delivered.groupby("id"):
        latest = versions[versions["batch"] == versions["batch"].max()].drop_duplicates()
        newest = latest[latest["modified"] == latest["modified"].max()]
        if len(newest) > 1:  # rows that differ with nothing to order them
            assert record not in staged.index
            assert (result.quarantined.set_index("record_id").loc[[record], "rule"] == "duplicate_key_conflict").all()
        elif newest["state"].iloc[0] == "deleted":
            assert record not in staged.index and record not in set(result.quarantined["record_id"])
        else:
            assert staged.loc[record, "total_amount"] == float(newest["total"].iloc[0])
