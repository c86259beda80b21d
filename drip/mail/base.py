"""The batch-shaped mail interface every backend implements.

A batch is one rendered message (subject, HTML and text with ``%%drip_...%%``
placeholders) and up to 1000 recipients, each with its own substitutions and
headers. That is the shape SendGrid's v3 mail send takes, so the SendGrid
backend maps it one to one; the outbox applies the substitutions itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Recipient:
    """One personalization: who gets the message and what is theirs in it."""

    key: str  # opaque id we correlate results (and webhook events) on: a delivery id
    email: str
    name: str = ""
    substitutions: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Batch:
    from_email: str
    from_name: str
    subject: str
    html: str
    text: str
    recipients: tuple[Recipient, ...]
    reply_to: str = ""
    category: str = ""  # e.g. "lesson-03"; no personal data


@dataclass(frozen=True)
class SendResult:
    """What happened to one recipient of a batch."""

    key: str
    accepted: bool
    message_id: str = ""
    error: str = ""


class Mailer(Protocol):
    name: str

    def send(self, batch: Batch) -> list[SendResult]:
        """Send every recipient of the batch, or raise a MailError for the whole batch."""
        ...


class MailError(Exception):
    """The provider refused or failed a whole batch; the subclass says what to do next."""

    retryable = False


class PermanentBatchError(MailError):
    """The request itself was refused (400, 413): retrying the same batch cannot help.

    ``splittable``: whether a smaller batch might pass (one bad address among
    many); False when the message itself was refused and every part would be too.
    """

    splittable = True


class SendingDisabled(MailError):
    """Credentials refused (401, 403): stop sending, keep every delivery queued."""


class RateLimited(MailError):
    retryable = True

    def __init__(self, message: str, reset_at: float | None = None) -> None:
        super().__init__(message)
        self.reset_at = reset_at


class TransientError(MailError):
    """The provider did not take the batch (a 5xx answer, a refused connection): safe to retry."""

    retryable = True


class OutcomeUnknown(MailError):
    """No answer came (a read timeout, a dropped connection): the batch may have gone out."""

    retryable = True


def apply_substitutions(content: str, substitutions: dict[str, str]) -> str:
    for placeholder, value in substitutions.items():
        content = content.replace(placeholder, value)
    return content
