"""What the integrators' API reads about subscribers and their progress, a page at a time.

Pages are keyset pages: `after` is the last id the caller saw, so rows added
meanwhile never shift a page. Erased subscribers are left out everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from drip.data.models import (
    RUNNING,
    Delivery,
    DeliveryStatus,
    Enrollment,
    Subscriber,
    SubscriberStatus,
)


@dataclass(frozen=True)
class SubscriberFilter:
    status: str | None = None
    email: str | None = None
    lesson: int | None = None  # the next lesson of the running enrollment
    signed_up_from: date | None = None
    signed_up_until: date | None = None  # inclusive


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def list_subscribers(
    session: Session, course_slug: str, where: SubscriberFilter, *, after: int, limit: int
) -> list[dict[str, Any]]:
    query = select(Subscriber).where(
        Subscriber.id > after, Subscriber.status != SubscriberStatus.ERASED.value
    )
    if where.status:
        query = query.where(Subscriber.status == where.status)
    if where.email:
        query = query.where(Subscriber.email == where.email.strip().lower())
    if where.signed_up_from:
        query = query.where(Subscriber.created_at >= _day_start(where.signed_up_from))
    if where.signed_up_until and where.signed_up_until < date.max:
        until = _day_start(where.signed_up_until) + timedelta(days=1)
        query = query.where(Subscriber.created_at < until)
    if where.lesson is not None:
        query = query.where(
            Subscriber.id.in_(
                select(Enrollment.subscriber_id).where(
                    Enrollment.course_slug == course_slug,
                    Enrollment.status.in_(RUNNING),
                    Enrollment.next_lesson == where.lesson,
                )
            )
        )
    rows = session.scalars(query.order_by(Subscriber.id).limit(limit)).all()
    return [subscriber_view(session, row, course_slug) for row in rows]


def find_subscriber(session: Session, subscriber_id: int) -> Subscriber | None:
    row = session.get(Subscriber, subscriber_id)
    if row is None or row.status == SubscriberStatus.ERASED.value:
        return None
    return row


def subscriber_view(session: Session, row: Subscriber, course_slug: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "email": row.email,
        "first_name": row.first_name,
        "timezone": row.timezone,
        "status": row.status,
        "created_at": _iso(row.created_at),
        "confirmed_at": _iso(row.confirmed_at),
        "unsubscribed_at": _iso(row.unsubscribed_at),
        "enrollment": _latest_enrollment(session, row.id, course_slug),
    }


def _latest_enrollment(
    session: Session, subscriber_id: int, course_slug: str
) -> dict[str, Any] | None:
    enrollment = session.scalar(
        select(Enrollment)
        .where(Enrollment.subscriber_id == subscriber_id, Enrollment.course_slug == course_slug)
        .order_by(Enrollment.id.desc())
        .limit(1)
    )
    return None if enrollment is None else enrollment_view(session, enrollment)


def enrollment_view(session: Session, enrollment: Enrollment) -> dict[str, Any]:
    sent = session.scalar(
        select(func.count()).where(
            Delivery.enrollment_id == enrollment.id, Delivery.status == DeliveryStatus.SENT.value
        )
    )
    return {
        "id": enrollment.id,
        "subscriber_id": enrollment.subscriber_id,
        "course": enrollment.course_slug,
        "status": enrollment.status,
        "next_lesson": enrollment.next_lesson,
        "next_due_at": _iso(enrollment.next_due_at),
        "lessons_sent": int(sent or 0),
        "started_at": _iso(enrollment.started_at),
        "completed_at": _iso(enrollment.completed_at),
    }


def list_enrollments(
    session: Session, *, status: str | None, after: int, limit: int
) -> list[dict[str, Any]]:
    query = (
        select(Enrollment)
        .join(Subscriber, Subscriber.id == Enrollment.subscriber_id)
        .where(Enrollment.id > after, Subscriber.status != SubscriberStatus.ERASED.value)
    )
    if status:
        query = query.where(Enrollment.status == status)
    rows = session.scalars(query.order_by(Enrollment.id).limit(limit)).all()
    return [enrollment_view(session, row) for row in rows]
