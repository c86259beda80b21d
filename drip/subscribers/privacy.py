"""A person's data: export it (GDPR access) and erase it (GDPR erasure).

Erasure keeps the subscriber row, emptied of everything personal, rather
than deleting it: delivery, click and event rows keep counting in the funnel
without pointing at anyone, and a send task still holding the row's delivery
ids finds an "erased" subscriber with no address, which the send-time
re-check drops (sending.py). The address survives only as a keyed hash on the
suppression list, so nothing mails it again until a new, confirmed double
opt-in (subscriptions.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from drip.data.audit import audit
from drip.data.models import (
    Click,
    Consent,
    Conversion,
    Delivery,
    Enrollment,
    Event,
    Subscriber,
    SubscriberStatus,
)
from drip.subscribers.subscriptions import ERASED, stop_mailing, suppress
from drip.subscribers.validation import InvalidInput, clean_email


def find_subscriber_id(session: Session, email: str) -> int | None:
    """The subscriber with this address (as stored: normalized, lower case), if any."""
    try:
        address = clean_email(email)
    except InvalidInput:
        address = email.strip().lower()
    return session.scalar(select(Subscriber.id).where(Subscriber.email == address))


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def export(session: Session, subscriber_id: int) -> dict[str, Any]:
    """Everything we keep about one person, as JSON-ready values."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        raise LookupError(f"no subscriber {subscriber_id}")
    return {
        "profile": _profile(subscriber),
        "consents": _consents(session, subscriber_id),
        "enrollments": _enrollments(session, subscriber_id),
        "deliveries": _deliveries(session, subscriber_id),
        "clicks": _clicks(session, subscriber_id),
        "events": _events(session, subscriber_id),
        "purchases": _purchases(session, subscriber_id),
    }


def _profile(subscriber: Subscriber) -> dict[str, Any]:
    return {
        "email": subscriber.email,
        "first_name": subscriber.first_name,
        "timezone": subscriber.timezone,
        "send_hour": subscriber.send_hour,
        "status": subscriber.status,
        "created_at": _iso(subscriber.created_at),
        "confirmed_at": _iso(subscriber.confirmed_at),
        "unsubscribed_at": _iso(subscriber.unsubscribed_at),
        "confirmation_sent_at": _iso(subscriber.confirmation_sent_at),
    }


def _consents(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Consent).where(Consent.subscriber_id == subscriber_id).order_by(Consent.id)
    )
    return [
        {
            "source": row.source,
            "text": row.text,
            "text_version": row.text_version,
            "ip": row.ip,
            "user_agent": row.user_agent,
            "created_at": _iso(row.created_at),
            "confirmed_at": _iso(row.confirmed_at),
            "confirmed_ip": row.confirmed_ip,
            "withdrawn_at": _iso(row.withdrawn_at),
        }
        for row in rows
    ]


def _enrollments(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Enrollment).where(Enrollment.subscriber_id == subscriber_id).order_by(Enrollment.id)
    )
    return [
        {
            "course": row.course_slug,
            "status": row.status,
            "next_lesson": row.next_lesson,
            "next_due_at": _iso(row.next_due_at),
            "started_at": _iso(row.started_at),
            "completed_at": _iso(row.completed_at),
        }
        for row in rows
    ]


def _deliveries(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Delivery).where(Delivery.subscriber_id == subscriber_id).order_by(Delivery.id)
    )
    return [
        {
            "course": row.course_slug,
            "lesson": row.lesson,
            "status": row.status,
            "due_at": _iso(row.due_at),
            "sent_at": _iso(row.sent_at),
            "provider_status": row.provider_status,
        }
        for row in rows
    ]


def _clicks(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Click).where(Click.subscriber_id == subscriber_id).order_by(Click.id)
    )
    return [
        {
            "lesson": row.lesson,
            "clicked_at": _iso(row.clicked_at),
            "likely_scanner": row.scanner,
            "user_agent": row.user_agent,
        }
        for row in rows
    ]


def _events(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Event).where(Event.subscriber_id == subscriber_id).order_by(Event.id)
    )
    return [
        {"kind": row.kind, "occurred_at": _iso(row.occurred_at), "data": row.data} for row in rows
    ]


def _purchases(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Conversion).where(Conversion.subscriber_id == subscriber_id).order_by(Conversion.id)
    )
    return [
        {
            "type": row.kind,
            "amount": row.amount_cents / 100,
            "currency": row.currency,
            "occurred_at": _iso(row.occurred_at),
            "lesson": row.lesson,
        }
        for row in rows
    ]


def erase(
    session: Session, subscriber_id: int, *, secret_key: str, now: datetime, actor: str
) -> bool:
    """Erase a person's data; True if there was someone to erase.

    1. Suppress the address by keyed hash (reason "erased"; a bounce or
       complaint already there keeps its reason).
    2. Stop the course and skip every lesson not yet handed to the provider.
    3. Delete the consent records; empty the profile, click user agents,
       provider event payloads and delivery error texts (which can quote
       the address); unlink sales from the person and their click, so only
       anonymous revenue figures (lesson, signup week, amount) remain.
    4. Record the erasure in the audit log: who and when, no address.
    """
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=True)
    if subscriber is None or subscriber.status == SubscriberStatus.ERASED.value:
        return False
    if subscriber.email:
        suppress(session, secret_key, subscriber.email, reason=ERASED, now=now)
    stop_mailing(session, [subscriber_id], now=now, withdraw_consent=False, skip_reason=ERASED)
    _forget(session, subscriber)
    audit(session, actor, "erase", f"subscriber:{subscriber_id}", now)
    return True


def _forget(session: Session, subscriber: Subscriber) -> None:
    subscriber.email = None
    subscriber.first_name = ""
    subscriber.timezone = "UTC"
    subscriber.send_hour = None
    subscriber.status = SubscriberStatus.ERASED.value
    session.flush()
    session.execute(delete(Consent).where(Consent.subscriber_id == subscriber.id))
    session.execute(
        update(Click).where(Click.subscriber_id == subscriber.id).values(user_agent="", ref=None)
    )
    session.execute(
        update(Conversion)
        .where(Conversion.subscriber_id == subscriber.id)
        .values(subscriber_id=None, click_id=None)
    )
    session.execute(update(Event).where(Event.subscriber_id == subscriber.id).values(data={}))
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == subscriber.id, Delivery.error != ERASED)
        .values(error="", message_id="")
        .execution_options(synchronize_session=False)
    )
