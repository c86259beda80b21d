"""Send one claimed batch of same-lesson deliveries and record every outcome.

1. Claim: queued -> sending, with a lease, only for rows still queued.
2. Re-check each subscriber right before sending: unsubscribed, bounced,
   complained or erased since the tick means skipped, never sent.
3. Render the lesson once; each recipient gets only their substitutions.
4. Send. A refused request is split in halves until the bad recipient is
   alone, so one bad address never blocks 999 good ones.
5. Record: sent (with the provider's message id), failed, retrying, or back
   to queued when sending is disabled (the circuit is open).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from drip import emails
from drip import tokens as purposes
from drip.course import Course
from drip.db import Database
from drip.dispatch import MAX_ATTEMPTS, retry_delay
from drip.mail.base import (
    Batch,
    Mailer,
    OutcomeUnknown,
    PermanentBatchError,
    RateLimited,
    Recipient,
    SendingDisabled,
    SendResult,
    TransientError,
)
from drip.models import Delivery, DeliveryStatus, Enrollment, EnrollmentStatus, Subscriber
from drip.tokens import Tokens

SENDABLE_ENROLLMENT = (EnrollmentStatus.ACTIVE.value, EnrollmentStatus.COMPLETED.value)


@dataclass
class BatchReport:
    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    retrying: int = 0
    released: int = 0
    requests: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Links:
    base_url: str
    tokens: Tokens

    def unsubscribe(self, subscriber_id: int) -> str:
        return f"{self.base_url}/u/{self.tokens.make(purposes.UNSUBSCRIBE, subscriber_id)}"

    def preferences(self, subscriber_id: int) -> str:
        return f"{self.base_url}/p/{self.tokens.make(purposes.PREFERENCES, subscriber_id)}"

    def click(self, delivery_id: int) -> str:
        return f"{self.base_url}/r/{self.tokens.make(purposes.CLICK, delivery_id)}"

    def confirm(self, subscriber_id: int, consent_id: int) -> str:
        token = self.tokens.make(purposes.CONFIRM, subscriber_id, consent_id)
        return f"{self.base_url}/confirm/{token}"


def unsubscribe_headers(unsubscribe_url: str) -> dict[str, str]:
    # RFC 8058 one-click: exactly one https URI and the One-Click POST marker.
    return {
        "List-Unsubscribe": f"<{unsubscribe_url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


@lru_cache(maxsize=64)
def rendered_lesson(course: Course, number: int, base_url: str) -> emails.RenderedEmail:
    return emails.render_lesson(course, course.lesson(number), base_url)


def _claim(session: Session, delivery_ids: Sequence[int], now: datetime, lease: int) -> list[int]:
    return list(
        session.scalars(
            update(Delivery)
            .where(Delivery.id.in_(delivery_ids), Delivery.status == DeliveryStatus.QUEUED.value)
            .values(
                status=DeliveryStatus.SENDING.value,
                lease_until=now + timedelta(seconds=lease),
                attempts=Delivery.attempts + 1,
            )
            .returning(Delivery.id)
        )
    )


def _load(session: Session, delivery_ids: Sequence[int]) -> list[Any]:
    return list(
        session.execute(
            select(
                Delivery.id,
                Delivery.lesson,
                Delivery.attempts,
                Delivery.subscriber_id,
                Subscriber.email,
                Subscriber.first_name,
                Subscriber.status.label("subscriber_status"),
                Enrollment.status.label("enrollment_status"),
            )
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
            .where(Delivery.id.in_(delivery_ids))
        ).all()
    )


def _recipient(row: Any, links: Links) -> Recipient:
    unsubscribe_url = links.unsubscribe(row.subscriber_id)
    values = emails.personal_values(
        first_name=row.first_name,
        unsubscribe_url=unsubscribe_url,
        preferences_url=links.preferences(row.subscriber_id),
        cta_url=links.click(row.id),
    )
    return Recipient(
        key=str(row.id),
        email=row.email,
        name=row.first_name,
        substitutions=values,
        headers=unsubscribe_headers(unsubscribe_url),
    )


class _Outcomes:
    """Collects what happened to each delivery, then writes it in a few statements."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}

    def set(self, delivery_id: int, **values: Any) -> None:
        self.rows[delivery_id] = values

    def write(self, session: Session) -> None:
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for delivery_id, values in self.rows.items():
            groups.setdefault(tuple(sorted(values)), []).append({"b_id": delivery_id, **values})
        table = cast(Table, Delivery.__table__)  # Core table: executemany with bound parameters
        for keys, params in groups.items():
            session.connection().execute(
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values({key: bindparam(key) for key in keys}),
                params,
            )


