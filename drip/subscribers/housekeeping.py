"""Periodic clean-up: confirmation emails that never went out are sent; signups
never confirmed are purged with their personal data."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from drip.data.models import Subscriber, SubscriberStatus
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
    waiting = confirmations.unsent(services, older_than=UNSENT_GRACE)
    for subscriber_id, consent_id in waiting:
        enqueue("drip.send_confirmation", subscriber_id, consent_id)
    return len(waiting)


def run(services: Services) -> dict[str, int]:
    return {
        "resent_confirmations": resend_unsent_confirmations(services),
        "purged_unconfirmed": purge_unconfirmed(services),
    }
