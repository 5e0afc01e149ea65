"""Seconds that staging takes on synthetic raw frames of nightly-benchmark size.

    .venv/bin/python benchmarks/staging_micro.py [--customers 250000] [--orders 1000000] [--items 2500000]

Builds raw frames shaped like ingest's output (text values, lineage columns; a few percent repeated
versions and bad values) and times :func:`crm_pipelines.staging.stage_entity` for customers, orders
and order items, then :func:`crm_pipelines.staging.referenced_customers`. No warehouse involved.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

import numpy as np
import pandas as pd

from crm_pipelines.config import CrmConfig, config_from_dict
from crm_pipelines.staging.references import referenced_customers
from crm_pipelines.staging.stage import stage_entity

FIRST = np.array(["anna", "Ben", "CLARA", "David", "Eva", "Jörg", "Ünal", "Marie-Luise", "Tom", "Zoë"])
LAST = np.array(["Müller", "SCHMIDT", "van der Berg", "McDonald", "o'neil", "Nguyen", "Kowalski", "Rossi"])
DOMAINS = np.array(["gmail.com", "web.de", "GMX.de", "outlook.com", "firma-beispiel.de", "yahoo.co.uk"])
COUNTRIES = np.array(["DE", "Deutschland", "germany", "AT", "Österreich", "CH", "UK", "FR", None])
STATUSES = np.array(["paid", "Shipped", "completed", "canceled", "refunded", "open", "processing"])
CURRENCIES = np.array(["EUR", "eur", "USD", "CHF"])
AS_OF_END = dt.datetime(2025, 6, 30, 23, 59, 59, tzinfo=dt.UTC)


def benchmark_config() -> CrmConfig:
    customers = {
        "source_record_id": "id",
        "first_name": "first",
        "last_name": "last",
        "email": "email",
        "phone": "phone",
        "country": "country",
        "date_of_birth": "dob",
        "gender": "gender",
        "city": "city",
        "postcode": "zip",
        "created_at": "created",
        "updated_at": "updated",
    }
    orders = {
        "order_id": "id",
        "source_customer_id": "customer",
        "ordered_at": "at",
        "status": "status",
        "currency": "currency",
        "total_amount": "total",
    }
    items = {"order_id": "order", "product_id": "sku", "quantity": "qty", "unit_price": "price"}
    return config_from_dict(
        {
            "fx_rates": {"EUR": 1.0, "USD": 0.92, "CHF": 1.04},
            "sources": [
                {
                    "name": "shop",
                    "connector": {"type": "csv"},
                    "entities": {
                        "customers": {"path": "c.csv", "columns": customers, "identifiers": {"card": "card"}},
                        "orders": {"path": "o.csv", "columns": orders},
                        "order_items": {"path": "i.csv", "columns": items},
                    },
                }
            ],
        }
    )


def _lineage(rng: np.random.Generator, length: int, frame: dict[str, object]) -> pd.DataFrame:
    batch = rng.integers(0, 3, length)
    frame.update(
        _source="shop",
        _ingested_at=pd.Timestamp("2025-06-01", tz="UTC") + pd.to_timedelta(batch, unit="D"),
        _batch_id=pd.Series(batch).astype("str").radd("batch-"),
        _partition_date=None,
    )
    return pd.DataFrame(frame).astype({c: "str" for c in frame if not c.startswith("_")})


def _ids(prefix: str, length: int, repeat_share: float, rng: np.random.Generator) -> pd.Series:
    """Ids with a share of them repeated (older versions of the same record)."""
    numbers = np.arange(length)
    repeated = rng.random(length) < repeat_share
    numbers[repeated] = rng.integers(0, length, int(repeated.sum()))
    return pd.Series(numbers).astype("str").radd(prefix)


def _timestamps(rng: np.random.Generator, length: int) -> pd.Series:
    seconds = rng.integers(0, 3 * 365 * 86400, length)
    stamps = pd.Timestamp("2022-01-01") + pd.to_timedelta(seconds, unit="s")
    return pd.Series(stamps).dt.strftime("%Y-%m-%dT%H:%M:%S")


def raw_customers(rng: np.random.Generator, length: int) -> pd.DataFrame:
    person = rng.integers(0, length, length)
    first, last = FIRST[person % len(FIRST)], LAST[person % len(LAST)]
    # Mailbox names are ASCII in practice ("jorg.mueller"); the names themselves keep their accents.
    ascii_first = pd.Series(first).str.normalize("NFKD").str.encode("ascii", "ignore").str.decode("ascii")
    local = ascii_first.str.lower() + "." + pd.Series(person).astype("str")
    email = local + "@" + DOMAINS[person % len(DOMAINS)]
    subscriber = pd.Series(rng.integers(1_000_000, 9_999_999, length)).astype("str")
    country = COUNTRIES[rng.integers(0, len(COUNTRIES), length)]
    german = np.isin(country, ["DE", "Deutschland", "germany", None])
    # National formats (030 ...) only where the record's country reads them as German numbers.
    styles = np.where(german, rng.integers(0, 4, length), 1 + 2 * rng.integers(0, 2, length))
    phone = np.select(
        [styles == 0, styles == 1, styles == 2],
        ["030 " + subscriber, "+49 30 " + subscriber, "(030) " + subscriber],
        "0049-30-" + subscriber,
    )
    dob = pd.Series(pd.Timestamp("1950-01-01") + pd.to_timedelta(rng.integers(0, 20000, length), unit="D"))
    frame = {
        "id": _ids("c", length, 0.04, rng),
        "first": first,
        "last": last,
        "email": email.where(rng.random(length) > 0.01, "noemail@shop.de"),
        "phone": phone,
        "country": country,
        "dob": dob.dt.strftime("%Y-%m-%d"),
        "gender": np.array(["f", "m", "w", "M", "divers", None])[rng.integers(0, 6, length)],
        "city": "Berlin",
        "zip": pd.Series(rng.integers(10000, 14000, length)).astype("str"),
        "created": _timestamps(rng, length),
        "updated": _timestamps(rng, length),
        "card": pd.Series(rng.integers(0, 10**9, length)).astype("str").radd("lc-"),
    }
    return _lineage(rng, length, frame)


def raw_orders(rng: np.random.Generator, length: int, customers: int) -> pd.DataFrame:
    totals = rng.uniform(5, 500, length).round(2)
    status = STATUSES[rng.integers(0, len(STATUSES), length)]
    totals[status == "refunded"] *= -1
    frame = {
        "id": _ids("o", length, 0.02, rng),
        "customer": pd.Series(rng.integers(0, customers, length)).astype("str").radd("c"),
        "at": _timestamps(rng, length),
        "status": status,
        "currency": CURRENCIES[rng.integers(0, len(CURRENCIES), length)],
        "total": pd.Series(totals).astype("str"),
    }
    return _lineage(rng, length, frame)


def raw_items(rng: np.random.Generator, length: int, orders: int) -> pd.DataFrame:
    frame = {
        "order": pd.Series(rng.integers(0, orders, length)).astype("str").radd("o"),
        "sku": pd.Series(rng.integers(0, 5000, length)).astype("str").radd("sku-"),
        "qty": pd.Series(rng.integers(1, 5, length)).astype("str"),
        "price": pd.Series(rng.uniform(1, 200, length).round(2)).astype("str"),
    }
    return _lineage(rng, length, frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=250_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=2_500_000)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    config = benchmark_config()
    shop = config.source("shop")
    frames = {
        "customers": raw_customers(rng, args.customers),
        "orders": raw_orders(rng, args.orders, args.customers),
        "order_items": raw_items(rng, args.items, args.orders),
    }
    staged: dict[str, pd.DataFrame] = {}
    # CPU seconds next to wall seconds: on a shared machine the CPU figure is the one that repeats.
    wall_total = cpu_total = 0.0
    for entity, raw in frames.items():
        wall, cpu = time.perf_counter(), time.process_time()
        result = stage_entity(config, entity, [(shop, raw)], run_id="bench", as_of_end=AS_OF_END)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        wall_total, cpu_total = wall_total + wall, cpu_total + cpu
        staged[entity] = result.staged
        print(
            f"{entity:12} {len(raw):>9,} rows: {wall:6.2f} s wall {cpu:6.2f} s cpu  "
            f"staged {len(result.staged):>9,}  quarantined {len(result.quarantined):>7,}  "
            f"superseded {result.summary['rows_superseded']:>7,}"
        )
    wall, cpu = time.perf_counter(), time.process_time()
    stubs = referenced_customers(config, staged, staged["customers"])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    wall_total, cpu_total = wall_total + wall, cpu_total + cpu
    print(f"{'referenced':12} {len(stubs):>9,} stubs: {wall:5.2f} s wall {cpu:6.2f} s cpu")
    print(f"{'total':12} {wall_total:16.2f} s wall {cpu_total:6.2f} s cpu")


if __name__ == "__main__":
    main()
