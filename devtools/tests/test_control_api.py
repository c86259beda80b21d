"""The control API over HTTP: stats, messages, faults, recording, events."""

from __future__ import annotations

import json

import pytest
from drip_devtools.sendgrid_sink import Sink
from drip_devtools.sendgrid_sink.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from drip_devtools.sendgrid_sink.testing import TEST_API_KEY, WebhookReceiver, control, mail_body
from python_http_client.exceptions import ServiceUnavailableError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook


def client(sink: Sink) -> SendGridAPIClient:
    sg = SendGridAPIClient(api_key=TEST_API_KEY, host=sink.url)
    sg.client.timeout = 5
    return sg


def test_stats_count_what_was_sent(sink: Sink) -> None:
    client(sink).send(mail_body(3))

    status, stats = control(sink.url, "GET", "stats")

    assert status == 200
    assert stats["requests"] == 1
    assert stats["messages"] == 3
    assert stats["statuses"] == {"202": 1}


def test_messages_are_listed_once_recording_is_switched_on(sink: Sink) -> None:
    assert control(sink.url, "POST", "recording", {"enabled": True}) == (200, {"recording": True})
    client(sink).send(mail_body(2))

    status, listing = control(sink.url, "GET", "messages")

    assert status == 200
    assert [m["to"] for m in listing["messages"]] == ["u0@example.com", "u1@example.com"]
    assert listing["messages"][1]["subject"] == "Lesson 1 for Reader 1"


def test_reset_empties_stats_and_messages(sink: Sink) -> None:
    control(sink.url, "POST", "recording", {"enabled": True})
    client(sink).send(mail_body())

    assert control(sink.url, "POST", "reset")[0] == 200

    assert control(sink.url, "GET", "stats")[1]["requests"] == 0
    assert control(sink.url, "GET", "messages")[1] == {"messages": []}


def test_a_fault_plan_posted_applies_until_deleted(sink: Sink) -> None:
    plan = {"rules": [{"status": 503, "next": 5}]}
    assert control(sink.url, "POST", "faults", plan) == (200, {"ok": True, "rules": 1})
    with pytest.raises(ServiceUnavailableError):
        client(sink).send(mail_body())

    assert control(sink.url, "DELETE", "faults")[0] == 200

    assert client(sink).send(mail_body()).status_code == 202


def test_a_bad_fault_plan_is_refused_with_the_reason(sink: Sink) -> None:
    status, answer = control(sink.url, "POST", "faults", {"rules": [{"status": 418}]})

    assert status == 400
    assert "status must be one of" in answer["error"]


def test_the_webhook_public_key_is_published(sink: Sink) -> None:
    assert control(sink.url, "GET", "webhook-public-key") == (
        200,
        {"public_key": sink.public_key_b64},
    )


def test_events_are_sent_signed_to_the_configured_webhook(
    sink: Sink, receiver: WebhookReceiver
) -> None:
    control(sink.url, "POST", "recording", {"enabled": True})
    client(sink).send(mail_body(3))
    specs = [
        {"event": "delivered", "where": {"delivery_id": "1"}},
        {"event": "open", "to": "U2@example.com", "sg_machine_open": True},
        {"event": "unsubscribe", "email": "someone@example.com", "custom_args": {"x": 1}},
    ]

    status, answer = control(sink.url, "POST", "events", {"events": specs})

    assert status == 200
    assert (answer["posted"], answer["status"]) == (3, 200)
    ((headers, body),) = receiver.requests
    public_key = EventWebhook().convert_public_key_to_ecdsa(sink.public_key_b64)
    assert EventWebhook().verify_signature(
        body.decode(), headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER], public_key
    )
    delivered, opened, unsubscribed = json.loads(body)
    assert (delivered["event"], delivered["email"]) == ("delivered", "u1@example.com")
    assert (opened["event"], opened["sg_machine_open"]) == ("open", True)
    assert (unsubscribed["email"], unsubscribed["x"]) == ("someone@example.com", "1")


def test_events_for_no_recorded_message_are_refused(sink: Sink) -> None:
    status, answer = control(
        sink.url, "POST", "events", {"events": [{"event": "bounce", "to": "x@example.com"}]}
    )

    assert status == 400
    assert "no recorded message" in answer["error"]


def test_events_without_a_webhook_url_are_refused() -> None:
    with Sink() as sink:
        spec = {"event": "delivered", "email": "a@example.com"}
        status, answer = control(sink.url, "POST", "events", {"events": [spec]})

    assert status == 400
    assert "no webhook URL" in answer["error"]


def test_an_unknown_control_route_is_404(sink: Sink) -> None:
    assert control(sink.url, "GET", "nothing-here")[0] == 404


@pytest.mark.parametrize(
    "request_body",
    [
        ["not", "an", "object"],
        {"events": "delivered"},
        {"events": [{"event": "delivered", "where": "delivery_id=1"}]},
        {"events": [{"event": "teleported", "email": "a@example.com"}]},
        {"events": [{"event": "click", "email": "a@example.com", "colour": "red"}]},
    ],
)
def test_a_malformed_events_request_is_refused_with_the_reason(
    sink: Sink, request_body: object
) -> None:
    status, answer = control(sink.url, "POST", "events", request_body)

    assert status == 400
    assert answer["error"]
