"""Source connectors against real files, real databases (SQLite, MariaDB, PostgreSQL) and a local HTTP API."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from crm_pipelines.config import CrmConfig, config_from_dict
from crm_pipelines.ingest import http_api
from crm_pipelines.ingest.connectors import read_entity, read_source
from crm_pipelines.ingest.errors import SourceError

UNTIL = dt.datetime(2024, 3, 31, 23, 59, 59, tzinfo=dt.UTC)
CUSTOMER_COLUMNS = {"source_record_id": "id", "email": "email"}


def make_config(
    tmp_path: Path,
    connector: dict[str, Any],
    entity: dict[str, Any],
    name: str = "shop",
    entity_name: str = "customers",
) -> CrmConfig:
    entity = {"columns": CUSTOMER_COLUMNS, **entity}
    data = {"sources": [{"name": name, "connector": connector, "entities": {entity_name: entity}}]}
    return config_from_dict(data, tmp_path / "crm.yaml")


def read(config: CrmConfig, after: str | None = None, until: dt.datetime = UNTIL) -> pa.Table:
    source = config.sources[0]
    return read_source(config, source, next(iter(source.entities)), after=after, until=until)


def ids(table: pa.Table) -> list[str]:
    return table["id"].to_pylist()


# -- files -------------------------------------------------------------------------------------------
def test_csv_reads_every_value_as_written(tmp_path):
    (tmp_path / "customers.csv").write_text(
        'id;email;country;zip;note\n007;a@example.com;NA;01067;"semi;colon"\n008;;DE;10115;null\n',
        encoding="utf-8",
    )
    config = make_config(tmp_path, {"type": "csv", "delimiter": ";"}, {"path": "customers.csv"})
    table = read(config)
    assert table.schema.types == [pa.string()] * 5
    assert table.to_pylist() == [
        {"id": "007", "email": "a@example.com", "country": "NA", "zip": "01067", "note": "semi;colon"},
        {"id": "008", "email": None, "country": "DE", "zip": "10115", "note": "null"},
    ]


def test_csv_in_another_encoding_and_a_wrong_encoding(tmp_path):
    (tmp_path / "c.csv").write_bytes("id,email,name\n1,j@example.com,Jérôme Müller\n".encode("cp1252"))
    config = make_config(tmp_path, {"type": "csv", "encoding": "cp1252"}, {"path": "c.csv"})
    assert read(config)["name"].to_pylist() == ["Jérôme Müller"]

    wrong = make_config(tmp_path, {"type": "csv"}, {"path": "c.csv"})
    with pytest.raises(SourceError, match=r"is not utf-8 text.*connector\.encoding"):
        read(wrong)


def test_malformed_csv_names_the_row(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("id,email\n1,a@example.com\n2,b@example.com,surplus\n")
    config = make_config(tmp_path, {"type": "csv"}, {"path": "c.csv"})
    with pytest.raises(SourceError) as info:
        read(config)
    message = str(info.value)
    assert str(path) in message and "row 3" in message and "Expected 2 columns, got 3" in message


def test_parquet_types_become_text(tmp_path):
    table = pa.table(
        {
            "id": pa.array([1, 2], pa.int64()),
            "email": ["a@example.com", None],
            "score": pa.array([1.5, None]),
            "vip": [True, False],
            "born": pa.array([dt.date(1990, 5, 17), None], pa.date32()),
            "seen": pa.array(
                [dt.datetime(2024, 1, 2, 3, 4, 5), None], pa.timestamp("ns", tz="Europe/Berlin")
            ),
            "amount": pa.array([decimal.Decimal("12.50"), decimal.Decimal("3.00")], pa.decimal128(10, 2)),
            "address": pa.array([{"city": "Köln", "zip": "50667"}, None]),
            "tags": pa.array([["a", "b"], []]),
        }
    )
    pq.write_table(table, tmp_path / "c.parquet")
    config = make_config(tmp_path, {"type": "parquet"}, {"path": "c.parquet"})
    result = read(config)
    assert result.schema.types == [pa.string()] * table.num_columns
    first, second = result.to_pylist()
    assert first == {
        "id": "1",
        "email": "a@example.com",
        "score": "1.5",
        "vip": "true",
        "born": "1990-05-17",
        "seen": "2024-01-02 03:04:05Z",
        "amount": "12.50",
        "address": '{"city":"Köln","zip":"50667"}',
        "tags": '["a","b"]',
    }
    assert second["tags"] == "[]" and second["address"] is None and second["seen"] is None


def test_jsonl_keeps_nested_values_as_json_text(tmp_path):
    lines = [
        {"id": 1, "email": "a@example.com", "address": {"city": "Berlin", "geo": [52.5, 13.4]}, "vip": True},
        {"id": "C-2", "email": None, "phones": ["+4930123"], "score": 12.5},
    ]
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n\n"
    (tmp_path / "c.jsonl").write_text(text)
    config = make_config(tmp_path, {"type": "jsonl"}, {"path": "c.jsonl"})
    table = read(config)
    assert table.column_names == ["id", "email", "address", "vip", "phones", "score"]
    assert table.to_pylist() == [
        {
            "id": "1",
            "email": "a@example.com",
            "address": '{"city":"Berlin","geo":[52.5,13.4]}',
            "vip": "true",
            "phones": None,
            "score": None,
        },
        {"id": "C-2", "email": None, "address": None, "vip": None, "phones": '["+4930123"]', "score": "12.5"},
    ]


def test_jsonl_keys_holding_path_characters_are_read_as_their_own_columns(tmp_path):
    odd = {"a/b": "slash", "x~1": "tilde", "with.dot": "dot", 'say "hi"': "quote", "[0]": "brackets"}
    lines = [{"id": 1, "email": "a@example.com", **odd}, {"id": 2, "email": None, "a/b": None, "ünï": {"n": ["x"]}}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines))
    config = make_config(tmp_path, {"type": "jsonl"}, {"path": "c.jsonl"})
    table = read(config)
    assert table.column_names == ["id", "email", *odd, "ünï"]
    assert table.to_pylist() == [
        {"id": "1", "email": "a@example.com", **odd, "ünï": None},
        {"id": "2", "email": None, **dict.fromkeys(odd), "ünï": '{"n":["x"]}'},
    ]


def test_jsonl_columns_are_the_keys_in_order_of_first_appearance(tmp_path):
    # Records sharing a list of keys are unnested once: the order must stay that of reading every record.
    import random
    rng = random.Random(11)
    keys = ["id", "email", *(f"k{i}" for i in range(12))]
    lines = [{"id": n, "email": "a", **{k: n for k in rng.sample(keys[2:], rng.randint(0, 4))}} for n in range(300)]
    for line in rng.sample(lines, 40):  # the same keys in another order
        items = list(line.items())
        rng.shuffle(items)
        line.clear()
        line.update(items)
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(line) for line in lines))
    config = make_config(tmp_path, {"type": "jsonl"}, {"path": "c.jsonl"})
    assert read(config).column_names == list(dict.fromkeys(k for line in lines for k in line))


def test_jsonl_skips_empty_and_space_only_lines_and_counts_them_in_line_numbers(tmp_path):
    (tmp_path / "c.jsonl").write_text('   {"id": 1, "email": "a"}  \n\n   \n{"id": 2, "email": "b"}\n \t\n')
    config = make_config(tmp_path, {"type": "jsonl"}, {"path": "c.jsonl"})
    # A tab is not blank: that line is reported, with its number counting the skipped ones.
    with pytest.raises(SourceError, match=r"1 line\(s\) are not valid JSON, first at line 5"):
        read(config)
    (tmp_path / "c.jsonl").write_text('   {"id": 1, "email": "a"}  \n\n   \n{"id": 2, "email": "b"}\n  \n')
    assert read(config).to_pylist() == [{"id": "1", "email": "a"}, {"id": "2", "email": "b"}]


def test_malformed_jsonl_names_the_line(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"id": 1, "email": "a@example.com"}\n\n{"id": 2, "email": \n')
    config = make_config(tmp_path, {"type": "jsonl"}, {"path": "c.jsonl"})
    with pytest.raises(SourceError, match=r"1 line\(s\) are not valid JSON, first at line 3"):
        read(config)


def test_missing_file_names_the_path(tmp_path):
    config = make_config(tmp_path, {"type": "csv"}, {"path": "exports/customers.csv"})
    with pytest.raises(SourceError) as info:
        read(config)
    message = str(info.value)
    assert "source 'shop', entity 'customers'" in message
    assert f"file not found: {tmp_path / 'exports' / 'customers.csv'}" in message
    assert "entities.customers.path" in message


def test_missing_mapped_column_lists_missing_and_available(tmp_path):
    (tmp_path / "c.csv").write_text("id,Email,updated\n1,a@example.com,2024-01-01\n")
    config = make_config(
        tmp_path,
        {"type": "csv"},
        {"path": "c.csv", "identifiers": {"loyalty_card": "card_no"}},
    )
    with pytest.raises(SourceError) as info:
        read(config)
    message = str(info.value)
    assert "['email', 'card_no']" in message
    assert "available columns: ['id', 'Email', 'updated']" in message
    assert "different case: {'email': 'Email'}" in message


# -- incremental filters ---------------------------------------------------------------------------
def test_timestamps_compare_as_instants_not_text(tmp_path):
    rows = [
        ("1", "2024-03-01T10:00:00Z"),
        ("2", "2024-03-01T12:30:00+02:00"),  # 10:30 UTC
        ("3", "2024-03-01 11:00:00"),  # naive: UTC
        ("4", "2024-03-02"),
        ("5", "2024-04-01T00:00:00Z"),  # after the as-of cutoff
        ("6", ""),  # no value: a cursor load cannot place it
    ]
    body = "id,email,updated\n" + "".join(f"{i},{i}@example.com,{ts}\n" for i, ts in rows)
    (tmp_path / "c.csv").write_text(body)
    config = make_config(
        tmp_path, {"type": "csv"}, {"path": "c.csv", "incremental": {"mode": "cursor", "column": "updated"}}
    )
    assert ids(read(config)) == ["1", "2", "3", "4"]
    # "2024-03-01T12:30:00+02:00" sorts after "2024-03-01T10:00:00Z" as text, but is 10:30 UTC.
    assert ids(read(config, after="2024-03-01T10:15:00Z")) == ["2", "3", "4"]
    assert ids(read(config, after="2024-03-01 10:30:00")) == ["3", "4"]
    assert ids(read(config, until=dt.datetime(2024, 3, 1, 10, 30, tzinfo=dt.UTC))) == ["1", "2"]


def test_timestamp_format_and_timezone(tmp_path):
    body = (
        "id,email,changed\n1,a@x.de,31.03.2024 01:30\n2,b@x.de,31.03.2024 03:30\n3,c@x.de,01.04.2024 00:30\n"
    )
    (tmp_path / "c.csv").write_text(body)
    config = make_config(
        tmp_path,
        {"type": "csv"},
        {
            "path": "c.csv",
            "timestamp_format": "%d.%m.%Y %H:%M",
            "timezone": "Europe/Berlin",
            "incremental": {"mode": "cursor", "column": "changed"},
        },
    )
    # 01.04.2024 00:30 in Berlin (CEST) is 2024-03-31 22:30 UTC: inside the cutoff.
    assert ids(read(config)) == ["1", "2", "3"]
    # 31.03.2024 03:30 CEST is 01:30 UTC; the stored cursor "31.03.2024 01:30" is 00:30 UTC.
    assert ids(read(config, after="31.03.2024 01:30")) == ["2", "3"]
    assert ids(read(config, until=dt.datetime(2024, 3, 31, 1, 0, tzinfo=dt.UTC))) == ["1"]


def test_integer_cursor_compares_numbers(tmp_path):
    (tmp_path / "c.csv").write_text("id,email,seq\n1,a@x.de,9\n2,b@x.de,10\n3,c@x.de,100\n")
    config = make_config(
        tmp_path,
        {"type": "csv"},
        {"path": "c.csv", "incremental": {"mode": "cursor", "column": "seq", "cursor_type": "integer"}},
    )
    assert ids(read(config, after="9")) == ["2", "3"]


def test_values_that_are_no_timestamps_are_reported(tmp_path):
    (tmp_path / "c.csv").write_text("id,email,updated\n1,a@x.de,2024-01-01\n2,b@x.de,yesterday\n")
    config = make_config(
        tmp_path, {"type": "csv"}, {"path": "c.csv", "incremental": {"mode": "cursor", "column": "updated"}}
    )
    with pytest.raises(
        SourceError, match=r"'updated' 1 value\(s\) are not ISO 8601 timestamps.*\['yesterday'\]"
    ):
        read(config)


# -- SQL sources -------------------------------------------------------------------------------------
ORDER_COLUMNS = {
    "order_id": "order_id",
    "source_customer_id": "customer_id",
    "ordered_at": "ordered_at",
    "total_amount": "total",
}


def orders_config(tmp_path: Path, url: str, entity: dict[str, Any]) -> CrmConfig:
    entity = {"columns": ORDER_COLUMNS, "defaults": {"status": "completed"}, **entity}
    data = {
        "sources": [
            {"name": "shop", "connector": {"type": "sql", "url": url}, "entities": {"orders": entity}}
        ]
    }
    return config_from_dict(data, tmp_path / "crm.yaml")


def create_orders(url: str, rows: int, schema: str | None = None) -> sa.Table:
    """An orders table with typed columns, one order every six hours from 2024-03-01."""
    engine = sa.create_engine(url)
    metadata = sa.MetaData(schema=schema)
    orders = sa.Table(
        "orders",
        metadata,
        sa.Column("order_id", sa.Integer, primary_key=True),
        sa.Column("customer_id", sa.String(20)),
        sa.Column("ordered_at", sa.DateTime),
        sa.Column("total", sa.Numeric(10, 2)),
        sa.Column("status", sa.String(20)),
    )
    with engine.begin() as conn:
        if schema:
            conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        metadata.create_all(conn)
        start = dt.datetime(2024, 3, 1)
        conn.execute(
            orders.insert(),
            [
                {
                    "order_id": i,
                    "customer_id": f"C{i % 7}",
                    "ordered_at": start + dt.timedelta(hours=6 * i),
                    "total": decimal.Decimal(i) + decimal.Decimal("0.50"),
                    "status": "completed",
                }
                for i in range(1, rows + 1)
            ],
        )
    engine.dispose()
    return orders


def order_ids(table: pa.Table) -> list[int]:
    return sorted(int(v) for v in table["order_id"].to_pylist())


def test_sqlite_table_with_cursor_pushdown(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    create_orders(url, 40)
    config = orders_config(
        tmp_path, url, {"table": "orders", "incremental": {"mode": "cursor", "column": "ordered_at"}}
    )
    source = config.sources[0]
    # Order 18 is at 2024-03-05 12:00, order 30 at 2024-03-08 12:00.
    result = read_entity(
        config,
        source,
        "orders",
        after="2024-03-05 12:00:00",
        until=dt.datetime(2024, 3, 8, 12, tzinfo=dt.UTC),
    )
    assert order_ids(result.table) == list(range(19, 31))
    assert result.table["ordered_at"].to_pylist()[0] == "2024-03-05 18:00:00.000000"
    assert result.rows_read < 40, "the filter was pushed down to SQLite (with a day of margin)"


def test_sqlite_query_and_relative_path(tmp_path):
    create_orders(f"sqlite:///{tmp_path / 'shop.db'}", 10)
    query = "SELECT o.*, 'x:y 100%' AS tag FROM orders o WHERE o.status = 'completed' AND o.order_id <= 5;"
    config = orders_config(tmp_path, "sqlite:///shop.db", {"query": query})
    table = read_source(config, config.sources[0], "orders", after=None, until=UNTIL)
    assert order_ids(table) == [1, 2, 3, 4, 5]
    assert set(table["tag"].to_pylist()) == {"x:y 100%"}
    assert table["total"].to_pylist()[0] == "1.5"


def test_sqlite_missing_table_and_missing_file(tmp_path):
    create_orders(f"sqlite:///{tmp_path / 'shop.db'}", 1)
    config = orders_config(tmp_path, "sqlite:///shop.db", {"table": "order"})
    with pytest.raises(
        SourceError, match=r"table order does not exist in sqlite:///.*shop\.db \(tables there: orders\)"
    ):
        read_source(config, config.sources[0], "orders", after=None, until=UNTIL)
    config = orders_config(tmp_path, "sqlite:///nowhere.db", {"table": "orders"})
    with pytest.raises(SourceError, match=r"SQLite database file not found: .*nowhere\.db"):
        read_source(config, config.sources[0], "orders", after=None, until=UNTIL)
    assert not (tmp_path / "nowhere.db").exists()


def test_sqlite_dynamic_typing_becomes_text(tmp_path):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE contacts (id, email, score)"))
        conn.execute(
            sa.text("INSERT INTO contacts VALUES (:id, :email, :score)"),
            [
                {"id": 1, "email": "a@example.com", "score": 3.5},
                {"id": "A2", "email": None, "score": "n/a"},
                {"id": 3, "email": b"b@example.com", "score": None},
            ],
        )
    engine.dispose()
    config = make_config(tmp_path, {"type": "sql", "url": url}, {"table": "contacts"})
    table = read(config)
    assert table.to_pylist() == [
        {"id": "1", "email": "a@example.com", "score": "3.5"},
        {"id": "A2", "email": None, "score": "n/a"},
        {"id": "3", "email": "b@example.com", "score": None},
    ]


def test_configuration_the_data_cannot_honour(tmp_path):
    (tmp_path / "c.csv").write_text("id,email,seq\n1,a@x.de,1\n")
    zone = make_config(
        tmp_path,
        {"type": "csv"},
        {"path": "c.csv", "timezone": "Mars/Olympus", "incremental": {"mode": "cursor", "column": "seq"}},
    )
    with pytest.raises(SourceError, match=r"unknown timezone 'Mars/Olympus'.*IANA name"):
        read(zone)
    daily = make_config(
        tmp_path,
        {"type": "csv"},
        {"path": "c.csv", "incremental": {"mode": "daily", "column": "seq", "cursor_type": "integer"}},
    )
    with pytest.raises(SourceError, match=r"daily mode splits rows by day and needs a timestamp column"):
        read(daily)


@pytest.mark.mariadb
def test_mariadb_source_with_pushdown(tmp_path, mysql_url):
    create_orders(mysql_url, 60)
    config = orders_config(
        tmp_path, mysql_url, {"table": "orders", "incremental": {"mode": "cursor", "column": "ordered_at"}}
    )
    source = config.sources[0]
    everything = read_entity(config, source, "orders", until=UNTIL)
    assert order_ids(everything.table) == list(range(1, 61))
    assert everything.table.schema.types == [pa.string()] * 5
    first = everything.table.to_pylist()[0]
    assert first == {
        "order_id": "1",
        "customer_id": "C1",
        "ordered_at": "2024-03-01 06:00:00",
        "total": "1.50",
        "status": "completed",
    }
    later = read_entity(
        config, source, "orders", after="2024-03-10 00:00:00", until=dt.datetime(2024, 3, 12, tzinfo=dt.UTC)
    )
    assert order_ids(later.table) == list(range(37, 45))
    assert later.rows_read < 20, "the filter was pushed down to MariaDB"


@pytest.mark.postgres
def test_postgres_schema_qualified_table_and_typed_values(tmp_path, postgres_url):
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA crm"))
        conn.execute(
            sa.text(
                "CREATE TABLE crm.contacts (id uuid, email text, changed timestamptz, profile jsonb, "
                '"Score" numeric(4,1))'
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO crm.contacts VALUES "
                "(:id1, 'a@example.com', '2024-03-01 10:00+02', '{\"tier\": \"gold\", \"tags\": [1]}', 4.5), "
                "(:id2, 'b@example.com', '2024-03-20 10:00+00', NULL, NULL)"
            ),
            {"id1": uuid.UUID(int=1), "id2": uuid.UUID(int=2)},
        )
    engine.dispose()
    config = make_config(
        tmp_path,
        {"type": "sql", "url": postgres_url},
        {"table": "crm.contacts", "incremental": {"mode": "cursor", "column": "changed"}},
    )
    result = read_entity(
        config, config.sources[0], "customers", until=dt.datetime(2024, 3, 10, tzinfo=dt.UTC)
    )
    assert result.table.to_pylist() == [
        {
            "id": "00000000-0000-0000-0000-000000000001",
            "email": "a@example.com",
            "changed": "2024-03-01 08:00:00Z",
            "profile": '{"tags": [1], "tier": "gold"}',  # jsonb keeps keys in its own order
            "Score": "4.5",
        }
    ]
    assert result.rows_read == 1, "timestamptz bounds are pushed down exactly"
    assert ids(read(config, after="2024-03-01 08:00:00Z", until=UNTIL)) == [
        "00000000-0000-0000-0000-000000000002"
    ]


@pytest.mark.postgres
def test_postgres_query_with_casts(tmp_path, postgres_url):
    create_orders(postgres_url, 12)
    query = "SELECT order_id, customer_id, ordered_at::date AS ordered_at, total FROM orders WHERE total > 3"
    config = orders_config(
        tmp_path, postgres_url, {"query": query, "incremental": {"mode": "daily", "column": "ordered_at"}}
    )
    table = read_source(
        config, config.sources[0], "orders", after=None, until=dt.datetime(2024, 3, 2, tzinfo=dt.UTC)
    )
    assert order_ids(table) == [3, 4, 5, 6, 7]
    assert table["ordered_at"].to_pylist() == ["2024-03-01"] + ["2024-03-02"] * 4


def test_unreachable_database_names_the_url_without_password(tmp_path):
    config = make_config(
        tmp_path, {"type": "sql", "url": "mysql+pymysql://root:s3cret@127.0.0.1:1/x"}, {"table": "customers"}
    )
    with pytest.raises(SourceError) as info:
        read(config)
    message = str(info.value)
    assert "cannot connect to mysql+pymysql://root:***@127.0.0.1:1/x" in message
    assert "s3cret" not in message
    assert "\n" not in message and "Traceback" not in message and "sqlalche.me" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_unreachable_database_without_password(tmp_path):
    config = make_config(
        tmp_path, {"type": "sql", "url": "mysql+pymysql://root@127.0.0.1:1/x"}, {"table": "c"}
    )
    with pytest.raises(
        SourceError, match=r"cannot connect to mysql\+pymysql://root@127\.0\.0\.1:1/x: .*refused"
    ):
        read(config)


# -- HTTP sources -------------------------------------------------------------------------------------
Handler = Callable[[str, dict[str, str], dict[str, str]], tuple[int, dict[str, str], bytes]]


class Api:
    """A local HTTP server answering with ``handler(path, query, headers)``; it records every request."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        api = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                api.requests.append((parts.path, query, headers))
                status, extra, body = api.handler(parts.path, query, headers)
                self.send_response(status)
                for key, value in {"Content-Type": "application/json", **extra}.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], Api]]:
    apis: list[Api] = []

    def start(handler: Handler) -> Api:
        apis.append(Api(handler))
        return apis[-1]

    yield start
    for api in apis:
        api.close()


