"""The tick reads what is due, not the table; deleting a subscriber still takes their deliveries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import delete, func, select

from drip.course.loader import load_course
from drip.data.db import Database
from drip.data.migrate import upgrade
from drip.data.models import Delivery, Enrollment, Subscriber
from drip.sending import dispatch
from tests.conftest import (
    COURSE_DIR,
    Stack,
    scratch_postgres_database,
    seed_due_readers,
    wait_until,
)
from tests.test_concurrency import confirmed_subscribers

NOW = datetime(2026, 3, 5, 15, 0, tzinfo=UTC)
TABLES = ("subscribers", "enrollments", "deliveries")


@pytest.fixture()
def scratch_postgres() -> Iterator[str]:
    """A database of its own: the test reads the server's per-table scan counters."""
    with scratch_postgres_database("drip_test_tick") as url:
        yield url


def counters(url: str) -> dict[str, tuple[int, int, int]]:
    """(sequential scans, rows inserted, rows updated) per table, as the server counts them."""
    with psycopg.connect(url, autocommit=True) as db:
        rows = db.execute(
            "SELECT relname, seq_scan, n_tup_ins, n_tup_upd FROM pg_stat_user_tables"
            " WHERE relname = ANY(%s)",
            (list(TABLES),),
        ).fetchall()
    return {name: (scans, inserted, updated) for name, scans, inserted, updated in rows}


def test_a_tick_on_a_large_table_scans_no_table_from_end_to_end(scratch_postgres: str) -> None:
    """20,000 enrollments, 2,000 due: every row the tick reads is found through an index.

    A hash join that read all of subscribers for every chunk of due
    enrollments once made the tick's cost grow with the table.
    """
    url = scratch_postgres
    migrating = Database(url)
    upgrade(migrating)
    migrating.dispose()  # its session's counts are sent when it ends, before the seeding's
    database = Database(url)
    course = load_course(COURSE_DIR)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            """INSERT INTO subscribers (email, first_name, timezone, status, created_at)
               SELECT 'reader' || n || '@example.com', 'R', 'Europe/Berlin', 'active', %s
               FROM generate_series(1, 20000) AS n""",
            (NOW,),
        )
        db.execute(
            """INSERT INTO enrollments (subscriber_id, course_slug, status, next_lesson,
                                        next_due_at, started_at)
               SELECT id, %s, 'active', 1,
                      CASE WHEN id %% 10 = 0 THEN %s ELSE %s END, %s
               FROM subscribers""",
            (course.slug, NOW - timedelta(minutes=1), NOW + timedelta(days=1), NOW),
        )
        db.execute("ANALYZE")
    # The seeding session's own counts arrive when it has ended.
    before = wait_until(lambda: (c := counters(url))["enrollments"][1] == 20000 and c)
    batches: list[list[int]] = []
    due = dispatch.run_tick(
        database, course, now=NOW, day_seconds=86400, lease_seconds=20, batch_size=1000,
        enqueue=batches.append,
    )  # fmt: skip
    idle = dispatch.run_tick(
        database, course, now=NOW, day_seconds=86400, lease_seconds=20, batch_size=1000,
        enqueue=batches.append,
    )  # fmt: skip
    database.dispose()  # the server counts a session's scans when it ends
    assert (due.materialized, idle.materialized) == (2000, 0)
    # Every due lesson handed out once; how the two sessions split them into batches varies.
    handed_out = [delivery for batch in batches for delivery in batch]
    assert len(handed_out) == len(set(handed_out)) == 2000
    assert all(len(batch) <= 1000 for batch in batches)

    def counted() -> dict[str, tuple[int, int, int]] | None:
        after = counters(url)
        inserted = after["deliveries"][1] - before["deliveries"][1]
        updated = after["enrollments"][2] - before["enrollments"][2]
        return after if (inserted, updated) == (2000, 2000) else None

    after = wait_until(counted)
    scans = {table: after[table][0] - before[table][0] for table in TABLES}
    assert scans == dict.fromkeys(TABLES, 0)


def test_sessions_materializing_at_once_hand_out_every_due_lesson_once(
    scratch_postgres: str,
) -> None:
    """More due than a chunk: the tick's sessions split the work, nothing twice, nothing left."""
    url = scratch_postgres
    database = Database(url)
    upgrade(database)
    course = load_course(COURSE_DIR)
    due = 3 * dispatch.MATERIALIZE_CHUNK + 1234
    seed_due_readers(url, due, course_slug=course.slug, now=NOW, timezone="America/New_York")
    batches: list[list[int]] = []
    assert dispatch.MATERIALIZE_SESSIONS > 1
    report = dispatch.run_tick(
        database, course, now=NOW, day_seconds=86400, lease_seconds=20, batch_size=1000,
        enqueue=batches.append,
    )  # fmt: skip
    handed = [delivery_id for batch in batches for delivery_id in batch]
    with database.session() as session:
        rows = session.execute(select(Delivery.id, Delivery.lesson)).all()
        lessons = {row.id: row.lesson for row in rows}
        still_due = session.scalar(
            select(func.count()).where(Enrollment.next_due_at <= NOW, Enrollment.status == "active")
        )
        moved = session.scalar(
            select(func.count()).where(Enrollment.next_lesson == 2 + Enrollment.subscriber_id % 3)
        )
    database.dispose()
    assert report.materialized == due
    assert sorted(handed) == sorted(lessons) and len(lessons) == due
    assert all(len({lessons[i] for i in batch}) == 1 and len(batch) <= 1000 for batch in batches)
    assert still_due == 0
    assert moved == due


def test_deleting_a_subscriber_deletes_their_deliveries(stack: Stack) -> None:
    """Deliveries go with their enrollment, which goes with its subscriber."""
    gone, kept = confirmed_subscribers(stack, 2)
    stack.tick()
    with stack.session() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 2
        session.execute(delete(Subscriber).where(Subscriber.id == gone))
    with stack.session() as session:
        owners = session.scalars(select(Delivery.subscriber_id)).all()
        enrolled = session.scalars(select(Enrollment.subscriber_id)).all()
    assert owners == [kept]
    assert enrolled == [kept]
