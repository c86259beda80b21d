"""The subscriber's use cases: subscribe, confirm, enroll, unsubscribe, and the suppression list.

Views, tasks and the CLI call these. Re-signup rules (one place, so the form,
the API and the import agree):

- active: left alone, nothing sent, the same neutral answer;
- pending or unsubscribed: a fresh double opt-in, which re-enrolls from lesson 1;
- suppressed for a bounce or a complaint: nothing, ever;
- erased: like a new address; the "erased" suppression is lifted only when the
  new double opt-in is confirmed, so until then only the confirmation goes out.
"""

from __future__ import annotations

import hmac
import re
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from drip.data.db import Database, upsert_into
from drip.data.models import (
    NOT_YET_SENDING,
    RESTARTABLE,
    RUNNING,
    Consent,
    Delivery,
    DeliveryStatus,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
    UTCDateTime,
)
from drip.data.prepared import Statement
from drip.data.wal_checkpoints import AUTOCHECKPOINT_OFF
from drip.subscribers.validation import SignupInput

# The suppression reason an erasure leaves. Every other reason (bounce,
# complaint, ...) blocks the address for good; this one yields to a new,
# confirmed double opt-in.
ERASED = "erased"


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
    # hmac.digest: the one-shot form, same value as hmac.new(...).hexdigest(), much faster
    # when an import hashes a million addresses.
    return hmac.digest(secret_key.encode(), email.lower().encode(), "sha256").hex()


def is_suppressed(session: Session, secret_key: str, email: str) -> bool:
    """True for any suppression, "erased" included: nothing may mail it without a new opt-in."""
    return suppression_reason(session, secret_key, email) is not None


def suppression_reason(session: Session, secret_key: str, email: str) -> str | None:
    digest = email_hash(secret_key, email)
    return session.scalar(select(Suppression.reason).where(Suppression.email_hash == digest))


