"""The second night of the nightly benchmark: about 1% of every source's rows delivered again, changed.

Each changed row keeps its id and gets its change time moved to the new as-of day, as a source
system stamps an edited record; file sources get the new versions appended, the shop database has
its rows updated in place. :func:`incremental_settings` lets the file sources be read by that change
time (``incremental: cursor``), the way a production export with change stamps is read.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

# file: (source, entity, change-time column)
FILES = {
    "crm_contacts.csv": ("crm", "customers", "updated_at"),
    "crm_consents.csv": ("crm", "subscriptions", "changed_at"),
    "email_subscribers.csv": ("email", "subscriptions", "status_changed_at"),
    "email_events.csv": ("email", "campaign_events", "occurred_at"),
    "survey_responses.csv": ("surveys", "survey_responses", "submitted_at"),
    "support_tickets.jsonl": ("support", "support_tickets", "updated_at"),
}
SHOP_TABLES = {"customers": "updated_at", "orders": "updated_at"}
ORDER_ITEMS_QUERY = (
    "SELECT i.*, o.updated_at AS order_updated_at FROM order_items i JOIN orders o ON o.id = i.order_id"
)


def _restamp(values: pa.Array, day: dt.date) -> pa.Array:
    """The same timestamps (same format) moved to ``day``: the first 10 characters are the date."""
    text = values.cast(pa.string()).fill_null(f"{day.isoformat()} 09:00:00")
    return pa.array([day.isoformat() + v[10:] for v in text.to_pylist()], pa.string())


def change_sources(demo_dir: Path, day: dt.date, share: float = 0.01, seed: int = 7) -> dict[str, int]:
    """Deliver ``share`` of every source's rows again, changed on ``day``; returns rows changed per file."""
    rng = np.random.default_rng(seed)
    changed: dict[str, int] = {}
    for name, (_, _, column) in FILES.items():
        path = demo_dir / name
        if not path.exists():
            continue
        if name.endswith(".csv"):
            with path.open(newline="", encoding="utf-8") as f:
                header = next(csv.reader(f))
            options = pacsv.ConvertOptions(column_types={c: pa.string() for c in header})
            table = pacsv.read_csv(path, convert_options=options)
        else:
            table = pajson.read_json(path)
        rows = np.sort(rng.choice(table.num_rows, size=max(1, int(table.num_rows * share)), replace=False))
        picked = table.take(pa.array(rows))
        picked = picked.set_column(picked.schema.get_field_index(column), column, _restamp(picked[column], day))
        if name.endswith(".csv"):
            with path.open("ab") as f:
                pacsv.write_csv(picked, f, pacsv.WriteOptions(include_header=False, quoting_style="needed"))
        else:
            with path.open("a") as f:
                for record in picked.to_pylist():
                    f.write(json.dumps(record, default=str) + "\n")
        changed[name] = picked.num_rows
    shop = demo_dir / "shop.sqlite"
    if shop.exists():
        with sqlite3.connect(shop) as conn:
            for table, column in SHOP_TABLES.items():
                total = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                ids = rng.choice(total, size=max(1, int(total * share)), replace=False) + 1
                conn.executemany(
                    f"UPDATE {table} SET {column} = ? || substr({column}, 11) WHERE rowid = ?",
                    [(day.isoformat(), int(i)) for i in ids],
                )
                changed[f"shop.{table}"] = len(ids)
    return changed


def incremental_settings(config: dict) -> list[str]:
    """Read every demo source by its change time (cursor mode) in the crm.yaml dict ``config``;
    returns what was switched, as source.entity."""
    switched = []
    by_entity = {(source, entity): column for source, entity, column in FILES.values()}
    for source in config["sources"]:
        for entity, settings in source["entities"].items():
            column = by_entity.get((source["name"], entity))
            if source["name"] == "shop" and entity == "order_items":
                settings.pop("table", None)
                settings["query"] = ORDER_ITEMS_QUERY
                column = "order_updated_at"
            if column and settings.get("incremental", {}).get("mode", "full") == "full":
                settings["incremental"] = {"mode": "cursor", "column": column}
                switched.append(f"{source['name']}.{entity}")
    return switched
