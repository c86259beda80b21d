"""The clock every part of drip reads: the wall clock in production, a fake one in tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def week_of(moment: datetime) -> date:
    """The Monday (UTC) of the week holding ``moment``: how signups are grouped in cohorts."""
    day = moment.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())
