"""crm.yaml loading: valid files load; bad ones name the file, the source and the field."""

from __future__ import annotations

import re
import textwrap

import pytest

from crm_pipelines.config import ConfigError, load_config

MINIMAL = """
warehouse:
  url: duckdb:///data/wh.duckdb
nightly:
  time: "03:15"
  timezone: Europe/Berlin
fx_rates: {EUR: 1.0, USD: 0.9}
sources:
  - name: shop
    connector: {type: sql, url: "sqlite:///shop.sqlite"}
    entities:
      orders:
        table: orders
        columns: {order_id: id, source_customer_id: customer_id, ordered_at: created_at, status: state,
                  total_amount: total}
        incremental: {mode: cursor, column: updated_at}
  - name: crm
    connector: {type: csv}
    entities:
      customers:
        path: contacts.csv
        columns: {source_record_id: contact_id, email: email}
        identifiers: {loyalty_card: card}
"""


def write(tmp_path, text: str):
    path = tmp_path / "crm.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_valid_config_loads_and_resolves_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("CRM_WAREHOUSE_URL", raising=False)
    config = load_config(write(tmp_path, MINIMAL))
    assert config.nightly.cron == "15 3 * * *"
    assert config.warehouse_url == f"duckdb:///{tmp_path / 'data/wh.duckdb'}"
    assert config.source_url(config.source("shop")) == f"sqlite:///{tmp_path / 'shop.sqlite'}"
    assert config.resolve_path("contacts.csv") == tmp_path / "contacts.csv"
    assert [s.name for s in config.sources_for("orders")] == ["shop"]
    assert config.source("shop").entities["orders"].incremental.mode == "cursor"


def test_warehouse_url_env_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_WAREHOUSE_URL", "postgresql+psycopg://u@h/db")
    assert load_config(write(tmp_path, MINIMAL)).warehouse_url == "postgresql+psycopg://u@h/db"


def test_definitions_load_with_the_warehouse_url_from_the_environment(tmp_path, monkeypatch):
    """deploy/dagster.env sets CRM_WAREHOUSE_URL: the kind tags name its engine, the stored URL stays a reference."""
    import dagster as dg

    from crm_pipelines.definitions import build_definitions

    monkeypatch.setenv("CRM_WAREHOUSE_URL", "postgresql+psycopg://crm:secret@h/db")
    defs = build_definitions(load_config(write(tmp_path, MINIMAL)))
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    kinds = {kind for key in graph.get_all_asset_keys() for kind in graph.get(key).kinds}
    assert "postgres" in kinds and not any("$" in kind or "secret" in kind for kind in kinds)
    assert defs.resources["warehouse"].url == "${CRM_WAREHOUSE_URL}"


def test_env_references_expand(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOP_DB", "mysql+pymysql://root@127.0.0.1/shop")
    config = load_config(write(tmp_path, MINIMAL.replace('"sqlite:///shop.sqlite"', '"${SHOP_DB}"')))
    assert config.source("shop").connector.url == "mysql+pymysql://root@127.0.0.1/shop"


def test_missing_env_reference_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_URL", raising=False)
    with pytest.raises(ConfigError, match=r"NOPE_URL is not set"):
        load_config(write(tmp_path, MINIMAL.replace('"sqlite:///shop.sqlite"', '"${NOPE_URL}"')))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("source_customer_id: customer_id, ", "", r"sources\[0\] \(source 'shop'\).*source_customer_id"),
        ("email: email}", "emial: email}", r"source 'crm'.*'emial'.* not columns of customers"),
        ("type: csv", "type: xls", r"source 'crm'.*connector.type"),
        ('time: "03:15"', 'time: "25:00"', r"nightly.time"),
        ("Europe/Berlin", "Mars/Olympus", r"unknown timezone 'Mars/Olympus'"),
        ("mode: cursor, column: updated_at", "mode: cursor", r"source 'shop'.*needs 'column'"),
        ("table: orders", "path: orders.csv", r"source 'shop'.*exactly one of 'table' or 'query'"),
        ("name: crm", "name: shop", r"names must be unique"),
    ],
)
def test_bad_config_names_file_source_and_field(tmp_path, old, new, expected):
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert re.search(expected, message, flags=re.S), message


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "sources: [\n"))


def test_orders_without_status_are_refused_unless_a_default_is_declared(tmp_path):
    without_status = MINIMAL.replace(" status: state,", "")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, without_status))
    message = str(info.value)
    assert re.search(r"source 'shop'.*entities.orders.columns: 'status' is not mapped", message, flags=re.S), message
    assert "defaults: {status: completed}" in message

    declared = without_status.replace("        incremental: {mode: cursor", "        defaults: {status: completed}\n"
                                      "        incremental: {mode: cursor")
    config = load_config(write(tmp_path, declared))
    assert config.source("shop").entities["orders"].defaults == {"status": "completed"}

    both = MINIMAL.replace("        incremental: {mode: cursor", "        defaults: {status: completed}\n"
                           "        incremental: {mode: cursor")
    with pytest.raises(ConfigError, match=r"\['status'\] are both mapped"):
        load_config(write(tmp_path, both))
