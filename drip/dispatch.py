"""The sending engine: turn due enrollments into deliveries, hand them out in
batches, send each batch and record what happened.

Every step claims its rows with a conditional UPDATE (and FOR UPDATE SKIP
LOCKED on PostgreSQL; SQLite transactions start with BEGIN IMMEDIATE), so two
ticks or two workers at once waste a query at worst, never send twice.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from drip import circuit
from drip.course import Course
from drip.db import Database
from drip.models import (
    Delivery,
    DeliveryStatus,
    Enrollment,
    EnrollmentStatus,
    Heartbeat,
    Subscriber,
)
from drip.schedule import following_due_at

CHUNK = 1000  # rows per claiming transaction: short transactions, bounded IN lists
MAX_ATTEMPTS = 8


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


def _insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(Delivery)


def materialize_due(database: Database, course: Course, *, now: datetime, day_seconds: int) -> int:
    """Create a queued delivery for every enrollment whose next lesson is due.

    1. Lock a chunk of due, active enrollments of this course.
    2. Insert one delivery per enrollment (the unique key ignores a repeat).
    3. Move each enrollment on to its next lesson and due time, only if it is
       still at the lesson we read (a conditional update).
    """
    total = 0
    while True:
        with database.session() as session:
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
                    .limit(CHUNK),
                    session,
                )
            ).all()
            if not rows:
                return total
            _create_deliveries(session, course, rows, now)
            _advance_enrollments(session, course, rows, now, day_seconds)
            total += len(rows)
        if len(rows) < CHUNK:
            return total


def _create_deliveries(
    session: Session, course: Course, rows: Sequence[Any], now: datetime
) -> None:
    values = [
        {
            "enrollment_id": row.id,
            "subscriber_id": row.subscriber_id,
            "course_slug": course.slug,
            "lesson": row.next_lesson,
            "status": DeliveryStatus.QUEUED.value,
            "due_at": row.next_due_at,
            "created_at": now,
            "attempts": 0,
            "message_id": "",
            "error": "",
            "possible_duplicate": False,
            "provider_status": "",
        }
        for row in rows
        if row.next_lesson <= len(course.lessons)
    ]
    if values:
        session.execute(_insert(session).values(values).on_conflict_do_nothing())


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
    table = cast(Table, Enrollment.__table__)  # Core table: executemany with bound parameters
    session.connection().execute(
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.next_lesson == bindparam("b_current"))
        .values(
            next_lesson=bindparam("next_lesson"),
            status=bindparam("status"),
            next_due_at=bindparam("next_due_at"),
            completed_at=bindparam("completed_at"),
        ),
        changes,
    )


def _dispatchable(now: datetime, lease_seconds: int) -> Any:
    stale = now - timedelta(seconds=lease_seconds)
    return or_(
        and_(
            Delivery.status == DeliveryStatus.QUEUED.value,
            or_(Delivery.enqueued_at.is_(None), Delivery.enqueued_at < stale),
        ),
        and_(Delivery.status == DeliveryStatus.SENDING.value, Delivery.lease_until < now),
        and_(Delivery.status == DeliveryStatus.RETRYING.value, Delivery.next_attempt_at <= now),
    )


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
    at enqueue time) is handed out again once its lease has passed; a sending
    one whose worker died is reclaimed and flagged as a possible duplicate,
    since the provider may have taken it before the crash. ``limit`` caps how
    many are handed out (a circuit probe); the rest stay as they are.
    """
    by_lesson: dict[int, list[int]] = defaultdict(list)
    remaining = CHUNK if limit is None else limit
    while remaining > 0:
        chunk = min(CHUNK, remaining)
        with database.session() as session:
            ids = session.scalars(
                _locking(
                    select(Delivery.id)
                    .where(Delivery.course_slug == course.slug, _dispatchable(now, lease_seconds))
                    .order_by(Delivery.id)
                    .limit(chunk),
                    session,
                )
            ).all()
            if not ids:
                break
            claimed = session.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids), _dispatchable(now, lease_seconds))
                .values(
                    possible_duplicate=or_(
                        Delivery.possible_duplicate,
                        Delivery.status == DeliveryStatus.SENDING.value,
                    ),
                    status=DeliveryStatus.QUEUED.value,
                    enqueued_at=now,
                )
                .returning(Delivery.id, Delivery.lesson)
            ).all()
            for delivery_id, lesson in claimed:
                by_lesson[lesson].append(delivery_id)
        if len(ids) < chunk:
            break
        if limit is not None:
            remaining -= len(ids)
    batches = []
    for lesson in sorted(by_lesson):
        lesson_ids = sorted(by_lesson[lesson])
        for start in range(0, len(lesson_ids), batch_size):
            batches.append(lesson_ids[start : start + batch_size])
    return batches


def record_heartbeat(database: Database, name: str, now: datetime, detail: dict[str, Any]) -> None:
    with database.session() as session:
        beat = session.get(Heartbeat, name)
        if beat is None:
            session.add(Heartbeat(name=name, at=now, detail=detail))
        else:
            beat.at = now
            beat.detail = detail


def run_tick(
    database: Database,
    course: Course,
    *,
    now: datetime,
    day_seconds: int,
    lease_seconds: int,
    batch_size: int,
    enqueue: Callable[[list[int]], None],
    probe_seconds: float = circuit.PROBE_SECONDS,
) -> TickReport:
    """One scheduler tick: materialize what is due, then hand it to send tasks.

    While the sending circuit is open (the provider refused our credentials)
    nothing is handed out, so the backlog grows in plain sight, except a probe
    of at most ``batch_size`` deliveries every ``probe_seconds``; see drip/circuit.py.
    """
    report = TickReport()
    report.materialized = materialize_due(database, course, now=now, day_seconds=day_seconds)
    report.circuit_open = circuit.status(database).open
    if not report.circuit_open or circuit.claim_probe(
        database, now=now, probe_seconds=probe_seconds
    ):
        report.batches = claim_for_dispatch(
            database,
            course,
            now=now,
            lease_seconds=lease_seconds,
            batch_size=batch_size,
            limit=batch_size if report.circuit_open else None,
        )
    for batch in report.batches:
        enqueue(batch)
        report.dispatched += len(batch)
    record_heartbeat(
        database,
        "tick",
        datetime.now(UTC),
        {
            "materialized": report.materialized,
            "dispatched": report.dispatched,
            "circuit_open": report.circuit_open,
        },
    )
    return report


def retry_delay(attempts: int, *, base: float = 30.0, cap: float = 3600.0) -> float:
    """Exponential backoff with full jitter: spreads retries so they do not stampede."""
    return random.uniform(0, min(cap, base * 2 ** max(0, attempts - 1)))


def chunked(items: Sequence[int], size: int) -> Iterable[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
