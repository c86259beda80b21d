"""Event-webhook callbacks: build events like SendGrid's and post them signed.

SendGrid's Event Webhook reference: the body is a JSON array of events, each
with ``event``, ``email``, ``timestamp``, ``sg_event_id``, ``sg_message_id``
and our ``custom_args`` copied as top-level keys.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drip_devtools.sendgrid_sink.signing import WebhookSigner

Event = dict[str, Any]
SELECTORS = ("where", "to", "message_id")
TARGET_KEYS = ("email", "custom_args", "sg_message_id", "categories")


class EventSpecError(ValueError):
    """An event request that names no recipient or matches no recorded message."""


@dataclass(frozen=True)
class Target:
    """Whom an event is about: an address, its message id and our custom args."""

    email: str
    sg_message_id: str | None = None  # None: delayed bounces can arrive without one
    custom_args: Mapping[str, str] = field(default_factory=dict)
    categories: tuple[str, ...] = ()

    @classmethod
    def of(cls, record: Mapping[str, Any]) -> Target:
        """The target for a message the sink recorded."""
        return cls(
            email=record["to"],
            sg_message_id=record["sg_message_id"],
            custom_args=record["custom_args"],
            categories=tuple(record["categories"]),
        )


def _event(kind: str, target: Target, now: float | None, **fields: Any) -> Event:
    event: Event = dict(target.custom_args)  # SendGrid puts custom_args at the top level
    event.update(
        email=target.email,
        timestamp=int(time.time() if now is None else now),
        event=kind,
        sg_event_id=secrets.token_urlsafe(16),
    )
    if target.sg_message_id is not None:
        event["sg_message_id"] = target.sg_message_id
    if target.categories:
        event["category"] = list(target.categories)
    event.update(fields)
    return event


def processed(target: Target, now: float | None = None) -> Event:
    return _event("processed", target, now)


def delivered(target: Target, now: float | None = None, response: str = "250 2.0.0 OK") -> Event:
    return _event("delivered", target, now, response=response)


def deferred(
    target: Target,
    now: float | None = None,
    response: str = "451 4.7.1 Please try again later",
    attempt: int = 1,
) -> Event:
    return _event("deferred", target, now, response=response, attempt=str(attempt))


def bounce(
    target: Target,
    now: float | None = None,
    type: str = "bounce",
    reason: str = "550 5.1.1 The email account that you tried to reach does not exist",
    status: str = "5.1.1",
) -> Event:
    if type not in ("bounce", "blocked"):
        raise EventSpecError(f"a bounce's type is bounce or blocked, not {type!r}")
    return _event("bounce", target, now, type=type, reason=reason, status=status)


def dropped(target: Target, now: float | None = None, reason: str = "Bounced Address") -> Event:
    return _event("dropped", target, now, reason=reason)


def spamreport(target: Target, now: float | None = None) -> Event:
    return _event("spamreport", target, now)


def unsubscribe(target: Target, now: float | None = None) -> Event:
    return _event("unsubscribe", target, now)


def group_unsubscribe(target: Target, now: float | None = None, asm_group_id: int = 1) -> Event:
    return _event("group_unsubscribe", target, now, asm_group_id=asm_group_id)


def opened(target: Target, now: float | None = None, sg_machine_open: bool = False) -> Event:
    """An open; ``sg_machine_open`` marks Apple Mail Privacy Protection style prefetches."""
    return _event("open", target, now, sg_machine_open=sg_machine_open, useragent="Mozilla/5.0")


def clicked(target: Target, now: float | None = None, url: str = "https://example.com/") -> Event:
    return _event("click", target, now, url=url, useragent="Mozilla/5.0")


BUILDERS: dict[str, Callable[..., Event]] = {
    "processed": processed,
    "delivered": delivered,
    "deferred": deferred,
    "bounce": bounce,
    "dropped": dropped,
    "spamreport": spamreport,
    "unsubscribe": unsubscribe,
    "group_unsubscribe": group_unsubscribe,
    "open": opened,
    "click": clicked,
}


def build(kind: str, target: Target, now: float | None = None, **fields: Any) -> Event:
    builder = BUILDERS.get(kind)
    if builder is None:
        raise EventSpecError(f"unknown event {kind!r}; known: {sorted(BUILDERS)}")
    try:
        return builder(target, now, **fields)
    except TypeError as exc:  # an option this event does not take
        raise EventSpecError(f"{kind} event: {exc}") from None


def post_events(
    url: str, events: list[Event], signer: WebhookSigner, now: float, timeout: float = 10
) -> int:
    """POST the events signed as SendGrid does; return the receiver's HTTP status."""
    body = json.dumps(events).encode()
    headers = {"Content-Type": "application/json", **signer.headers(int(now), body)}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        err.close()
        return err.code


def from_specs(specs: Any, records: list[dict[str, Any]], now: float) -> list[Event]:
    """Events for the control API's specs: ``{"event": "bounce", "where": {"delivery_id": "17"}}``.

    A spec with ``where`` (custom_args to match), ``to`` or ``message_id``
    yields one event per recorded message it matches; one without names its
    recipient with ``email`` (and optional ``custom_args``, ``sg_message_id``).
    Other keys are the event's options (``type``, ``reason``, ``url``, ...).
    """
    if not isinstance(specs, list):
        raise EventSpecError('events must be a list such as [{"event": "delivered", "to": "..."}]')
    return [event for spec in specs for event in _from_spec(spec, records, now)]


def _from_spec(spec: Any, records: list[dict[str, Any]], now: float) -> list[Event]:
    if not isinstance(spec, dict) or "event" not in spec:
        raise EventSpecError(f'each event spec needs "event": {spec!r}')
    options = {k: v for k, v in spec.items() if k not in (*SELECTORS, *TARGET_KEYS, "event")}
    return [build(spec["event"], target, now, **options) for target in _targets(spec, records)]


def _targets(spec: dict[str, Any], records: list[dict[str, Any]]) -> list[Target]:
    for key in ("where", "custom_args"):
        if not isinstance(spec.get(key, {}), dict):
            raise EventSpecError(f"{key} must be an object of custom args: {spec}")
    if not any(key in spec for key in SELECTORS):
        return [_named_target(spec)]
    matches = [Target.of(record) for record in records if _matches(spec, record)]
    if not matches:
        raise EventSpecError(f"no recorded message matches {spec} (is recording on?)")
    return matches


def _named_target(spec: dict[str, Any]) -> Target:
    if not isinstance(spec.get("email"), str):
        raise EventSpecError(f"say whom the event is for (where, to, message_id or email): {spec}")
    args = {k: str(v) for k, v in (spec.get("custom_args") or {}).items()}
    return Target(spec["email"], spec.get("sg_message_id"), args)


def _matches(spec: dict[str, Any], record: dict[str, Any]) -> bool:
    where = spec.get("where") or {}
    args = record["custom_args"]
    if any(key not in args or str(args[key]) != str(value) for key, value in where.items()):
        return False
    if "to" in spec and str(spec["to"]).lower() != record["to"].lower():
        return False
    return "message_id" not in spec or spec["message_id"] == record["message_id"]
