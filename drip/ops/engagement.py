"""Engagement per lesson from the provider's events: opens (human and machine) and clicks.

Machine opens (Apple Mail Privacy Protection and the like, ``sg_machine_open``)
fetch every image whether or not anyone reads: counted apart, never as reads.
Counts are of deliveries, not events: a person who opens a lesson five times
is one open.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, case, distinct, func, select
from sqlalchemy.orm import Session

from drip.data.models import Delivery, DeliveryStatus, Event


@dataclass(frozen=True)
class LessonEngagement:
    lesson: int
    sent: int = 0
    human_opens: int = 0  # deliveries a person opened
    machine_opens: int = 0  # deliveries a mail client's proxy fetched
    clicks: int = 0  # deliveries with a link click the provider tracked


def _deliveries_where(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.count(distinct(case((condition, Delivery.id))))


def lesson_engagement(session: Session, course_slug: str) -> list[LessonEngagement]:
    """One row per lesson that has deliveries, in lesson order."""
    sent = {
        lesson: total
        for lesson, total in session.execute(
            select(Delivery.lesson, func.count())
            .where(
                Delivery.course_slug == course_slug,
                Delivery.status == DeliveryStatus.SENT.value,
            )
            .group_by(Delivery.lesson)
        )
    }
    engaged = {
        row.lesson: row
        for row in session.execute(
            select(
                Delivery.lesson,
                _deliveries_where(and_(Event.kind == "open", Event.machine.is_(False))).label(
                    "human"
                ),
                _deliveries_where(and_(Event.kind == "open", Event.machine.is_(True))).label(
                    "machine"
                ),
                _deliveries_where(Event.kind == "click").label("clicks"),
            )
            .join(Event, Event.delivery_id == Delivery.id)
            .where(Delivery.course_slug == course_slug, Event.kind.in_(["open", "click"]))
            .group_by(Delivery.lesson)
        )
    }
    return [
        LessonEngagement(
            lesson=lesson,
            sent=sent.get(lesson, 0),
            human_opens=engaged[lesson].human if lesson in engaged else 0,
            machine_opens=engaged[lesson].machine if lesson in engaged else 0,
            clicks=engaged[lesson].clicks if lesson in engaged else 0,
        )
        for lesson in sorted(set(sent) | set(engaged))
    ]