def json_body(value: Any) -> bytes:
    return json.dumps(value).encode()


RECORDS = [
    {"id": i, "email": f"c{i}@example.com", "updated": f"2024-03-{1 + i % 28:02d}T08:00:00Z"}
    for i in range(1, 251)
]


def http_config(
    tmp_path: Path, url: str, http: dict[str, Any], entity: dict[str, Any] | None = None
) -> CrmConfig:
    return make_config(
        tmp_path, {"type": "http", "url": url, "http": http}, {"endpoint": "/v1/contacts", **(entity or {})}
    )


def test_http_numbered_pages_with_cursor_and_headers(tmp_path, serve):
    def handler(path, query, headers):
        page, size = int(query["page"]), int(query["per_page"])
        return 200, {}, json_body({"data": RECORDS[(page - 1) * size : page * size], "total": len(RECORDS)})

    api = serve(handler)
    config = http_config(
        tmp_path,
        api.url + "/",
        {"page_size": 100, "cursor_param": "updated_since", "headers": {"Authorization": "Bearer t0ken"}},
        {"incremental": {"mode": "cursor", "column": "updated"}},
    )
    table = read(config, after="2024-03-01T00:00:00Z")
    assert table.num_rows == 250 and ids(table)[:3] == ["1", "2", "3"]
    assert [q["page"] for _, q, _ in api.requests] == ["1", "2", "3"]  # the third page is short: stop
    path, query, headers = api.requests[0]
    assert path == "/v1/contacts" and query["updated_since"] == "2024-03-01T00:00:00Z"
    assert headers["authorization"] == "Bearer t0ken"


