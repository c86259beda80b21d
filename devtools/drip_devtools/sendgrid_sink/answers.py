"""The answers the sink gives, shaped like SendGrid's.

Error bodies follow SendGrid's v3 API reference (docs/sendgrid.md):
``{"errors":[{"message":..,"field":..,"help":..}]}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

JSON = "application/json"
HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message."

UNAUTHORIZED = "The provided authorization grant is invalid, expired, or revoked"
AUTHORIZATION_REQUIRED = "authorization required"
FORBIDDEN = "access forbidden"
UNVERIFIED_SENDER = (
    "The from address does not match a verified Sender Identity. Mail cannot be sent until "
    "this error is resolved. Visit https://sendgrid.com/docs/for-developers/sending-email/"
    "sender-identity/ to see the Sender Identity requirements"
)


@dataclass
class Answer:
    """What to write back: a status and body, or nothing at all (``drop``), maybe late."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON
    delay: float = 0.0
    drop: bool = False


def error_entry(message: str, field: str | None = None, help: str | None = None) -> dict:
    return {"message": message, "field": field, "help": help}


def errors(status: int, entries: list[dict[str, Any]]) -> Answer:
    return Answer(status, json.dumps({"errors": entries}).encode())


def error(status: int, message: str, field: str | None = None) -> Answer:
    return errors(status, [error_entry(message, field)])


def as_json(status: int, data: Any) -> Answer:
    return Answer(status, json.dumps(data).encode())


def rate_limited(now: float, limit: int, reset_in: int) -> Answer:
    """429 with the headers a client needs to wait until the reset (epoch seconds)."""
    answer = error(429, "too many requests")
    answer.headers = {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(now) + reset_in),
    }
    return answer


def _html_page(status: int, reason: str) -> Answer:
    # A proxy in front of the API answers 502/504 itself, as an nginx page, not JSON.
    page = (
        f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
        f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )
    return Answer(status, page.encode(), content_type="text/html")


def server_error(status: int) -> Answer:
    if status == 500:
        return error(500, "internal error")
    if status == 503:
        return error(503, "Service Unavailable")
    if status == 502:
        return _html_page(502, "Bad Gateway")
    if status == 504:
        return _html_page(504, "Gateway Time-out")
    raise ValueError(f"no server error body for status {status}")


def injected(status: int, now: float, limit: int, reset_in: int) -> Answer:
    """The answer for a fault rule's status."""
    if status == 401:
        return error(401, UNAUTHORIZED)
    if status == 403:
        return error(403, FORBIDDEN)
    if status == 429:
        return rate_limited(now, limit, reset_in)
    return server_error(status)
