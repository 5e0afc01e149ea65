"""The BI file: the marts copied to a separate DuckDB file and swapped in atomically.

The lock tests use real processes and real DuckDB files: a reader in another process holds the file
(read-only, as a BI tool does) while the file is replaced, and while a whole nightly run writes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from crm_pipelines.bi_file import BiFileError, export_enabled, export_marts_file, mart_tables
from crm_pipelines.config import PROJECT_ROOT, ConfigError, config_from_dict
from crm_pipelines.demo.generator import generate
from crm_pipelines.schema import MARTS
from crm_pipelines.warehouse import Warehouse


def publish_kpis(wh: Warehouse, days: int) -> None:
    frame = pd.DataFrame(
        {
            "kpi_date": pd.date_range("2026-01-01", periods=days, freq="D").date,
            "revenue": [float(i) for i in range(days)],
            "computed_at": pd.Timestamp("2026-01-02 03:04:05", tz="UTC"),
        }
    )
    wh.publish(frame, MARTS, "crm_kpis", column_types={"kpi_date": "date", "computed_at": "timestamp"})


def read(path: Path, sql: str):
    with duckdb.connect(str(path), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_marts_are_copied_with_their_types_and_reachable_without_schema(warehouse, tmp_path):
    publish_kpis(warehouse, 3)
    warehouse.publish(pd.DataFrame({"customer_id": ["C1", "C2"]}), MARTS, "customer_segments")
    # A half-published table (a killed run's staging name) and other schemas stay out of the file.
    warehouse.write_table(pd.DataFrame({"x": [1]}), MARTS, "customer_segments__new")
    warehouse.write_table(pd.DataFrame({"x": [1]}), "core", "unified_customers")
    target = tmp_path / "bi" / "bi.duckdb"

    export = export_marts_file(warehouse, target)

    assert export.rows == {"crm_kpis": 3, "customer_segments": 2}
    assert export.path == target.resolve() and export.size_bytes == target.stat().st_size
    assert read(target, "SELECT count(*) FROM marts.crm_kpis") == [(3,)]
    assert read(target, "SELECT count(*) FROM crm_kpis") == [(3,)]  # main.crm_kpis, for schema-blind tools
    assert read(target, "SELECT customer_id FROM customer_segments ORDER BY 1") == [("C1",), ("C2",)]
    types = dict(read(target, "SELECT column_name, data_type FROM information_schema.columns "
                              "WHERE table_schema = 'marts' AND table_name = 'crm_kpis'"))
    assert types["kpi_date"] == "DATE" and types["computed_at"] == "TIMESTAMP WITH TIME ZONE"
    assert types["revenue"] == "DOUBLE"
    tables = read(target, "SELECT table_schema, table_name, table_type FROM information_schema.tables ORDER BY 1, 2")
    assert tables == [
        ("main", "crm_kpis", "VIEW"),
        ("main", "customer_segments", "VIEW"),
        ("marts", "crm_kpis", "BASE TABLE"),
        ("marts", "customer_segments", "BASE TABLE"),
    ]
    assert sorted(p.name for p in target.parent.iterdir()) == ["bi.duckdb"]  # no temporary left behind
    # The warehouse is untouched and still writable by the run that exported it.
    publish_kpis(warehouse, 4)
    assert mart_tables(warehouse) == ["crm_kpis", "customer_segments"]


def test_a_reader_holding_the_file_keeps_the_old_data_and_the_next_connection_sees_the_new(duckdb_url, tmp_path):
    wh = Warehouse(duckdb_url)
    target = tmp_path / "bi.duckdb"
    publish_kpis(wh, 3)
    export_marts_file(wh, target)
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLDING_READER, str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout.readline().strip() == "3"  # opened read-only, and holds the connection
        publish_kpis(wh, 5)
        export_marts_file(wh, target)  # the writer neither waits for nor fails on the reader
        # Another process's fresh connection sees the new file while the old one is still held.
        assert read(target, "SELECT count(*) FROM crm_kpis") == [(5,)]
        reader.stdin.write("next\n")
        reader.stdin.flush()
        assert reader.stdout.readline().strip() == "3", "the held connection must keep reading the old file"
        assert reader.stdout.readline().strip() == "5", "its next connection must see the new file"
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)
    assert reader.returncode == 0


HOLDING_READER = """
import sys, duckdb
path = sys.argv[1]
held = duckdb.connect(path, read_only=True)
print(held.execute("SELECT count(*) FROM crm_kpis").fetchone()[0], flush=True)
sys.stdin.readline()
print(held.execute("SELECT count(*) FROM crm_kpis").fetchone()[0], flush=True)
# DuckDB shares one open database per path within a process: the old file is let go when its last
# connection closes, so the process's next connection opens the new one.
held.close()
fresh = duckdb.connect(path, read_only=True)
print(fresh.execute("SELECT count(*) FROM crm_kpis").fetchone()[0], flush=True)
"""


def test_temporaries_of_killed_runs_are_removed_but_not_those_of_live_ones(duckdb_url, tmp_path):
    wh = Warehouse(duckdb_url)
    publish_kpis(wh, 1)
    target = tmp_path / "bi.duckdb"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = tmp_path / f".bi.duckdb.{dead.stdout.strip()}-0123abcd.tmp"
    live = tmp_path / f".bi.duckdb.{os.getpid()}-4567abcd.tmp"
    other = tmp_path / ".other.duckdb.1-89abcdef.tmp"
    for path in (abandoned, live, other):
        path.write_bytes(b"partial")
    export_marts_file(wh, target)
    assert not abandoned.exists() and live.exists() and other.exists()


def test_refuses_to_overwrite_the_warehouse_or_to_write_an_empty_file(duckdb_url, tmp_path):
    wh = Warehouse(duckdb_url)
    with pytest.raises(BiFileError, match="no tables yet"):
        export_marts_file(wh, tmp_path / "bi.duckdb")
    assert not (tmp_path / "bi.duckdb").exists()
    publish_kpis(wh, 1)
    with pytest.raises(BiFileError, match="is the warehouse file itself"):
        export_marts_file(wh, duckdb_url.removeprefix("duckdb:///"))


def test_export_is_on_by_default_for_duckdb_only():
    assert export_enabled("auto", "duckdb") and not export_enabled("auto", "postgres")
    assert export_enabled("always", "postgres") and not export_enabled("never", "duckdb")


# -- a BI tool reading the file during a whole nightly run ----------------------------------------
# Two dashboards: one keeps its connection all night, one opens a connection per query. They run in
# separate processes, because within one process DuckDB shares a single open database per path.
READER = """
import json, os, sys, time, duckdb
path, stop, mode = sys.argv[1:4]
held = duckdb.connect(path, read_only=True) if mode == "hold" else None
reads, errors, versions = 0, [], set()
while not os.path.exists(stop):
    try:
        conn = held or duckdb.connect(path, read_only=True)
        names = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables "
                                             "WHERE table_schema = 'main' ORDER BY 1").fetchall()]
        for name in names:
            conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()
        versions.add(tuple(names))
        if held is None:
            conn.close()
        reads += 1
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
    time.sleep(0.05)
