"""From orders to the per-customer (frequency, recency, T, monetary value) summary BTYD models read.

Conventions (those of Fader, Hardie & Lee and of the lifetimes package):

- A **purchase** is an order whose status (trimmed, lower case) is in ``purchase_statuses`` (default:
  ``completed`` only) and that is not a refund (the one definition,
  :func:`crm_pipelines.analytics.activity.purchase_mask`). Cancelled and refunded orders never
  count. ``pending`` orders are left out by default: they may still be cancelled, and counting
  them would inflate recent activity (the very signal the models weigh most); pass
  ``purchase_statuses=("completed", "pending")`` where pending means paid-and-shipping.
- Time is counted in whole UTC calendar days; several purchases on one day are one purchase day
  (a basket split into orders is one visit) whose value is their sum.
- ``as_of`` names a day: everything up to the end of that UTC day counts.
- frequency = purchase days after the first; recency = days from the first to the last purchase
  day; T = days from the first purchase day to the as-of day; both divided by ``time_unit_days``.
- monetary_value = mean value of the repeat purchase days (the first is left out, as the
  Gamma-Gamma model expects); 0 for customers without repeat purchases.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeAlias

from crm_pipelines.analytics.activity import DEFAULT_PURCHASE_STATUSES, purchase_mask

if TYPE_CHECKING:
    import pandas as pd

ORDER_COLUMNS = ("customer_id", "ordered_at", "status", "total_amount_reporting", "is_refund")
SUMMARY_COLUMNS = ("customer_id", "frequency", "recency", "T", "monetary_value")
HOLDOUT_COLUMNS = ("frequency_holdout", "monetary_value_holdout", "duration_holdout")

_MICROS_PER_DAY = 86_400_000_000
_NANOS_PER_DAY = 86_400_000_000_000

# A string, so that the alias needs no pandas import at load time.
DateLike: TypeAlias = "dt.date | dt.datetime | pd.Timestamp | str"


def day_number(value: DateLike) -> int:
    """The UTC calendar day of ``value`` as days since 1970-01-01 (naive values are read as UTC)."""
    import pandas as pd
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // _NANOS_PER_DAY)  # Timestamp.value is in nanoseconds whatever its unit


def _check_columns(orders: pd.DataFrame) -> None:
    missing = [c for c in ORDER_COLUMNS if c not in orders.columns]
    if missing:
        raise ValueError(
            f"orders lack column(s) {missing}; expected the core.orders shape with {list(ORDER_COLUMNS)}"
        )


def purchase_days(
    orders: pd.DataFrame, *, purchase_statuses: Iterable[str] = DEFAULT_PURCHASE_STATUSES
) -> pd.DataFrame:
    """One row per customer and purchase day: ``customer_id``, ``day`` (day number), ``value``.

    Orders without a customer or an order time are ignored; a missing amount counts as 0.
    """
    import pandas as pd
    _check_columns(orders)
    ordered_at = pd.to_datetime(orders["ordered_at"], utc=True)
    # One definition of a purchase for every mart (crm_pipelines.analytics.activity.purchase_mask).
    keep = purchase_mask(orders, purchase_statuses) & ordered_at.notna().to_numpy()
    keep &= orders["customer_id"].notna().to_numpy()
    micros = ordered_at[keep].dt.tz_localize(None).to_numpy(dtype="datetime64[us]").view("int64")
    frame = pd.DataFrame(
        {
            "customer_id": orders.loc[keep, "customer_id"].astype("str").to_numpy(),
            "day": micros // _MICROS_PER_DAY,
            "value": pd.to_numeric(orders.loc[keep, "total_amount_reporting"], errors="coerce")
            .fillna(0.0)
            .to_numpy(dtype=float),
        }
    )
    grouped = frame.groupby(["customer_id", "day"], sort=True, as_index=False)["value"].sum()
    return grouped.astype({"customer_id": "str", "day": "int64", "value": "float64"})


def _summarise(days: pd.DataFrame, end_day: int, time_unit_days: float) -> pd.DataFrame:
    """frequency, recency, T, monetary_value per customer from sorted purchase days up to ``end_day``."""
    import numpy as np
    import pandas as pd
    days = days[days["day"] <= end_day]
    if days.empty:
        return pd.DataFrame(
            {c: pd.Series(dtype="str" if c == "customer_id" else "float64") for c in SUMMARY_COLUMNS}
        )
    customer, first_row = np.unique(days["customer_id"].to_numpy(), return_index=True)
    day = days["day"].to_numpy()
    value = days["value"].to_numpy()
    counts = np.diff(np.append(first_row, len(days)))
    last_row = first_row + counts - 1
    code = np.repeat(np.arange(len(customer)), counts)
    repeat_value = np.bincount(code, weights=value, minlength=len(customer)) - value[first_row]
    frequency = counts - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        monetary = np.where(frequency > 0, repeat_value / np.maximum(frequency, 1), 0.0)
    return pd.DataFrame(
        {
            "customer_id": pd.array(customer, dtype="str"),
            "frequency": frequency.astype("int64"),
            "recency": (day[last_row] - day[first_row]) / time_unit_days,
            "T": (end_day - day[first_row]) / time_unit_days,
            "monetary_value": monetary,
        }
    )


def summary_from_orders(
    orders: pd.DataFrame,
    as_of: DateLike,
    time_unit_days: float = 7,
    calibration_end: DateLike | None = None,
    *,
    purchase_statuses: Iterable[str] = DEFAULT_PURCHASE_STATUSES,
) -> pd.DataFrame:
    """Per-customer BTYD summary of ``orders`` (core.orders shape) as of the end of day ``as_of``.

    Returns one row per customer with at least one purchase, sorted by customer_id: ``customer_id``,
    ``frequency``, ``recency``, ``T``, ``monetary_value`` (see the module docstring).

    With ``calibration_end``, the summary describes the calibration period (purchases up to the end
    of that day; customers whose first purchase comes later are left out) and three holdout columns
    are added for (calibration_end, as_of]: ``frequency_holdout`` (purchase days, all of them repeat
    purchases), ``monetary_value_holdout`` (their mean value, 0 without any) and ``duration_holdout``
    (the holdout length in time units, equal for everyone).
    """
    if not time_unit_days > 0:
        raise ValueError(f"time_unit_days must be positive, got {time_unit_days}")
    end_day = day_number(as_of)
    days = purchase_days(orders, purchase_statuses=purchase_statuses)
    if calibration_end is None:
        return _summarise(days, end_day, time_unit_days).reset_index(drop=True)

    calibration_day = day_number(calibration_end)
    if calibration_day >= end_day:
        raise ValueError(f"calibration_end ({calibration_end}) must be before as_of ({as_of})")
    summary = _summarise(days, calibration_day, time_unit_days)
    holdout = days[(days["day"] > calibration_day) & (days["day"] <= end_day)]
    per_customer = holdout.groupby("customer_id")["value"].agg(["size", "mean"])
    per_customer = per_customer.reindex(summary["customer_id"])
    summary["frequency_holdout"] = per_customer["size"].fillna(0).to_numpy(dtype="int64")
    summary["monetary_value_holdout"] = per_customer["mean"].fillna(0.0).to_numpy(dtype=float)
    summary["duration_holdout"] = float(end_day - calibration_day) / time_unit_days
    return summary.reset_index(drop=True)
