"""The double opt-in email: sent once per signup, carrying no promotion.

A signup only records its consent with a due time (``confirmation_due_at``);
the consents table is the queue. ``send_due`` claims what is due with a
conditional update (a lease, so two senders never take the same row and a
sender that dies gives it back) and sends up to a batch of confirmations in
one request: one template, each recipient's own links as substitutions.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from drip.course import render
from drip.course.model import Course
from drip.data.models import RESTARTABLE, Consent, Subscriber
from drip.mail.base import Batch, MailError, Recipient, SendingDisabled
from drip.sending import circuit
from drip.services import Services

# A sender that dies mid-batch gives its claim back after this long.
LEASE = timedelta(minutes=2)
# A batch the provider could not take now (throttled, down) is due again after this.
RETRY_AFTER = timedelta(seconds=30)


@lru_cache(maxsize=8)
def rendered_confirmation(course: Course, base_url: str) -> render.RenderedEmail:
    """The same for every recipient (their links are substitutions): rendered once."""
    return render.render_confirmation(course, base_url)


class ConfirmationNotSent(Exception):
    """The mail backend failed for a retryable reason; the task tries again."""


def send_confirmation(services: Services, subscriber_id: int, consent_id: int) -> bool:
    """Send the confirmation email if the signup still waits for one. True when sent."""
    with services.database.session() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        consent = session.get(Consent, consent_id)
        if (
            subscriber is None
            or consent is None
            or consent.subscriber_id != subscriber_id
            or consent.confirmed_at is not None
            or subscriber.status not in RESTARTABLE
            or not subscriber.email
        ):
            return False
        email, first_name = subscriber.email, subscriber.first_name
    course = services.course
    rendered = rendered_confirmation(course, services.settings.base_url)
    values = render.personal_values(
        first_name=first_name,
        unsubscribe_url=services.links.unsubscribe(subscriber_id),
        confirm_url=services.links.confirm(subscriber_id, consent_id),
    )
    batch = Batch(
        from_email=course.sender_email,
        from_name=course.sender_name,
        reply_to=course.reply_to,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        recipients=(
            Recipient(key=f"c{consent_id}", email=email, name=first_name, substitutions=values),
        ),
        category="confirmation",
    )
    try:
        services.mailer.send(batch)
    except SendingDisabled as exc:
        # Refused credentials are the operator's to fix, not the person's fault:
        # open the circuit so it shows, and leave the signup waiting. The
        # hourly sweep (resend_unsent) sends it once sending works again.
        circuit.open_circuit(services.database, str(exc), now=services.now())
        return False
    except MailError as exc:
        if exc.retryable:
            raise ConfirmationNotSent(str(exc)) from exc
        return False
    with services.database.session() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is not None:
            subscriber.confirmation_sent_at = services.now()
        _settle(session, [consent_id], due_at=None)
    return True


@dataclass(frozen=True)
class Waiting:
    consent_id: int
    subscriber_id: int
    email: str
    first_name: str


def send_due(services: Services) -> int:
    """Send the confirmations due now, a batch at a time. Returns how many went out.

    Stops after a batch that was not full: what is due by then was signed up
    after this sender started, and each such signup has asked for a sender of
    its own (drip/subscribers/confirmation_nudge.py), which takes them together
    a moment later. Looping on would send them a few at a time, one provider
    request each, for as long as signups keep coming.
    """
    sent = 0
    limit = services.settings.batch_size
    while claimed := claim_due(services, limit=limit):
        sent += send_claimed(services, claimed)
        if len(claimed) < limit:
            break
    return sent


def claim_due(services: Services, *, limit: int) -> list[Waiting]:
    """Take up to `limit` due confirmations under a lease; drop those no longer wanted."""
    now = services.now()
    due = (
        select(Consent.id)
        .where(Consent.confirmation_due_at <= now)
        .order_by(Consent.confirmation_due_at)
        .limit(limit)
    )
    with services.database.session() as session:
        # The repeated condition is the claim: of two senders racing for a row,
        # the second finds it leased and skips it.
        ids = session.scalars(
            update(Consent)
            .where(Consent.id.in_(due.scalar_subquery()), Consent.confirmation_due_at <= now)
            .values(confirmation_due_at=now + LEASE)
            .returning(Consent.id)
            .execution_options(synchronize_session=False)
        ).all()
        if not ids:
            return []
        # Only the claimed ids select rows; who is still waiting is decided here.
        # With the subscriber's status in the WHERE clause, SQLite's planner walks
        # every pending subscriber through the status index once a few hundred ids
        # are listed (0.8 s for 300 ids among 20,000 pending signups), inside the
        # transaction that holds the database's only write lock.
        rows = session.execute(
            select(
                Consent.id,
                Subscriber.id,
                Subscriber.email,
                Subscriber.first_name,
                Subscriber.status,
                Consent.confirmed_at,
                Consent.withdrawn_at,
            )
            .join(Subscriber, Subscriber.id == Consent.subscriber_id)
            .where(Consent.id.in_(ids))
        ).all()
        waiting = [
            Waiting(consent_id, subscriber_id, email, first_name)
            for consent_id, subscriber_id, email, first_name, status, confirmed, withdrawn in rows
            if email and status in RESTARTABLE and confirmed is None and withdrawn is None
        ]
        unwanted = set(ids) - {w.consent_id for w in waiting}
        if unwanted:
            _settle(session, unwanted, due_at=None)
    return waiting


def send_claimed(services: Services, waiting: Sequence[Waiting]) -> int:
    course = services.course
    rendered = rendered_confirmation(course, services.settings.base_url)
    batch = Batch(
        from_email=course.sender_email,
        from_name=course.sender_name,
        reply_to=course.reply_to,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        recipients=tuple(_recipient(services, w) for w in waiting),
        category="confirmation",
    )
    ids = [w.consent_id for w in waiting]
    try:
        results = services.mailer.send(batch)
    except SendingDisabled as exc:
        # Refused credentials are the operator's to fix: open the circuit so it
        # shows; the hourly sweep sends these once sending works again.
        circuit.open_circuit(services.database, str(exc), now=services.now())
        _release(services, ids, due_at=None)
        return 0
    except MailError as exc:
        if exc.retryable:
            _release(services, ids, due_at=services.now() + RETRY_AFTER)
            return 0
        if len(waiting) > 1:  # one bad address must not sink the others
            return sum(send_claimed(services, [w]) for w in waiting)
        _release(services, ids, due_at=None)
        return 0
    accepted = {r.key for r in results if r.accepted}
    sent = [w for w in waiting if f"c{w.consent_id}" in accepted]
    now = services.now()
    with services.database.session() as session:
        _settle(session, ids, due_at=None)
        if sent:
            session.execute(
                update(Subscriber)
                .where(Subscriber.id.in_({w.subscriber_id for w in sent}))
                .values(confirmation_sent_at=now)
                .execution_options(synchronize_session=False)
            )
    return len(sent)


def _recipient(services: Services, waiting: Waiting) -> Recipient:
    values = render.personal_values(
        first_name=waiting.first_name,
        unsubscribe_url=services.links.unsubscribe(waiting.subscriber_id),
        confirm_url=services.links.confirm(waiting.subscriber_id, waiting.consent_id),
    )
    return Recipient(
        key=f"c{waiting.consent_id}",
        email=waiting.email,
        name=waiting.first_name,
        substitutions=values,
    )


def _release(services: Services, ids: Sequence[int], *, due_at: datetime | None) -> None:
    with services.database.session() as session:
        _settle(session, ids, due_at=due_at)


def _settle(session: Session, ids: Collection[int], *, due_at: datetime | None) -> None:
    session.execute(
        update(Consent)
        .where(Consent.id.in_(ids))
        .values(confirmation_due_at=due_at)
        .execution_options(synchronize_session=False)
    )


def unsent(services: Services, *, older_than: timedelta) -> list[tuple[int, int]]:
    """(subscriber, latest consent) of signups whose confirmation never went out.

    The send task gives up after its retries, or on refused credentials; the
    person still waits for the email. Young signups are left to their own task.
    """
    cutoff = services.now() - older_than
    with services.database.session() as session:
        latest = (
            select(Consent.subscriber_id, func.max(Consent.id).label("consent_id"))
            .group_by(Consent.subscriber_id)
            .subquery()
        )
        rows = session.execute(
            select(Subscriber.id, latest.c.consent_id)
            .join(latest, latest.c.subscriber_id == Subscriber.id)
            .join(Consent, Consent.id == latest.c.consent_id)
            .where(
                Subscriber.status.in_(RESTARTABLE),
                Subscriber.confirmation_sent_at.is_(None),
                Consent.confirmed_at.is_(None),
                Consent.created_at < cutoff,
            )
        ).all()
    return [(row[0], row[1]) for row in rows]
