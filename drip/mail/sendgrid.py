"""The SendGrid backend: one v3 mail-send request per batch, every failure mapped to a MailError.

The lesson goes into the request once (text/plain first, then text/html, as
SendGrid requires); each recipient is one personalization carrying only their
own substitutions, List-Unsubscribe headers and an opaque key in
``custom_args``. What to do after a failure is the caller's business: this
module only says which kind of failure it was (drip/mail/base.py).
"""

from __future__ import annotations

import http.client
import json
import urllib.error
from typing import Any

import orjson
from python_http_client import exceptions as http_errors
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import ApiKeyIncludedException
from sendgrid.helpers.mail.validators import ValidateApiKey

from drip.mail.base import (
    Batch,
    MailError,
    OutcomeUnknown,
    PermanentBatchError,
    RateLimited,
    Recipient,
    SendingDisabled,
    SendResult,
    TransientError,
)

# The one custom arg we send, on lessons ("<delivery id>") and confirmations
# ("c<consent id>") alike. SendGrid stores custom_args, so never personal data.
CUSTOM_ARG_KEY = "drip_key"
# SendGrid v3 mail send: a message must stay under 30 MB.
MAX_MESSAGE_BYTES = 30 * 1024 * 1024
# The body goes to the client already serialized. Given a dict, python_http_client
# runs json.dumps on it and then formats the whole encoded body into a debug message
# on every request, whether anything logs it or not (``http_request``): 5.3 ms and
# 2.4 ms of a worker's CPU for a 1,000-recipient batch, where orjson takes 0.2 ms.
# It takes a str body as it is when the Content-Type is not exactly
# "application/json"; JSON with its charset named is what SendGrid's own C# client
# sends.
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


class _Payload(bytes):
    """The encoded body: formats as its size, so the client's debug message stays short."""

    def __format__(self, spec: str) -> str:
        return f"<{len(self)} bytes of JSON>"


