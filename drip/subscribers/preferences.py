"""What a subscriber may change from the preferences page: pause, resume,
restart, and when their lessons go (send hour and time zone).

Each function takes a session and acts on the subscriber's running
enrollment of one course; it returns False when there is nothing to act on
(an unsubscribed subscriber, a finished course), and the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from drip.data.models import (
    NOT_YET_SENDING,
    RUNNING,
    Delivery,
    DeliveryStatus,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
)
from drip.sending import schedule
from drip.subscribers.subscriptions import enroll

# Lessons not yet handed to the provider; a "sending" one is already on its way.


@dataclass(frozen=True)
class Timing:
    """When a subscriber's lessons go: the course's rules plus their own choices."""

    course_send_hour: int
    day_seconds: int

    def send_hour(self, subscriber: Subscriber) -> int:
        return self.course_send_hour if subscriber.send_hour is None else subscriber.send_hour


@dataclass(frozen=True)
class Overview:
    """What the preferences page shows."""

    status: str
    email: str
    first_name: str
    timezone: str
    send_hour: int
    enrollment_status: str | None
    next_lesson: int | None
    next_due_at: datetime | None
    lessons_sent: int


def _subscriber(session: Session, subscriber_id: int) -> Subscriber | None:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or not subscriber.email:
        return None
    return subscriber


def _active_subscriber(session: Session, subscriber_id: int) -> Subscriber | None:
    subscriber = _subscriber(session, subscriber_id)
    if subscriber is None or subscriber.status != SubscriberStatus.ACTIVE.value:
        return None
    return subscriber


def running_enrollment(
    session: Session, subscriber_id: int, course_slug: str, *, lock: bool = False
) -> Enrollment | None:
    """The active or paused enrollment (there is at most one: ux_enrollments_running)."""
    query = select(Enrollment).where(
        Enrollment.subscriber_id == subscriber_id,
        Enrollment.course_slug == course_slug,
        Enrollment.status.in_(RUNNING),
    )
    if lock:
        # Serialises with the tick's materialize step (FOR UPDATE on PostgreSQL;
        # SQLite transactions already hold the write lock from BEGIN IMMEDIATE).
        query = query.with_for_update()
    return session.scalar(query)


def latest_enrollment(session: Session, subscriber_id: int, course_slug: str) -> Enrollment | None:
    return session.scalar(
        select(Enrollment)
        .where(Enrollment.subscriber_id == subscriber_id, Enrollment.course_slug == course_slug)
        .order_by(Enrollment.id.desc())
        .limit(1)
    )


def overview(
    session: Session, subscriber_id: int, course_slug: str, timing: Timing
) -> Overview | None:
    subscriber = _subscriber(session, subscriber_id)
    if subscriber is None or subscriber.email is None:  # the second test narrows the type
        return None
    enrollment = latest_enrollment(session, subscriber_id, course_slug)
    sent: int | None = 0
    if enrollment is not None:
        sent = session.scalar(
            select(func.count()).where(
                Delivery.enrollment_id == enrollment.id,
                Delivery.status == DeliveryStatus.SENT.value,
            )
        )
    return Overview(
        status=subscriber.status,
        email=subscriber.email,
        first_name=subscriber.first_name,
        timezone=subscriber.timezone,
        send_hour=timing.send_hour(subscriber),
        enrollment_status=enrollment.status if enrollment else None,
        next_lesson=enrollment.next_lesson if enrollment else None,
        next_due_at=enrollment.next_due_at if enrollment else None,
        lessons_sent=int(sent or 0),
    )


def pause(session: Session, subscriber_id: int, course_slug: str) -> bool:
    """Pause the running course so that nothing more goes out.

    1. Lock the active enrollment and mark it paused (the tick materializes
       active ones only).
    2. Delete its deliveries that are still queued or retrying: they would
       otherwise go out while paused.
    3. Rewind next_lesson to the lowest deleted lesson, so resuming sends it.
    """
    if _active_subscriber(session, subscriber_id) is None:
        return False
    enrollment = running_enrollment(session, subscriber_id, course_slug, lock=True)
    if enrollment is None or enrollment.status != EnrollmentStatus.ACTIVE.value:
        return False
    removed = session.scalars(
        delete(Delivery)
        .where(Delivery.enrollment_id == enrollment.id, Delivery.status.in_(NOT_YET_SENDING))
        .returning(Delivery.lesson)
    ).all()
    if removed:
        enrollment.next_lesson = min(removed)
    enrollment.status = EnrollmentStatus.PAUSED.value
    enrollment.next_due_at = None
    return True


def resume(
    session: Session, subscriber_id: int, course_slug: str, *, now: datetime, timing: Timing
) -> bool:
    """Resume a paused course at the subscriber's next send slot."""
    subscriber = _active_subscriber(session, subscriber_id)
    if subscriber is None:
        return False
    enrollment = running_enrollment(session, subscriber_id, course_slug, lock=True)
    if enrollment is None or enrollment.status != EnrollmentStatus.PAUSED.value:
        return False
    enrollment.status = EnrollmentStatus.ACTIVE.value
    enrollment.next_due_at = schedule.next_slot(
        now,
        timezone=subscriber.timezone,
        send_hour=timing.send_hour(subscriber),
        day_seconds=timing.day_seconds,
    )
    return True


def restart(session: Session, subscriber_id: int, course_slug: str, *, now: datetime) -> bool:
    """Start the course again from lesson 1, now; the running enrollment ends (enroll)."""
    if _active_subscriber(session, subscriber_id) is None:
        return False
    enroll(session, subscriber_id, course_slug=course_slug, now=now)
    return True


def change_schedule(
    session: Session,
    subscriber_id: int,
    course_slug: str,
    *,
    send_hour: int,
    timezone: str,
    now: datetime,
    timing: Timing,
) -> bool:
    """Set the subscriber's send hour and time zone and move the next lesson to match.

    The next lesson goes the local day after the previous one, at the new
    hour, in the new zone, and never in the past: one lesson a day still
    holds. Lesson 1 (due at confirmation) is left alone.
    """
    subscriber = _active_subscriber(session, subscriber_id)
    if subscriber is None:
        return False
    subscriber.send_hour = send_hour
    subscriber.timezone = timezone
    enrollment = running_enrollment(session, subscriber_id, course_slug, lock=True)
    if enrollment is not None and enrollment.status == EnrollmentStatus.ACTIVE.value:
        enrollment.next_due_at = _next_due(session, enrollment, subscriber, now, timing)
    return True


def _next_due(
    session: Session, enrollment: Enrollment, subscriber: Subscriber, now: datetime, timing: Timing
) -> datetime | None:
    previous_due = session.scalar(
        select(func.max(Delivery.due_at)).where(Delivery.enrollment_id == enrollment.id)
    )
    if previous_due is None:
        return enrollment.next_due_at
    zone, hour, day = subscriber.timezone, timing.send_hour(subscriber), timing.day_seconds
    following = schedule.following_due_at(
        previous_due, timezone=zone, send_hour=hour, day_seconds=day
    )
    if following >= now:
        return following
    return schedule.next_slot(now, timezone=zone, send_hour=hour, day_seconds=day)
