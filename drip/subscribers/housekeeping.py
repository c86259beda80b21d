"""Periodic clean-up: confirmation emails that never went out are sent; signups
never confirmed are purged with their personal data."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, update

from drip.data.models import Consent, Subscriber, SubscriberStatus
from drip.services import Services, enqueue
from drip.subscribers import confirmations


def purge_unconfirmed(services: Services) -> int:
    cutoff = services.now() - timedelta(seconds=services.settings.pending_expiry_seconds)
    with services.database.session() as session:
        result = session.execute(
            delete(Subscriber).where(
                Subscriber.status == SubscriberStatus.PENDING.value,
                Subscriber.created_at < cutoff,
            )
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


# A confirmation's own task normally sends it within seconds; only older ones are swept.
UNSENT_GRACE = timedelta(minutes=10)


def resend_unsent_confirmations(services: Services) -> int:
    """Put confirmations that never went out back in the queue, and wake a sender."""
    waiting = confirmations.unsent(services, older_than=UNSENT_GRACE)
    if not waiting:
        return 0
    with services.database.session() as session:
        session.execute(
            update(Consent)
            # A row still due (or leased) is in the queue already: leave it alone.
            .where(Consent.id.in_([c for _, c in waiting]), Consent.confirmation_due_at.is_(None))
            .values(confirmation_due_at=services.now())
            .execution_options(synchronize_session=False)
        )
    enqueue("drip.send_confirmations")
    return len(waiting)


def run(services: Services) -> dict[str, int]:
    return {
        "resent_confirmations": resend_unsent_confirmations(services),
        "purged_unconfirmed": purge_unconfirmed(services),
    }
