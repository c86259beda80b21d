"""The sending engine: turn due enrollments into deliveries, hand them out in
batches, send each batch and record what happened.

Every step claims its rows with a conditional UPDATE (and FOR UPDATE SKIP
LOCKED on PostgreSQL; SQLite transactions start with BEGIN IMMEDIATE), so two
ticks or two workers at once waste a query at worst, never send twice.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    DateTime,
    Float,
    Table,
    and_,
    bindparam,
    false,
    literal,
    null,
    select,
    text,
    update,
)
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from drip.clock import system_clock
from drip.course.model import Course
from drip.data.db import Database, bulk_update, upsert_into
from drip.data.models import (
    Delivery,
    DeliveryStatus,
    Enrollment,
    EnrollmentStatus,
    Heartbeat,
    Subscriber,
    UTCDateTime,
)
from drip.sending import circuit
from drip.sending.pace import AHEAD, Pace
from drip.sending.schedule import following_due_at

CHUNK = 1000  # rows per claiming transaction: short transactions, bounded IN lists
# Materializing is the hot path of a busy morning (a million due enrollments):
# larger chunks mean fewer round trips; SQLite's 32,766-variable cap bounds it.
MATERIALIZE_CHUNK = 5000
# Sessions materializing at once on PostgreSQL: the statement is CPU-bound in the
# server, so a second session uses a second core while this process hands out.
MATERIALIZE_SESSIONS = 2
MAX_ATTEMPTS = 8
# A batch the tick hands out already claimed holds this many leases from its hand-out:
# one, as a claim would give it, so that a worker killed right after taking it, or a
# hand-out lost on its way, leaves the batch to the next tick one lease after the
# hand-out, within the fault suite's 30 s recovery. Two leases kept batches that waited
# longer in the queue write-free, but took a killed worker's batch to 40 s with the
# default 20 s lease. The tick paces its hand-outs (drip/sending/pace.py), so a batch
# waits in the queue for seconds, and a send task takes it without a write while
# `delivery.TAKE_LEFT` of this is left.
HAND_OUT_LEASES = 1
# A paced tick hands out the rest at once when the send queue has not gone down for
# this share of a lease: sending workers take a batch every fraction of a second, so
# a queue that stands still for seconds has nobody taking from it. A warm shutdown
# (a deploy) waits for the tick's task, so this bounds what pacing adds to it
# (a whole lease there made a deploy restart's recovery 18 s instead of 4).
PACE_PATIENCE = 0.25


@dataclass
class TickReport:
    materialized: int = 0
    dispatched: int = 0
    batches: list[list[int]] = field(default_factory=list)
    circuit_open: bool = False  # only a probe batch, if any, was handed out


def _locking(statement: Any, session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return statement.with_for_update(skip_locked=True, of=statement.selected_columns[0].table)
    return statement


ByLesson = dict[int, list[int]]  # lesson -> delivery ids, ascending


@dataclass
class Materialized:
    count: int = 0
    handed_out: ByLesson = field(default_factory=dict)


def materialize_due(
    database: Database,
    course: Course,
    *,
    now: datetime,
    day_seconds: int,
    hand_out: bool = False,
    on_chunk: Callable[[ByLesson], None] | None = None,
    sessions: int = 1,
    claim_for: timedelta | None = None,
    pace: Callable[[], None] | None = None,
) -> Materialized:
    """Create a queued delivery for every enrollment whose next lesson is due.

    1. Lock a chunk of due, active enrollments of this course.
    2. Insert one delivery per enrollment, set-based from the locked rows (the
       unique key ignores a repeat). With ``hand_out`` the new rows are marked
       as handed to a send task in the same statement and returned, so the
       tick needs no second pass over a million fresh rows to find them;
       ``on_chunk`` gets each committed chunk at once, so workers start
       sending while the rest is still being materialized.
    3. Move each enrollment on to its next lesson and due time, only if it is
       still at the lesson we read (a conditional update).

    With ``sessions`` > 1 (PostgreSQL only) and more than a chunk due, that many
    database sessions take chunks at once, each skipping the rows the others hold, while this thread
    hands out what they have committed.

    With ``hand_out`` and ``claim_for``, the new rows are inserted already claimed:
    ``sending``, attempt 1, ``enqueued_at`` = ``now`` (the tick's mark, which the send
    task is given) and a lease of ``claim_for`` from the moment their chunk is
    committed, so the send task that takes them needs no claiming UPDATE
    (drip/sending/delivery.py, ``deliver_batch``).

    ``pace`` is called before each chunk but the first and returns when it may be
    made (drip/sending/pace.py): its lease starts after that wait, not before.
    """
    result = Materialized()
    started = time.monotonic()
    # The first chunk goes at once: pacing keeps a long tick's later chunks behind the
    # send tasks, and a tick with less than a chunk due (the one a confirmation kicks)
    # has nothing to wait for, whatever else fills the task queue.
    paced = False

    def take(locked: int, created: ByLesson) -> None:
        result.count += locked
        if not (hand_out and created):
            return
        if on_chunk is not None:
            on_chunk(created)
            return
        for lesson, ids in created.items():
            result.handed_out.setdefault(lesson, []).extend(ids)

    def chunk() -> tuple[int, ByLesson]:
        nonlocal paced
        if pace is not None and hand_out and paced:
            pace()
        paced = True
        claim = None
        if hand_out and claim_for is not None:
            # The lease runs from the hand-out, not from the tick's start: a tick that
            # materializes a million rows takes tens of seconds.
            claim = now + timedelta(seconds=time.monotonic() - started) + claim_for
        return _materialize_chunk(database, course, now, day_seconds, hand_out, claim)

    # One session first: a tick with less than a chunk due (most ticks) needs no
    # second connection, and its lessons are not split between sessions into
    # batches smaller than they need to be.
    locked, created = chunk()
    take(locked, created)
    if locked < MATERIALIZE_CHUNK:
        return result
    if sessions <= 1 or database.is_sqlite:
        while True:
            locked, created = chunk()
            take(locked, created)
            if locked < MATERIALIZE_CHUNK:
                return result
    _in_parallel(chunk, take, sessions)
    return result


def _in_parallel(
    chunk: Callable[[], tuple[int, ByLesson]],
    take: Callable[[int, ByLesson], None],
    sessions: int,
) -> None:
    """Run ``chunk`` in ``sessions`` threads until each comes back short; ``take`` every
    result in this thread. A session stops at its first short chunk: the rows it
    could not lock are held by another session, which moves them on.
    An error stops every session after its current chunk and is raised here."""
    results: queue.Queue[tuple[int, ByLesson] | BaseException | None] = queue.Queue()
    stop = threading.Event()

    def work() -> None:
        try:
            while not stop.is_set():
                locked, created = chunk()
                results.put((locked, created))
                if locked < MATERIALIZE_CHUNK:
                    return
        except BaseException as error:  # handed to the calling thread, raised there
            results.put(error)
        finally:
            results.put(None)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(sessions)]
    for thread in threads:
        thread.start()
    failure: BaseException | None = None
    running = len(threads)
    try:
        while running:
            item = results.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                stop.set()
                failure = failure or item
            else:
                take(*item)  # committed, so handed out even if another session failed
    except BaseException:
        stop.set()
        raise
    finally:
        for thread in threads:
            thread.join()
    if failure is not None:
        raise failure


@dataclass(frozen=True)
class _Insert:
    """What a new delivery row starts as: queued, handed out, or claimed until a lease."""

    status: str
    enqueued_at: datetime | None
    attempts: int
    lease_until: datetime | None

    @classmethod
    def of(cls, now: datetime, hand_out: bool, claimed_until: datetime | None) -> _Insert:
        if hand_out and claimed_until is not None:
            return cls(DeliveryStatus.SENDING.value, now, 1, claimed_until)
        return cls(DeliveryStatus.QUEUED.value, now if hand_out else None, 0, None)


def _materialize_chunk(
    database: Database,
    course: Course,
    now: datetime,
    day_seconds: int,
    hand_out: bool,
    claimed_until: datetime | None = None,
) -> tuple[int, ByLesson]:
    """One chunk: (enrollments moved on, deliveries created and handed out, by lesson)."""
    new = _Insert.of(now, hand_out, claimed_until)
    if not database.is_sqlite:
        try:
            with database.session() as session:
                return _materialize_chunk_in_sql(session, course, now, day_seconds, new)
        except DataError:
            # A time zone PostgreSQL does not know (its tz database is older than
            # Python's): the same chunk, computed in Python, cannot fail that way.
            pass
    with database.session() as session:
        return _materialize_chunk_in_python(session, course, now, day_seconds, new)


# PostgreSQL does the whole chunk in one statement: lock, move on, insert.
# Its "local date + 1 day at the send hour AT TIME ZONE" resolves a missing or
# doubled local hour the same way as schedule.local_send_time.
_MATERIALIZE_SQL = text(
    """
    WITH due AS (
        SELECT e.ctid AS row_at, e.id, e.subscriber_id, e.next_lesson, e.next_due_at
        FROM enrollments AS e
        WHERE e.status = 'active' AND e.course_slug = :slug AND e.next_due_at <= :now
        ORDER BY e.next_due_at
        LIMIT :chunk
        FOR UPDATE SKIP LOCKED
    ), moved AS (
        UPDATE enrollments AS e
        SET next_lesson = due.next_lesson + 1,
            status = CASE WHEN due.next_lesson >= :last THEN 'completed' ELSE 'active' END,
            completed_at = CASE WHEN due.next_lesson >= :last THEN :now END,
            next_due_at = CASE
                WHEN due.next_lesson >= :last THEN NULL
                WHEN :day_seconds <> 86400
                    THEN due.next_due_at + make_interval(secs => :day_seconds)
                ELSE (
                    SELECT ((due.next_due_at AT TIME ZONE s.timezone)::date + 1
                            + make_interval(hours => COALESCE(s.send_hour, :course_hour)))
                           AT TIME ZONE s.timezone
                    FROM subscribers AS s WHERE s.id = due.subscriber_id)
            END
        FROM due
        WHERE e.ctid = ANY (ARRAY(SELECT row_at FROM due))
          AND e.ctid = due.row_at AND e.next_lesson = due.next_lesson
        RETURNING e.id
    ), created AS (
        INSERT INTO deliveries (
            enrollment_id, subscriber_id, course_slug, lesson, status, due_at, created_at,
            enqueued_at, attempts, lease_until, message_id, error, possible_duplicate,
            provider_status)
        SELECT due.id, due.subscriber_id, :slug, due.next_lesson, :status, due.next_due_at,
               :now, :enqueued_at, :attempts, :lease_until, '', '', false, ''
        FROM due
        WHERE due.next_lesson <= :last
        ON CONFLICT DO NOTHING
        RETURNING id, lesson
    )
    SELECT counted.locked, grouped.lesson, grouped.ids
    FROM (SELECT count(*) AS locked FROM moved) AS counted
    LEFT JOIN (
        SELECT lesson, array_agg(id ORDER BY id) AS ids FROM created GROUP BY lesson
    ) AS grouped ON true
    """
).bindparams(
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("enqueued_at", type_=DateTime(timezone=True)),
    bindparam("lease_until", type_=DateTime(timezone=True)),
    bindparam("day_seconds", type_=Float()),
)


def _materialize_chunk_in_sql(
    session: Session, course: Course, now: datetime, day_seconds: int, new: _Insert
) -> tuple[int, ByLesson]:
    rows = session.execute(
        _MATERIALIZE_SQL,
        {
            "course_hour": course.send_hour,
            "slug": course.slug,
            "now": now,
            "chunk": MATERIALIZE_CHUNK,
            "last": len(course.lessons),
            "day_seconds": float(day_seconds),
            "status": new.status,
            "enqueued_at": new.enqueued_at,
            "attempts": new.attempts,
            "lease_until": new.lease_until,
        },
    ).all()
    locked = rows[0][0] if rows else 0
    return locked, {lesson: ids for _, lesson, ids in rows if lesson is not None}


def _materialize_chunk_in_python(
    session: Session, course: Course, now: datetime, day_seconds: int, new: _Insert
) -> tuple[int, ByLesson]:
    rows = session.execute(
        _locking(
            select(
                Enrollment.id,
                Enrollment.subscriber_id,
                Enrollment.next_lesson,
                Enrollment.next_due_at,
                Subscriber.timezone,
                Subscriber.send_hour,
            )
            .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
            .where(
                Enrollment.status == EnrollmentStatus.ACTIVE.value,
                Enrollment.course_slug == course.slug,
                Enrollment.next_due_at <= now,
            )
            .order_by(Enrollment.next_due_at)
            .limit(MATERIALIZE_CHUNK),
            session,
        )
    ).all()
    if not rows:
        return 0, {}
    created = _create_deliveries(session, course, [row.id for row in rows], now, new)
    _advance_enrollments(session, course, rows, now, day_seconds)
    return len(rows), group_by_lesson(created)


def _create_deliveries(
    session: Session, course: Course, enrollment_ids: list[int], now: datetime, new: _Insert
) -> list[tuple[int, int]]:
    columns = [
        Delivery.enrollment_id, Delivery.subscriber_id, Delivery.course_slug, Delivery.lesson,
        Delivery.status, Delivery.due_at, Delivery.created_at, Delivery.enqueued_at,
        Delivery.attempts, Delivery.lease_until, Delivery.message_id, Delivery.error,
        Delivery.possible_duplicate, Delivery.provider_status,
    ]  # fmt: skip

    def moment(value: datetime | None) -> Any:
        return null() if value is None else literal(value, UTCDateTime())

    source = select(
        Enrollment.id, Enrollment.subscriber_id, literal(course.slug), Enrollment.next_lesson,
        literal(new.status), Enrollment.next_due_at, literal(now, UTCDateTime()),
        moment(new.enqueued_at), literal(new.attempts), moment(new.lease_until), literal(""),
        literal(""), false(), literal(""),
    ).where(
        Enrollment.id.in_(enrollment_ids), Enrollment.next_lesson <= len(course.lessons)
    )  # fmt: skip
    statement = (
        upsert_into(session, Delivery)
        .from_select([column.key for column in columns], source)
        .on_conflict_do_nothing()
        .returning(Delivery.id, Delivery.lesson)
    )
    return [(row.id, row.lesson) for row in session.execute(statement)]


def _advance_enrollments(
    session: Session, course: Course, rows: Sequence[Any], now: datetime, day_seconds: int
) -> None:
    last = len(course.lessons)
    changes = []
    for row in rows:
        finished = row.next_lesson >= last
        changes.append(
            {
                "b_id": row.id,
                "b_current": row.next_lesson,
                "next_lesson": row.next_lesson + 1,
                "status": EnrollmentStatus.COMPLETED.value
                if finished
                else EnrollmentStatus.ACTIVE.value,
                "next_due_at": None
                if finished
                else following_due_at(
                    row.next_due_at,
                    timezone=row.timezone,
                    send_hour=course.send_hour if row.send_hour is None else row.send_hour,
                    day_seconds=day_seconds,
                ),
                "completed_at": now if finished else None,
            }
        )
    table = cast(Table, Enrollment.__table__)
    # Only if still at the lesson we read: a second tick's update matches nothing.
    bulk_update(session, table, changes, match={"b_id": "id", "b_current": "next_lesson"})


def _dispatchable(now: datetime, lease_seconds: int) -> list[Any]:
    """The open deliveries a tick may hand out, one index-friendly condition each.

    Kept apart rather than OR-ed: each is a range on the partial index of open
    rows, where one OR-ed predicate made the planner scan every open row per chunk.
    """
    stale = now - timedelta(seconds=lease_seconds)
    return [
        # Materialized while the circuit was open, or by a tick that did not hand out.
        and_(Delivery.status == DeliveryStatus.QUEUED.value, Delivery.enqueued_at.is_(None)),
        # Handed out, but no send task ever claimed them (lost message, Redis down).
        and_(Delivery.status == DeliveryStatus.QUEUED.value, Delivery.enqueued_at < stale),
        # Claimed by a worker that died: the lease ran out.
        and_(Delivery.status == DeliveryStatus.SENDING.value, Delivery.lease_until < now),
        and_(Delivery.status == DeliveryStatus.RETRYING.value, Delivery.next_attempt_at <= now),
    ]


def claim_for_dispatch(
    database: Database,
    course: Course,
    *,
    now: datetime,
    lease_seconds: int,
    batch_size: int,
    limit: int | None = None,
) -> list[list[int]]:
    """Mark open deliveries as handed to a send task; return them in same-lesson batches.

    A queued delivery whose task never ran (the broker lost it, Redis was down
    at enqueue time) is handed out again once its lease has passed; so is a
    sending one whose worker died. The send task that takes it over reads the
    send journal (drip/sending/journal.py) to learn whether the provider had
    already accepted it, may have, or never saw it. ``limit`` caps how
    many are handed out (a circuit probe); the rest stay as they are.
    """
    claimed_all: list[tuple[int, int]] = []
    remaining = limit
    pending = _dispatchable(now, lease_seconds)
    # One transaction per pass over the conditions (an idle tick: one, of four
    # index probes); a condition that filled its chunk is taken again next pass.
    while pending and (remaining is None or remaining > 0):
        full = []
        with database.session() as session:
            for condition in pending:
                chunk = CHUNK if remaining is None else min(CHUNK, remaining)
                if chunk <= 0:
                    break
                claimed = _claim_chunk(session, course, condition, now, chunk)
                claimed_all += claimed
                if remaining is not None:
                    remaining -= len(claimed)
                if len(claimed) == chunk:
                    full.append(condition)
        pending = full
    return in_batches(group_by_lesson(claimed_all), batch_size)


def _claim_chunk(
    session: Session, course: Course, condition: Any, now: datetime, chunk: int
) -> list[tuple[int, int]]:
    ids = session.scalars(
        _locking(
            select(Delivery.id)
            .where(Delivery.course_slug == course.slug, condition)
            .order_by(Delivery.id)
            .limit(chunk),
            session,
        )
    ).all()
    if not ids:
        return []
    claimed = session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids), condition)
        .values(
            status=DeliveryStatus.QUEUED.value,
            enqueued_at=now,
        )
        .returning(Delivery.id, Delivery.lesson)
    ).all()
    return [(row.id, row.lesson) for row in claimed]


def group_by_lesson(deliveries: Iterable[tuple[int, int]]) -> dict[int, list[int]]:
    by_lesson: dict[int, list[int]] = defaultdict(list)
    for delivery_id, lesson in deliveries:
        by_lesson[lesson].append(delivery_id)
    return by_lesson


def in_batches(by_lesson: dict[int, list[int]], batch_size: int) -> list[list[int]]:
    """Same-lesson batches of at most ``batch_size``: one rendering and one request each."""
    batches = []
    for lesson in sorted(by_lesson):
        lesson_ids = sorted(by_lesson[lesson])
        for start in range(0, len(lesson_ids), batch_size):
            batches.append(lesson_ids[start : start + batch_size])
    return batches


def record_heartbeat(database: Database, name: str, now: datetime, detail: dict[str, Any]) -> None:
    # One upsert: two ticks at once must not both try to insert the first row.
    with database.session() as session:
        statement = upsert_into(session, Heartbeat).values(name=name, at=now, detail=detail)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=[Heartbeat.name],
                set_={"at": statement.excluded.at, "detail": statement.excluded.detail},
            )
        )


def run_tick(
    database: Database,
    course: Course,
    *,
    now: datetime,
    day_seconds: int,
    lease_seconds: int,
    batch_size: int,
    enqueue: Callable[[list[int]], None],
    enqueue_claimed: Callable[[list[int], datetime], None] | None = None,
    probe_seconds: float = circuit.PROBE_SECONDS,
    waiting: Callable[[], int] | None = None,
    ahead: int = AHEAD,
    pace_seconds: float | None = None,
) -> TickReport:
    """One scheduler tick: materialize what is due, then hand it to send tasks.

    With ``enqueue_claimed``, fresh deliveries are inserted already claimed for
    ``HAND_OUT_LEASES`` leases and handed to it with the tick's ``now``, the mark
    the send task takes them by (``delivery.deliver_batch``'s ``claimed_at``);
    what is handed out again (lost hand-outs, dead workers' batches, retries) goes
    through ``enqueue`` and the send task's claim, as fresh ones do without it.

    With ``waiting`` (how many hand-outs wait in the send queue) fresh deliveries
    are made only ``ahead`` deliveries ahead of the send tasks (drip/sending/pace.py),
    so that each pre-claimed batch is taken while its window lasts, for at most
    ``pace_seconds`` (then the rest goes at once).

    While the sending circuit is open (the provider refused our credentials)
    nothing is handed out, so the backlog grows in plain sight, except a probe
    of at most ``batch_size`` deliveries every ``probe_seconds``; see drip/circuit.py.
    """
    started = time.monotonic()
    report = TickReport()
    report.circuit_open = circuit.status(database).open

    def hand_out(created: ByLesson) -> None:
        batches = in_batches(created, batch_size)
        for batch in batches:
            if enqueue_claimed is None:
                enqueue(batch)
            else:
                enqueue_claimed(batch, now)
            report.dispatched += len(batch)
        report.batches += batches

    fresh = materialize_due(
        database,
        course,
        now=now,
        day_seconds=day_seconds,
        hand_out=not report.circuit_open,
        on_chunk=hand_out,
        sessions=MATERIALIZE_SESSIONS,
        claim_for=None
        if enqueue_claimed is None
        else timedelta(seconds=HAND_OUT_LEASES * lease_seconds),
        pace=None
        if waiting is None
        else Pace(
            waiting,
            batch_size=batch_size,
            patience=lease_seconds * PACE_PATIENCE,
            ahead=ahead,
            budget=pace_seconds,
        ).wait,
    )
    report.materialized = fresh.count
    # A send task may have opened the circuit while this tick handed out fresh work;
    # lessons it released then wait for the probe like the rest.
    open_now = report.circuit_open or circuit.status(database).open
    if not open_now or circuit.claim_probe(database, now=now, probe_seconds=probe_seconds):
        reclaimed = claim_for_dispatch(
            database,
            course,
            now=now,
            lease_seconds=lease_seconds,
            batch_size=batch_size,
            limit=batch_size if open_now else None,
        )
        if not open_now and circuit.status(database).open:
            # A send task opened the circuit while this tick reclaimed: rows it released
            # (it opens the circuit first) wait for the probe like the rest. Those taken
            # here stay marked handed out and go again after a lease, as lost ones do.
            reclaimed = []
        for batch in reclaimed:
            enqueue(batch)
            report.dispatched += len(batch)
        report.batches += reclaimed
    # The heartbeat says when the tick really ran (health compares it with the wall
    # clock), whatever clock the tick reasons with.
    record_heartbeat(
        database,
        "tick",
        system_clock(),
        {
            "materialized": report.materialized,
            "dispatched": report.dispatched,
            "circuit_open": report.circuit_open,
            "duration": round(time.monotonic() - started, 4),
        },
    )
    return report


def retry_delay(attempts: int, *, base: float = 30.0, cap: float = 3600.0) -> float:
    """Exponential backoff with full jitter: spreads retries so they do not stampede."""
    return random.uniform(0, min(cap, base * 2 ** max(0, attempts - 1)))
