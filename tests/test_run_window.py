"""The as-of day: yesterday in the nightly timezone unless set, so marts cover complete days only."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from crm_pipelines.resources.run_window import RunWindowResource, default_as_of

# 01:30 in Berlin on 1 July is still 30 June in UTC.
NIGHT = dt.datetime(2026, 6, 30, 23, 30, tzinfo=dt.UTC)


def test_default_as_of_is_yesterday_in_the_nightly_timezone() -> None:
    assert default_as_of("Europe/Berlin", NIGHT) == dt.date(2026, 6, 30)
    assert default_as_of("UTC", NIGHT) == dt.date(2026, 6, 29)


def test_unset_as_of_never_includes_the_current_day() -> None:
    window = RunWindowResource(timezone="Europe/Berlin")
    cutoff = window.cutoff()
    now = dt.datetime.now(dt.UTC)
    assert cutoff < now
    # The cutoff is the last instant of yesterday in Berlin: the next microsecond is local midnight.
    local = (cutoff + dt.timedelta(microseconds=1)).astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute, local.second, local.microsecond) == (0, 0, 0, 0)
    assert local.date() == now.astimezone(ZoneInfo("Europe/Berlin")).date()


def test_explicit_as_of_wins_and_bad_dates_are_named() -> None:
    assert RunWindowResource(as_of="2024-02-29", timezone="UTC").as_of_date() == dt.date(2024, 2, 29)
    with pytest.raises(dg.Failure, match="not an ISO date"):
        RunWindowResource(as_of="29.02.2024").as_of_date()
