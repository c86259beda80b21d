"""SendGrid's event webhook: verify the signature, parse into neutral events, record them.

Verify on the raw body -> parse into a neutral event -> dedupe -> record.
Answer fast.

The events are recorded *and applied* inline, in the request's one
transaction, not handed to a Celery task. Why:
- the work is set-based and bounded: a few IN-list lookups, a multi-row
  INSERT .. ON CONFLICT DO NOTHING and a handful of UPDATEs per batch,
  whatever its size, and the body limit bounds the batch (2,000 events take
  well under a second, see tests/test_webhooks.py);
- nothing is lost when Redis is down, with no "processed_at" column, sweeper
  or second copy of the state to keep;
- the 2xx is the truth: it goes out only once the events are committed. A
  database error answers 5xx, SendGrid retries, and the dedupe on
  ``sg_event_id`` makes the retry harmless.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar, cast

from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook
from sqlalchemy import Table, bindparam, func, literal, select, update
from sqlalchemy.orm import Session

from drip.data.db import Database, upsert_into
from drip.data.models import (
    STILL_MAILED,
    Consent,
    Delivery,
    Event,
    Subscriber,
    SubscriberStatus,
    Suppression,
    UTCDateTime,
)
from drip.subscribers.subscriptions import email_hash, stop_mailing

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
# SendGrid posts batches of up to thousands of events; the app-wide 64 KB limit is for forms.
MAX_BODY_BYTES = 5 * 1024 * 1024
# SendGrid's webhook security docs: reject stale timestamps. A little slack the
# other way for clocks that run apart.
MAX_AGE = timedelta(minutes=10)
MAX_AHEAD = timedelta(minutes=5)
KEY_NOT_SET = "DRIP_SENDGRID_WEBHOOK_KEY is not set: set it to the event webhook's verification key"
# Our custom args (the SendGrid backend sends {"drip_key": ...}); SendGrid puts them at the
# top level of each event. "delivery_id" is accepted too, for robustness.
KEY_ARGS = ("drip_key", "delivery_id")
# Personal data stays out of the stored event: the row outlives an erasure.
PERSONAL_KEYS = frozenset({"email", "ip", "useragent"})
MAX_ID = 2**31 - 1  # an INTEGER primary key
CHUNK = 500  # ids per IN list: well under every driver's parameter limit

# How final a delivery's provider status is: a late "deferred" never hides a
# "delivered", and a bounce after "delivered" (an asynchronous one) does win.
PROVIDER_STATUS_RANK = {"deferred": 1, "delivered": 2, "blocked": 3, "bounce": 3, "dropped": 3}
# Mail to the address stops for good: the reason goes into the suppressions table.
SUPPRESSING = {
    "bounce": "bounce",
    "spamreport": "complaint",
    "unsubscribe": "unsubscribe",
    "group_unsubscribe": "unsubscribe",
}
STATUS_FOR_REASON = {
    "unsubscribe": SubscriberStatus.UNSUBSCRIBED.value,
    "bounce": SubscriberStatus.BOUNCED.value,
    "complaint": SubscriberStatus.COMPLAINED.value,
}
# A complaint outranks a bounce outranks an unsubscribe; an erased subscriber is never touched.
REPLACEABLE = {
    "unsubscribe": STILL_MAILED,
    "bounce": (*STILL_MAILED, SubscriberStatus.UNSUBSCRIBED.value),
    "complaint": (
        *STILL_MAILED,
        SubscriberStatus.UNSUBSCRIBED.value,
        SubscriberStatus.BOUNCED.value,
    ),
}

T = TypeVar("T")


class Refused(Exception):
    """The request cannot be taken; ``status`` and ``message`` are the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NotConfigured(Refused):
    """No usable verification key: every request is refused until an operator sets one."""


# --- verify ------------------------------------------------------------------------------


def verify(
    public_key: str | None,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    now: datetime,
) -> None:
    """Raise Refused (403) unless SendGrid's key signed ``timestamp + body`` recently.

    1. A verification key must be configured and be an ECDSA public key.
    2. Both signature headers must be there.
    3. The timestamp must be a Unix time within the accepted window.
    4. The signature must match the raw body bytes (never re-serialized JSON).
    """
    if not public_key:
        raise NotConfigured(403, KEY_NOT_SET)
    verifier = _verifier(public_key)
    if not signature or not timestamp:
        raise Refused(
            403, f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}: enable signed event webhooks"
        )
    _check_fresh(timestamp, now)
    if not _signature_matches(verifier, body, signature, timestamp):
        raise Refused(403, "the signature does not match the body; check DRIP_SENDGRID_WEBHOOK_KEY")


