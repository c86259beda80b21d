"""The event webhook without a usable verification key refuses everything, and says why."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from drip_devtools.sendgrid_sink import Sink
from drip_devtools.sendgrid_sink import events as sg
from sqlalchemy import func, select

from drip.data.models import Event
from drip.subscribers import provider_events
from tests.browser import live_server
from tests.conftest import Stack


@pytest.fixture(scope="module")
def backend() -> str:
    # No database work happens on this path: once, on SQLite, is enough.
    return "sqlite"


@pytest.fixture()
def unconfigured(stack_factory: Callable[..., Stack]) -> Stack:
    stack = stack_factory(sendgrid_webhook_key=None)
    assert stack.services.settings.sendgrid_webhook_key is None
    return stack


def test_without_a_key_every_batch_is_refused_with_the_reason(
    unconfigured: Stack, stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Sink(clock=lambda: stack.clock().timestamp())
    event = sg.spamreport(sg.Target("a@example.com", None, {"drip_key": "1"}))
    with live_server(stack.app) as base, caplog.at_level(logging.ERROR):
        status = sink.post_events(f"{base}/webhooks/sendgrid", [event])
    assert status == 403
    answer = stack.client.post("/webhooks/sendgrid", data=b"[]")
    assert answer.status_code == 403
    assert "DRIP_SENDGRID_WEBHOOK_KEY is not set" in answer.get_json()["error"]["message"]
    assert "DRIP_SENDGRID_WEBHOOK_KEY is not set" in caplog.text
    with stack.session() as session:
        assert session.scalar(select(func.count()).select_from(Event)) == 0


def _rsa_public_key_b64() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@pytest.mark.parametrize(
    "key", ["not a key", "QUJD", "-----BEGIN PUBLIC KEY-----", _rsa_public_key_b64()]
)
def test_a_key_that_is_not_an_ecdsa_public_key_is_refused_not_a_crash(key: str) -> None:
    with pytest.raises(provider_events.NotConfigured, match="not an ECDSA public key"):
        provider_events.verify(key, b"[]", "c2ln", "1", now=datetime.now(UTC))
