"""marts.crm_goals: each goal of crm.yaml against what happened, per period.

A goal's actual value for a period (docs/marts.md, "Goals"):

- counts that add up over days (purchases, net revenue, new customers, tickets opened) and portfolio revenue
  are summed over the period's days (months) up to the as-of day;
- every other figure (active customers, retention and churn rate, NPS, customer equity, ...) is its
  value on the period's last day (month) up to the as-of day: a level, not a sum.

``gap`` = actual - target; ``met`` is actual >= target (``at_most``: actual <= target).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from crm_pipelines.analytics.activity import as_of_timestamp
from crm_pipelines.analytics.cycle_settings import GoalSettings

SUMMED_KPIS = frozenset({"new_customers", "purchases", "net_revenue", "tickets_opened", "portfolio_revenue"})
# Goal names for the portfolio's monthly totals -> column of marts.customer_portfolio (dimension total).
PORTFOLIO_KPIS = {
    "customer_equity": "customer_equity",
    "portfolio_customers": "customers",
    "portfolio_active_customers": "active_customers",
    "portfolio_revenue": "net_revenue",
}
DEFAULT_PERIODS = 12
KPI_DATE = "kpi_date"  # marts.crm_kpis as published (BI-safe names)
_FREQ = {"month": "M", "quarter": "Q", "year": "Y"}
GOAL_COLUMNS = (
    "goal", "kpi", "period", "period_start", "period_end", "target", "actual", "gap", "met", "direction",
    "period_complete",
)  # fmt: skip


class UnknownKpiError(ValueError):
    """A goal names a KPI neither crm_kpis nor customer_portfolio has."""


def kpi_series(goal: GoalSettings, kpis: pd.DataFrame, portfolio: pd.DataFrame) -> pd.Series:
    """The goal's KPI over time: a daily series from crm_kpis or a monthly one from the portfolio."""
    if goal.kpi in PORTFOLIO_KPIS:
        totals = portfolio[portfolio["dimension"] == "total"]
        return pd.Series(
            totals[PORTFOLIO_KPIS[goal.kpi]].to_numpy(dtype="float64"),
            index=pd.to_datetime(totals["month"]),
        ).sort_index()
    if goal.kpi == KPI_DATE or goal.kpi not in kpis.columns:
        known = sorted([c for c in kpis.columns if c != KPI_DATE] + list(PORTFOLIO_KPIS))
        raise UnknownKpiError(f"goal {goal.name!r}: kpi {goal.kpi!r} is not a crm_kpis column nor a portfolio "
                              f"figure; use one of {known}")  # fmt: skip
    return pd.Series(
        pd.to_numeric(kpis[goal.kpi], errors="coerce").to_numpy(dtype="float64"),
        index=pd.to_datetime(kpis[KPI_DATE]),
    ).sort_index()


def goal_rows(goal: GoalSettings, series: pd.Series, as_of: pd.Timestamp) -> pd.DataFrame:
    as_of_day = as_of_timestamp(as_of).tz_localize(None).normalize()
    freq = _FREQ[goal.period]
    last = as_of_day.to_period(freq)
    first = pd.Timestamp(goal.start).to_period(freq) if goal.start else last - (DEFAULT_PERIODS - 1)
    periods = pd.period_range(first, last, freq=freq)
    series = series[series.index <= as_of_day].dropna()
    by_period = series.groupby(series.index.to_period(freq))
    actual = by_period.sum() if goal.kpi in SUMMED_KPIS else by_period.last()
    values = actual.reindex(periods).to_numpy(dtype="float64")
    gap = values - goal.target
    met = np.where(goal.direction == "at_least", gap >= 0, gap <= 0)
    starts = periods.start_time
    ends = periods.end_time.normalize()
    return pd.DataFrame(
        {
            "goal": goal.name,
            "kpi": goal.kpi,
            "period": pd.array([str(p) for p in periods], dtype="str"),
            "period_start": starts.as_unit("us"),
            "period_end": ends.as_unit("us"),
            "target": float(goal.target),
            "actual": values,
            "gap": gap,
            "met": pd.array(np.where(np.isnan(values), None, met), dtype="boolean"),
            "direction": goal.direction,
            "period_complete": np.asarray(ends < as_of_day) | np.asarray(ends == as_of_day),
        }
    )


def crm_goals(
    goals: Sequence[GoalSettings], kpis: pd.DataFrame, portfolio: pd.DataFrame, as_of: pd.Timestamp
) -> pd.DataFrame:
    """One row per goal and period (columns in docs/marts.md)."""
    parts = [goal_rows(goal, kpi_series(goal, kpis, portfolio), as_of) for goal in goals]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="str") for c in GOAL_COLUMNS}).astype(
            {"period_start": "datetime64[us]", "period_end": "datetime64[us]", "target": "float64",
             "actual": "float64", "gap": "float64", "met": "boolean", "period_complete": bool}
        )  # fmt: skip
    frame = pd.concat(parts, ignore_index=True)
    return frame.astype({"goal": "str", "kpi": "str", "direction": "str"})[list(GOAL_COLUMNS)]
