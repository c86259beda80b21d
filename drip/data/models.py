"""The tables. Times are stored in UTC; the schedule is data here, never in the broker."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy import text as sql_text  # the consents table has a column named "text"
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which keeps no zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"  # signed up, not confirmed
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    ERASED = "erased"


# Groups of statuses, beside their enums so every module asks the same question the same way.
# A new signup may start a fresh double opt-in from these.
RESTARTABLE = (SubscriberStatus.PENDING.value, SubscriberStatus.UNSUBSCRIBED.value)
# Still on the list: a provider's unsubscribe, bounce or complaint may replace these.
STILL_MAILED = (SubscriberStatus.ACTIVE.value, SubscriberStatus.PENDING.value)
# Ways out of the course, not steps forward in it.
EXITED = (
    SubscriberStatus.UNSUBSCRIBED.value,
    SubscriberStatus.BOUNCED.value,
    SubscriberStatus.COMPLAINED.value,
)


class EnrollmentStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


# Not finished: lessons are still scheduled (active) or will be again (paused).
RUNNING = (EnrollmentStatus.ACTIVE.value, EnrollmentStatus.PAUSED.value)
# A lesson may still go out to these: a completed course's last lesson may be in flight.
SENDABLE_ENROLLMENT = (EnrollmentStatus.ACTIVE.value, EnrollmentStatus.COMPLETED.value)


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"  # due, waiting for a send task
    SENDING = "sending"  # claimed by a send task until lease_until
    RETRYING = "retrying"  # a retryable failure; goes again at next_attempt_at
    SENT = "sent"
    FAILED = "failed"  # permanent
    SKIPPED = "skipped"  # the subscriber stopped being mailable before the send


# Not finished yet: still to be sent, or being sent.
OPEN_DELIVERY = (
    DeliveryStatus.QUEUED.value,
    DeliveryStatus.SENDING.value,
    DeliveryStatus.RETRYING.value,
)
# Not yet in a send task's hands: these may still be skipped or withdrawn.
NOT_YET_SENDING = (DeliveryStatus.QUEUED.value, DeliveryStatus.RETRYING.value)
# What an operator may send again.
RETRYABLE = (DeliveryStatus.FAILED.value, DeliveryStatus.RETRYING.value)


def _status_column(enum_type: type[enum.StrEnum], default: enum.StrEnum) -> Any:
    return mapped_column(String(16), default=default.value, nullable=False)


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    first_name: Mapped[str] = mapped_column(String(80), default="", nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", nullable=False)
    send_hour: Mapped[int | None] = mapped_column(Integer)  # None: the course's send hour
    status: Mapped[str] = _status_column(SubscriberStatus, SubscriberStatus.PENDING)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_subscribers_status_created", "status", "created_at"),)


class Consent(Base):
    """Provable consent (GDPR): when, how, what the person was told, when they confirmed."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True, nullable=False
    )
    source: Mapped[str] = mapped_column(String(200), nullable=False)  # form:/, api, import:<file>
    text: Mapped[str] = mapped_column(Text, nullable=False)
    text_version: Mapped[str] = mapped_column(String(64), nullable=False)
    ip: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    user_agent: Mapped[str] = mapped_column(String(400), default="", nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_ip: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when this signup came after an erasure: confirming lifts that "erased" suppression.
    lifts_suppression_hash: Mapped[str | None] = mapped_column(String(64))
    # The confirmation email's queue: when it is due (or, while a sender holds it,
    # when that sender's lease runs out). None once sent or no longer wanted.
    confirmation_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # Partial, so the senders' "what is due" costs nothing when nothing waits.
        Index(
            "ix_consents_confirmation_due",
            "confirmation_due_at",
            postgresql_where=sql_text("confirmation_due_at IS NOT NULL"),
            sqlite_where=sql_text("confirmation_due_at IS NOT NULL"),
        ),
    )