class _Serialized(str):
    """A body serialized here, which the client only encodes before posting it."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return _Payload(super().encode(encoding, errors))


def serialized(body: dict[str, Any]) -> str:
    return _Serialized(orjson.dumps(body).decode())


class MessageRefused(PermanentBatchError):
    """SendGrid refused the message itself (content, sender, size), not one recipient.

    Every recipient would get the same answer, so splitting the batch to find
    a bad address cannot help (``splittable`` is False).
    """

    splittable = False


class SendGridMailer:
    name = "sendgrid"

    def __init__(self, api_key: str, host: str, timeout: float) -> None:
        self.client = SendGridAPIClient(api_key=api_key, host=host)
        # The sendgrid client has no default timeout and would wait forever.
        self.timeout = timeout
        self._key_check = ValidateApiKey()

    def send(self, batch: Batch) -> list[SendResult]:
        body = mail_body(batch)
        self._refuse_api_keys(body)
        response = self._post(body)
        message_id = str(response.headers.get("X-Message-Id") or "")
        return [SendResult(r.key, accepted=True, message_id=message_id) for r in batch.recipients]

    def _refuse_api_keys(self, body: dict[str, Any]) -> None:
        # The sendgrid library refuses content that starts like an API key (SG.x.y);
        # we build the body ourselves, so we run its check ourselves.
        try:
            self._key_check.validate_message_dict(body)
        except ApiKeyIncludedException:
            raise MessageRefused(
                "the email starts with text shaped like a SendGrid API key (SG.x.y): "
                "remove it from the lesson"
            ) from None

    def _post(self, body: dict[str, Any]) -> Any:
        try:
            return self.client.client.mail.send.post(
                request_body=serialized(body),
                request_headers={"Content-Type": JSON_CONTENT_TYPE},
                timeout=self.timeout,
            )
        except http_errors.HTTPError as exc:
            raise error_for_status(exc, body) from None
        except urllib.error.URLError as exc:
            # urllib wraps only failures while connecting or writing the request,
            # so SendGrid cannot have taken the batch: safe to retry.
            raise TransientError(f"SendGrid unreachable ({exc.reason}); will retry") from None
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            # The request went out and no answer came back (read timeout, a
            # dropped connection): SendGrid has no idempotency key, so it may have gone.
            raise OutcomeUnknown(
                f"no answer from SendGrid ({type(exc).__name__}: {exc or 'connection closed'}); "
                f"the batch may have been sent, retrying"
            ) from None


def mail_body(batch: Batch) -> dict[str, Any]:
    """The v3 mail-send JSON for a batch (limits in docs/sendgrid.md)."""
    body: dict[str, Any] = {
        "personalizations": [_personalization(r) for r in batch.recipients],
        "from": _address(batch.from_email, batch.from_name),
        "subject": batch.subject,
        # SendGrid requires text/plain first, then text/html.
        "content": [
            {"type": "text/plain", "value": batch.text},
            {"type": "text/html", "value": batch.html},
        ],
        "tracking_settings": {
            # We send our own List-Unsubscribe, so SendGrid's subscription tracking must not
            # add a second set.
            "subscription_tracking": {"enable": False},
            # Our CTA link is already tracked (/r/<token>); a rewritten link would hide it.
            "click_tracking": {"enable": False, "enable_text": False},
        },
    }
    if batch.reply_to:
        body["reply_to"] = {"email": batch.reply_to}
    if batch.category:
        body["categories"] = [batch.category]
    return body


def _personalization(recipient: Recipient) -> dict[str, Any]:
    item: dict[str, Any] = {
        "to": [_address(recipient.email, recipient.name)],
        "custom_args": {CUSTOM_ARG_KEY: recipient.key},
    }
    # The recipient's own dicts, not copies: the body is only read (serialized) from here on.
    if recipient.substitutions:
        item["substitutions"] = recipient.substitutions
    if recipient.headers:
        item["headers"] = recipient.headers
    return item


def _address(email: str, name: str) -> dict[str, str]:
    return {"email": email, "name": name} if name else {"email": email}


def error_for_status(exc: http_errors.HTTPError, body: dict[str, Any]) -> MailError:
    """The MailError a SendGrid answer stands for (statuses in docs/sendgrid.md)."""
    status = int(exc.status_code)
    problems = _problems(exc.body)
    said = f": {problems}" if problems else ""
    if status == 400:
        return _bad_request(exc.body, said)
    if status == 413:
        return _too_large(body, said)
    if status in (401, 403):
        return SendingDisabled(
            f"SendGrid refused the API key ({status}{said}); "
            "fix SENDGRID_API_KEY or its mail-send permission, sending resumes by itself"
        )
    if status == 429:
        return RateLimited(f"SendGrid rate limit reached (429){said}", _reset_at(exc.headers))
    if status >= 500:
        # An answer, not silence: SendGrid says it did not accept the batch (it answers
        # 202 once it has). Retried without a flag; only a request that got no answer at
        # all (a timeout, a dropped connection) may have gone out unnoticed.
        return TransientError(f"SendGrid server error ({status}){said}; will retry")
    return PermanentBatchError(f"SendGrid answered {status}{said}")


def _bad_request(answer: Any, said: str) -> PermanentBatchError:
    fields = [entry.get("field") for entry in _errors(answer)]
    # Only errors about personalizations can be narrowed down by splitting the batch.
    if fields and not all(str(f or "").startswith("personalizations") for f in fields):
        return MessageRefused(f"SendGrid refused the message (400){said}")
    return PermanentBatchError(f"SendGrid refused the batch (400){said}")


def _too_large(body: dict[str, Any], said: str) -> PermanentBatchError:
    shared = {key: value for key, value in body.items() if key != "personalizations"}
    if len(json.dumps(shared).encode()) >= MAX_MESSAGE_BYTES:
        return MessageRefused(
            f"the email is too large for SendGrid (413{said}); "
            "shorten the lesson: a message must stay under 30 MB"
        )
    return PermanentBatchError(f"the batch is too large for SendGrid (413){said}")


def _errors(answer: Any) -> list[dict[str, Any]]:
    try:
        data = json.loads(answer)
    except (TypeError, ValueError):
        return []
    errors = data.get("errors") if isinstance(data, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _problems(answer: Any) -> str:
    """SendGrid's own error messages, each with the field it names."""
    parts = []
    for entry in _errors(answer)[:5]:
        field = f" [{entry['field']}]" if entry.get("field") else ""
        parts.append(f"{entry.get('message', '')}{field}")
    return "; ".join(parts)


def _reset_at(headers: Any) -> float | None:
    """X-RateLimit-Reset: epoch seconds when SendGrid's limit lifts."""
    try:
        return float(headers.get("X-RateLimit-Reset"))
    except (AttributeError, TypeError, ValueError):
        return None
