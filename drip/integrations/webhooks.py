"""Outgoing webhooks: events fanned out into an outbox, sent, retried for a day.

The fan-out reads the event feed (drip/integrations/feed.py) from a stored
cursor and writes one webhook_messages row per event and interested endpoint;
the unique (endpoint, event) key makes re-reading harmless. It re-reads the
last minute before the cursor too, because a change committed late can carry
an earlier time than items already read. Rows survive restarts: the sweep
hands out what is due, and an attempt that died mid-send is handed out again
when its lease runs out. Delivery is at least once; the event id is the
``webhook-id`` on every attempt, for the receiver's dedupe.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import urllib3
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from drip.data.db import upsert_into
from drip.data.models import (
    WebhookCursor,
    WebhookEndpoint,
    WebhookMessage,
    WebhookMessageStatus,
)
from drip.integrations import feed, webhook_signing, webhook_targets
from drip.integrations.webhook_endpoints import CURSOR, wants
from drip.services import Services

LOOKBACK = timedelta(minutes=1)
PAGE = 500
PAGES_PER_SWEEP = 20
CLAIM_LIMIT = 200
LEASE = timedelta(minutes=2)
FIRST_RETRY = timedelta(seconds=30)
LONGEST_WAIT = timedelta(hours=4)
# A message is retried for a day; an endpoint whose every attempt failed for a day is disabled.
RETRY_FOR = timedelta(days=1)
DISABLE_AFTER = timedelta(days=1)

PENDING = WebhookMessageStatus.PENDING.value
SENDING = WebhookMessageStatus.SENDING.value


def backoff(attempts: int) -> timedelta:
    """30 s after the first failure, doubling, at most four hours apart."""
    return min(FIRST_RETRY * 2 ** (attempts - 1), LONGEST_WAIT)


def body_for(item: dict[str, Any]) -> str:
    # The Standard Webhooks payload shape: type, timestamp, data (the feed item, as the API).
    envelope = {"type": item["kind"], "timestamp": item["occurred_at"], "data": item}
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True)


def fan_out(session: Session, *, now: datetime) -> int:
    """Outbox rows for feed items after the cursor (and the minute before it); how many new."""
    cursor = session.get(WebhookCursor, CURSOR)
    endpoints = list(
        session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.disabled_at.is_(None)))
    )
    if cursor is None or not endpoints:
        return 0
    reached = feed.Position(cursor.micros, cursor.kind, cursor.row)
    position = feed.Position(reached.micros - int(LOOKBACK.total_seconds() * 1e6))
    made = pages = 0
    while pages < PAGES_PER_SWEEP:
        items, position = feed.read(session, position, PAGE)
        made += _insert(session, endpoints, items, now)
        reached = max(reached, position)
        if len(items) < PAGE:
            break
        if position > feed.Position(cursor.micros, cursor.kind, cursor.row):
            pages += 1  # only pages past the cursor count, so the re-read never starves progress
    cursor.micros, cursor.kind, cursor.row = reached.micros, reached.kind, reached.row
    return made


def _insert(
    session: Session, endpoints: list[WebhookEndpoint], items: list[dict[str, Any]], now: datetime
) -> int:
    rows = [
        {
            "endpoint_id": endpoint.id,
            "event_id": item["id"],
            "event_type": item["kind"],
            "body": body_for(item),
            "status": PENDING,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
            "last_error": "",
        }
        for item in items
        for endpoint in endpoints
        if wants(endpoint, item["kind"])
    ]
    made = 0
    connection = session.connection()
    # In chunks, within SQLite's limit on the parameters of one statement.
    for start in range(0, len(rows), 50):
        statement = (
            upsert_into(session, WebhookMessage)
            .values(rows[start : start + 50])
            .on_conflict_do_nothing(index_elements=["endpoint_id", "event_id"])
            .returning(WebhookMessage.id)
        )
        made += len(connection.execute(statement).all())
    return made


def claim_due(session: Session, *, now: datetime) -> list[int]:
    """Due messages (and those whose send died) leased to a send task; their ids."""
    due = or_(
        and_(WebhookMessage.status == PENDING, WebhookMessage.next_attempt_at <= now),
        and_(WebhookMessage.status == SENDING, WebhookMessage.lease_until < now),
    )
    ids = list(
        session.scalars(
            select(WebhookMessage.id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookMessage.endpoint_id)
            .where(due, WebhookEndpoint.disabled_at.is_(None))
            .order_by(WebhookMessage.next_attempt_at, WebhookMessage.id)
            .limit(CLAIM_LIMIT)
            .with_for_update(of=WebhookMessage, skip_locked=True)
        )
    )
    if ids:
        session.execute(
            update(WebhookMessage)
            .where(WebhookMessage.id.in_(ids))
            .values(status=SENDING, lease_until=now + LEASE)
        )
    return ids


def sweep(services: Services, enqueue: Callable[[int], None]) -> dict[str, int]:
    """Fan out new events and hand out what is due; the tasks are queued after the commit."""
    now = services.now()
    with services.database.session() as session:
        made = fan_out(session, now=now)
        ids = claim_due(session, now=now)
    for message_id in ids:
        enqueue(message_id)
    return {"fanned_out": made, "handed_out": len(ids)}


def deliver(services: Services, message_id: int) -> str:
    """One attempt at one message: delivered, retrying, failed, or skipped (not ours to send)."""
    with services.database.session() as session:
        message = session.get(WebhookMessage, message_id)
        if message is None or message.status != SENDING:
            return "skipped"
        endpoint = session.get(WebhookEndpoint, message.endpoint_id)
        if endpoint is None or endpoint.disabled_at is not None:
            message.status, message.lease_until = PENDING, None
            return "skipped"
        url, secret = endpoint.url, endpoint.secret
        event_id, body = message.event_id, message.body.encode()
    error = _attempt(services, url, secret, event_id, body)
    with services.database.session() as session:
        return _record(session, message_id, error, now=services.now())


def _attempt(services: Services, url: str, secret: str, event_id: str, body: bytes) -> str:
    """ "" when the receiver took it (2xx), else why not."""
    # The signature's timestamp is the wire time: receivers compare it with their own clock.
    headers = webhook_signing.headers(secret, event_id, int(time.time()), body)
    try:
        status = webhook_targets.post(
            url, body, headers, allow_private=services.settings.webhooks_allow_private
        )
    except webhook_targets.RefusedTarget as exc:
        return str(exc)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return "" if 200 <= status < 300 else f"HTTP {status}"


def _record(session: Session, message_id: int, error: str, *, now: datetime) -> str:
    message = session.get(WebhookMessage, message_id)
    if message is None:
        return "skipped"  # removed with its endpoint meanwhile
    endpoint = session.get(WebhookEndpoint, message.endpoint_id)
    message.attempts += 1
    message.lease_until = None
    message.last_error = error[:500]
    if not error:
        message.status, message.delivered_at = WebhookMessageStatus.DELIVERED.value, now
        if endpoint is not None:
            endpoint.failing_since, endpoint.consecutive_failures = None, 0
            endpoint.last_success_at, endpoint.last_error = now, ""
        return "delivered"
    if endpoint is not None:
        _endpoint_failed(endpoint, error, now)
    if now >= message.created_at + RETRY_FOR:
        message.status = WebhookMessageStatus.FAILED.value
        return "failed"
    message.status, message.next_attempt_at = PENDING, now + backoff(message.attempts)
    return "retrying"


def _endpoint_failed(endpoint: WebhookEndpoint, error: str, now: datetime) -> None:
    endpoint.consecutive_failures += 1
    endpoint.failing_since = endpoint.failing_since or now
    endpoint.last_error = error[:500]
    if endpoint.disabled_at is None and now - endpoint.failing_since >= DISABLE_AFTER:
        endpoint.disabled_at = now
        endpoint.disabled_reason = (
            f"every attempt failed since {endpoint.failing_since.isoformat()} "
            f"({endpoint.consecutive_failures} in a row); last: {error}"
        )[:500]