class Enrollment(Base):
    """A subscriber's way through one course: which lesson is next and when it is due."""

    __tablename__ = "enrollments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True, nullable=False
    )
    course_slug: Mapped[str] = mapped_column(String(100), nullable=False)
    status: Mapped[str] = _status_column(EnrollmentStatus, EnrollmentStatus.ACTIVE)
    next_lesson: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # The tick's query: what is due now. Partial, so finished enrollments cost nothing.
        Index(
            "ix_enrollments_due",
            "next_due_at",
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
        # At most one running enrollment per subscriber and course.
        Index(
            "ux_enrollments_running",
            "subscriber_id",
            "course_slug",
            unique=True,
            postgresql_where=text("status IN ('active', 'paused')"),
            sqlite_where=text("status IN ('active', 'paused')"),
        ),
    )


class Delivery(Base):
    """One lesson for one enrollment. The unique key makes a second record impossible."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Goes with its enrollment. On PostgreSQL a trigger on enrollments deletes it, not
    # this key, which the server checked for every delivery the tick inserted from an
    # enrollment it holds locked anyway (migration 0008_send_key).
    enrollment_id: Mapped[int] = mapped_column(
        ForeignKey("enrollments.id", ondelete="CASCADE"), nullable=False
    )
    # The enrollment's subscriber, copied when the delivery is made. No foreign key:
    # the delivery goes with its enrollment, which goes with its subscriber, and a
    # second key cost a row lock on the subscriber per email (migration 0007_tick).
    subscriber_id: Mapped[int] = mapped_column(Integer, index=True, nullable=False)
    course_slug: Mapped[str] = mapped_column(String(100), nullable=False)
    lesson: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = _status_column(DeliveryStatus, DeliveryStatus.QUEUED)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    message_id: Mapped[str] = mapped_column(String(100), default="", nullable=False)
    error: Mapped[str] = mapped_column(String(500), default="", nullable=False)
    possible_duplicate: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    provider_status: Mapped[str] = mapped_column(String(20), default="", nullable=False)

    __table_args__ = (
        UniqueConstraint("enrollment_id", "lesson", name="uq_deliveries_enrollment_lesson"),
        Index(
            "ix_deliveries_open",
            "status",
            "enqueued_at",
            postgresql_where=text("status IN ('queued', 'sending', 'retrying')"),
            sqlite_where=text("status IN ('queued', 'sending', 'retrying')"),
        ),
        Index("ix_deliveries_lesson_status", "course_slug", "lesson", "status"),
    )


class Event(Base):
    """A provider event (webhook), deduplicated on the provider's event id."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_event_id: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), index=True
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    machine: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)


class Click(Base):
    """A call-to-action click; likely scanner clicks are kept apart from human ones."""

    __tablename__ = "clicks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    lesson: Mapped[int] = mapped_column(Integer, nullable=False)
    clicked_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    scanner: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    user_agent: Mapped[str] = mapped_column(String(400), default="", nullable=False)
    # The opaque id handed to the affiliate network (ClickBank's tid): random, never derived
    # from the person, so a sale notification maps back to this click and nothing else.
    ref: Mapped[str | None] = mapped_column(String(24))

    __table_args__ = (UniqueConstraint("ref", name="uq_clicks_ref"),)


class ConversionType(enum.StrEnum):
    """What a network reports, in ClickBank's Instant Notification words."""

    SALE = "SALE"
    BILL = "BILL"  # a recurring payment of a subscription product
    RFND = "RFND"  # refund
    CGBK = "CGBK"  # chargeback
    INSF = "INSF"  # an eCheck returned for insufficient funds
    CANCEL_REBILL = "CANCEL-REBILL"
    UNCANCEL_REBILL = "UNCANCEL-REBILL"
    TEST = "TEST"


# Money in: a buyer was made and revenue grows.
SALES = (ConversionType.SALE.value, ConversionType.BILL.value)
# Money back out: the amount subtracts and the sale no longer makes a buyer.
REVERSALS = (ConversionType.RFND.value, ConversionType.CGBK.value, ConversionType.INSF.value)