@lru_cache(maxsize=4)
def _verifier(public_key: str) -> EventWebhook:
    """The verifier for a key, parsed once (lru_cache keeps no failures)."""
    try:
        verifier = EventWebhook(public_key)
    except ValueError:
        verifier = None
    if verifier is None or not isinstance(verifier.public_key, ec.EllipticCurvePublicKey):
        raise NotConfigured(
            403,
            "DRIP_SENDGRID_WEBHOOK_KEY is not an ECDSA public key: "
            "copy the verification key from SendGrid's signed event webhook settings",
        )
    return verifier


def _check_fresh(timestamp: str, now: datetime) -> None:
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Refused(403, f"{TIMESTAMP_HEADER} is not a Unix time")
    age = now - datetime.fromtimestamp(int(timestamp), UTC)
    if age > MAX_AGE:
        raise Refused(403, "the signature is more than 10 minutes old; check the server's clock")
    if -age > MAX_AHEAD:
        raise Refused(403, "the signature is dated in the future; check the server's clock")


def _signature_matches(verifier: EventWebhook, body: bytes, signature: str, stamp: str) -> bool:
    # The helper takes text and encodes it back to UTF-8, which gives the same
    # bytes for any UTF-8 body; a body that is not UTF-8 cannot be SendGrid's.
    try:
        return bool(verifier.verify_signature(body.decode("utf-8"), signature, stamp))
    except (ValueError, TypeError):
        # sendgrid's EventWebhook: a garbage signature raises binascii.Error (a ValueError)
        # instead of returning False; UnicodeDecodeError is a ValueError too.
        return False


# --- parse -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderEvent:
    """One provider event in our terms, whatever the payload's quirks.

    ``kind`` is SendGrid's event name, except that a bounce of type "blocked"
    (the receiving server refused this message, the address is fine) is
    "blocked": only a "bounce" is a bad address.
    """

    event_id: str
    kind: str
    email: str
    occurred_at: datetime
    key: str  # our custom arg: "<delivery id>" or "c<consent id>"; "" when absent
    machine: bool
    reason: str
    data: dict[str, Any]


