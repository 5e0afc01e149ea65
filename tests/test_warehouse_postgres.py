"""The PostgreSQL fast paths: ADBC connections reused across reads and writes (and replaced when the
server drops one), and planner statistics in place as soon as a bulk load or a CREATE TABLE AS ends."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_pipelines import adbc_pool
from crm_pipelines.facts.sql import publish_select
from crm_pipelines.warehouse import Warehouse, dispose_engines

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(postgres_url) -> Warehouse:
    return Warehouse(postgres_url)


def backend_pid(wh: Warehouse) -> int:
    return int(wh.query("SELECT pg_backend_pid() AS pid")["pid"].iloc[0])


def analyzed(wh: Warehouse, schema: str, table: str) -> tuple[bool, float]:
    """(analyzed at least once, the planner's row estimate) of ``schema.table``."""
    stats = wh.query(
        sa.text(
            "SELECT s.last_analyze IS NOT NULL AS analyzed, c.reltuples AS estimate "
            "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
            "WHERE s.schemaname = :schema AND s.relname = :table"
        ),
        {"schema": schema, "table": table},
    )
    return bool(stats["analyzed"].iloc[0]), float(stats["estimate"].iloc[0])


def test_reads_and_writes_share_one_adbc_connection(pg):
    first = backend_pid(pg)
    pg.write_table(pd.DataFrame({"id": ["a", "b"]}), "t", "pooled")
    assert pg.read_table("t", "pooled")["id"].tolist() == ["a", "b"]
    assert backend_pid(pg) == first
    assert backend_pid(Warehouse(pg.url)) == first, "a second Warehouse on the same URL reuses the pool"


def test_a_connection_the_server_dropped_is_replaced(pg):
    dropped = backend_pid(pg)
    with sa.create_engine(pg.url).connect() as admin:
        admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": dropped})
    pg.write_table(pd.DataFrame({"id": ["x"]}), "t", "after_drop")
    assert pg.row_count("t", "after_drop") == 1
    assert backend_pid(pg) != dropped


def test_a_failed_statement_rolls_back_and_the_connection_stays_usable(pg):
    pg.write_table(pd.DataFrame({"id": ["a"]}), "t", "kept")
    pid = backend_pid(pg)
    with pytest.raises(Exception, match="no_such_table"):
        pg.query_arrow('SELECT * FROM "t"."no_such_table"')
    assert backend_pid(pg) == pid, "the rolled-back connection went back to the pool"
    assert pg.read_table("t", "kept")["id"].tolist() == ["a"]


def test_dispose_closes_the_pooled_connections(pg):
    backend_pid(pg)
    assert adbc_pool._idle, "a connection was pooled"
    dispose_engines()
    assert not any(adbc_pool._idle.values())


def test_bulk_writes_and_created_tables_have_statistics(pg):
    rows = 5_000
    pg.write_table(pd.DataFrame({"id": [str(i) for i in range(rows)], "n": range(rows)}), "t", "loaded")
    assert analyzed(pg, "t", "loaded") == (True, rows)
    pg.write_table(pd.DataFrame({"id": ["x"], "n": [1]}), "t", "loaded", mode="append")
    assert analyzed(pg, "t", "loaded") == (True, rows + 1)

    source = pg.table("t", "loaded", ["id", "n"])
    assert publish_select(pg, sa.select(source.c.id).where(source.c.n >= rows - 100), "t", "selected") == 100
    assert analyzed(pg, "t", "selected") == (True, 100)


def settings_seen(wh: Warehouse, name: str) -> tuple[str, str]:
    """(the SQLAlchemy session's value, the ADBC session's value) of a server setting."""
    through_sqlalchemy = wh.query(sa.text("SELECT current_setting(:name) AS v"), {"name": name})["v"].iloc[0]
    through_adbc = wh.query(f"SELECT current_setting('{name}') AS v")["v"].iloc[0]
    return through_sqlalchemy, through_adbc


def test_every_session_runs_without_jit_and_with_a_small_statistics_sample(pg):
    with sa.create_engine(pg.url).connect() as plain:
        assert plain.execute(sa.text("SHOW jit")).scalar() == "on", "the server's default is JIT on"
    assert settings_seen(pg, "jit") == ("off", "off")
    assert settings_seen(pg, "default_statistics_target") == ("20", "20")


def test_the_urls_own_options_come_last_and_win(postgres_url):
    url = sa.engine.make_url(postgres_url).update_query_dict({"options": "-c jit=on -c work_mem=16MB"})
    wh = Warehouse(url.render_as_string(hide_password=False))
    assert settings_seen(wh, "jit") == ("on", "on")
    assert settings_seen(wh, "work_mem") == ("16MB", "16MB")
