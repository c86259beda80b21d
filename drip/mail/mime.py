"""Build one RFC 5322 message (bytes) from a rendered email: what a mailbox receives.

The outbox writes these as ``.eml`` files and ``drip course preview`` shows them.
Every header value is checked for CR, LF and other control characters first:
a subscriber's name ends up in ``To``, and header injection must be impossible.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime, make_msgid
from typing import Any

# Set through their own arguments, never through ``headers``.
_OWN_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "reply-to", "date", "message-id", "sender"}
    | {"mime-version", "content-type", "content-transfer-encoding"}
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # RFC 5322 ftext: printable ASCII except ":"


class _VerbatimHeader(UnstructuredHeader, BaseHeader):
    """A header written exactly as given.

    The stock policy turns a long value without spaces into RFC 2047
    encoded-words, and an encoded ``List-Unsubscribe`` is no longer a URI: the
    mailbox provider's one-click button (RFC 8058)
    would never appear. These values are plain ASCII, checked below.
    """

    def fold(self, *, policy: Any) -> str:
        return f"{self.name}: {self}{policy.linesep}"


_VERBATIM = ("list-unsubscribe", "list-unsubscribe-post")


def _policy() -> Policy:
    registry = HeaderRegistry()
    for name in _VERBATIM:
        registry.map_to_type(name, _VerbatimHeader)
    # cte_type 7bit: non-ASCII bodies go out quoted-printable or base64, so the
    # message needs no 8BITMIME from any relay and survives as an .eml file.
    return SMTP.clone(header_factory=registry, cte_type="7bit")


_POLICY = _policy()


def build_message(
    *,
    from_email: str,
    from_name: str,
    to_email: str,
    to_name: str,
    subject: str,
    html: str,
    text: str,
    reply_to: str = "",
    headers: dict[str, str] | None = None,
    message_id: str | None = None,
    date: datetime | None = None,
) -> bytes:
    """multipart/alternative: text/plain first, HTML last (RFC 2046: the last part is preferred)."""
    extra = headers or {}
    _check_values(from_email, from_name, to_email, to_name, subject, reply_to, message_id or "")
    _check_extra_headers(extra)
    message = EmailMessage(policy=_POLICY)
    message["From"] = _address(from_name, from_email)
    message["To"] = _address(to_name, to_email)
    if reply_to:
        message["Reply-To"] = _address("", reply_to)
    message["Subject"] = subject
    message["Date"] = format_datetime(_aware(date or datetime.now(UTC)))
    message["Message-ID"] = message_id or make_msgid(domain=from_email.rpartition("@")[2])
    for name, value in extra.items():
        message[name] = value
    message.set_content(text, subtype="plain", charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8")
    return message.as_bytes()


def _address(name: str, email: str) -> Address:
    local, at, domain = email.partition("@")
    if not (local and at and domain):
        raise ValueError(f"not an email address: {email!r}")
    # Address encodes a non-ASCII display name as an RFC 2047 encoded-word.
    return Address(display_name=name, username=local, domain=domain)


def _aware(date: datetime) -> datetime:
    if date.tzinfo is None:
        raise ValueError("date must carry a time zone, e.g. datetime.now(UTC)")
    return date


def _check_values(*values: str) -> None:
    for value in values:
        if _CONTROL.search(value):
            raise ValueError(f"control character in a header value: {value!r}")


def _check_extra_headers(headers: dict[str, str]) -> None:
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"not a valid header name: {name!r}")
        if name.lower() in _OWN_HEADERS:
            raise ValueError(f"set {name} through its own argument, not headers")
        _check_values(value)
        if name.lower() in _VERBATIM and (not value.isascii() or len(value) > 900):
            raise ValueError(f"{name} must be ASCII and under 900 characters: {value!r}")
