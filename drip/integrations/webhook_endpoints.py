"""The receivers of outgoing webhooks: register one (its secret shown once), list, remove."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from drip.data.models import WebhookCursor, WebhookEndpoint, WebhookMessage
from drip.integrations import feed
from drip.integrations.webhook_signing import new_secret
from drip.integrations.webhook_targets import RefusedTarget, check

ALL = "*"
CURSOR = "feed"


class InvalidEndpoint(Exception):
    """The URL or the event kinds cannot be used; the message says why."""


def event_kinds(requested: Iterable[str]) -> str:
    """The stored form of the kinds asked for: a comma list, or * for every kind."""
    kinds = [kind.strip() for item in requested for kind in item.split(",") if kind.strip()]
    if not kinds or ALL in kinds or "all" in kinds:
        return ALL
    unknown = sorted(set(kinds) - set(feed.KINDS))
    if unknown:
        raise InvalidEndpoint(
            f"unknown event kind {', '.join(unknown)}: choose from {', '.join(feed.KINDS)}"
        )
    return ",".join(kind for kind in feed.KINDS if kind in kinds)


def wants(endpoint: WebhookEndpoint, kind: str) -> bool:
    return endpoint.events == ALL or kind in endpoint.events.split(",")


def add(
    session: Session, url: str, events: Iterable[str], *, allow_private: bool, now: datetime
) -> WebhookEndpoint:
    """A new endpoint; it receives what happens from now on (the feed is not replayed)."""
    try:
        check(url, allow_private=allow_private)
    except RefusedTarget as exc:
        raise InvalidEndpoint(str(exc)) from None
    row = WebhookEndpoint(url=url, events=event_kinds(events), secret=new_secret(), created_at=now)
    session.add(row)
    if session.get(WebhookCursor, CURSOR) is None:
        start = feed.latest(session)
        session.add(WebhookCursor(name=CURSOR, micros=start.micros, kind=start.kind, row=start.row))
    session.flush()
    return row


def all_endpoints(session: Session) -> list[WebhookEndpoint]:
    return list(session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def remove(session: Session, endpoint_id: int) -> bool:
    """Forget the endpoint and everything still waiting to go to it."""
    row = session.get(WebhookEndpoint, endpoint_id)
    if row is None:
        return False
    session.execute(delete(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint_id))
    session.delete(row)
    return True


def state(endpoint: WebhookEndpoint) -> str:
    if endpoint.disabled_at is not None:
        return f"disabled {endpoint.disabled_at.isoformat()}: {endpoint.disabled_reason}"
    if endpoint.failing_since is not None:
        return (
            f"failing since {endpoint.failing_since.isoformat()} "
            f"({endpoint.consecutive_failures} in a row): {endpoint.last_error}"
        )
    return "live"
