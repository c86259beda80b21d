"""Event-webhook callbacks are shaped like SendGrid's and signed so its helper verifies them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from drip_devtools.sendgrid_sink import Sink, events
from drip_devtools.sendgrid_sink.events import EventSpecError, Target
from drip_devtools.sendgrid_sink.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from drip_devtools.sendgrid_sink.testing import TEST_API_KEY, WebhookReceiver, mail_body
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook


def verified(sink: Sink, headers: dict[str, str], body: bytes) -> bool:
    helper = EventWebhook()
    key = helper.convert_public_key_to_ecdsa(sink.public_key_b64)
    return bool(
        helper.verify_signature(
            body.decode(), headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER], key
        )
    )


def send(sink: Sink, recipients: int = 1) -> str:
    sg = SendGridAPIClient(api_key=TEST_API_KEY, host=sink.url)
    sg.client.timeout = 5
    return str(sg.send(mail_body(recipients)).headers["X-Message-Id"])


TARGET = Target("u0@example.com", "abc.filterdrecv-1.0", {"delivery_id": "17"})


def test_posted_events_carry_a_signature_sendgrids_helper_verifies(
    sink: Sink, receiver: WebhookReceiver
) -> None:
    status = sink.post_events(receiver.url, [events.delivered(TARGET)])

    assert status == 200
    ((headers, body),) = receiver.requests
    assert headers["Content-Type"] == "application/json"
    assert verified(sink, headers, body)


def test_a_changed_body_fails_verification(sink: Sink, receiver: WebhookReceiver) -> None:
    sink.post_events(receiver.url, [events.delivered(TARGET)])
    ((headers, body),) = receiver.requests

    assert not verified(sink, headers, body.replace(b"17", b"18"))


def test_the_public_key_is_base64_der_that_the_helper_accepts(sink: Sink) -> None:
    key = EventWebhook(sink.public_key_b64).public_key

    assert key.curve.name == "secp256r1"


def test_every_event_names_the_recipient_message_and_our_custom_args() -> None:
    built = [
        events.delivered(TARGET, now=1_800_000_000),
        events.deferred(TARGET, attempt=2),
        events.bounce(TARGET),
        events.bounce(TARGET, type="blocked"),
        events.dropped(TARGET),
        events.spamreport(TARGET),
        events.unsubscribe(TARGET),
        events.group_unsubscribe(TARGET, asm_group_id=3),
        events.opened(TARGET, sg_machine_open=True),
        events.clicked(TARGET, url="https://drip.example/l/1"),
    ]

    for event in built:
        assert event["email"] == "u0@example.com"
        assert event["sg_message_id"] == "abc.filterdrecv-1.0"
        assert event["delivery_id"] == "17"
        assert isinstance(event["timestamp"], int)
    assert built[0]["timestamp"] == 1_800_000_000
    assert len({event["sg_event_id"] for event in built}) == len(built)
    assert [event["event"] for event in built] == [
        "delivered",
        "deferred",
        "bounce",
        "bounce",
        "dropped",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
        "open",
        "click",
    ]
    assert (built[2]["type"], built[3]["type"]) == ("bounce", "blocked")
    assert built[8]["sg_machine_open"] is True
    assert built[9]["url"] == "https://drip.example/l/1"


def test_a_delayed_bounce_may_come_without_a_message_id() -> None:
    event = events.bounce(Target("u0@example.com", None, {"delivery_id": "17"}))

    assert "sg_message_id" not in event
    assert event["delivery_id"] == "17"


def test_a_bounce_is_either_bounce_or_blocked() -> None:
    with pytest.raises(EventSpecError):
        events.bounce(TARGET, type="soft")


def test_it_sends_an_event_for_the_recorded_message_matching_custom_args(
    sink: Sink, receiver: WebhookReceiver
) -> None:
    message_id = send(sink, recipients=20)

    status, _ = sink.send_events(
        [{"event": "bounce", "where": {"delivery_id": 17}, "type": "blocked"}]
    )

    assert status == 200
    ((headers, body),) = receiver.requests
    assert verified(sink, headers, body)
    (event,) = json.loads(body)
    assert event["event"] == "bounce"
    assert event["type"] == "blocked"
    assert event["email"] == "u17@example.com"
    assert event["delivery_id"] == "17"
    assert event["sg_message_id"].startswith(f"{message_id}.filter")


def test_an_event_spec_for_no_recorded_message_is_refused(sink: Sink) -> None:
    send(sink)

    with pytest.raises(EventSpecError):
        sink.send_events([{"event": "delivered", "where": {"delivery_id": "999"}}])


def test_a_key_file_is_created_once_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "webhook-key.pem"

    first = Sink(webhook_key_path=str(path)).public_key_b64
    second = Sink(webhook_key_path=str(path)).public_key_b64

    assert first == second
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_key_file_that_is_not_p256_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "p384.pem"
    key = ec.generate_private_key(ec.SECP384R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    with pytest.raises(ValueError, match="P-256"):
        Sink(webhook_key_path=str(path))
