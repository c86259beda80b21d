"""Reading the outbox as a subscriber's mailbox would."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path


def messages(outbox: Path, to: str | None = None) -> list[EmailMessage]:
    """Messages in the order they were written (file names start with a nanosecond time)."""
    if not outbox.exists():
        return []
    found = []
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if to is None or to.lower() in str(message["To"]).lower():
            found.append(message)
    return found


def text_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "no text/plain part"
    return str(part.get_content())


def html_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None, "no text/html part"
    return str(part.get_content())


def link(message: EmailMessage, path_prefix: str) -> str:
    """The first link in the text part whose path starts with `path_prefix`, as a path."""
    match = re.search(
        rf"https://drip\.test({re.escape(path_prefix)}[A-Za-z0-9_.~\-]+)", text_part(message)
    )
    assert match, f"no {path_prefix} link in the message"
    return match.group(1)


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token in the page"
    return match.group(1)
