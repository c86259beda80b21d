"""Due-time arithmetic: pure functions of times, zones and the course's send hour.

Lesson 1 goes at confirmation. Each later lesson goes the next local day at
the send hour in the subscriber's zone, so a DST change moves the UTC time, not
the local one. With a short demo day (DRIP_DAY_SECONDS != 86400) send-hour
rules fall away and lesson k goes at confirmation + (k-1) days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

REAL_DAY_SECONDS = 86400


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def known_zones() -> list[str]:
    """Every zone name a subscriber may have, sorted (the API lists them in its schema)."""
    return sorted(_known_zones())


def is_known_zone(name: str) -> bool:
    # Checked against the tz database's own list: ZoneInfo() would also try file paths.
    return name in _known_zones()


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name) if is_known_zone(name) else ZoneInfo("UTC")
    except ZoneInfoNotFoundError:
        return ZoneInfo("UTC")


def local_send_time(day: date, send_hour: int, tz: ZoneInfo) -> datetime:
    """The UTC instant of `send_hour`:00 on `day` in `tz`.

    A send hour that does not exist that day (spring forward) lands an hour
    later; one that happens twice (fall back) is the second of the two. Both
    are the later of PEP 495's two readings, and what PostgreSQL's AT TIME
    ZONE answers, so the tick's SQL and this function always agree.
    """
    wall = datetime.combine(day, time(send_hour), tzinfo=tz)
    return max(wall.astimezone(UTC), wall.replace(fold=1).astimezone(UTC))


def following_due_at(
    previous_due_at: datetime, *, timezone: str, send_hour: int, day_seconds: int
) -> datetime:
    """When the lesson after one due at `previous_due_at` is due."""
    if day_seconds != REAL_DAY_SECONDS:
        return previous_due_at + timedelta(seconds=day_seconds)
    tz = zone(timezone)
    next_day = previous_due_at.astimezone(tz).date() + timedelta(days=1)
    return local_send_time(next_day, send_hour, tz)


def next_slot(now: datetime, *, timezone: str, send_hour: int, day_seconds: int) -> datetime:
    """The first send slot at or after `now` (used when a paused course resumes)."""
    if day_seconds != REAL_DAY_SECONDS:
        return now
    tz = zone(timezone)
    today = now.astimezone(tz).date()
    candidate = local_send_time(today, send_hour, tz)
    if candidate >= now:
        return candidate
    return local_send_time(today + timedelta(days=1), send_hour, tz)
