"""Periodic clean-up: signups never confirmed are purged with their personal data."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from drip.models import Subscriber, SubscriberStatus
from drip.services import Services


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


def run(services: Services) -> dict[str, int]:
    return {"purged_unconfirmed": purge_unconfirmed(services)}
