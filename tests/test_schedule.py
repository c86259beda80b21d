"""Due times: the Python schedule and PostgreSQL's AT TIME ZONE agree, DST edges included."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from drip.sending.schedule import following_due_at, local_send_time, zone
from tests import services as real

ZONES = ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]


def test_a_missing_hour_lands_an_hour_later_and_a_doubled_one_on_its_second_time() -> None:
    new_york = zone("America/New_York")
    # 8 March 2026: 02:00-03:00 does not exist; 1 November 2026: 01:00-02:00 happens twice.
    assert local_send_time(date(2026, 3, 8), 2, new_york) == datetime(2026, 3, 8, 7, tzinfo=UTC)
    assert local_send_time(date(2026, 11, 1), 1, new_york) == datetime(2026, 11, 1, 6, tzinfo=UTC)


def test_following_due_times_keep_the_local_hour_across_dst() -> None:
    due = datetime(2026, 3, 6, 13, tzinfo=UTC)  # 08:00 in New York, winter time
    moments = []
    for _ in range(4):
        due = following_due_at(due, timezone="America/New_York", send_hour=8, day_seconds=86400)
        moments.append(due)
    assert [m.astimezone(zone("America/New_York")).hour for m in moments] == [8, 8, 8, 8]
    assert moments[1] - moments[0] == timedelta(hours=23)


@pytest.fixture(scope="module")
def postgres() -> psycopg.Connection[tuple[object, ...]]:
    if not real.postgres_available():
        real.missing(f"PostgreSQL at {real.POSTGRES_URL}")
    return psycopg.connect(real.POSTGRES_URL, autocommit=True)


def test_python_and_postgresql_agree_on_every_send_slot(
    postgres: psycopg.Connection[tuple[object, ...]],
) -> None:
    """The tick computes due times in SQL on PostgreSQL and in Python on SQLite."""
    starts = [datetime(2026, 3, 7, 12, tzinfo=UTC), datetime(2026, 10, 31, 12, tzinfo=UTC)]
    starts += [datetime(2026, 3, 28, 12, tzinfo=UTC), datetime(2026, 4, 4, 12, tzinfo=UTC)]
    checked = 0
    for name in ZONES:
        for start in starts:
            for hour in range(24):
                python = following_due_at(start, timezone=name, send_hour=hour, day_seconds=86400)
                row = postgres.execute(
                    "SELECT ((%s::timestamptz AT TIME ZONE %s)::date + 1"
                    " + make_interval(hours => %s)) AT TIME ZONE %s",
                    (start, name, hour, name),
                ).fetchone()
                assert row is not None
                assert row[0] == python, (name, start, hour)
                checked += 1
    assert checked == len(ZONES) * len(starts) * 24
