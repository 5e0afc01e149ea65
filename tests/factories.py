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
