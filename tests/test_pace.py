"""A paced tick makes fresh deliveries only a little ahead of the send tasks taking them,
and never hangs on workers that do not take them."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from drip.course.loader import load_course
from drip.data.db import Database
from drip.data.migrate import upgrade
from drip.data.models import Delivery
from drip.sending import dispatch
from drip.sending.pace import Pace
from tests.conftest import COURSE_DIR, scratch_postgres_database, seed_due_readers

NOW = datetime(2026, 3, 5, 15, 0, tzinfo=UTC)
DUE = 3 * dispatch.MATERIALIZE_CHUNK + 1234


@contextmanager
def database_due(count: int) -> Iterator[Database]:
    """`count` lessons due, in three lessons."""
    with scratch_postgres_database("drip_test_pace") as url:
        database = Database(url)
        upgrade(database)
        seed_due_readers(url, count, course_slug=load_course(COURSE_DIR).slug, now=NOW)
        yield database
        database.dispose()


@pytest.fixture()
def due_database() -> Iterator[Database]:
    """More lessons due than three chunks."""
    with database_due(DUE) as database:
        yield database


def tick(
    database: Database, queue: deque[list[int]], lease_seconds: int = 1, **pacing: object
) -> dispatch.TickReport:
    def enqueue(ids: list[int]) -> None:
        raise AssertionError(f"nothing to hand out again, got {len(ids)}")

    return dispatch.run_tick(
        database, load_course(COURSE_DIR), now=NOW, day_seconds=86400,
        lease_seconds=lease_seconds, batch_size=500, enqueue=enqueue,
        enqueue_claimed=lambda ids, _: queue.append(ids), **pacing,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_paced_tick_makes_a_chunk_only_when_few_hand_outs_wait(
    due_database: Database,
) -> None:
    queue: deque[list[int]] = deque()
    taken: list[list[int]] = []
    reports: list[dispatch.TickReport] = []
    working = threading.Event()

    def worker() -> None:  # takes the hand-outs once told to
        working.wait()
        while ticking.is_alive() or queue:
            if queue:
                taken.append(queue.popleft())
            time.sleep(0.002)

    # 3,000 deliveries ahead: six hand-outs of 500, while a chunk makes ten.
    ticking = threading.Thread(
        target=lambda: reports.append(
            tick(due_database, queue, lease_seconds=20, waiting=lambda: len(queue), ahead=3000)
        )
    )
    consumer = threading.Thread(target=worker)
    ticking.start()
    consumer.start()
    try:
        time.sleep(1.5)
        # Nobody took the first chunk's hand-outs: the tick made no second chunk.
        assert ticking.is_alive()
        assert sum(len(batch) for batch in queue) == dispatch.MATERIALIZE_CHUNK
    finally:
        working.set()
        ticking.join()
        consumer.join()
    handed = sorted(i for batch in taken for i in batch)
    assert reports[0].materialized == DUE
    assert len(handed) == len(set(handed)) == DUE
    with due_database.session() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == DUE


def test_a_tick_whose_hand_outs_nobody_takes_hands_out_the_rest_after_a_quarter_lease(
    due_database: Database,
) -> None:
    queue: deque[list[int]] = deque()
    started = time.monotonic()
    report = tick(due_database, queue, lease_seconds=20, waiting=lambda: 10**6)
    # Gave up once, after a quarter of the lease (5 s) without the queue going down, then
    # went on at once: a deploy's warm shutdown waits that long at most.
    elapsed = time.monotonic() - started
    assert dispatch.PACE_PATIENCE * 20 <= elapsed < 15, elapsed
    assert report.materialized == DUE
    assert sum(len(batch) for batch in queue) == DUE


def test_a_tick_with_less_than_a_chunk_due_never_waits_for_a_full_queue() -> None:
    """The tick a confirmation kicks: other tasks may fill the queue, its lessons go at once."""
    asked = 0

    def full() -> int:
        nonlocal asked
        asked += 1
        return 10**6

    queue: deque[list[int]] = deque()
    with database_due(50) as database:
        started = time.monotonic()
        report = tick(database, queue, lease_seconds=20, waiting=full)
        elapsed = time.monotonic() - started
    assert report.materialized == 50
    assert sum(len(batch) for batch in queue) == 50
    assert asked == 0, "the first chunk is not paced"
    assert elapsed < 10, f"waited {elapsed:.1f} s (a lease is 20 s)"


def test_pacing_stops_when_the_queue_cannot_be_read() -> None:
    calls = 0

    def broken() -> int:
        nonlocal calls
        calls += 1
        raise ConnectionError("broker away")

    pace = Pace(broken, batch_size=1000, patience=60)
    started = time.monotonic()
    pace.wait()
    pace.wait()
    assert time.monotonic() - started < 1
    assert calls == 1  # not asked again for the rest of the tick


def test_pacing_waits_for_the_queue_to_go_down() -> None:
    length = [30]

    def drain() -> None:
        while length[0] > 0:
            time.sleep(0.01)
            length[0] -= 1

    pace = Pace(lambda: length[0], batch_size=1000, patience=60, ahead=20_000)
    drainer = threading.Thread(target=drain)
    drainer.start()
    pace.wait()
    seen = length[0]
    drainer.join()
    assert seen < 20  # returned only once fewer than 20 hand-outs of 1,000 waited


def test_a_tick_paces_no_longer_than_until_the_next_tick() -> None:
    # The queue goes down, slowly: patience alone would keep this tick waiting.
    length = [10**6]

    def waiting() -> int:
        length[0] -= 1
        return length[0]

    pace = Pace(waiting, batch_size=1000, patience=60, budget=0.3)
    started = time.monotonic()
    pace.wait()
    assert 0.25 < time.monotonic() - started < 2
    asked = length[0]
    pace.wait()  # and hands out the rest at once
    assert length[0] == asked