def parse_events(body: bytes, *, now: datetime) -> tuple[list[ProviderEvent], int]:
    """The body's events, and how many elements were not events at all (ignored)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise Refused(400, "the body is not JSON: send a JSON array of events") from None
    if not isinstance(payload, list):
        raise Refused(400, "the body must be a JSON array of events")
    events = [_neutral(item, now) for item in payload if _is_event(item)]
    return events, len(payload) - len(events)


def _is_event(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("event"), str) and bool(item["event"])


def _neutral(raw: dict[str, Any], now: datetime) -> ProviderEvent:
    kind = raw["event"][:40]
    if kind == "bounce" and raw.get("type") == "blocked":
        kind = "blocked"
    email = raw.get("email")
    return ProviderEvent(
        event_id=_event_id(raw),
        kind=kind,
        email=email.strip().lower()[:254] if isinstance(email, str) else "",
        occurred_at=_occurred_at(raw.get("timestamp"), now),
        key=_our_key(raw),
        machine=raw.get("sg_machine_open") in (True, "true"),
        reason=_text(raw.get("reason") or raw.get("response"))[:500],
        data={k: v for k, v in raw.items() if k not in PERSONAL_KEYS},
    )


def _event_id(raw: dict[str, Any]) -> str:
    """SendGrid's ``sg_event_id`` (up to 100 characters), else a digest of the event.

    The digest is stable, so a replayed event without an id is still a duplicate.
    """
    value = raw.get("sg_event_id")
    if isinstance(value, str) and 0 < len(value) <= 100:
        return value
    canonical = json.dumps(raw, sort_keys=True, default=str).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def _occurred_at(value: Any, now: datetime) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1e11:
        return datetime.fromtimestamp(value, UTC)
    return now


def _our_key(raw: dict[str, Any]) -> str:
    for name in KEY_ARGS:
        value = raw.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)[:40]
    return ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# --- record ------------------------------------------------------------------------------


@dataclass
class RecordReport:
    received: int = 0
    recorded: int = 0
    duplicates: int = 0
    ignored: int = 0
    suppressed: int = 0


@dataclass(frozen=True)
class Correlation:
    """Whom an event is about, as rows of ours."""

    delivery_id: int | None = None
    subscriber_id: int | None = None


def record_events(
    database: Database,
    events: Sequence[ProviderEvent],
    *,
    now: datetime,
    secret_key: str,
    ignored: int = 0,
) -> RecordReport:
    """Store the new events and apply their effects, in one transaction.

    1. Drop repeats inside the batch (the first copy wins).
    2. Find whom each event is about: our custom arg first (a delivery or a
       consent), else the address. Never only ``sg_message_id``: it may be
       missing on delayed bounces, and one id covers a whole batch send.
    3. Insert them with ON CONFLICT DO NOTHING on the provider's event id and
       RETURNING: only new events come back, so a replayed batch stores and
       changes nothing (SendGrid retries non-2xx answers for 24 hours).
    4. Apply the new ones: the deliveries' provider status, then suppressions.
    """
    unique: dict[str, ProviderEvent] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    with database.session() as session:
        found = _correlate(session, list(unique.values()))
        new_ids = _insert_new(session, list(unique.values()), found, now)
        fresh = [event for event in unique.values() if event.event_id in new_ids]
        _update_deliveries(session, fresh, found)
        suppressed = _suppress(session, fresh, found, now=now, secret_key=secret_key)
    return RecordReport(
        received=len(events) + ignored,
        recorded=len(new_ids),
        duplicates=len(events) - len(new_ids),
        ignored=ignored,
        suppressed=suppressed,
    )


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _as_id(text: str) -> int | None:
    if text.isascii() and text.isdigit() and 0 < len(text) <= 10 and int(text) <= MAX_ID:
        return int(text)
    return None


def _lookup(session: Session, key_column: Any, value_column: Any, keys: Iterable[Any]) -> dict:
    """``{key: value}`` for the rows whose key is among ``keys``, in bounded IN lists."""
    found: dict[Any, Any] = {}
    for chunk in _chunks(sorted(set(keys))):
        statement = select(key_column, value_column).where(key_column.in_(chunk))
        found.update((key, value) for key, value in session.execute(statement))
    return found


def _correlate(session: Session, events: Sequence[ProviderEvent]) -> dict[str, Correlation]:
    """A Correlation for every event; empty when it names nobody we know."""
    delivery_keys = {event.event_id: _as_id(event.key) for event in events}
    consent_keys = {
        event.event_id: _as_id(event.key[1:]) if event.key.startswith("c") else None
        for event in events
    }
    deliveries = _lookup(
        session, Delivery.id, Delivery.subscriber_id, filter(None, delivery_keys.values())
    )
    consents = _lookup(
        session, Consent.id, Consent.subscriber_id, filter(None, consent_keys.values())
    )
    found: dict[str, Correlation] = {}
    for event in events:
        delivery_id = delivery_keys[event.event_id]
        if delivery_id in deliveries:
            found[event.event_id] = Correlation(delivery_id, deliveries[delivery_id])
        elif consent_keys[event.event_id] in consents:
            found[event.event_id] = Correlation(None, consents[consent_keys[event.event_id]])
    # Without a key of ours (or with one we no longer know), the address still tells whom.
    unmatched = [event for event in events if event.event_id not in found]
    by_email = _lookup(
        session, Subscriber.email, Subscriber.id, (e.email for e in unmatched if e.email)
    )
    for event in unmatched:
        found[event.event_id] = Correlation(None, by_email.get(event.email))
    return found


def _insert_new(
    session: Session,
    events: Sequence[ProviderEvent],
    found: dict[str, Correlation],
    now: datetime,
) -> set[str]:
    """Insert the events; return the ids of those that were not there before."""
    rows = [
        {
            "provider_event_id": event.event_id,
            "kind": event.kind,
            "delivery_id": found[event.event_id].delivery_id,
            "subscriber_id": found[event.event_id].subscriber_id,
            "machine": event.machine,
            "occurred_at": event.occurred_at,
            "received_at": now,
            "data": event.data,
        }
        # One order for every writer: two PostgreSQL transactions inserting
        # overlapping batches lock the same keys in the same order, never a deadlock.
        for event in sorted(events, key=lambda e: e.event_id)
    ]
    if not rows:
        return set()
    table = cast(Table, Event.__table__)
    statement = (
        upsert_into(session, table)
        .on_conflict_do_nothing(index_elements=["provider_event_id"])
        .returning(table.c.provider_event_id)
    )
    # A Core executemany: SQLAlchemy sends it as a few multi-row INSERTs
    # ("insertmanyvalues") from one cached compilation, RETURNING included.
    return set(session.connection().execute(statement, rows).scalars())


def _update_deliveries(
    session: Session, events: Sequence[ProviderEvent], found: dict[str, Correlation]
) -> None:
    """Set each delivery's provider status from its most final, then latest, event."""
    winner: dict[int, ProviderEvent] = {}
    ranked = [e for e in events if e.kind in PROVIDER_STATUS_RANK and found[e.event_id].delivery_id]
    for event in sorted(ranked, key=lambda e: (PROVIDER_STATUS_RANK[e.kind], e.occurred_at)):
        winner[cast(int, found[event.event_id].delivery_id)] = event
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for delivery_id, event in winner.items():
        by_kind[event.kind].append({"b_id": delivery_id, "b_error": event.reason})
    table = cast(Table, Delivery.__table__)  # Core table: executemany with bound parameters
    for kind, params in by_kind.items():
        rank = PROVIDER_STATUS_RANK[kind]
        stronger = [name for name, other in PROVIDER_STATUS_RANK.items() if other > rank]
        statement = update(table).where(table.c.id == bindparam("b_id"))
        if stronger:
            statement = statement.where(table.c.provider_status.not_in(stronger))
        values: dict[str, Any] = {"provider_status": kind}
        if kind != "delivered":  # a delivered event's "reason" is the 250 reply, not an error
            values["error"] = bindparam("b_error")
        session.connection().execute(statement.values(**values), params)


