"""Shared by the facts tests: synthetic core tables with edge rows, loading them, comparing frames."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crm_pipelines.facts.build import build_all
from crm_pipelines.facts.synthetic import synthetic_core
from crm_pipelines.schema import CORE, core_entity_columns
from crm_pipelines.warehouse import Warehouse

AS_OF = pd.Timestamp("2025-06-30 23:59:59.999999", tz="UTC")
WINDOW_DAYS = 180
CORE_NAMES = {"tickets": "support_tickets", "events": "campaign_events", "surveys": "survey_responses"}


def _edge_orders(customers: pd.DataFrame) -> pd.DataFrame:
    who = customers["customer_id"].iloc[:5].tolist()
    rows = [
        (who[0], "e-1", "2025-03-01 10:00", " Completed ", 50.0, False),
        (who[0], "e-2", "2025-03-05 10:00", "refunded", -20.0, True),
        (who[1], "e-3", "2025-06-30 23:30", "pending", 30.0, False),
        (who[2], "e-4", "2025-07-01 00:00", "completed", 99.0, False),  # after the cutoff
        (who[3], "e-5", "2025-05-01 12:00", "COMPLETED", None, False),
        (who[4], "e-6", "2025-05-01 12:00", "cancelled", 15.0, False),
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "order_id", "ordered_at", "status", "total", "is_refund"])
    return pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "source": "edge",
            "order_id": frame["order_id"],
            "ordered_at": pd.to_datetime(frame["ordered_at"], utc=True).astype("datetime64[us, UTC]"),
            "status": frame["status"],
            "currency": "EUR",
            "total_amount": frame["total"],
            "total_amount_reporting": frame["total"],
            "is_refund": frame["is_refund"],
        }
    )


def _edge_subscriptions(customers: pd.DataFrame) -> pd.DataFrame:
    who = customers["customer_id"].iloc[5:9].tolist()
    rows = [
        (who[0], "es-1", "subscribed", "2025-01-01"),
        (who[0], "es-2", "unsubscribed", None),  # an undated withdrawal wins
        (who[1], "es-3", "subscribed", None),  # an undated opt-in without withdrawal counts
        (who[2], "es-4", "pending", None),
        (who[3], "es-5", "subscribed", "2025-09-01"),  # after the cutoff: not yet
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "subscription_id", "consent_status", "consent_at"])
    return frame.assign(
        source="edge",
        email=None,
        list_name="newsletter",
        consent_at=pd.to_datetime(frame["consent_at"], utc=True).astype("datetime64[us, UTC]"),
    )


def core_frames_with_edges() -> dict[str, pd.DataFrame]:
    frames = synthetic_core(600, seed=3)
    frames["orders"] = pd.concat([frames["orders"], _edge_orders(frames["customers"])], ignore_index=True)
    frames["subscriptions"] = pd.concat(
        [frames["subscriptions"], _edge_subscriptions(frames["customers"])], ignore_index=True
    )
    return frames


def load_core(wh: Warehouse, frames: dict[str, pd.DataFrame]) -> None:
    wh.write_table(frames["customers"], CORE, "unified_customers")
    for name, frame in frames.items():
        if name == "customers":
            continue
        table = CORE_NAMES.get(name, name)
        types = {c.name: c.dtype for c in core_entity_columns(table)}
        wh.write_table(frame, CORE, table, column_types=types)


def load_and_build(warehouse: Warehouse, frames: dict[str, pd.DataFrame]) -> Warehouse:
    load_core(warehouse, frames)
    build_all(warehouse, AS_OF, ("completed",), WINDOW_DAYS)
    return warehouse


def by_customer(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({"customer_id": "str"}).set_index("customer_id").sort_index()


def assert_same(actual: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal values column by column: counts exactly, amounts to float rounding, times to the microsecond."""
    for name in expected.columns:
        a, e = actual[name], expected[name]
        if str(e.dtype).startswith("datetime64"):
            a = pd.to_datetime(a, utc=True).astype("datetime64[us, UTC]")
            e = pd.to_datetime(e, utc=True).astype("datetime64[us, UTC]")
            pd.testing.assert_series_equal(a, e, check_names=False, obj=name)
        elif e.dtype.kind == "f" or a.dtype.kind == "f":
            np.testing.assert_allclose(
                a.astype("float64").to_numpy(), e.astype("float64").to_numpy(), rtol=1e-9, atol=1e-9, err_msg=name
            )
        else:
            assert a.astype("object").where(a.notna(), None).tolist() == e.astype("object").where(
                e.notna(), None
            ).tolist(), name


