"""Retention: acquisition cohorts by month, and month-by-month retention, churn and repeat rates.

Both functions count **purchases** only: orders whose status is in ``purchase_statuses``
(default ``completed``) and that are not refunds, as in :mod:`crm_pipelines.analytics.clv.summary`.
Months are UTC calendar months; ``as_of`` names a day and everything up to its end counts, so the
month holding ``as_of`` is usually incomplete (``period_complete`` says so). Revenue is the
reporting-currency value of purchases, before refunds.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from crm_pipelines.analytics.clv.summary import (
    DEFAULT_PURCHASE_STATUSES,
    DateLike,
    day_number,
    purchase_days,
)

COHORT_COLUMNS = (
    "cohort_month",
    "months_since_first",
    "activity_month",
    "cohort_size",
    "customers_active",
    "retention_rate",
    "revenue",
    "revenue_retention",
    "period_complete",
)
SUMMARY_COLUMNS = (
    "period_month",
    "customers_acquired_before",
    "active_previous_month",
    "active_customers",
    "new_customers",
    "returning_customers",
    "retained_customers",
    "retention_rate",
    "churn_rate",
    "repeat_customers",
    "repeat_purchase_rate",
    "period_complete",
)


def _month_index(day: np.ndarray) -> np.ndarray:
    """Months since January 1970 of day numbers."""
    return day.astype("datetime64[D]").astype("datetime64[M]").astype("int64")


def _month_start(month: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(
        np.asarray(month, dtype="int64").astype("datetime64[M]").astype("datetime64[us]")
    ).tz_localize("UTC")


def _monthly_purchases(
    orders: pd.DataFrame, as_of: DateLike, purchase_statuses: Iterable[str]
) -> tuple[pd.DataFrame, pd.DataFrame, int, bool]:
    """Purchase days up to as_of; per customer and month with a purchase: code, month, value;
    the as-of month; whether the as-of day is its last day."""
    end_day = day_number(as_of)
    days = purchase_days(orders, purchase_statuses=purchase_statuses)
    days = days[days["day"] <= end_day].reset_index(drop=True)
    code, _ = pd.factorize(days["customer_id"])
    monthly = (
        pd.DataFrame(
            {"code": code, "month": _month_index(days["day"].to_numpy()), "value": days["value"].to_numpy()}
        )
        .groupby(["code", "month"], as_index=False, sort=True)["value"]
        .sum()
    )
    as_of_month = int(_month_index(np.array([end_day]))[0])
    last_day_of_month = int(_month_index(np.array([end_day + 1]))[0]) != as_of_month
    return days, monthly, as_of_month, last_day_of_month


def retention_cohorts(
    orders: pd.DataFrame,
    as_of: DateLike,
    *,
    purchase_statuses: Iterable[str] = DEFAULT_PURCHASE_STATUSES,
) -> pd.DataFrame:
    """Monthly acquisition cohorts by months since the first purchase, up to the as-of month.

    One row per cohort (month of a customer's first purchase) and month offset 0, 1, ... up to the
    month holding ``as_of`` (offsets without any active customer are rows with zeros):

    - ``cohort_size``: customers whose first purchase fell in the cohort month;
    - ``customers_active``: of those, customers with a purchase in the activity month;
    - ``retention_rate``: customers_active / cohort_size (1 at offset 0 by construction);
    - ``revenue``: the cohort's purchase value in the activity month;
    - ``revenue_retention``: revenue / the cohort's revenue in its first month;
    - ``period_complete``: the activity month ended on or before ``as_of``.
    """
    _, monthly, as_of_month, as_of_month_complete = _monthly_purchases(orders, as_of, purchase_statuses)
    if monthly.empty:
        return empty_table(COHORT_COLUMNS)
    first_month = monthly.groupby("code")["month"].min()
    monthly["cohort"] = first_month.reindex(monthly["code"]).to_numpy()
    monthly["offset"] = monthly["month"] - monthly["cohort"]
    sizes = first_month.value_counts().sort_index()
    activity = monthly.groupby(["cohort", "offset"]).agg(
        customers_active=("code", "size"), revenue=("value", "sum")
    )

    # The full triangle: every cohort, every offset up to the as-of month.
    cohorts = sizes.index.to_numpy()
    spans = as_of_month - cohorts + 1
    grid = pd.MultiIndex.from_arrays(
        [np.repeat(cohorts, spans), np.concatenate([np.arange(n) for n in spans])], names=["cohort", "offset"]
    )
    table = activity.reindex(grid, fill_value=0).reset_index()
    table["cohort_size"] = sizes.reindex(table["cohort"]).to_numpy()
    first_revenue = table.loc[table["offset"] == 0].set_index("cohort")["revenue"]
    base_revenue = first_revenue.reindex(table["cohort"]).to_numpy()
    activity_month = table["cohort"].to_numpy() + table["offset"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        revenue_retention = np.where(base_revenue > 0, table["revenue"].to_numpy() / base_revenue, np.nan)
    return pd.DataFrame(
        {
            "cohort_month": _month_start(table["cohort"].to_numpy()),
            "months_since_first": table["offset"].to_numpy(dtype="int64"),
            "activity_month": _month_start(activity_month),
            "cohort_size": table["cohort_size"].to_numpy(dtype="int64"),
            "customers_active": table["customers_active"].to_numpy(dtype="int64"),
            "retention_rate": table["customers_active"].to_numpy() / table["cohort_size"].to_numpy(),
            "revenue": table["revenue"].to_numpy(dtype=float),
            "revenue_retention": revenue_retention,
            "period_complete": (activity_month < as_of_month) | as_of_month_complete,
        }
    )


def retention_summary(
    orders: pd.DataFrame,
    as_of: DateLike,
    *,
    months: int | None = None,
    purchase_statuses: Iterable[str] = DEFAULT_PURCHASE_STATUSES,
) -> pd.DataFrame:
    """Month-by-month retention, churn and repeat-purchase rates (the last ``months`` months, or all).

    For each calendar month M (``period_month``) up to the month holding ``as_of``:

    - ``active_customers``: customers with a purchase in M; ``new_customers``: of those, first
      purchase in M; ``returning_customers``: the others;
    - ``active_previous_month``: customers with a purchase in M-1;
    - ``retained_customers``: customers with a purchase in both M-1 and M;
    - ``retention_rate`` = retained_customers / active_previous_month: the share of last month's
      buyers who bought again this month (NaN when nobody bought in M-1);
    - ``churn_rate`` = 1 - retention_rate: the share of last month's buyers who did not;
    - ``customers_acquired_before``: customers whose first purchase came before M;
    - ``repeat_customers``: customers who, by the end of M, have bought on at least two different
      days; ``repeat_purchase_rate`` = repeat_customers / customers acquired by the end of M;
    - ``period_complete``: M ended on or before ``as_of``.

    Month-to-month retention suits frequent buyers; for slow purchase cycles read
    :func:`retention_cohorts` or the BTYD P(alive) instead.
    """
    days, monthly, as_of_month, as_of_month_complete = _monthly_purchases(orders, as_of, purchase_statuses)
    if monthly.empty:
        return empty_table(SUMMARY_COLUMNS)
    first_month_of_code = monthly.groupby("code")["month"].min()
    # A customer becomes a repeat customer in the month of her second purchase day (days are sorted).
    second_month = _month_index(days.groupby("customer_id", sort=False)["day"].nth(1).to_numpy())

    start = int(first_month_of_code.min())
    periods = np.arange(start, as_of_month + 1)
    index = periods - start
    active = np.bincount(monthly["month"] - start, minlength=len(periods))
    new = np.bincount(first_month_of_code.to_numpy() - start, minlength=len(periods))
    acquired_by_end = np.cumsum(new)
    repeat_by_end = np.cumsum(np.bincount(second_month - start, minlength=len(periods)))
    # Pairs (customer, M) whose (customer, M-1) also exists.
    keys = monthly["code"].to_numpy() * (len(periods) + 2) + (monthly["month"].to_numpy() - start)
    retained_mask = np.isin(keys - 1, keys)
    retained = np.bincount(monthly["month"].to_numpy()[retained_mask] - start, minlength=len(periods))
    previous = np.concatenate([[0], active[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        retention = np.where(previous > 0, retained / previous, np.nan)
        repeat_rate = np.where(acquired_by_end > 0, repeat_by_end / acquired_by_end, np.nan)
    frame = pd.DataFrame(
        {
            "period_month": _month_start(periods),
            "customers_acquired_before": np.concatenate([[0], acquired_by_end[:-1]]).astype("int64"),
            "active_previous_month": previous.astype("int64"),
            "active_customers": active.astype("int64"),
            "new_customers": new.astype("int64"),
            "returning_customers": (active - new).astype("int64"),
            "retained_customers": retained.astype("int64"),
            "retention_rate": retention,
            "churn_rate": 1.0 - retention,
            "repeat_customers": repeat_by_end.astype("int64"),
            "repeat_purchase_rate": repeat_rate,
            "period_complete": (periods < as_of_month) | as_of_month_complete,
        },
        index=index,
    )
    if months is not None:
        frame = frame.iloc[-months:]
    return frame.reset_index(drop=True)


def empty_table(columns: tuple[str, ...]) -> pd.DataFrame:
    """The shape of a table without purchases: no rows."""
    return pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
