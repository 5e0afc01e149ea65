"""Small hand-made frames shared by the analytics tests."""

from __future__ import annotations

import pandas as pd

ORDER_COLUMNS = ["customer_id", "ordered_at", "status", "total_amount_reporting", "is_refund"]


def order_rows(rows: list[tuple[str, str, str, float, bool]]) -> pd.DataFrame:
    """core.orders-shaped rows: (customer_id, ordered_at, status, total_amount_reporting, is_refund)."""
    frame = pd.DataFrame(rows, columns=ORDER_COLUMNS)
    frame["ordered_at"] = pd.to_datetime(frame["ordered_at"], utc=True).astype("datetime64[us, UTC]")
    frame["customer_id"] = frame["customer_id"].astype("str")
    return frame


def write_identity_records(wh, records: list[tuple[str, str]], cards: list[bool]) -> None:
    """``records`` (source record id, customer id) of the source "shop" as the identity map, and their
    identifiers: a loyalty card where ``cards`` says so, else an email; every ninth value from the fourth
    is missing."""
    from crm_pipelines.schema import CORE, STAGING

    record_ids = [r for r, _ in records]
    wh.write_table(
        pd.DataFrame({"source": "shop", "source_record_id": record_ids, "customer_id": [c for _, c in records]}),
        CORE, "customer_identity_map",
    )  # fmt: skip
    wh.write_table(
        pd.DataFrame({
            "source": "shop",
            "source_record_id": record_ids,
            "identifier_type": ["loyalty_card" if card else "email" for card in cards],
            "identifier_value": [None if i % 9 == 3 else f"v{i}" for i in range(len(records))],
        }),
        STAGING, "customer_identifiers",
    )  # fmt: skip
