"""The sink's own tests: one running stand-in per test, posting its callbacks to a receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from drip_devtools.sendgrid_sink import Sink
from drip_devtools.sendgrid_sink.testing import TEST_API_KEY, WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture
def sink(receiver: WebhookReceiver) -> Iterator[Sink]:
    with Sink(api_key=TEST_API_KEY, record=True, webhook_url=receiver.url) as running:
        yield running
