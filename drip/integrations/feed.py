"""One feed of what happened, oldest first, read from the tables that record it.

Kinds: signup, confirmation, lesson_sent, provider_event, cta_click,
unsubscribe and conversion (a sale or its reversal; the network's kind, such
as SALE or RFND, in `detail`). New kinds go at the end of KINDS: a cursor
holds a kind's index. Each item is
ordered by (time, kind, row id); the cursor is that triple, so a poller resumes
exactly after the last item it saw. Items carry ids and lesson numbers, never
an address or a name, and erased subscribers' items are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, String, and_, cast, literal, null, or_, select, union_all
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from drip.data.models import (
    Click,
    Consent,
    Conversion,
    Delivery,
    DeliveryStatus,
    Event,
    Subscriber,
    SubscriberStatus,
)

KINDS = (
    "signup",
    "confirmation",
    "lesson_sent",
    "provider_event",
    "cta_click",
    "unsubscribe",
    "conversion",
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, order=True)
class Position:
    """Where a poller is: the last item's time (microseconds since 1970), kind and row id."""

    micros: int = -1
    kind: int = -1
    row: int = -1

    @property
    def at(self) -> datetime:
        return EPOCH + timedelta(microseconds=max(self.micros, 0))


def _sources() -> list[Select[Any]]:
    def source(kind: str, at: Any, row: Any, subscriber: Any, lesson: Any, detail: Any) -> Any:
        return select(
            at.label("at"),
            literal(KINDS.index(kind)).label("kind"),
            row.label("row"),
            subscriber.label("subscriber_id"),
            lesson.label("lesson"),
            detail.label("detail"),
        )

    # Typed, so PostgreSQL can match the columns of the union.
    no_lesson, no_detail = cast(null(), Integer), literal("", String)
    return [
        source(
            "signup", Consent.created_at, Consent.id, Consent.subscriber_id, no_lesson, no_detail
        ),
        source(
            "confirmation",
            Consent.confirmed_at,
            Consent.id,
            Consent.subscriber_id,
            no_lesson,
            no_detail,
        ).where(Consent.confirmed_at.is_not(None)),
        source(
            "lesson_sent",
            Delivery.sent_at,
            Delivery.id,
            Delivery.subscriber_id,
            Delivery.lesson,
            no_detail,
        ).where(Delivery.status == DeliveryStatus.SENT.value, Delivery.sent_at.is_not(None)),
        source(
            "provider_event",
            Event.received_at,
            Event.id,
            Event.subscriber_id,
            no_lesson,
            Event.kind,
        ),
        source(
            "cta_click", Click.clicked_at, Click.id, Click.subscriber_id, Click.lesson, no_detail
        ).where(Click.scanner.is_(False)),
        source(
            "unsubscribe",
            Subscriber.unsubscribed_at,
            Subscriber.id,
            Subscriber.id,
            no_lesson,
            no_detail,
        ).where(Subscriber.unsubscribed_at.is_not(None)),
        source(
            "conversion",
            Conversion.received_at,
            Conversion.id,
            Conversion.subscriber_id,
            Conversion.lesson,
            Conversion.kind,
        ),
    ]


def read(session: Session, after: Position, limit: int) -> tuple[list[dict[str, Any]], Position]:
    """Up to `limit` items after `after`, and the position to resume from."""
    items = union_all(*_sources()).subquery()
    erased = select(Subscriber.id).where(Subscriber.status == SubscriberStatus.ERASED.value)
    later = or_(
        items.c.at > after.at,
        and_(items.c.at == after.at, items.c.kind > after.kind),
        and_(items.c.at == after.at, items.c.kind == after.kind, items.c.row > after.row),
    )
    rows = session.execute(
        select(items)
        .where(later, or_(items.c.subscriber_id.is_(None), items.c.subscriber_id.not_in(erased)))
        .order_by(items.c.at, items.c.kind, items.c.row)
        .limit(limit)
    ).all()
    position = after
    result = []
    for row in rows:
        at = _aware(row.at)
        position = Position(_to_micros(at), row.kind, row.row)
        result.append(_item(row, at))
    return result, position


def latest(session: Session) -> Position:
    """The position of the newest item: reading from here returns only what comes later."""
    items = union_all(*_sources()).subquery()
    row = session.execute(
        select(items.c.at, items.c.kind, items.c.row)
        .order_by(items.c.at.desc(), items.c.kind.desc(), items.c.row.desc())
        .limit(1)
    ).first()
    if row is None:
        return Position()
    return Position(_to_micros(_aware(row.at)), row.kind, row.row)


def _aware(value: Any) -> datetime:
    # A union loses the column type that makes SQLite's naive values UTC again.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _to_micros(at: datetime) -> int:
    delta = at - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _item(row: Any, at: datetime) -> dict[str, Any]:
    kind = KINDS[row.kind]
    return {
        "id": f"{kind}-{row.row}",
        "kind": kind,
        "occurred_at": at.isoformat(),
        "subscriber_id": row.subscriber_id,
        "lesson": row.lesson,
        "detail": row.detail or None,
    }
