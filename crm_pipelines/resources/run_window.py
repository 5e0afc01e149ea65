"""The as-of date that bounds what a run sees, settable per run from the Dagster launchpad."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
from pydantic import Field


def default_as_of(timezone: str, now: dt.datetime | None = None) -> dt.date:
    """Yesterday in ``timezone`` (at ``now``, default the current time): the last complete day."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(ZoneInfo(timezone)).date() - dt.timedelta(days=1)


class RunWindowResource(dg.ConfigurableResource):
    """A run sees records up to the end of its as-of day (in the nightly timezone).

    Unset, the as-of day is yesterday in that timezone: the last complete day, so a daily KPI never
    ends in a day that is not over yet. Set it (in crm.yaml or in the launchpad) to backtest on history.
    """

    as_of: str | None = Field(None, description="ISO date (YYYY-MM-DD); unset means yesterday.")
    timezone: str = Field("UTC", description="IANA timezone the as-of day is counted in.")

    def as_of_date(self) -> dt.date:
        if self.as_of:
            try:
                return dt.date.fromisoformat(self.as_of)
            except ValueError:
                raise dg.Failure(f"run_window.as_of {self.as_of!r} is not an ISO date (YYYY-MM-DD)") from None
        return default_as_of(self.timezone)

    def cutoff(self) -> dt.datetime:
        """The last instant (UTC) a run may see: the end of the as-of day in the configured timezone."""
        next_day = self.as_of_date() + dt.timedelta(days=1)
        local_midnight = dt.datetime.combine(next_day, dt.time(), tzinfo=ZoneInfo(self.timezone))
        return (local_midnight - dt.timedelta(microseconds=1)).astimezone(dt.UTC)
