"""A password given through the environment is never written down: not by Dagster, not in the warehouse."""

from __future__ import annotations

import sqlite3
import uuid
import zlib
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from crm_pipelines.config import PROJECT_ROOT, config_from_dict
from crm_pipelines.definitions import build_definitions
from crm_pipelines.demo.generator import generate
from crm_pipelines.warehouse import Warehouse, dispose_engines

PASSWORD_ENV = "CRM_TEST_WAREHOUSE_PASSWORD"


def _sqlite_values(path: Path) -> list[bytes]:
    """Every value of every table of a SQLite file, zlib blobs (Dagster's snapshots) decompressed."""
    values = []
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    data = value if isinstance(value, bytes) else str(value).encode()
                    try:
                        data = zlib.decompress(data)
                    except zlib.error:
                        pass
                    values.append(data)
    return values


def _files_holding(root: Path, secret: bytes) -> list[str]:
    """Files under ``root`` holding ``secret``, looking inside SQLite files value by value."""
    found = []
    sqlite_files = 0
    for path in (p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if data.startswith(b"SQLite format 3"):
            sqlite_files += 1
            if any(secret in v for v in _sqlite_values(path)):
                found.append(str(path))
        elif secret in data:
            found.append(str(path))
    assert sqlite_files, f"no run or event storage found under {root}"
    return found


def _warehouse_cells_holding(wh: Warehouse, secret: str) -> list[str]:
    found = []
    inspector = sa.inspect(wh.engine)
    for schema in inspector.get_schema_names():
        if schema in ("information_schema", "pg_catalog", "pg_toast"):
            continue
        for table in inspector.get_table_names(schema=schema):
            for column in inspector.get_columns(table, schema=schema):
                column_ref = sa.column(column["name"])
                statement = (
                    sa.select(sa.func.count())
                    .select_from(sa.table(table, schema=schema))
                    .where(sa.cast(column_ref, sa.Text).contains(secret))
                )
                with wh.connect() as conn:
                    if conn.execute(statement).scalar_one():
                        found.append(f"{schema}.{table}.{column['name']}")
    return found


@pytest.mark.slow
@pytest.mark.postgres
def test_warehouse_password_is_never_stored(postgres_url, tmp_path, monkeypatch):
    # The test server trusts local connections, so any password connects; that lets a unique one be used.
    secret = f"pw-{uuid.uuid4().hex}"
    monkeypatch.setenv(PASSWORD_ENV, secret)
    url = sa.make_url(postgres_url).set(password="PLACEHOLDER").render_as_string(hide_password=False)
    generate(tmp_path / "data" / "demo", people=150, seed=3)
    data = yaml.safe_load((PROJECT_ROOT / "crm.yaml").read_text())
    data["warehouse"] = {"url": url.replace("PLACEHOLDER", "${" + PASSWORD_ENV + "}")}
    # Only what reads sources and writes the warehouse: identity training is not what is tested here.
    data["sources"] = [s for s in data["sources"] if s["name"] in ("crm", "shop")]
    config = config_from_dict(data, tmp_path / "crm.yaml")
    assert secret in config.warehouse_url  # the config itself connects with it

    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    defs = build_definitions(config)
    job = dg.define_asset_job("raw_and_staging", selection=dg.AssetSelection.groups("raw", "staging"))
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        resolved = dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def("raw_and_staging")
        result = resolved.execute_in_process(instance=instance, raise_on_error=False)
        assert result.success
        assert instance.get_runs()  # the run and its config really were stored
    dispose_engines()

    assert _files_holding(dagster_home, secret.encode()) == []
    assert _warehouse_cells_holding(Warehouse(config.warehouse_url), secret) == []