def test_http_stops_at_an_empty_page(tmp_path, serve):
    def handler(path, query, headers):
        page = int(query["page"])
        return 200, {}, json_body({"data": RECORDS[(page - 1) * 50 : page * 50] if page <= 2 else []})

    api = serve(handler)
    table = read(http_config(tmp_path, api.url, {"page_size": 50}))
    assert table.num_rows == 100 and len(api.requests) == 3


def test_http_next_links_and_nested_fields(tmp_path, serve):
    def handler(path, query, headers):
        offset = int(query.get("offset", 0))
        page = RECORDS[offset : offset + 100]
        nxt = f"/v1/contacts?offset={offset + 100}&limit=100" if offset + 100 < len(RECORDS) else None
        return 200, {}, json_body({"result": {"items": page}, "links": {"next": nxt}})

    api = serve(handler)
    config = http_config(tmp_path, api.url, {"records_field": "result.items", "next_field": "links.next"})
    table = read(config)
    assert table.num_rows == 250 and len(set(ids(table))) == 250
    assert [q.get("offset") for _, q, _ in api.requests] == [None, "100", "200"]


def test_http_bare_list_of_records(tmp_path, serve):
    api = serve(
        lambda path, query, headers: (200, {}, json_body(RECORDS[:3] if query["page"] == "1" else []))
    )
    table = read(http_config(tmp_path, api.url, {"records_field": None}))
    assert ids(table) == ["1", "2", "3"]


