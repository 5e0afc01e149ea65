"""The staging run's scratch tables: what staging derives from them in SQL equals the pandas meaning."""

from __future__ import annotations

import pandas as pd

from crm_pipelines.schema import ENTITIES, QUARANTINE_COLUMNS, STAGING
from crm_pipelines.staging.rejections import FIELD_NULLED
from crm_pipelines.staging.stage import StagingResult
from crm_pipelines.staging.values import typed_frame
from crm_pipelines.staging_scratch import StagingScratch, drop_leftover_scratch, scratch_prefix

ORDERS = ENTITIES["orders"]


def result(staged: list[tuple[str, float]], quarantined: list[tuple[str | None, str]], deleted: list[str]):
    """A batch of source 'shop': staged (order_id, total), quarantined (record_id, reason), deleted ids."""
    frame = typed_frame(ORDERS.staged_columns, {
        "source": ["shop"] * len(staged), "order_id": [o for o, _ in staged],
        "total_amount": [t for _, t in staged], "status": ["completed"] * len(staged),
    }, len(staged))
    rejected = typed_frame(QUARANTINE_COLUMNS, {
        "layer": STAGING, "entity": "orders", "source": "shop", "rule": "some_rule",
        "record_id": [r for r, _ in quarantined], "reason": [why for _, why in quarantined],
    }, len(quarantined))
    gone = pd.DataFrame({"source": ["shop"] * len(deleted), "record_id": deleted})
    empty = typed_frame(ORDERS.staged_columns, {}, 0)
    return StagingResult(frame, rejected, empty, empty, {}, deleted=gone)


def batches():
    first = result([("O1", 10.0), ("O2", 20.0), ("O3", 30.0)], [("O4", "bad"), (None, "no id")], [])
    # The second delivery: O1 changed, O2 is deleted, O3 is quarantined now, O5 is new, O6 is deleted.
    second = result([("O1", 11.0), ("O5", 50.0)], [("O3", "worse"), ("O1", f"x; {FIELD_NULLED}")], ["O2", "O6"])
    return [("shop", "b1", first), ("shop", "b2", second)]


def read(scratch: StagingScratch, table: str, order: list[str]) -> pd.DataFrame:
    return scratch.wh.read_table(scratch.schema, table).sort_values(order).reset_index(drop=True)


def test_the_contract_sees_each_record_once_in_its_newest_version(warehouse):
    scratch = StagingScratch.write(warehouse, "orders", batches())
    try:
        checked = read(scratch, scratch.contract_table(), ["order_id"])
    finally:
        scratch.drop()
    assert checked["order_id"].tolist() == ["O1", "O2", "O3", "O5"]
    assert checked["total_amount"].tolist() == [11.0, 20.0, 30.0, 50.0]
    assert list(checked.columns) == [c.name for c in ORDERS.staged_columns]
    assert not warehouse.table_exists(scratch.schema, scratch.batches[0].staged)
    # DuckDB keeps scratch tables out of the warehouse file; PostgreSQL in the staging schema.
    assert scratch.schema == ("_crm_scratch" if warehouse.dialect == "duckdb" else STAGING)


def test_big_scratch_tables_skip_the_write_ahead_log_on_postgres(warehouse, monkeypatch):
    """Every table counts as big here: the rows and what is derived from them stay the same."""
    import sqlalchemy as sa

    import crm_pipelines.staging_scratch as staging_scratch

    monkeypatch.setattr(staging_scratch, "UNLOGGED_FROM_ROWS", 1)
    scratch = StagingScratch.write(warehouse, "orders", batches())
    try:
        checked = read(scratch, scratch.contract_table(), ["order_id"])
        keys = read(scratch, scratch.run_keys(), ["record_id"])
        if warehouse.dialect == "postgresql":
            names = [scratch.batches[0].staged, scratch.batches[1].quarantined, scratch.contract_table()]
            with warehouse.connect() as conn:
                kinds = conn.execute(
                    sa.text("SELECT relname, relpersistence FROM pg_class WHERE relname = ANY(:names)"),
                    {"names": names},
                ).all()
            assert sorted(kind for _, kind in kinds) == ["u", "u", "u"]
    finally:
        scratch.drop()
    assert checked["order_id"].tolist() == ["O1", "O2", "O3", "O5"]
    assert checked["total_amount"].tolist() == [11.0, 20.0, 30.0, 50.0]
    assert checked["status"].tolist() == ["completed"] * 4
    assert list(checked.columns) == [c.name for c in ORDERS.staged_columns]
    assert keys["record_id"].tolist() == ["O1", "O2", "O3", "O4", "O5", "O6"]


