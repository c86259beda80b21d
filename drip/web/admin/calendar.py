"""A subscriber's lessons, one row each: what went when, and when the rest is planned,
in the subscriber's own time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from drip.course.model import Course
from drip.data.models import Delivery, Enrollment, EnrollmentStatus, Subscriber
from drip.sending import schedule
from drip.subscribers.preferences import latest_enrollment


@dataclass(frozen=True)
class CalendarRow:
    lesson: int
    subject: str
    state: str  # a delivery's status, or planned / paused / not planned
    when: datetime | None  # sent_at, else due_at, else the planned time
    note: str = ""  # the error or the provider's word on it


def local_time(moment: datetime | None, timezone: str) -> str:
    if moment is None:
        return ""
    return moment.astimezone(schedule.zone(timezone)).strftime("%a %d %b %Y, %H:%M %Z")


def lesson_calendar(
    session: Session, subscriber: Subscriber, course: Course, *, day_seconds: int
) -> list[CalendarRow]:
    enrollment = latest_enrollment(session, subscriber.id, course.slug)
    if enrollment is None:
        return []
    deliveries = {
        d.lesson: d
        for d in session.scalars(select(Delivery).where(Delivery.enrollment_id == enrollment.id))
    }
    planned = _planned(enrollment, subscriber, course, day_seconds)
    paused = enrollment.status == EnrollmentStatus.PAUSED.value
    rows = []
    for number, subject in ((lesson.number, lesson.subject) for lesson in course.lessons):
        delivery = deliveries.get(number)
        if delivery is not None:
            note = delivery.error or delivery.provider_status
            when = delivery.sent_at or delivery.due_at
            rows.append(CalendarRow(number, subject, delivery.status, when, note))
        elif number in planned:
            rows.append(CalendarRow(number, subject, "planned", planned[number]))
        else:
            rows.append(CalendarRow(number, subject, "paused" if paused else "not planned", None))
    return rows


def _planned(
    enrollment: Enrollment, subscriber: Subscriber, course: Course, day_seconds: int
) -> dict[int, datetime]:
    """Due times from the enrollment's next lesson on, by the same rules as the tick's."""
    if enrollment.status != EnrollmentStatus.ACTIVE.value or enrollment.next_due_at is None:
        return {}
    send_hour = course.send_hour if subscriber.send_hour is None else subscriber.send_hour
    due, planned = enrollment.next_due_at, {}
    for number in range(enrollment.next_lesson, len(course.lessons) + 1):
        planned[number] = due
        due = schedule.following_due_at(
            due, timezone=subscriber.timezone, send_hour=send_hour, day_seconds=day_seconds
        )
    return planned
