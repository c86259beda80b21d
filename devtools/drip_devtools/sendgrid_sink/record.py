"""Message ids and the records of accepted messages, one per personalization."""

from __future__ import annotations

import secrets
from typing import Any


def new_message_id() -> str:
    """A random 22-character url-safe id, the shape of SendGrid's X-Message-Id."""
    return secrets.token_urlsafe(16)


def sg_message_id(message_id: str, index: int) -> str:
    """The per-recipient id events carry: the X-Message-Id, then ``.filter...`` as SendGrid does."""
    return f"{message_id}.filterdrecv-sink-1-{index:04X}-0.0"


def records_for(body: dict[str, Any], message_id: str) -> list[dict[str, Any]]:
    """What SendGrid would send for each personalization of an accepted (valid) body."""
    shared = _shared(body, message_id)
    return [_record(shared, item, i) for i, item in enumerate(body["personalizations"])]


def _shared(body: dict[str, Any], message_id: str) -> dict[str, Any]:
    content = {item["type"].lower(): item["value"] for item in body.get("content") or []}
    return {
        "message_id": message_id,
        "from": body["from"],
        "reply_to": body.get("reply_to"),
        "subject": body.get("subject", ""),
        "html": content.get("text/html", ""),
        "text": content.get("text/plain", ""),
        "headers": body.get("headers") or {},
        "custom_args": body.get("custom_args") or {},
        "categories": body.get("categories") or [],
        "send_at": body.get("send_at"),
    }


def _record(shared: dict[str, Any], item: dict[str, Any], index: int) -> dict[str, Any]:
    subs = item.get("substitutions") or {}
    return {
        "message_id": shared["message_id"],
        "sg_message_id": sg_message_id(shared["message_id"], index),
        "to": item["to"][0]["email"],
        "recipients": [r["email"] for kind in ("to", "cc", "bcc") for r in item.get(kind) or []],
        "subject": _substitute(item.get("subject") or shared["subject"], subs),
        "html": _substitute(shared["html"], subs),
        "text": _substitute(shared["text"], subs),
        "headers": {**shared["headers"], **(item.get("headers") or {})},
        "custom_args": {**shared["custom_args"], **(item.get("custom_args") or {})},
        "categories": list(shared["categories"]),
        "from": shared["from"],
        "reply_to": shared["reply_to"],
        "send_at": item.get("send_at", shared["send_at"]),
    }


def _substitute(content: str, subs: dict[str, str]) -> str:
    for placeholder, value in subs.items():
        content = content.replace(placeholder, value)
    return content
