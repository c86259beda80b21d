"""The course in numbers: where people drop out, and which lesson sells.

Plain queries over the tables, shared by the dashboard, `drip status` and
/metrics. Counts that bucket by time use CASE sums with bounds computed here,
so they mean the same on SQLite and PostgreSQL whatever the session time zone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, case, distinct, func, or_, select
from sqlalchemy.orm import Session

from drip.course.model import Course
from drip.data.models import (
    EXITED,
    OPEN_DELIVERY,
    Click,
    Delivery,
    DeliveryStatus,
    Enrollment,
    EnrollmentStatus,
    Event,
    Subscriber,
    SubscriberStatus,
)

OPEN_EVENT = "open"  # SendGrid's event name, kept as-is by the webhook
SENT = DeliveryStatus.SENT.value


@dataclass(frozen=True)
class Step:
    label: str
    count: int
    exit: bool = False  # unsubscribed, bounced, complained: ways out, not steps forward


def funnel(session: Session, course: Course) -> list[Step]:
    """Signed up → confirmed → lesson 1 … N → completed; then the ways out."""
    signed_up = session.scalar(select(func.count()).select_from(Subscriber)) or 0
    confirmed = session.scalar(select(func.count()).where(Subscriber.confirmed_at.is_not(None)))
    reached = dict(
        session.execute(
            select(Delivery.lesson, func.count(distinct(Delivery.subscriber_id)))
            .where(
                Delivery.course_slug == course.slug, Delivery.status == DeliveryStatus.SENT.value
            )
            .group_by(Delivery.lesson)
        ).all()
    )
    completed = session.scalar(
        select(func.count()).where(
            Enrollment.course_slug == course.slug,
            Enrollment.status == EnrollmentStatus.COMPLETED.value,
        )
    )
    by_status = subscriber_counts(session)
    steps = [Step("signed up", signed_up), Step("confirmed", confirmed or 0)]
    steps += [Step(f"lesson {n.number}", reached.get(n.number, 0)) for n in course.lessons]
    steps.append(Step("completed", completed or 0))
    steps += [Step(status, by_status.get(status, 0), exit=True) for status in EXITED]
    return steps


def subscriber_counts(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(Subscriber.status, func.count()).group_by(Subscriber.status)
    ).all()
    return {status: int(count) for status, count in rows}


@dataclass
class LessonStats:
    number: int
    subject: str
    sent: int = 0
    failed: int = 0
    opened: int = 0  # deliveries a person opened
    machine_opened: int = 0  # deliveries a machine opened (Apple Mail privacy, scanners)
    clicks: int = 0  # human clicks on the call to action
    clickers: int = 0  # deliveries with at least one human click
    scanner_clicks: int = 0  # link scanners, kept apart
    unsubscribes: int = 0  # people who left with this as the last lesson they got

    @property
    def click_rate(self) -> float:
        return self.clickers / self.sent if self.sent else 0.0


def lesson_stats(session: Session, course: Course) -> list[LessonStats]:
    stats = {n.number: LessonStats(n.number, n.subject) for n in course.lessons}

    def row_for(number: int) -> LessonStats:
        return stats.setdefault(number, LessonStats(number, "(not in the current course)"))

    of_course = Delivery.course_slug == course.slug
    for lesson, status, count in session.execute(
        select(Delivery.lesson, Delivery.status, func.count())
        .where(of_course)
        .group_by(Delivery.lesson, Delivery.status)
    ):
        if status == DeliveryStatus.SENT.value:
            row_for(lesson).sent = count
        elif status == DeliveryStatus.FAILED.value:
            row_for(lesson).failed = count
    for lesson, machine, count in session.execute(
        select(Delivery.lesson, Event.machine, func.count(distinct(Event.delivery_id)))
        .join(Delivery, Delivery.id == Event.delivery_id)
        .where(of_course, Event.kind == OPEN_EVENT)
        .group_by(Delivery.lesson, Event.machine)
    ):
        if machine:
            row_for(lesson).machine_opened = count
        else:
            row_for(lesson).opened = count
    for lesson, scanner, count, deliveries in session.execute(
        select(
            Delivery.lesson, Click.scanner, func.count(), func.count(distinct(Click.delivery_id))
        )
        .join(Delivery, Delivery.id == Click.delivery_id)
        .where(of_course)
        .group_by(Delivery.lesson, Click.scanner)
    ):
        if scanner:
            row_for(lesson).scanner_clicks = count
        else:
            row_for(lesson).clicks, row_for(lesson).clickers = count, deliveries
    for lesson, count in _unsubscribes_by_last_lesson(session, course):
        row_for(lesson).unsubscribes = count
    return [stats[number] for number in sorted(stats)]


def _unsubscribes_by_last_lesson(session: Session, course: Course) -> list[Any]:
    # Nothing is sent after an unsubscribe (the sender re-checks), so the highest lesson
    # sent to someone who left is the lesson they left after.
    last_sent = (
        select(Delivery.subscriber_id, func.max(Delivery.lesson).label("lesson"))
        .where(Delivery.course_slug == course.slug, Delivery.status == SENT)
        .group_by(Delivery.subscriber_id)
        .subquery()
    )
    return list(
        session.execute(
            select(last_sent.c.lesson, func.count())
            .join(Subscriber, Subscriber.id == last_sent.c.subscriber_id)
            .where(Subscriber.status == SubscriberStatus.UNSUBSCRIBED.value)
            .group_by(last_sent.c.lesson)
        ).all()
    )


def _bucket_sums(column: Any, starts: list[datetime], width: timedelta) -> list[Any]:
    return [func.sum(case((and_(column >= s, column < s + width), 1), else_=0)) for s in starts]


@dataclass(frozen=True)
class Day:
    day: date
    signups: int
    sends: int


def daily(session: Session, now: datetime, days: int = 14) -> list[Day]:
    """Signups and sent lessons per UTC day, the last `days` days up to today."""
    today = datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)
    starts = [today - timedelta(days=k) for k in range(days - 1, -1, -1)]
    width, end = timedelta(days=1), today + timedelta(days=1)
    signups = session.execute(
        select(*_bucket_sums(Subscriber.created_at, starts, width)).where(
            Subscriber.created_at >= starts[0], Subscriber.created_at < end
        )
    ).one()
    sends = session.execute(
        select(*_bucket_sums(Delivery.sent_at, starts, width)).where(
            Delivery.status == DeliveryStatus.SENT.value,
            Delivery.sent_at >= starts[0],
            Delivery.sent_at < end,
        )
    ).one()
    return [
        Day(start.date(), int(signed or 0), int(sent or 0))
        for start, signed, sent in zip(starts, signups, sends, strict=True)
    ]


def backlog_history(session: Session, now: datetime, hours: int = 24) -> list[tuple[datetime, int]]:
    """How many delivery rows were due and unsent at each of the last `hours` hours.

    Rebuilt from due_at and sent_at, so it needs no sampling job; rows that
    failed or were skipped drop out (the table does not say when).
    """
    points = [now - timedelta(hours=h) for h in range(hours, -1, -1)]
    still_open = and_(Delivery.sent_at.is_(None), Delivery.status.in_(OPEN_DELIVERY))

    def waiting_at(moment: datetime) -> Any:
        return func.sum(
            case((and_(Delivery.due_at <= moment, or_(still_open, Delivery.sent_at > moment)), 1),
                 else_=0)
        )  # fmt: skip

    row = session.execute(
        select(*[waiting_at(moment) for moment in points]).where(
            Delivery.due_at <= now, or_(still_open, Delivery.sent_at > points[0])
        )
    ).one()
    return [(moment, int(count or 0)) for moment, count in zip(points, row, strict=True)]


def events_by_kind(session: Session) -> dict[str, int]:
    rows = session.execute(select(Event.kind, func.count()).group_by(Event.kind)).all()
    return {kind: int(count) for kind, count in rows}


def deliveries_by_status_and_lesson(session: Session) -> dict[tuple[str, int], int]:
    rows = session.execute(
        select(Delivery.status, Delivery.lesson, func.count()).group_by(
            Delivery.status, Delivery.lesson
        )
    ).all()
    counts: dict[tuple[str, int], int] = defaultdict(int)
    for status, lesson, count in rows:
        counts[(status, lesson)] += int(count)
    return dict(counts)


def sent_since(session: Session, since: datetime) -> int:
    count = session.scalar(
        select(func.count()).where(
            Delivery.status == DeliveryStatus.SENT.value, Delivery.sent_at >= since
        )
    )
    return int(count or 0)