def test_http_retries_503_then_succeeds(tmp_path, serve, monkeypatch, caplog):
    monkeypatch.setattr(http_api, "RETRY_BACKOFF_SECONDS", 0.05)
    answers = [
        (503, {"Retry-After": "0"}, b'{"error": "warming up"}'),  # the server's wait wins over backoff
        (503, {}, b'{"error": "still warming up"}'),  # no Retry-After: backoff 0.05 s x 2**1
    ]

    def handler(path, query, headers):
        return answers.pop(0) if answers else (200, {}, json_body({"data": RECORDS[:5]}))

    api = serve(handler)
    with caplog.at_level("WARNING", logger=http_api.__name__):
        table = read(http_config(tmp_path, api.url, {"max_retries": 3}))
    assert table.num_rows == 5 and len(api.requests) == 3
    waits = [record.getMessage().rsplit(" in ", 1)[1] for record in caplog.records]
    assert waits == ["0.0 s", "0.1 s"]


def test_http_gives_up_on_500_and_names_the_url(tmp_path, serve):
    api = serve(lambda path, query, headers: (500, {"Retry-After": "0"}, b"boom"))
    base = api.url.replace("http://", "http://reader:pa55word@")
    config = http_config(tmp_path, base, {"max_retries": 2})
    with pytest.raises(SourceError) as info:
        read(config)
    message = str(info.value)
    assert len(api.requests) == 3
    assert f"GET http://reader:***@127.0.0.1:{api.server.server_port}/v1/contacts?" in message
    assert "failed after 3 attempt(s): HTTP 500" in message and "pa55word" not in message


