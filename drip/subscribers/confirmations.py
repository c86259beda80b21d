"""The double opt-in email: sent once per signup, carrying no promotion."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from drip.course import render
from drip.data.models import RESTARTABLE, Consent, Subscriber
from drip.mail.base import Batch, MailError, Recipient, SendingDisabled
from drip.sending import circuit
from drip.services import Services


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
    rendered = render.render_confirmation(course, services.settings.base_url)
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
    return True


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
