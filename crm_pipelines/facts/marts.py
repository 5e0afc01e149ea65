"""Marts computed in the warehouse and read back as small frames (one row per month, cohort or customer).

The readers return the shapes of the pandas reference functions, so assets validate and publish them
the same way.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from crm_pipelines.facts.build import utc_day
from crm_pipelines.facts.retention import first_purchase_month, retention_cohorts_select, retention_summary_select
from crm_pipelines.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd


def _month_number(day: int) -> int:
    import numpy as np
    return int(np.array([day], dtype="int64").astype("datetime64[D]").astype("datetime64[M]").astype("int64")[0])


def _month_window(as_of: dt.datetime | pd.Timestamp) -> tuple[int, int, bool]:
    """The as-of day, its month, and whether the day is the month's last (the month is complete)."""
    end_day = utc_day(as_of)
    as_of_month = _month_number(end_day)
    return end_day, as_of_month, _month_number(end_day + 1) != as_of_month


def _utc_months(frame: pd.DataFrame, *names: str) -> pd.DataFrame:
    import pandas as pd
    return frame.assign(
        **{n: pd.to_datetime(frame[n]).astype("datetime64[us]").dt.tz_localize("UTC") for n in names}
    )


def read_retention_cohorts(wh: Warehouse, as_of: dt.datetime | pd.Timestamp) -> pd.DataFrame:
    """marts.retention_cohorts computed from core.purchases (see :mod:`crm_pipelines.facts.retention`)."""
    from crm_pipelines.analytics.retention import COHORT_COLUMNS, empty_table

    end_day, as_of_month, complete = _month_window(as_of)
    first = first_purchase_month(wh, end_day)
    if first is None:
        return empty_table(COHORT_COLUMNS)
    frame = wh.query(retention_cohorts_select(wh, end_day, first, as_of_month, complete))
    return _utc_months(frame, "cohort_month", "activity_month")


def read_retention_summary(wh: Warehouse, as_of: dt.datetime | pd.Timestamp) -> pd.DataFrame:
    """marts.retention_summary computed from core.purchases (see :mod:`crm_pipelines.facts.retention`)."""
    from crm_pipelines.analytics.retention import SUMMARY_COLUMNS, empty_table

    end_day, as_of_month, complete = _month_window(as_of)
    first = first_purchase_month(wh, end_day)
    if first is None:
        return empty_table(SUMMARY_COLUMNS)
    return _utc_months(wh.query(retention_summary_select(wh, end_day, first, as_of_month, complete)), "period_month")


def read_crm_kpis(
    wh: Warehouse, cutoff: dt.datetime | pd.Timestamp, purchase_statuses: tuple[str, ...] = ("completed",)
) -> pd.DataFrame:
    """marts.crm_kpis computed in the warehouse (see :mod:`crm_pipelines.facts.kpis`); needs core.purchases
    and core.customer_order_facts built with the same cutoff."""
    import pandas as pd

    from crm_pipelines.facts.kpis import crm_kpis_select

    frame = wh.query(crm_kpis_select(wh, cutoff, utc_day(cutoff), purchase_statuses))
    return frame.assign(date=pd.to_datetime(frame["date"]).astype("datetime64[us]"))