def test_http_client_errors_are_not_retried(tmp_path, serve):
    api = serve(lambda path, query, headers: (401, {}, b'{"error": "invalid token"}'))
    with pytest.raises(SourceError, match=r"HTTP 401 Unauthorized from .*invalid token.*http\.headers"):
        read(http_config(tmp_path, api.url, {"max_retries": 3}))
    assert len(api.requests) == 1


def test_http_response_that_is_not_json_or_lacks_the_records_field(tmp_path, serve):
    html = serve(lambda path, query, headers: (200, {"Content-Type": "text/html"}, b"<html>login</html>"))
    with pytest.raises(SourceError, match=r"is not JSON \(text/html\): <html>login</html>"):
        read(http_config(tmp_path, html.url, {}))
    other = serve(lambda path, query, headers: (200, {}, json_body({"items": [], "count": 0})))
    with pytest.raises(SourceError, match=r"has no field 'data'; its fields: \['count', 'items'\]"):
        read(http_config(tmp_path, other.url, {}))


def test_http_timeout_is_retried_then_reported(tmp_path, serve, monkeypatch):
    monkeypatch.setattr(http_api, "RETRY_BACKOFF_SECONDS", 0.01)
    release = threading.Event()

    def slow(path, query, headers):
        release.wait(2)
        return 200, {}, json_body({"data": []})

    api = serve(slow)
    try:
        with pytest.raises(SourceError, match=r"failed after 2 attempt\(s\): no response within 0.2 s"):
            read(http_config(tmp_path, api.url, {"timeout_seconds": 0.2, "max_retries": 1}))
    finally:
        release.set()


def test_http_without_records_has_the_mapped_columns(tmp_path, serve):
    api = serve(lambda path, query, headers: (200, {}, json_body({"data": []})))
    table = read(http_config(tmp_path, api.url, {}))
    assert table.num_rows == 0 and table.column_names == ["id", "email"]
