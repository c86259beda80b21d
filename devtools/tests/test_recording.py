"""The sink counts what it accepts and, when asked, keeps each message as SendGrid would send it."""

from __future__ import annotations

import pytest
from drip_devtools.sendgrid_sink import Sink
from drip_devtools.sendgrid_sink.testing import TEST_API_KEY, mail_body
from python_http_client.exceptions import BadRequestsError
from sendgrid import SendGridAPIClient


def client(sink: Sink) -> SendGridAPIClient:
    sg = SendGridAPIClient(api_key=TEST_API_KEY, host=sink.url)
    sg.client.timeout = 5
    return sg


def test_it_records_one_message_per_personalization_with_substitutions_applied(
    sink: Sink,
) -> None:
    body = mail_body(
        2,
        reply_to={"email": "help@example.com"},
        categories=["lesson-01"],
        custom_args={"course": "walking"},
        headers={"X-Course": "walking"},
    )
    body["personalizations"][1]["headers"] = {"List-Unsubscribe": "<https://drip.example/u/t1>"}
    body["personalizations"][1]["subject"] = "Your own subject, %%name%%"

    message_id = client(sink).send(body).headers["X-Message-Id"]

    first, second = sink.messages
    assert first == {
        "message_id": message_id,
        "sg_message_id": first["sg_message_id"],
        "to": "u0@example.com",
        "recipients": ["u0@example.com"],
        "subject": "Lesson 1 for Reader 0",
        "html": "<p>Hello Reader 0</p>",
        "text": "Hello Reader 0",
        "headers": {"X-Course": "walking"},
        "custom_args": {"course": "walking", "delivery_id": "0"},
        "categories": ["lesson-01"],
        "from": {"email": "course@example.com", "name": "The Course"},
        "reply_to": {"email": "help@example.com"},
        "send_at": None,
    }
    assert first["sg_message_id"].startswith(f"{message_id}.filter")
    assert second["subject"] == "Your own subject, Reader 1"
    assert second["text"] == "Hello Reader 1"
    assert second["headers"] == {
        "X-Course": "walking",
        "List-Unsubscribe": "<https://drip.example/u/t1>",
    }
    assert first["sg_message_id"] != second["sg_message_id"]


def test_it_counts_requests_messages_and_answers(sink: Sink) -> None:
    sg = client(sink)
    sg.send(mail_body(3))
    sg.send(mail_body(2))
    with pytest.raises(BadRequestsError):
        sg.send(mail_body(subject=""))

    stats = sink.stats
    assert stats["requests"] == 3
    assert stats["accepted"] == 2
    assert stats["messages"] == 5
    assert stats["recipients"] == 5
    assert stats["statuses"] == {"202": 2, "400": 1}
    assert stats["recorded"] == 5


def test_it_keeps_no_messages_unless_recording_is_on() -> None:
    with Sink() as sink:
        client(sink).send(mail_body(4))

        assert sink.messages == []
        assert sink.stats["messages"] == 4
        assert sink.stats["recording"] is False


def test_recording_can_be_turned_on_while_running() -> None:
    with Sink() as sink:
        sg = client(sink)
        sg.send(mail_body(1))
        sink.recording = True
        sg.send(mail_body(2))

        assert [m["to"] for m in sink.messages] == ["u0@example.com", "u1@example.com"]


def test_reset_forgets_counters_and_messages(sink: Sink) -> None:
    client(sink).send(mail_body(2))

    sink.reset()

    assert sink.messages == []
    assert sink.stats["requests"] == 0
    assert sink.stats["statuses"] == {}
