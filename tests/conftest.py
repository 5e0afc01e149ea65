"""Shared fixtures: warehouses (DuckDB always; PostgreSQL when reachable) and source databases.

Server-backed tests skip with a reason when no server answers, except in CI (``CI=true``), where a
missing server is a failure: CI must run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from crm_pipelines.warehouse import Warehouse, dispose_engines

POSTGRES_URL_ENV = "CRM_TEST_POSTGRES_URL"
MYSQL_URL_ENV = "CRM_TEST_MYSQL_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_MYSQL_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _server_or_skip(url: str, what: str) -> None:
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as e:  # any driver error means: no usable server here
        message = f"{what} not reachable at {url}: {e.__class__.__name__}: {str(e).splitlines()[0]}"
        if IN_CI:
            pytest.fail(f"{message} (CI=true: server tests must run, not skip)")
        pytest.skip(message)


def _fresh_database(admin_url: str, dialect: str) -> tuple[str, sa.Engine]:
    name = f"crm_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        quoted = admin.dialect.identifier_preparer.quote(name)
        conn.execute(sa.text(f"CREATE DATABASE {quoted}"))
    url = sa.make_url(admin_url).set(database=name)
    return url.render_as_string(hide_password=False), admin


def _drop_database(admin: sa.Engine, url: str) -> None:
    name = sa.make_url(url).database
    quoted = admin.dialect.identifier_preparer.quote(name)
    with admin.connect() as conn:
        if admin.dialect.name == "postgresql":
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        else:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted}"))
    admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    admin_url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    _server_or_skip(admin_url, "PostgreSQL")
    url, admin = _fresh_database(admin_url, "postgresql")
    yield url
    dispose_engines()
    _drop_database(admin, url)


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """A fresh, empty MariaDB/MySQL database, dropped afterwards."""
    admin_url = os.environ.get(MYSQL_URL_ENV, DEFAULT_MYSQL_URL)
    _server_or_skip(admin_url, "MariaDB")
    url, admin = _fresh_database(admin_url, "mysql")
    yield url
    _drop_database(admin, url)


@pytest.fixture
def duckdb_url(tmp_path) -> Iterator[str]:
    yield f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    dispose_engines()


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request) -> str:
    """Each test using this runs once on DuckDB and once on PostgreSQL."""
    if request.param == "duckdb":
        return request.getfixturevalue("duckdb_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def warehouse(warehouse_url) -> Warehouse:
    return Warehouse(warehouse_url)


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def module_warehouse(request, tmp_path_factory) -> Iterator[Warehouse]:
    """A warehouse shared by one module's tests (DuckDB, then PostgreSQL): for read-only tests on data
    that is expensive to load."""
    if request.param == "duckdb":
        yield Warehouse(f"duckdb:///{tmp_path_factory.mktemp('module_wh') / 'warehouse.duckdb'}")
        dispose_engines()
        return
    admin_url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    _server_or_skip(admin_url, "PostgreSQL")
    url, admin = _fresh_database(admin_url, "postgresql")
    yield Warehouse(url)
    dispose_engines()
    _drop_database(admin, url)


@pytest.fixture
def no_pandas_validation(monkeypatch) -> None:
    """Fails the test if a table is read into Python or validated as a frame by Great Expectations:
    for contracts that must run in the warehouse."""

    def refuse(*args, **kwargs):
        raise AssertionError("a contract read its table into Python instead of validating it in the warehouse")

    monkeypatch.setattr(Warehouse, "read_table", refuse)
    monkeypatch.setattr("crm_pipelines.checks.gx.validate", refuse)
