"""What the dashboard lists: deliveries that need an operator, subscribers, the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from drip.data.models import (
    OPEN_DELIVERY,
    AuditEntry,
    Click,
    Consent,
    Delivery,
    DeliveryStatus,
    Event,
    Subscriber,
)

LIST_LIMIT = 200


@dataclass(frozen=True)
class ProblemDelivery:
    id: int
    subscriber_id: int
    email: str
    lesson: int
    status: str
    kind: str  # failed / outcome unknown / retrying / sending disabled
    reason: str
    attempts: int
    due_at: datetime
    next_attempt_at: datetime | None

    @property
    def retryable(self) -> bool:
        return self.status in (DeliveryStatus.FAILED.value, DeliveryStatus.RETRYING.value)


def _kind(delivery: Delivery) -> str:
    if delivery.status == DeliveryStatus.FAILED.value:
        return "failed"
    if delivery.possible_duplicate:
        return "outcome unknown"  # the provider may have taken it: a retry may send twice
    if delivery.status == DeliveryStatus.RETRYING.value:
        return "retrying"
    return "sending disabled"


def problem_deliveries(session: Session) -> list[ProblemDelivery]:
    """Failed, outcome-unknown, retrying, and held back while sending was disabled; newest first."""
    needs_a_look = or_(
        Delivery.status.in_([DeliveryStatus.FAILED.value, DeliveryStatus.RETRYING.value]),
        and_(Delivery.possible_duplicate, Delivery.status.in_(OPEN_DELIVERY)),
        and_(Delivery.status == DeliveryStatus.QUEUED.value, Delivery.error != ""),
    )
    rows = session.execute(
        select(Delivery, Subscriber.email)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(needs_a_look)
        .order_by(Delivery.id.desc())
        .limit(LIST_LIMIT)
    ).all()
    return [
        ProblemDelivery(
            id=d.id,
            subscriber_id=d.subscriber_id,
            email=email or "(erased)",
            lesson=d.lesson,
            status=d.status,
            kind=_kind(d),
            reason=d.error or d.provider_status,
            attempts=d.attempts,
            due_at=d.due_at,
            next_attempt_at=d.next_attempt_at,
        )
        for d, email in rows
    ]


def find_subscribers(session: Session, query: str) -> list[Subscriber]:
    """Subscribers whose address contains `query` (all of them, newest first, when empty)."""
    statement = select(Subscriber).order_by(Subscriber.id.desc()).limit(LIST_LIMIT)
    if query.strip():
        needle = query.strip().lower()
        statement = statement.where(func.lower(Subscriber.email).contains(needle, autoescape=True))
    return list(session.scalars(statement))


def audit_entries(
    session: Session, subjects: list[str] | None = None, limit: int = 50
) -> list[AuditEntry]:
    statement = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if subjects is not None:
        statement = statement.where(AuditEntry.subject.in_(subjects))
    return list(session.scalars(statement))


def subscriber_audit(session: Session, subscriber_id: int) -> list[AuditEntry]:
    """What operators did to this subscriber and to their deliveries."""
    delivery_ids = session.scalars(
        select(Delivery.id).where(Delivery.subscriber_id == subscriber_id)
    ).all()
    subjects = [f"subscriber:{subscriber_id}", *(f"delivery:{d}" for d in delivery_ids)]
    return audit_entries(session, subjects)


def subscriber_records(session: Session, subscriber_id: int) -> dict[str, Any]:
    """Consents, clicks and provider events of one subscriber, oldest first."""
    return {
        "consents": list(
            session.scalars(
                select(Consent).where(Consent.subscriber_id == subscriber_id).order_by(Consent.id)
            )
        ),
        "clicks": list(
            session.scalars(
                select(Click).where(Click.subscriber_id == subscriber_id).order_by(Click.id)
            )
        ),
        "events": list(
            session.scalars(
                select(Event).where(Event.subscriber_id == subscriber_id).order_by(Event.id)
            )
        ),
    }