print(json.dumps({"reads": reads, "errors": errors[:5], "versions": sorted(versions)}))
"""

DEMO_END = dt.date(2026, 6, 30)


@pytest.mark.slow
def test_bi_reads_never_fail_while_the_nightly_runs_and_the_nightly_succeeds(tmp_path):
    generate(tmp_path / "data" / "demo", people=400, seed=7, end_date=DEMO_END)
    config = yaml.safe_load((PROJECT_ROOT / "crm.yaml").read_text())
    config["as_of"] = DEMO_END.isoformat()
    (tmp_path / "crm.yaml").write_text(yaml.safe_dump(config))
    target = tmp_path / "data" / "bi.duckdb"
    # Yesterday's BI file, which dashboards hold when the run starts.
    seed = Warehouse(f"duckdb:///{tmp_path / 'yesterday.duckdb'}")
    seed.publish(pd.DataFrame({"marker": [1]}), MARTS, "seed_marker")
    export_marts_file(seed, target)
    seed.dispose()

    env = {k: v for k, v in os.environ.items() if k != "CRM_WAREHOUSE_URL"}
    env.update(CRM_CONFIG=str(tmp_path / "crm.yaml"), DAGSTER_HOME=str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    stop = tmp_path / "stop"
    readers = {
        mode: subprocess.Popen([sys.executable, "-c", READER, str(target), str(stop), mode], stdout=subprocess.PIPE)
        for mode in ("hold", "poll")
    }
    try:
        started = time.monotonic()
        nightly = subprocess.run(
            [sys.executable, "-m", "dagster", "job", "execute", "-m", "crm_pipelines.definitions", "-j", "crm_nightly"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        seconds = time.monotonic() - started
    finally:
        stop.touch()
        results = {mode: json.loads(reader.communicate(timeout=60)[0]) for mode, reader in readers.items()}
    assert nightly.returncode == 0, nightly.stdout[-3000:] + nightly.stderr[-3000:]
    for mode, result in results.items():
        assert result["errors"] == [], (mode, result)
        assert result["reads"] > 10, (mode, result, seconds)
    # The dashboard holding its connection read yesterday's file throughout; the other one moved on.
    assert results["hold"]["versions"] == [["seed_marker"]], results["hold"]
    assert ["seed_marker"] in results["poll"]["versions"], results["poll"]
    new = {name for version in results["poll"]["versions"] for name in version if version != ["seed_marker"]}
    assert {"customer_360", "crm_kpis", "clv_model_params", "churn_model_metrics"} <= new, results["poll"]
    assert read(target, "SELECT count(*) FROM marts.customer_360")[0][0] > 0


def test_a_file_named_like_the_marts_schema_is_refused(duckdb_url, tmp_path):
    # DuckDB would name the file's database "marts", and `marts.customer_360` would become ambiguous.
    data = yaml.safe_load((PROJECT_ROOT / "crm.yaml").read_text())
    with pytest.raises(ConfigError, match=r"bi\.marts_file: 'data/marts\.duckdb'.*choose another name"):
        config_from_dict({**data, "bi": {"marts_file": "data/marts.duckdb"}}, tmp_path / "crm.yaml")
    wh = Warehouse(duckdb_url)
    publish_kpis(wh, 1)
    with pytest.raises(BiFileError, match="ambiguous"):
        export_marts_file(wh, tmp_path / "marts.duckdb")


# -- a monthly mart updated in a copy of the last export ----------------------------------------------
SEGMENTS = ("Champions", "Lost")


def publish_history(wh: Warehouse, history: pd.DataFrame) -> None:
    wh.publish(history, MARTS, "customer_segment_history", column_types={"month": "date"})


def history_months(months: range, customers: int = 50) -> pd.DataFrame:
    return pd.DataFrame(
        [
            (m, pd.Timestamp("2026-01-01") + pd.DateOffset(months=m), f"C{c}", SEGMENTS[(c + m) % 2], c * m)
            for m in months
            for c in range(customers)
        ],
        columns=["month_index", "month", "customer_id", "rfm_segment", "expected_clv"],
    ).astype({"expected_clv": "float64", "month": "datetime64[us]"})


def file_contents(path: Path) -> dict[str, tuple]:
    with duckdb.connect(str(path), read_only=True) as conn:
        out = {}
        for schema, name, kind in conn.execute(
            "SELECT table_schema, table_name, table_type FROM information_schema.tables ORDER BY 1, 2"
        ).fetchall():
            columns = conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [schema, name],
            ).fetchall()
            rows = sorted(conn.execute(f'SELECT * FROM "{schema}"."{name}"').fetchall(), key=repr)
            out[f"{schema}.{name}"] = (kind, columns, rows)
        return out


def test_a_monthly_mart_replaces_only_its_changed_months_and_the_file_equals_a_fresh_export(duckdb_url, tmp_path):
    wh = Warehouse(duckdb_url)
    target, fresh = tmp_path / "bi.duckdb", tmp_path / "fresh" / "bi.duckdb"
    history = history_months(range(4))
    publish_history(wh, history)
    publish_kpis(wh, 3)
    wh.publish(pd.DataFrame({"customer_id": ["C1"]}), MARTS, "customer_segments")
    first = export_marts_file(wh, target, carry_over=True)
    assert first.carried_over == {}  # nothing to carry over yet

    # The next night: month 0 gone, in month 1 two customers swap segments (each column's values
    # stay the same, only the rows differ), month 2 as it was, month 3 recomputed, month 4 new; one
    # mart gone, another with a new column.
    history = history[history["month_index"] != 0].copy()
    swap = history.index[(history["month_index"] == 1) & history["customer_id"].isin(["C1", "C2"])]
    history.loc[swap, "rfm_segment"] = history.loc[swap[::-1], "rfm_segment"].to_numpy()
    history.loc[history["month_index"] == 3, "expected_clv"] += 0.5
    history = pd.concat([history, history_months(range(4, 5))], ignore_index=True)
    publish_history(wh, history)
    wh.drop_table(MARTS, "customer_segments")
    wh.publish(
        pd.DataFrame({"kpi_date": pd.date_range("2026-01-01", periods=2).date, "extra": [1, 2]}),
        MARTS, "crm_kpis", column_types={"kpi_date": "date"},
    )  # fmt: skip

    second = export_marts_file(wh, target, carry_over=True)
    export_marts_file(wh, fresh)

    assert second.carried_over == {"customer_segment_history": 1}  # month 2 kept, 1, 3 and 4 written
    assert second.rows == {"crm_kpis": 2, "customer_segment_history": 200}
    assert file_contents(target) == file_contents(fresh)
    assert "main.customer_segments" not in file_contents(target)
    assert read(target, "SELECT count(*) FROM customer_segment_history WHERE month_index = 1 AND "
                        "rfm_segment = 'Champions' AND customer_id IN ('C1', 'C2')") == [(1,)]  # fmt: skip


def test_an_unreadable_last_export_is_replaced_by_a_fresh_one(duckdb_url, tmp_path):
    wh = Warehouse(duckdb_url)
    publish_history(wh, history_months(range(2)))
    target = tmp_path / "bi.duckdb"
    target.write_bytes(b"not a database")
    export = export_marts_file(wh, target, carry_over=True)
    assert export.carried_over == {} and export.rows == {"customer_segment_history": 100}
    assert read(target, "SELECT count(DISTINCT month_index) FROM customer_segment_history") == [(2,)]


def test_a_carried_over_file_stays_near_a_fresh_ones_size_and_is_started_afresh_when_mostly_free(duckdb_url, tmp_path):
    # DuckDB does not shrink a file: months replaced night after night leave free blocks behind, which
    # later writes reuse; a file whose data shrank is mostly free space and is written afresh.
    wh = Warehouse(duckdb_url)
    target, fresh = tmp_path / "bi.duckdb", tmp_path / "fresh.duckdb"
    sizes = []
    for night in range(5):
        history = history_months(range(3), customers=20_000)
        history = history.assign(expected_clv=history["expected_clv"] + night)  # every month changes
        publish_history(wh, history)
        export = export_marts_file(wh, target, carry_over=True)
        assert export.carried_over == ({} if night == 0 else {"customer_segment_history": 0})
        sizes.append(export.size_bytes)
    assert max(sizes) <= 2 * export_marts_file(wh, fresh).size_bytes, sizes

    wh.publish(history_months(range(12), customers=20_000), MARTS, "customer_portfolio")
    # Written afresh, the file holds that mart's blocks before the history's: dropped, they are free
    # blocks the checkpoint cannot cut off the file's end.
    assert export_marts_file(wh, target).carried_over == {}
    wh.drop_table(MARTS, "customer_portfolio")  # its blocks in the file are freed when the export drops it
    assert export_marts_file(wh, target, carry_over=True).carried_over == {"customer_segment_history": 3}
    export = export_marts_file(wh, target, carry_over=True)  # a file of mostly free blocks
    assert export.carried_over == {}
    assert export.size_bytes <= 1.2 * export_marts_file(wh, fresh).size_bytes
    assert file_contents(target) == file_contents(fresh)


def test_a_file_holding_anything_an_export_does_not_write_is_not_carried_over(duckdb_url, tmp_path):
    wh = Warehouse(duckdb_url)
    publish_history(wh, history_months(range(2)))
    target = tmp_path / "bi.duckdb"
    export_marts_file(wh, target, carry_over=True)
    for foreign in ("CREATE TABLE main.notes AS SELECT 1 AS x", "CREATE SCHEMA other; CREATE TABLE other.x (i INT)"):
        with duckdb.connect(str(target)) as conn:
            conn.execute(foreign)
        export = export_marts_file(wh, target, carry_over=True)
        assert export.carried_over == {}
    assert read(target, "SELECT table_schema || '.' || table_name FROM information_schema.tables ORDER BY 1") == [
        ("main.customer_segment_history",), ("marts.customer_segment_history",),
    ]  # fmt: skip


def test_an_export_without_carry_over_is_written_afresh(duckdb_url, tmp_path):
    # An erasure's export: nothing of the last file (where the erased rows may linger in free blocks).
    wh = Warehouse(duckdb_url)
    publish_history(wh, history_months(range(3)))
    target = tmp_path / "bi.duckdb"
    export_marts_file(wh, target)
    assert export_marts_file(wh, target).carried_over == {}
    assert export_marts_file(wh, target, carry_over=True).carried_over == {"customer_segment_history": 3}


def test_marts_copied_whole_reuse_their_old_blocks_in_a_carried_over_file(duckdb_url, tmp_path):
    # Dropped and rewritten one by one without a checkpoint, the second table's new blocks did not
    # reuse the first's old ones: the file grew by half on every other night.
    wh = Warehouse(duckdb_url)
    target, fresh = tmp_path / "bi.duckdb", tmp_path / "fresh.duckdb"
    publish_history(wh, history_months(range(2)))
    sizes = []
    for night in range(4):
        wide = history_months(range(3), customers=20_000)
        wide = wide.assign(expected_clv=wide["expected_clv"] + night)
        wh.publish(wide, MARTS, "customer_360")
        wh.publish(wide, MARTS, "customer_segments")
        export = export_marts_file(wh, target, carry_over=True)
        assert export.carried_over == ({} if night == 0 else {"customer_segment_history": 2})
        sizes.append(export.size_bytes)
    assert max(sizes) <= 1.1 * export_marts_file(wh, fresh).size_bytes, sizes
    assert file_contents(target) == file_contents(fresh)