class Conversion(Base):
    """A sale or its reversal, reported by an affiliate network, attributed to a lesson.

    Only anonymous figures: no name, address or email from the network is kept.
    Erasure unlinks the row from the subscriber and the click; lesson, signup
    week and amount stay for the revenue figures.
    """

    __tablename__ = "conversions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(20), nullable=False)  # clickbank, generic
    external_id: Mapped[str] = mapped_column(String(100), nullable=False)  # receipt, txid
    kind: Mapped[str] = mapped_column(String(20), nullable=False)  # a ConversionType
    # Hundredths of the currency unit, signed: reversals are negative.
    amount_cents: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    click_id: Mapped[int | None] = mapped_column(
        ForeignKey("clicks.id", ondelete="SET NULL"), index=True
    )
    subscriber_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscribers.id", ondelete="SET NULL"), index=True
    )
    lesson: Mapped[int | None] = mapped_column(Integer)  # None: unattributed
    signup_week: Mapped[date | None] = mapped_column(Date)  # the Monday (UTC) of the signup

    __table_args__ = (
        # A network's replay of one notification is counted once.
        UniqueConstraint("source", "external_id", "kind", name="uq_conversions_source_id_kind"),
    )


class Suppression(Base):
    """Addresses never to mail again, kept as a keyed hash so erasure leaves no address."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    reason: Mapped[str] = mapped_column(String(40), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class AuditEntry(Base):
    """Who did what and when: erasures, operator retries and skips."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    actor: Mapped[str] = mapped_column(String(100), nullable=False)
    action: Mapped[str] = mapped_column(String(60), nullable=False)
    subject: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)


class Heartbeat(Base):
    """The last time a periodic job ran (the scheduler tick): a stale one is an alarm."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, nullable=False)


class ApiKey(Base):
    """A key for the integrators' API. Only its SHA-256 is kept; the key is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    scope: Mapped[str] = mapped_column(String(16), nullable=False)  # read | write
    # The key's first characters: how it is found, and how people tell keys apart.
    prefix: Mapped[str] = mapped_column(String(16), unique=True, nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookEndpoint(Base):
    """A receiver of outgoing webhooks. The secret signs every message, so it is kept as is."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000), nullable=False)
    events: Mapped[str] = mapped_column(String(300), nullable=False)  # kinds, comma-separated
    secret: Mapped[str] = mapped_column(String(100), nullable=False)  # whsec_ + base64
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # Set when no attempt succeeded since failing_since; cleared by the next success.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(String(500), default="", nullable=False)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str] = mapped_column(String(500), default="", nullable=False)


class WebhookMessageStatus(enum.StrEnum):
    PENDING = "pending"  # to be sent at next_attempt_at
    SENDING = "sending"  # handed to a send task until lease_until
    DELIVERED = "delivered"
    FAILED = "failed"  # given up: a day of retries, or the endpoint was disabled or removed


class WebhookMessage(Base):
    """One event for one endpoint: the outbox row that survives restarts until delivered."""

    __tablename__ = "webhook_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False
    )
    event_id: Mapped[str] = mapped_column(String(60), nullable=False)  # the feed item's id
    event_type: Mapped[str] = mapped_column(String(40), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)  # signed as is on every attempt
    status: Mapped[str] = _status_column(WebhookMessageStatus, WebhookMessageStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(String(500), default="", nullable=False)

    __table_args__ = (
        # An event reaches an endpoint's outbox once, however often the feed is re-read.
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_messages_endpoint_event"),
        Index("ix_webhook_messages_status_next", "status", "next_attempt_at"),
    )


class WebhookCursor(Base):
    """How far the webhook fan-out has read the event feed (a feed position)."""

    __tablename__ = "webhook_cursor"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    micros: Mapped[int] = mapped_column(BigInteger, nullable=False)
    kind: Mapped[int] = mapped_column(Integer, nullable=False)
    row: Mapped[int] = mapped_column(Integer, nullable=False)
