"""Standard Webhooks signatures (https://www.standardwebhooks.com, spec "Signature scheme").

The secret is 24 to 64 random bytes shown as ``whsec_`` + base64. Each message
carries ``webhook-id`` (the same on every retry, for the receiver's dedupe),
``webhook-timestamp`` (Unix seconds) and ``webhook-signature``: ``v1,`` +
base64(HMAC-SHA256(secret bytes, "{id}.{timestamp}.{body}")).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        "Content-Type": "application/json",
    }