def suppress(session: Session, secret_key: str, email: str, *, reason: str, now: datetime) -> None:
    """Put an address on the suppression list; an existing entry keeps its first reason.

    So erasing an address that bounced keeps it blocked as a bounce, and a
    later re-signup still gets nothing.
    """
    session.execute(
        upsert_into(session, Suppression)
        .values(email_hash=email_hash(secret_key, email), reason=reason, created_at=now)
        .on_conflict_do_nothing(index_elements=["email_hash"])
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
       confirmation email; nothing is mailed until they confirm. An erased
       address counts as new; its consent notes the suppression that
       confirming will lift.
    """
    # One round trip for both questions: a new address (the common case) needs no other.
    reason, subscriber_id = session.execute(
        select(
            select(Suppression.reason)
            .where(Suppression.email_hash == email_hash(secret_key, signup.email))
            .scalar_subquery(),
            select(Subscriber.id).where(Subscriber.email == signup.email).scalar_subquery(),
        )
    ).one()
    if reason is not None and reason != ERASED:
        return SignupOutcome()
    subscriber = session.get(Subscriber, subscriber_id) if subscriber_id is not None else None
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
        subscriber.confirmation_sent_at = None  # a new consent waits for its own email
    record = Consent(
        subscriber_id=subscriber.id,
        source=consent.source,
        text=consent.text,
        text_version=consent.text_version,
        ip=consent.ip,
        user_agent=consent.user_agent[:400],
        created_at=now,
        lifts_suppression_hash=email_hash(secret_key, signup.email) if reason else None,
        confirmation_due_at=now,  # the confirmation email's place in the queue
    )
    session.add(record)
    session.flush()
    return SignupOutcome(subscriber.id, record.id)


# `subscribe`'s rules as one PostgreSQL statement, for the signup form and API: one
# round trip that commits by itself. Keep the two in step (tests/test_resignup.py,
# tests/test_consent.py and tests/test_privacy.py run these rules through the web).
_SIGNUP_POSTGRESQL = text(
    """
WITH blocked AS (
  SELECT reason FROM suppressions WHERE email_hash = :email_hash
), known AS (
  SELECT id, status FROM subscribers WHERE email = :email
), new_subscriber AS (
  INSERT INTO subscribers (email, first_name, timezone, status, created_at)
  SELECT :email, :first_name, :timezone, 'pending', :now
  WHERE NOT EXISTS (SELECT 1 FROM blocked WHERE reason <> :erased)
    AND NOT EXISTS (SELECT 1 FROM known)
  ON CONFLICT (email) DO NOTHING
  RETURNING id
), again AS (
  UPDATE subscribers
  SET first_name = CASE WHEN :first_name = '' THEN first_name ELSE :first_name END,
      timezone = :timezone, confirmation_sent_at = NULL
  WHERE id = (SELECT id FROM known) AND status IN (:pending, :unsubscribed)
    AND NOT EXISTS (SELECT 1 FROM blocked WHERE reason <> :erased)
  RETURNING id
), consent AS (
  INSERT INTO consents (subscriber_id, source, text, text_version, ip, user_agent, created_at,
                        confirmed_ip, lifts_suppression_hash, confirmation_due_at)
  SELECT id, :source, :text, :text_version, :ip, :user_agent, :now, '',
         CASE WHEN EXISTS (SELECT 1 FROM blocked) THEN :email_hash END, :now
  FROM (SELECT id FROM new_subscriber UNION ALL SELECT id FROM again) AS signed_up
  RETURNING subscriber_id, id
)
SELECT subscriber_id, id FROM consent
"""
).bindparams(bindparam("now", type_=UTCDateTime()))

_SIGNUP_STATEMENT = Statement.from_named(
    "drip_signup",
    re.sub(r":(\w+)", r"%(\1)s", _SIGNUP_POSTGRESQL.text),
    timestamps=frozenset({"now"}),
)

# SQLite: the same in three short statements under the write lock (BEGIN
# IMMEDIATE), on the driver's connection (no SQLAlchemy compilation).
_LOOKUP_SQLITE = """
SELECT (SELECT reason FROM suppressions WHERE email_hash = :email_hash),
       (SELECT id FROM subscribers WHERE email = :email),
       (SELECT status FROM subscribers WHERE email = :email)
"""
_INSERT_SUBSCRIBER_SQLITE = """
INSERT INTO subscribers (email, first_name, timezone, status, created_at)
VALUES (:email, :first_name, :timezone, :pending, :now) RETURNING id
"""
_AGAIN_SQLITE = """
UPDATE subscribers
SET first_name = CASE WHEN :first_name = '' THEN first_name ELSE :first_name END,
    timezone = :timezone, confirmation_sent_at = NULL
WHERE id = :subscriber_id
"""
_INSERT_CONSENT_SQLITE = """
INSERT INTO consents (subscriber_id, source, text, text_version, ip, user_agent, created_at,
                      confirmed_ip, lifts_suppression_hash, confirmation_due_at)
VALUES (:subscriber_id, :source, :text, :text_version, :ip, :user_agent, :now, '',
        :lifts, :now)
RETURNING id
"""

# One writer at a time per process and SQLite file: the threads of a web process
# queue on a lock here rather than sleeping in SQLite's busy handler.
_sqlite_writers: dict[str, threading.Lock] = {}
_sqlite_writers_lock = threading.Lock()


def record_signup(
    database: Database,
    signup: SignupInput,
    consent: ConsentContext,
    *,
    now: datetime,
    secret_key: str,
) -> SignupOutcome:
    """`subscribe` as the signup form and API need it: committed when it returns.

    On PostgreSQL one statement that commits by itself; on SQLite one short
    transaction. Same rules, same outcome as `subscribe` in its own session.
    """
    values = {
        "email": signup.email,
        "email_hash": email_hash(secret_key, signup.email),
        "first_name": signup.first_name,
        "timezone": signup.timezone,
        "now": now,
        "source": consent.source,
        "text": consent.text,
        "text_version": consent.text_version,
        "ip": consent.ip,
        "user_agent": consent.user_agent[:400],
        "pending": SubscriberStatus.PENDING.value,
        "unsubscribed": SubscriberStatus.UNSUBSCRIBED.value,
        "erased": ERASED,
    }
    if database.is_sqlite:
        return _record_signup_sqlite(database, values)
    return _record_signup_postgresql(database, values)


def _record_signup_postgresql(database: Database, values: dict[str, Any]) -> SignupOutcome:
    """The statement run by libpq on a connection of this thread's own (drip/data/prepared.py)."""
    try:
        row = database.prepared.first_row(_SIGNUP_STATEMENT, values)
    except psycopg.OperationalError as exc:  # no connection, or the server went away
        raise OperationalError(_SIGNUP_POSTGRESQL.text, None, exc) from exc
    if row is None:
        return SignupOutcome()
    subscriber_id, consent_id = row
    assert subscriber_id is not None and consent_id is not None
    return SignupOutcome(int(subscriber_id), int(consent_id))


# Waiting for another process's write lock, SQLite's own busy handler sleeps
# 1, 2, 5, 10, ... 100 ms between tries; a signup asks again every half
# millisecond instead, for as long (DRIP's connections wait up to 30 s).
_SQLITE_RETRY_SECONDS = 0.0005
_SQLITE_PATIENCE_SECONDS = 30.0


def _record_signup_sqlite(database: Database, values: dict[str, Any]) -> SignupOutcome:
    dialect = database.engine.dialect
    # The time as SQLAlchemy stores it (UTCDateTime), since no compiled statement does here.
    stored_time = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    values = values | {"now": stored_time(values["now"]) if stored_time else values["now"]}
    with _sqlite_writers_lock:
        lock = _sqlite_writers.setdefault(database.url, threading.Lock())
    with lock:
        pooled = database.engine.raw_connection()
        try:
            connection: Any = pooled.driver_connection
            if database.wal_checkpoints is not None:
                connection.execute(AUTOCHECKPOINT_OFF)  # a thread checkpoints instead
            _begin_immediate(connection)
            try:
                outcome = _signup_statements(connection.cursor(), values)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        finally:
            pooled.close()
    if database.wal_checkpoints is not None:
        database.wal_checkpoints.soon()
    return outcome


def _begin_immediate(connection: Any) -> None:
    connection.execute("PRAGMA busy_timeout = 0")
    try:
        deadline = time.monotonic() + _SQLITE_PATIENCE_SECONDS
        while True:
            try:
                connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
            time.sleep(_SQLITE_RETRY_SECONDS)
    finally:
        connection.execute("PRAGMA busy_timeout = 30000")


def _signup_statements(cursor: Any, values: dict[str, Any]) -> SignupOutcome:
    reason, subscriber_id, status = cursor.execute(_LOOKUP_SQLITE, values).fetchone()
    if reason is not None and reason != ERASED:
        return SignupOutcome()
    if subscriber_id is None:
        (subscriber_id,) = cursor.execute(_INSERT_SUBSCRIBER_SQLITE, values).fetchone()
    elif status not in RESTARTABLE:
        return SignupOutcome()
    else:
        cursor.execute(_AGAIN_SQLITE, values | {"subscriber_id": subscriber_id})
    lifts = values["email_hash"] if reason else None
    (consent_id,) = cursor.execute(
        _INSERT_CONSENT_SQLITE, values | {"subscriber_id": subscriber_id, "lifts": lifts}
    ).fetchone()
    return SignupOutcome(subscriber_id, consent_id)


def would_confirm(database: Database, email: str, *, secret_key: str) -> bool:
    """Would a signup of `email` now send a confirmation email? (Reads only.)"""
    with database.session() as session:
        reason, status = session.execute(
            select(
                select(Suppression.reason)
                .where(Suppression.email_hash == email_hash(secret_key, email))
                .scalar_subquery(),
                select(Subscriber.status).where(Subscriber.email == email).scalar_subquery(),
            )
        ).one()
    return (reason is None or reason == ERASED) and (status is None or status in RESTARTABLE)


def subscribe_confirmed(
    session: Session,
    signup: SignupInput,
    consent: ConsentContext,
    *,
    course_slug: str,
    now: datetime,
    secret_key: str,
) -> int | None:
    """Sign up someone whose consent another system confirmed, and enroll them.

    For an API caller with a write key who states where the person opted in
    (consent.source). The consent is recorded as given and confirmed now. A
    suppressed address is refused (None); an active subscriber is left as is.
    """
    outcome = subscribe(session, signup, consent, now=now, secret_key=secret_key)
    if outcome.subscriber_id is None or outcome.consent_id is None:
        existing = session.scalar(select(Subscriber).where(Subscriber.email == signup.email))
        if existing is None or existing.status != SubscriberStatus.ACTIVE.value:
            return None
        return existing.id
    confirm(session, outcome.subscriber_id, outcome.consent_id, course_slug=course_slug, now=now)
    return outcome.subscriber_id


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
    """Confirm a double opt-in and enroll; lesson 1 is due at once. Safe to repeat.

    A confirmation after an erasure lifts the "erased" suppression: the person
    has consented anew (never a bounce or complaint suppression).
    """
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
    if consent.lifts_suppression_hash:
        session.execute(
            delete(Suppression).where(
                Suppression.email_hash == consent.lifts_suppression_hash,
                Suppression.reason == ERASED,
            )
        )
    enroll(session, subscriber.id, course_slug=course_slug, now=now)
    return ConfirmOutcome(confirmed=True, newly_enrolled=True)


def enroll(session: Session, subscriber_id: int, *, course_slug: str, now: datetime) -> Enrollment:
    """Start the course from lesson 1, due now; any running enrollment is ended first.

    The ended enrollment's lessons that are not out yet are skipped, so a
    restart never sends a lesson twice (the send-time re-check would drop them
    too; skipping them here keeps them out of the next tick).
    """
    ended = session.scalars(
        update(Enrollment)
        .where(
            Enrollment.subscriber_id == subscriber_id,
            Enrollment.course_slug == course_slug,
            Enrollment.status.in_(RUNNING),
        )
        .values(status=EnrollmentStatus.CANCELLED.value, next_due_at=None)
        .returning(Enrollment.id)
    ).all()
    if ended:
        skip_open_deliveries(session, Delivery.enrollment_id.in_(ended), reason="restarted")
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
    dropped by the re-check right before sending (drip.sending.delivery).
    """
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or subscriber.status == SubscriberStatus.ERASED.value:
        return False
    if subscriber.status in (SubscriberStatus.ACTIVE.value, SubscriberStatus.PENDING.value):
        subscriber.status = SubscriberStatus.UNSUBSCRIBED.value
        subscriber.unsubscribed_at = now
    stop_mailing(session, [subscriber_id], now=now, withdraw_consent=True)
    return True


def stop_mailing(
    session: Session,
    subscriber_ids: Sequence[int],
    *,
    now: datetime,
    withdraw_consent: bool,
    skip_reason: str | None = None,
) -> None:
    """No further lesson for these subscribers: the one place that stops the mail.

    Running enrollments end. A personal choice (an unsubscribe, a spam report)
    also withdraws consent (GDPR: withdrawing is as easy as giving it). With
    ``skip_reason`` lessons not yet handed to a send task are skipped now;
    otherwise the re-check right before sending drops them.
    """
    session.execute(
        update(Enrollment)
        .where(Enrollment.subscriber_id.in_(subscriber_ids), Enrollment.status.in_(RUNNING))
        .values(status=EnrollmentStatus.CANCELLED.value, next_due_at=None)
        .execution_options(synchronize_session=False)
    )
    if withdraw_consent:
        session.execute(
            update(Consent)
            .where(Consent.subscriber_id.in_(subscriber_ids), Consent.withdrawn_at.is_(None))
            .values(withdrawn_at=now)
            .execution_options(synchronize_session=False)
        )
    if skip_reason is not None:
        skip_open_deliveries(
            session, Delivery.subscriber_id.in_(subscriber_ids), reason=skip_reason
        )


def skip_open_deliveries(session: Session, condition: Any, *, reason: str) -> None:
    """Mark deliveries not yet handed to the provider as skipped.

    Only queued and retrying rows: a "sending" row belongs to a send task now,
    whose own re-check drops it (sending.py).
    """
    session.execute(
        update(Delivery)
        .where(condition, Delivery.status.in_(NOT_YET_SENDING))
        .values(status=DeliveryStatus.SKIPPED.value, error=reason)
        .execution_options(synchronize_session=False)
    )