def send_batch(
    database: Database,
    course: Course,
    mailer: Mailer,
    links: Links,
    delivery_ids: Sequence[int],
    *,
    lease_seconds: int,
    now: datetime | None = None,
) -> BatchReport:
    now = now or datetime.now(UTC)
    report = BatchReport()
    with database.session() as session:
        claimed = _claim(session, delivery_ids, now, lease_seconds)
    report.claimed = len(claimed)
    if not claimed:
        return report
    with database.session() as session:
        rows = _load(session, claimed)
    outcomes = _Outcomes()
    sendable: dict[int, list[Any]] = {}
    for row in rows:
        if (
            row.subscriber_status != "active"
            or row.enrollment_status not in SENDABLE_ENROLLMENT
            or not row.email
        ):
            outcomes.set(row.id, status=DeliveryStatus.SKIPPED.value, error=row.subscriber_status)
            report.skipped += 1
        else:
            sendable.setdefault(row.lesson, []).append(row)
    for lesson, lesson_rows in sendable.items():
        _send_lesson(course, mailer, links, lesson, lesson_rows, outcomes, report)
    with database.session() as session:
        outcomes.write(session)
    return report


def _send_lesson(
    course: Course,
    mailer: Mailer,
    links: Links,
    lesson: int,
    rows: list[Any],
    outcomes: _Outcomes,
    report: BatchReport,
) -> None:
    rendered = rendered_lesson(course, lesson, links.base_url)
    recipients = [_recipient(row, links) for row in rows]
    attempts = {row.id: row.attempts for row in rows}
    batch = Batch(
        from_email=course.sender_email,
        from_name=course.sender_name,
        reply_to=course.reply_to,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        recipients=tuple(recipients),
        category=f"lesson-{lesson:02d}",
    )
    _send_splitting(mailer, batch, attempts, outcomes, report)


def _send_splitting(
    mailer: Mailer,
    batch: Batch,
    attempts: dict[int, int],
    outcomes: _Outcomes,
    report: BatchReport,
) -> None:
    report.requests += 1
    try:
        results = mailer.send_batch(batch)
    except PermanentBatchError as exc:
        if len(batch.recipients) == 1:
            _mark_all(batch, outcomes, status=DeliveryStatus.FAILED.value, error=str(exc))
            report.failed += 1
            return
        middle = len(batch.recipients) // 2
        for part in (batch.recipients[:middle], batch.recipients[middle:]):
            _send_splitting(mailer, _with(batch, part), attempts, outcomes, report)
        return
    except SendingDisabled as exc:
        # Keep every delivery: back to queued; the tick hands it out again once
        # the lease has passed, and the circuit shows operators why.
        _mark_all(batch, outcomes, status=DeliveryStatus.QUEUED.value, error=str(exc))
        report.released += len(batch.recipients)
        report.errors.append(str(exc))
        return
    except (RateLimited, TransientError, OutcomeUnknown) as exc:
        _schedule_retry(batch, exc, attempts, outcomes, report)
        return
    _record_results(results, outcomes, report)


def _with(batch: Batch, recipients: Sequence[Recipient]) -> Batch:
    from dataclasses import replace

    return replace(batch, recipients=tuple(recipients))


def _mark_all(batch: Batch, outcomes: _Outcomes, **values: Any) -> None:
    for recipient in batch.recipients:
        outcomes.set(int(recipient.key), **values)


def _schedule_retry(
    batch: Batch,
    exc: Exception,
    attempts: dict[int, int],
    outcomes: _Outcomes,
    report: BatchReport,
) -> None:
    now = datetime.now(UTC)
    unknown = isinstance(exc, OutcomeUnknown)
    report.errors.append(str(exc))
    for recipient in batch.recipients:
        delivery_id = int(recipient.key)
        tries = attempts.get(delivery_id, 1)
        if tries >= MAX_ATTEMPTS:
            outcomes.set(delivery_id, status=DeliveryStatus.FAILED.value, error=str(exc)[:500])
            report.failed += 1
            continue
        if isinstance(exc, RateLimited) and exc.reset_at:
            # Wait for the provider's reset time, plus jitter so workers do not all wake at once.
            at = datetime.fromtimestamp(exc.reset_at, UTC) + timedelta(seconds=random.uniform(0, 5))
        else:
            at = now + timedelta(seconds=retry_delay(tries))
        values: dict[str, Any] = {
            "status": DeliveryStatus.RETRYING.value,
            "next_attempt_at": at,
            "error": str(exc)[:500],
        }
        if unknown:
            values["possible_duplicate"] = True
        outcomes.set(delivery_id, **values)
        report.retrying += 1


def _record_results(results: list[SendResult], outcomes: _Outcomes, report: BatchReport) -> None:
    now = datetime.now(UTC)
    for result in results:
        if result.accepted:
            outcomes.set(
                int(result.key),
                status=DeliveryStatus.SENT.value,
                sent_at=now,
                message_id=result.message_id[:100],
                error="",
            )
            report.sent += 1
        else:
            outcomes.set(
                int(result.key), status=DeliveryStatus.FAILED.value, error=result.error[:500]
            )
            report.failed += 1
