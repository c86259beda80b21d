"""The ten-day walk with DRIP_EMAIL_BACKEND=sendgrid: the confirmation and every lesson go
through the real `sendgrid` client to the sink, personalized by SendGrid's substitutions."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from drip_devtools.sendgrid_sink import Sink
from sqlalchemy import select

from drip.data.models import Consent, Delivery
from drip.mail.sendgrid import CUSTOM_ARG_KEY
from tests.conftest import Stack, sendgrid_stack, sign_up, wait_until, walk_hours
from tests.mailbox import csrf_token
from tests.test_walk import NEW_YORK


@pytest.fixture()
def stack(stack_factory: Callable[..., Stack], sink: Sink) -> Stack:
    return sendgrid_stack(stack_factory, sink)


def received(sink: Sink, email: str) -> list[dict[str, Any]]:
    """What the sink accepted for one address, in order: its mailbox."""
    return [m for m in sink.messages if m["to"] == email]


def lessons_at_sink(sink: Sink, email: str) -> list[dict[str, Any]]:
    return [m for m in received(sink, email) if m["categories"] != ["confirmation"]]


def link_in(message: dict[str, Any], path_prefix: str) -> str:
    match = re.search(
        rf"https://drip\.test({re.escape(path_prefix)}[A-Za-z0-9_.~\-]+)", message["text"]
    )
    assert match, f"no {path_prefix} link in the message"
    return match.group(1)


def confirm_from_sink(stack: Stack, sink: Sink, email: str) -> None:
    confirmation = wait_until(lambda: received(sink, email))[0]
    path = link_in(confirmation, "/confirm/")
    client = stack.client  # one client: the CSRF token lives in its session cookie
    page = client.get(path)
    assert page.status_code == 200
    answer = client.post(path, data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert answer.status_code == 200, answer.get_data(as_text=True)


def test_ten_lessons_go_through_sendgrid_one_a_day_at_the_send_hour(
    stack: Stack, sink: Sink
) -> None:
    email = "ann@example.com"
    sign_up(stack, email, name="Ann")
    confirm_from_sink(stack, sink, email)
    wait_until(lambda: len(lessons_at_sink(sink, email)) == 1)
    arrivals = walk_hours(stack, 24 * 10, lambda: len(lessons_at_sink(sink, email)))

    lessons = lessons_at_sink(sink, email)
    assert [m["subject"].split(":")[0] for m in lessons] == [f"Day {k}" for k in range(1, 11)]
    assert [count for count, _ in arrivals] == list(range(2, 11))
    local_times = [moment.astimezone(NEW_YORK) for _, moment in arrivals]
    assert all(t.hour == 8 and t.minute == 0 for t in local_times), local_times
    days = [t.date() for t in local_times]
    assert days == [days[0] + timedelta(days=k) for k in range(9)]
    assert {t.utcoffset() for t in local_times} == {timedelta(hours=-5), timedelta(hours=-4)}

    with stack.session() as session:
        stored = {d.lesson: d for d in session.scalars(select(Delivery))}
    course = stack.services.course
    for number, message in enumerate(lessons, start=1):
        delivery = stored[number]
        # The opaque key and nothing else about the person goes to SendGrid.
        assert message["custom_args"] == {CUSTOM_ARG_KEY: str(delivery.id)}
        assert message["categories"] == [f"lesson-{number:02d}"]
        assert delivery.message_id == message["message_id"], "X-Message-Id is stored"
        unsubscribe = link_in(message, "/u/")
        assert message["headers"] == {
            "List-Unsubscribe": f"<https://drip.test{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        for part in (message["text"], message["html"]):
            assert "%%drip_" not in part, "every placeholder substituted"
            assert "Ann" in part
            assert "https://drip.test/r/" in part and "https://drip.test/u/" in part
            assert course.postal_address.split(",")[0] in part
        assert link_in(message, "/r/") in message["html"]


def test_the_confirmation_goes_through_sendgrid_with_only_an_opaque_key(
    stack: Stack, sink: Sink
) -> None:
    email = "confirm-me@example.com"
    sign_up(stack, email, name="Bea")
    (confirmation,) = wait_until(lambda: received(sink, email))
    with stack.session() as session:
        consent_id = session.scalar(select(Consent.id))
    assert confirmation["custom_args"] == {CUSTOM_ARG_KEY: f"c{consent_id}"}
    assert confirmation["categories"] == ["confirmation"]
    assert "Bea" in confirmation["text"] and "%%drip_" not in confirmation["html"]
    assert "/confirm/" in confirmation["text"]
    assert email not in str(confirmation["custom_args"])