def test_one_batch_is_validated_where_it_was_written(warehouse):
    scratch = StagingScratch.write(warehouse, "orders", batches()[:1])
    try:
        assert scratch.contract_table() == scratch.batches[0].staged
    finally:
        scratch.drop()


def test_batches_of_different_sources_are_all_validated(warehouse):
    first, second = batches()[0], batches()[1]
    crm = result([("O1", 99.0), ("O7", 70.0)], [], [])
    crm.staged["source"] = "crm"
    scratch = StagingScratch.write(warehouse, "orders", [first, ("crm", "c1", crm)])
    try:
        checked = read(scratch, scratch.contract_table(), ["source", "order_id"])
    finally:
        scratch.drop()
    # The same order id in two sources is two records.
    assert list(zip(checked["source"], checked["order_id"], checked["total_amount"], strict=True)) == [
        ("crm", "O1", 99.0), ("crm", "O7", 70.0), ("shop", "O1", 10.0), ("shop", "O2", 20.0), ("shop", "O3", 30.0),
    ]
    assert list(checked.columns) == [c.name for c in ORDERS.staged_columns]
    scratch = StagingScratch.write(warehouse, "orders", [first, ("crm", "c1", crm), second])
    try:  # two batches of one source among them: ranked as before
        checked = read(scratch, scratch.contract_table(), ["source", "order_id"])
    finally:
        scratch.drop()
    assert len(checked) == 6 and checked["total_amount"].tolist()[2] == 11.0


def test_run_keys_and_batch_keys(warehouse):
    scratch = StagingScratch.write(warehouse, "orders", batches())
    try:
        run_keys = read(scratch, scratch.run_keys(), ["record_id"])
        second_keys = read(scratch, scratch.keys(scratch.batches[1]), ["record_id"])
    finally:
        scratch.drop()
    # The state the last batch holding a record leaves it in: O2 deleted by the second, O4 only in the first.
    assert dict(zip(run_keys["record_id"], run_keys["deleted"].astype(bool), strict=True)) == {
        "O1": False, "O2": True, "O3": False, "O4": False, "O5": False, "O6": True,
    }
    assert (run_keys["source"] == "shop").all()
    assert second_keys["record_id"].tolist() == ["O1", "O2", "O3", "O5", "O6"]


def test_leftover_scratch_tables_are_dropped(warehouse):
    scratch = StagingScratch.write(warehouse, "orders", batches())
    names = list(scratch.names)
    assert all(n.startswith(scratch_prefix("orders")) for n in names)
    assert all(warehouse.table_exists(scratch.schema, n) for n in names)
    drop_leftover_scratch(warehouse, "orders")  # as the next run does after a killed one
    assert not any(warehouse.table_exists(scratch.schema, n) for n in names)


def test_deleted_rows_is_the_number_of_rows_a_delete_removed(warehouse):
    """Replacing older versions counts the superseded staged rows from the DELETE itself."""
    import sqlalchemy as sa

    from crm_pipelines.warehouse import deleted_rows

    frame = pd.DataFrame({"source": ["shop", "shop", "crm", "shop"], "record_id": ["O1", "O2", "O1", "O3"]})
    warehouse.write_table(frame, STAGING, "deleted_rows_probe")
    keys = pd.DataFrame({"source": ["shop", "shop", "web"], "record_id": ["O1", "O3", "O1"]})
    warehouse.write_table(keys, STAGING, "deleted_rows_keys")
    table = warehouse.table(STAGING, "deleted_rows_probe", ["source", "record_id"])
    key = warehouse.table(STAGING, "deleted_rows_keys", ["source", "record_id"])
    by_key = sa.tuple_(table.c.source, table.c.record_id).in_(sa.select(key.c.source, key.c.record_id))
    with warehouse.connect() as conn:
        assert deleted_rows(conn, sa.delete(table).where(by_key)) == 2
        assert deleted_rows(conn, sa.delete(table).where(by_key)) == 0
    left = warehouse.read_table(STAGING, "deleted_rows_probe").sort_values("record_id")
    assert list(zip(left["source"], left["record_id"], strict=True)) == [("crm", "O1"), ("shop", "O2")]
    # Warehouse.delete reports its count the same way (DuckDB's driver alone would say -1).
    assert warehouse.delete(STAGING, "deleted_rows_probe", sa.column("record_id") == "O2") == 1
    assert warehouse.delete(STAGING, "deleted_rows_probe", sa.column("record_id") == "O2") == 0
