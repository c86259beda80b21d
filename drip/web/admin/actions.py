"""What an operator may do from the dashboard. Each action is a conditional update
(it acts only on a row still in a state it applies to) and leaves an audit entry:
who, when, what, and the state it changed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from drip.data.audit import audit
from drip.data.models import RETRYABLE, Delivery, DeliveryStatus
from drip.subscribers import preferences, subscriptions

SKIPPABLE = (*RETRYABLE, DeliveryStatus.QUEUED.value)
SKIPPED_BY_OPERATOR = "skipped by an operator"


def retry_delivery(session: Session, delivery_id: int, *, actor: str, now: datetime) -> bool:
    """Send a failed (or waiting-to-retry) delivery again at the next tick, with fresh attempts.

    The sender re-checks the subscriber first, so a retry never mails someone who left.
    """
    before = session.get(Delivery, delivery_id)
    if before is None or before.status not in RETRYABLE:
        return False
    previous = {"status": before.status, "error": before.error, "attempts": before.attempts}
    changed = session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status.in_(RETRYABLE))
        .values(
            status=DeliveryStatus.QUEUED.value,
            enqueued_at=None,
            next_attempt_at=None,
            attempts=0,
            error="",
        )
    )
    if not changed.rowcount:  # type: ignore[attr-defined]
        return False
    audit(session, actor, "delivery.retry", f"delivery:{delivery_id}", now, **previous)
    return True


def skip_delivery(session: Session, delivery_id: int, *, actor: str, now: datetime) -> bool:
    """Give up on a delivery: it is never sent (a send task still holding it re-checks)."""
    before = session.get(Delivery, delivery_id)
    if before is None or before.status not in SKIPPABLE:
        return False
    previous = {"status": before.status, "error": before.error}
    changed = session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status.in_(SKIPPABLE))
        .values(status=DeliveryStatus.SKIPPED.value, error=SKIPPED_BY_OPERATOR)
    )
    if not changed.rowcount:  # type: ignore[attr-defined]
        return False
    audit(session, actor, "delivery.skip", f"delivery:{delivery_id}", now, **previous)
    return True


def pause(
    session: Session, subscriber_id: int, course_slug: str, *, actor: str, now: datetime
) -> bool:
    if not preferences.pause(session, subscriber_id, course_slug):
        return False
    audit(session, actor, "subscriber.pause", f"subscriber:{subscriber_id}", now)
    return True


def resume(
    session: Session,
    subscriber_id: int,
    course_slug: str,
    timing: preferences.Timing,
    *,
    actor: str,
    now: datetime,
) -> bool:
    if not preferences.resume(session, subscriber_id, course_slug, now=now, timing=timing):
        return False
    audit(session, actor, "subscriber.resume", f"subscriber:{subscriber_id}", now)
    return True


def unsubscribe(session: Session, subscriber_id: int, *, actor: str, now: datetime) -> bool:
    if not subscriptions.unsubscribe(session, subscriber_id, now=now):
        return False
    audit(session, actor, "subscriber.unsubscribe", f"subscriber:{subscriber_id}", now)
    return True
