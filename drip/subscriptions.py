"""The subscriber's use cases: subscribe, confirm, unsubscribe. Views, tasks and CLI call these."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from drip.models import (
    Consent,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from drip.validation import SignupInput

# Statuses from which a new signup may start a fresh double opt-in.
RESTARTABLE = (SubscriberStatus.PENDING.value, SubscriberStatus.UNSUBSCRIBED.value)


@dataclass(frozen=True)
class ConsentContext:
    """How and where consent was given, for the record (GDPR: provable consent)."""

    source: str
    text: str
    text_version: str
    ip: str = ""
    user_agent: str = ""


@dataclass(frozen=True)
class SignupOutcome:
    """Whom to send a confirmation to, if anyone. The person is told the same either way."""

    subscriber_id: int | None = None
    consent_id: int | None = None

    @property
    def send_confirmation(self) -> bool:
        return self.subscriber_id is not None


def email_hash(secret_key: str, email: str) -> str:
    """A keyed hash: lets us recognise a suppressed address without keeping it."""
    return hmac.new(secret_key.encode(), email.lower().encode(), hashlib.sha256).hexdigest()


def is_suppressed(session: Session, secret_key: str, email: str) -> bool:
    digest = email_hash(secret_key, email)
    return (
        session.scalar(select(Suppression.id).where(Suppression.email_hash == digest)) is not None
    )


def subscribe(
    session: Session,
    signup: SignupInput,
    consent: ConsentContext,
    *,
    now: datetime,
    secret_key: str,
) -> SignupOutcome:
    """Record a signup and decide whether a confirmation email goes out.

    1. A suppressed address (bounced, complained) gets nothing.
    2. An active subscriber is left alone: no restart, nothing sent.
    3. A new, pending or unsubscribed address gets a consent record and a
       confirmation email; nothing is mailed until they confirm.
    """
    if is_suppressed(session, secret_key, signup.email):
        return SignupOutcome()
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email == signup.email))
    if subscriber is None:
        subscriber = Subscriber(
            email=signup.email,
            first_name=signup.first_name,
            timezone=signup.timezone,
            status=SubscriberStatus.PENDING.value,
            created_at=now,
        )
        session.add(subscriber)
        session.flush()
    elif subscriber.status not in RESTARTABLE:
        return SignupOutcome()
    else:
        subscriber.first_name = signup.first_name or subscriber.first_name
        subscriber.timezone = signup.timezone
    record = Consent(
        subscriber_id=subscriber.id,
        source=consent.source,
        text=consent.text,
        text_version=consent.text_version,
        ip=consent.ip,
        user_agent=consent.user_agent[:400],
        created_at=now,
    )
    session.add(record)
    session.flush()
    return SignupOutcome(subscriber.id, record.id)


@dataclass(frozen=True)
class ConfirmOutcome:
    confirmed: bool
    newly_enrolled: bool = False


def confirm(
    session: Session,
    subscriber_id: int,
    consent_id: int,
    *,
    course_slug: str,
    now: datetime,
    ip: str = "",
) -> ConfirmOutcome:
    """Confirm a double opt-in and enroll; lesson 1 is due at once. Safe to repeat."""
    subscriber = session.get(Subscriber, subscriber_id)
    consent = session.get(Consent, consent_id)
    if subscriber is None or consent is None or consent.subscriber_id != subscriber.id:
        return ConfirmOutcome(confirmed=False)
    if subscriber.status == SubscriberStatus.ACTIVE.value:
        return ConfirmOutcome(confirmed=True)
    if subscriber.status not in RESTARTABLE or consent.withdrawn_at is not None:
        return ConfirmOutcome(confirmed=False)
    subscriber.status = SubscriberStatus.ACTIVE.value
    subscriber.confirmed_at = now
    subscriber.unsubscribed_at = None
    consent.confirmed_at = now
    consent.confirmed_ip = ip
    enroll(session, subscriber.id, course_slug=course_slug, now=now)
    return ConfirmOutcome(confirmed=True, newly_enrolled=True)


def enroll(session: Session, subscriber_id: int, *, course_slug: str, now: datetime) -> Enrollment:
    """Start the course from lesson 1, due now; any running enrollment is ended first."""
    session.execute(
        update(Enrollment)
        .where(
            Enrollment.subscriber_id == subscriber_id,
            Enrollment.course_slug == course_slug,
            Enrollment.status.in_([EnrollmentStatus.ACTIVE.value, EnrollmentStatus.PAUSED.value]),
        )
        .values(status=EnrollmentStatus.CANCELLED.value, next_due_at=None)
    )
    enrollment = Enrollment(
        subscriber_id=subscriber_id,
        course_slug=course_slug,
        status=EnrollmentStatus.ACTIVE.value,
        next_lesson=1,
        next_due_at=now,
        started_at=now,
    )
    session.add(enrollment)
    session.flush()
    return enrollment


def unsubscribe(session: Session, subscriber_id: int, *, now: datetime) -> bool:
    """Stop all mail to a subscriber at once. Idempotent; True if the subscriber exists.

    Open enrollments stop scheduling; deliveries already claimed by a batch are
    dropped by the re-check right before sending (dispatch.send_batch).
    """
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.status == SubscriberStatus.ERASED.value:
        return False
    if subscriber.status in (SubscriberStatus.ACTIVE.value, SubscriberStatus.PENDING.value):
        subscriber.status = SubscriberStatus.UNSUBSCRIBED.value
        subscriber.unsubscribed_at = now
    session.execute(
        update(Enrollment)
        .where(
            Enrollment.subscriber_id == subscriber_id,
            Enrollment.status.in_([EnrollmentStatus.ACTIVE.value, EnrollmentStatus.PAUSED.value]),
        )
        .values(status=EnrollmentStatus.CANCELLED.value, next_due_at=None)
    )
    session.execute(
        update(Consent)
        .where(Consent.subscriber_id == subscriber_id, Consent.withdrawn_at.is_(None))
        .values(withdrawn_at=now)
    )
    return True
