"""Sales as affiliate networks report them, built here from their documented formats.

The ClickBank envelope is encrypted with the `cryptography` package's AES
directly, following ClickBank's INS documentation (version 6+), not with any
drip code: a wrong key derivation in drip would then fail these tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlalchemy import select

from drip.data.models import Conversion
from tests.conftest import Stack, clear_tables, settle, wait_until
from tests.mailbox import link, messages
from tests.test_concurrency import confirmed_subscribers

CLICKBANK_KEY = "MYSECRETKEY12345"
ADMIN_PASSWORD = "correct horse battery staple"
METRICS_TOKEN = "metrics-token-for-revenue-tests"
POSTBACK_SECRET = "postback-secret-0123456789"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126 Safari/537.36"
START = datetime(2026, 3, 5, 15, 0, tzinfo=UTC)


def revenue_stack(stack_factory: Callable[..., Stack]) -> Iterator[Stack]:
    current = stack_factory(
        clickbank_secret_key=CLICKBANK_KEY,
        postback_secret=POSTBACK_SECRET,
        admin_password=ADMIN_PASSWORD,
        metrics_token=METRICS_TOKEN,
    )
    clear_tables(current.services.database)
    for path in current.outbox.glob("*.eml") if current.outbox.exists() else []:
        path.unlink()
    current.clock.set(START)
    yield current
    settle(current)


@pytest.fixture()
def stack(stack_factory: Callable[..., Stack]) -> Iterator[Stack]:
    yield from revenue_stack(stack_factory)


def clickbank_envelope(notification: dict[str, Any], secret_key: str = CLICKBANK_KEY) -> bytes:
    key = hashlib.sha1(secret_key.encode()).hexdigest()[:32].encode("ascii")
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    plain = padder.update(json.dumps(notification).encode()) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    secret = encryptor.update(plain) + encryptor.finalize()
    envelope = {
        "notification": base64.b64encode(secret).decode(),
        "iv": base64.b64encode(iv).decode(),
    }
    return json.dumps(envelope).encode()


def notification(kind: str, receipt: str, tid: str | None, amount: float = 27.5) -> dict[str, Any]:
    """A decrypted INS version 8.0 notification, with the customer details drip must not keep."""
    return {
        "transactionTime": "2026-03-05T09:30:00-08:00",
        "receipt": receipt,
        "transactionType": kind,
        "vendor": "savemarr",
        "affiliate": "dripaff",
        "role": "AFFILIATE",
        "totalAccountAmount": amount,
        "paymentMethod": "VISA",
        "totalOrderAmount": 47.0,
        "totalTaxAmount": 0.0,
        "totalShippingAmount": 0.0,
        "currency": "USD",
        "orderLanguage": "EN",
        "trackingCodes": [tid] if tid else [],
        "lineItems": [
            {"itemNo": "1", "productTitle": "Save The Marriage", "accountAmount": amount}
        ],
        "customer": {
            "billing": {"fullName": "Pat Buyer", "email": "pat.buyer@example.com",
                        "address": {"country": "US", "postalCode": "62701"}}
        },
        "version": 8.0,
        "attemptCount": 1,
    }  # fmt: skip


def post_clickbank(stack: Stack, body: bytes) -> Any:
    return stack.client.post(
        "/postbacks/clickbank", data=body, headers={"Content-Type": "application/json"}
    )


def generic_query(params: dict[str, str], secret: str = POSTBACK_SECRET) -> str:
    """The documented signing: RFC 3986-encoded pairs but sig, sorted, HMAC-SHA256 hex."""
    canonical = "&".join(
        f"{quote(k, safe='-._~')}={quote(v, safe='-._~')}" for k, v in sorted(params.items())
    )
    sig = hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).hexdigest()
    return canonical + "&sig=" + sig


def click_for(stack: Stack, email: str) -> str:
    """Click the call to action of the latest lesson in ``email``'s mailbox; the tid handed on."""
    path = link(messages(stack.outbox, to=email)[-1], "/r/")
    answer = stack.client.get(path, headers={"User-Agent": BROWSER})
    assert answer.status_code == 302
    (tid,) = parse_qs(urlsplit(answer.headers["Location"]).query)["tid"]
    return tid


def first_lesson_to(stack: Stack, count: int = 1) -> list[int]:
    ids = confirmed_subscribers(stack, count)
    stack.tick()
    for n in range(count):
        wait_until(lambda n=n: messages(stack.outbox, to=f"person{n}@example.com"))
    stack.clock.advance(minutes=5)  # past the link scanners' window
    return ids


def conversions(stack: Stack) -> list[Conversion]:
    with stack.session() as session:
        return list(session.scalars(select(Conversion).order_by(Conversion.id)))
