"""marts.customer_360: one row per unified customer with profile, purchases, service, surveys and consent.

Purchases and revenue follow :mod:`crm_pipelines.analytics.activity`: orders count completed purchases
only, revenue is net of refunds. Column meanings are in docs/marts.md and
:data:`crm_pipelines.analytics.mart_columns.CUSTOMER_360_COLUMNS`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from crm_pipelines.analytics.activity import (
    MICROS_PER_DAY,
    as_of_day,
    as_of_timestamp,
    bounded_orders,
    customer_index,
    engagement_summary,
    order_summary,
    purchased_items,
    sorted_unique,
    utc_micros,
)
from crm_pipelines.analytics.audiences import marketing_consent
from crm_pipelines.schema import UNIFIED_CUSTOMER_COLUMNS

AGE_BANDS = ("<25", "25-34", "35-44", "45-54", "55-64", "65+")
UNKNOWN_AGE_BAND = "unknown"
MAX_PLAUSIBLE_AGE = 120


def age_in_years(date_of_birth: pd.Series, as_of: pd.Timestamp) -> pd.Series:
    """Completed years at the as-of date; null when unknown, in the future or implausibly old."""
    born = pd.to_datetime(date_of_birth, errors="coerce")
    if born.dt.tz is not None:
        born = born.dt.tz_convert("UTC").dt.tz_localize(None)
    day = as_of_timestamp(as_of)
    before_birthday = (born.dt.month > day.month) | ((born.dt.month == day.month) & (born.dt.day > day.day))
    age = (day.year - born.dt.year - before_birthday.astype("int64")).astype("Int64")
    plausible = (age >= 0) & (age <= MAX_PLAUSIBLE_AGE)
    return age.where(plausible.fillna(False), pd.NA)


def age_band(age: pd.Series) -> pd.Series:
    """<25, 25-34, 35-44, 45-54, 55-64, 65+ or unknown."""
    edges = [-1, 24, 34, 44, 54, 64, MAX_PLAUSIBLE_AGE]
    bands = pd.cut(age.astype("float"), bins=edges, labels=list(AGE_BANDS))
    return bands.astype("str").where(age.notna(), UNKNOWN_AGE_BAND).astype("str")


def categories_bought(items: pd.DataFrame, n_customers: int) -> pd.api.extensions.ExtensionArray:
    """Per customer position: the distinct categories of purchased lines, sorted, joined by ", "."""
    bought = items.loc[items["category"].notna() & (items["category"] != ""), ["code", "category"]]
    category_code, names = pd.factorize(bought["category"], sort=True)
    width = max(len(names), 1)
    pairs = sorted_unique(bought["code"].to_numpy() * width + category_code)
    code, category = pairs // width, pairs % width
    # One list of category names per customer, joined by Arrow in one vectorized call.
    offsets = np.concatenate([[0], np.cumsum(np.bincount(code, minlength=n_customers))])
    lists = pa.ListArray.from_arrays(
        pa.array(offsets, type=pa.int32()), pa.array(np.asarray(names, dtype=object)[category], pa.string())
    )
    joined = pc.if_else(
        pc.equal(pc.list_value_length(lists), 0), pa.scalar(None, pa.string()), pc.binary_join(lists, ", ")
    )
    return pd.array(joined, dtype="str")


def customer_360(
    customers: pd.DataFrame,
    orders: pd.DataFrame,
    order_items: pd.DataFrame,
    tickets: pd.DataFrame,
    subscriptions: pd.DataFrame,
    events: pd.DataFrame,
    surveys: pd.DataFrame,
    as_of: pd.Timestamp,
    extra: Sequence[pd.DataFrame] = (),
) -> pd.DataFrame:
    """One row per customer of ``customers`` (core.unified_customers), in its order.

    ``extra`` frames (segments, CLV, churn scores, ...) are left-joined on ``customer_id``; each must have
    at most one row per customer. Their columns that the 360 already has are ignored: the 360's own
    columns are authoritative.
    """
    as_of = as_of_timestamp(as_of)
    index = customer_index(customers)
    n = len(index)

    profile_columns = [c.name for c in UNIFIED_CUSTOMER_COLUMNS if c.name in customers]
    profile = customers[profile_columns].reset_index(drop=True)
    profile["customer_id"] = profile["customer_id"].astype("str")
    if "date_of_birth" in profile:
        age = age_in_years(profile["date_of_birth"], as_of)
        position = profile.columns.get_loc("date_of_birth") + 1
    else:
        age = pd.Series(pd.NA, index=profile.index, dtype="Int64")
        position = 1
    profile.insert(position, "age", age.array)
    profile.insert(position + 1, "age_band", age_band(age).array)

    facts = bounded_orders(orders, index, as_of)
    summary = order_summary(facts, n)
    last_micros, has_last = utc_micros(summary["last_order_at"])
    days_since = np.where(has_last, as_of_day(as_of) - last_micros // MICROS_PER_DAY, 0)
    summary.insert(2, "days_since_last_order", pd.arrays.IntegerArray(days_since, mask=~has_last))
    summary["categories"] = categories_bought(purchased_items(order_items, orders, index, as_of), n)

    engagement = engagement_summary(tickets, events, surveys, index, as_of)
    consent = marketing_consent(
        pd.DataFrame({"customer_id": index.to_numpy(), "email": profile.get("email")}),
        subscriptions,
        events,
        as_of,
    )
    view = pd.concat(
        [
            profile,
            summary,
            engagement,
            pd.DataFrame(
                {
                    "marketing_consent": consent["consent_status"].to_numpy(),
                    "consent_at": consent["consent_at"].array,
                }
            ),
        ],
        axis=1,
    )
    for frame in extra:
        view = _left_join(view, frame)
    return view


def _left_join(view: pd.DataFrame, frame: pd.DataFrame) -> pd.DataFrame:
    if "customer_id" not in frame:
        raise ValueError(
            f"an extra frame for the customer 360 has no customer_id column: {list(frame.columns)}"
        )
    new_columns = [c for c in frame.columns if c != "customer_id" and c not in view]
    keyed = frame[["customer_id", *new_columns]].assign(customer_id=frame["customer_id"].astype("str"))
    if keyed["customer_id"].duplicated().any():
        dupes = keyed.loc[keyed["customer_id"].duplicated(), "customer_id"].unique()[:5].tolist()
        raise ValueError(f"an extra frame for the customer 360 repeats customer_id values: {dupes}")
    return view.merge(keyed, on="customer_id", how="left", sort=False)