def suppression_reason(event: ProviderEvent) -> str | None:
    """Why mail to this address stops for good, or None if it does not.

    A "dropped" event names why SendGrid would not send; a blocked bounce
    suppresses nothing (the address is fine).
    """
    if event.kind == "dropped":
        reason = event.reason.lower()
        if "spam" in reason:
            return "complaint"
        if "unsubscribe" in reason:
            return "unsubscribe"
        return "bounce"
    return SUPPRESSING.get(event.kind)


def _suppress(
    session: Session,
    events: Sequence[ProviderEvent],
    found: dict[str, Correlation],
    *,
    now: datetime,
    secret_key: str,
) -> int:
    """Suppress the addresses and stop mailing their subscribers; return how many addresses."""
    hashes: dict[str, str] = {}
    subscribers: dict[str, set[int]] = defaultdict(set)
    for event in events:
        reason = suppression_reason(event)
        if reason is None:
            continue
        if event.email:
            hashes.setdefault(email_hash(secret_key, event.email), reason)
        subscriber_id = found[event.event_id].subscriber_id
        if subscriber_id is not None:
            subscribers[reason].add(subscriber_id)
    rows = [{"email_hash": h, "reason": r, "created_at": now} for h, r in sorted(hashes.items())]
    if rows:
        statement = upsert_into(session, Suppression)
        session.connection().execute(
            statement.on_conflict_do_nothing(index_elements=["email_hash"]), rows
        )
    for reason in ("unsubscribe", "bounce", "complaint"):  # the strongest reason is applied last
        for chunk in _chunks(sorted(subscribers.get(reason, ()))):
            _stop_mailing(session, chunk, reason, now)
    return len(hashes)


def _stop_mailing(
    session: Session, subscriber_ids: Sequence[int], reason: str, now: datetime
) -> None:
    """No further lesson: the status changes, open enrollments end.

    Deliveries already queued are skipped by the re-check right before sending.
    """
    personal_choice = reason != "bounce"
    values: dict[str, Any] = {"status": STATUS_FOR_REASON[reason]}
    if personal_choice:
        values["unsubscribed_at"] = func.coalesce(
            Subscriber.unsubscribed_at, literal(now, type_=UTCDateTime())
        )
    # The status is compared as an expression (`status || ''`) so that no index
    # can serve it: given a few hundred ids and a status list, SQLite's planner
    # otherwise walks every active subscriber through the status index instead
    # of finding the listed ids by key.
    session.execute(
        update(Subscriber)
        .where(
            Subscriber.id.in_(subscriber_ids),
            Subscriber.status.concat("").in_(REPLACEABLE[reason]),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    stop_mailing(session, subscriber_ids, now=now, withdraw_consent=personal_choice)
