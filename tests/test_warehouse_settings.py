"""The warehouse's DuckDB settings: from crm.yaml to every connection, bad values named, memory released."""

from __future__ import annotations

import pytest

from crm_pipelines.config import ConfigError, load_config
from crm_pipelines.resources.warehouse import WarehouseResource
from crm_pipelines.warehouse import DEFAULT_DUCKDB_MEMORY_LIMIT, DuckDBSettings, Warehouse, dispose_engines

CONFIG = """
warehouse:
  url: {url}
{extra}
sources:
  - name: crm
    connector: {{type: csv}}
    entities:
      customers:
        path: contacts.csv
        columns: {{source_record_id: contact_id, email: email}}
"""


def _config(tmp_path, url: str, extra: str = ""):
    path = tmp_path / "crm.yaml"
    path.write_text(CONFIG.format(url=url, extra=extra))
    return load_config(path)


def _setting(wh: Warehouse, name: str) -> str:
    return str(wh.query(f"SELECT current_setting('{name}') AS v")["v"].iloc[0])


def test_settings_reach_every_duckdb_connection(tmp_path, duckdb_url):
    config = _config(tmp_path, duckdb_url, "  duckdb_memory_limit: 512MB\n  duckdb_threads: 1")
    from crm_pipelines.definitions import build_definitions

    resource = build_definitions(config).resources["warehouse"]
    wh = resource.get_warehouse()
    assert _setting(wh, "memory_limit") == "488.2 MiB"  # DuckDB prints 512 MB in MiB
    assert _setting(wh, "threads") == "1"
    # a connection opened beside the pooled one (another step's) sees the same instance settings
    with wh.connect() as a, wh.connect() as b:
        for conn in (a, b):
            assert conn.exec_driver_sql("SELECT current_setting('threads')").scalar_one() == 1


def test_default_memory_limit_is_applied(duckdb_url):
    wh = WarehouseResource(url=duckdb_url).get_warehouse()
    assert DEFAULT_DUCKDB_MEMORY_LIMIT == "2GB"
    assert _setting(wh, "memory_limit") == "1.8 GiB"


@pytest.mark.parametrize("bad", ["lots", "2 gallons", "-1GB", "2GB; DROP TABLE x"])
def test_bad_memory_limit_is_a_config_error_naming_the_field(tmp_path, bad):
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, "duckdb:///wh.duckdb", f"  duckdb_memory_limit: {bad!r}")
    message = str(info.value)
    assert "warehouse.duckdb_memory_limit" in message and "such as 2GB" in message, message


def test_bad_threads_or_checkpoint_threshold_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="warehouse.duckdb_threads"):
        _config(tmp_path, "duckdb:///wh.duckdb", "  duckdb_threads: 0")
    with pytest.raises(ConfigError, match="warehouse.duckdb_checkpoint_threshold"):
        _config(tmp_path, "duckdb:///wh.duckdb", "  duckdb_checkpoint_threshold: often")


def test_settings_refuse_values_that_would_be_pasted_into_sql():
    with pytest.raises(ValueError, match="not a size"):
        DuckDBSettings(memory_limit="1GB'; SELECT 1; --")
    with pytest.raises(ValueError, match="threads"):
        DuckDBSettings(threads=0)


def test_release_memory_empties_the_buffer_pool_and_keeps_the_limit(duckdb_url):
    wh = Warehouse(duckdb_url, DuckDBSettings(memory_limit="1GB"))
    with wh.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(2000000)")
    dispose_engines()  # a fresh instance: what it holds afterwards comes from the read below
    wh = Warehouse(duckdb_url, DuckDBSettings(memory_limit="1GB"))
    wh.query("SELECT max(s), sum(i) FROM t")
    used = "SELECT sum(memory_usage_bytes) AS b FROM duckdb_memory()"
    before = int(wh.query(used)["b"].iloc[0])
    wh.release_memory()
    after = int(wh.query(used)["b"].iloc[0])
    assert before > 20 * 2**20 and after < before / 4, (before, after)
    assert _setting(wh, "memory_limit") == "953.6 MiB"  # restored exactly, not from its rounded display
    assert wh.query("SELECT count(*) AS n FROM t")["n"].iloc[0] == 2_000_000


def test_release_memory_without_a_limit_restores_duckdbs_default(duckdb_url):
    default = Warehouse("duckdb:///:memory:", DuckDBSettings(memory_limit=None))
    expected = _setting(default, "memory_limit")
    default.forget()
    wh = Warehouse(duckdb_url, DuckDBSettings(memory_limit=None))
    wh.release_memory()
    assert _setting(wh, "memory_limit") == expected


@pytest.mark.postgres
def test_duckdb_settings_leave_postgres_alone(postgres_url):
    wh = WarehouseResource(url=postgres_url, duckdb_memory_limit="1GB").get_warehouse()
    wh.release_memory()  # nothing to release on a server warehouse
    assert int(wh.query("SELECT 1 AS one")["one"].iloc[0]) == 1


def test_release_memory_keeps_what_duckdb_cannot_evict(duckdb_url):
    """Data not yet checkpointed stays in memory: DuckDB refuses the low limit, which must neither fail
    the step nor leave the limit low or a transaction aborted."""
    wh = Warehouse(duckdb_url, DuckDBSettings(memory_limit="1GB", checkpoint_threshold="1GB"))
    with wh.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(1000000)")
        conn.exec_driver_sql("DELETE FROM t WHERE i % 7 = 0")
    wh.release_memory()
    assert _setting(wh, "memory_limit") == "953.6 MiB"
    assert _setting(wh, "checkpoint_threshold") == "953.6 MiB"
    assert wh.query("SELECT count(*) AS n FROM t")["n"].iloc[0] == 1_000_000 - 142_858


def test_a_run_ends_with_a_checkpoint(tmp_path, duckdb_url):
    """The run's writes are in the file when it ends, whatever the checkpoint threshold left in the WAL;
    until then a killed run keeps them in the WAL, which DuckDB replays."""
    import dagster as dg

    wal = tmp_path / "warehouse.duckdb.wal"

    @dg.asset
    def writes(warehouse: WarehouseResource) -> None:
        wh = warehouse.get_warehouse()
        with wh.connect() as conn:
            conn.exec_driver_sql("CREATE TABLE t AS SELECT range AS i FROM range(100000)")
        assert wal.exists() and wal.stat().st_size > 0  # below the threshold: still in the log

    resource = WarehouseResource(url=duckdb_url, duckdb_checkpoint_threshold="1GB")
    assert dg.materialize([writes], resources={"warehouse": resource}).success
    assert not wal.exists() or wal.stat().st_size == 0
    assert int(resource.get_warehouse().query("SELECT count(*) AS n FROM t")["n"].iloc[0]) == 100_000
