"""ClickBank Instant Notification (INS), version 6 and later: decrypt and read one.

ClickBank POSTs JSON ``{"notification": base64, "iv": base64}``. The
notification is AES-256-CBC with PKCS#7 padding; the key is the first 32
hexadecimal characters of SHA-1 of the secret key set in ClickBank, taken as
ASCII bytes (ClickBank's INS documentation). The plain text is JSON with
``transactionType``, ``receipt``, ``transactionTime``, ``totalAccountAmount``
(what this account earns), ``currency``, ``trackingCodes`` and more; only
those are read, never the customer's details.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from drip.data.models import ConversionType
from drip.subscribers.conversions import InvalidReport, Report, cents, currency

SOURCE = "clickbank"
_KINDS = {kind.value for kind in ConversionType}


def key_for(secret_key: str) -> bytes:
    return hashlib.sha1(secret_key.encode("utf-8")).hexdigest()[:32].encode("ascii")


def decrypt(envelope: Any, secret_key: str) -> dict[str, Any]:
    """The notification inside ``envelope`` (the POSTed JSON, parsed)."""
    if not isinstance(envelope, dict):
        raise InvalidReport(400, 'expected a JSON object {"notification", "iv"}')
    try:
        secret = base64.b64decode(envelope["notification"], validate=True)
        iv = base64.b64decode(envelope["iv"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise InvalidReport(400, "notification and iv must be base64 strings") from None
    if len(iv) != 16 or not secret or len(secret) % 16:
        raise InvalidReport(400, "not an AES-256-CBC notification (block sizes)")
    decryptor = Cipher(algorithms.AES(key_for(secret_key)), modes.CBC(iv)).decryptor()
    plain = decryptor.update(secret) + decryptor.finalize()
    try:
        unpadder = padding.PKCS7(128).unpadder()
        data = json.loads((unpadder.update(plain) + unpadder.finalize()).decode("utf-8"))
    except ValueError:  # bad padding, bad UTF-8 and bad JSON alike: the wrong key
        message = "the notification does not decrypt: check the secret key"
        raise InvalidReport(401, message) from None
    if not isinstance(data, dict):
        raise InvalidReport(422, "the notification is not a JSON object")
    return data


def read(data: dict[str, Any]) -> Report:
    """The transaction in a decrypted notification."""
    kind = data.get("transactionType")
    if kind not in _KINDS:
        raise InvalidReport(422, f"unknown transactionType {kind!r}")
    receipt = data.get("receipt")
    if not isinstance(receipt, str) or not 0 < len(receipt.strip()) <= 100:
        raise InvalidReport(422, "receipt must be a string of 1 to 100 characters")
    codes = data.get("trackingCodes") or []
    if not isinstance(codes, list):
        raise InvalidReport(422, "trackingCodes must be a list")
    return Report(
        source=SOURCE,
        external_id=receipt.strip(),
        kind=str(kind),
        amount_cents=cents(data.get("totalAccountAmount", 0)),
        currency=currency(data.get("currency")),
        occurred_at=_moment(data.get("transactionTime")),
        tracking_codes=tuple(str(code) for code in codes if isinstance(code, str | int)),
    )


def _moment(value: Any) -> datetime:
    # ClickBank sends ISO 8601 with an offset, e.g. 2026-03-05T07:00:00-08:00.
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise InvalidReport(422, f"transactionTime is not ISO 8601: {value!r}") from None
    if moment.tzinfo is None:
        raise InvalidReport(422, "transactionTime lacks its UTC offset")
    return moment.astimezone(UTC)
