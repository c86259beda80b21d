"""Injected faults reach the official client as SendGrid's would."""

from __future__ import annotations

import json
import time

import pytest
from drip_devtools.sendgrid_sink import Sink
from drip_devtools.sendgrid_sink.faults import PlanError
from drip_devtools.sendgrid_sink.testing import TEST_API_KEY, mail_body
from python_http_client.exceptions import (
    BadRequestsError,
    ForbiddenError,
    GatewayTimeoutError,
    HTTPError,
    InternalServerError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def client(sink: Sink, timeout: float = 5) -> SendGridAPIClient:
    sg = SendGridAPIClient(api_key=TEST_API_KEY, host=sink.url)
    sg.client.timeout = timeout
    return sg


def status_of(sg: SendGridAPIClient) -> int:
    try:
        return int(sg.send(mail_body()).status_code)
    except HTTPError as exc:
        return int(exc.status_code)


def test_a_rate_limit_answers_429_with_the_reset_headers(sink: Sink) -> None:
    sink.set_faults(rules=[{"status": 429, "limit": 600, "reset_in": 5}])

    with pytest.raises(TooManyRequestsError) as exc:
        client(sink).send(mail_body())

    headers = exc.value.headers
    assert headers["X-RateLimit-Limit"] == "600"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert int(time.time()) + 3 <= int(headers["X-RateLimit-Reset"]) <= int(time.time()) + 6
    assert json.loads(exc.value.body)["errors"][0]["message"] == "too many requests"
    assert sink.messages == []


@pytest.mark.parametrize(
    ("status", "error_class", "content_type"),
    [
        (500, InternalServerError, "application/json"),
        (502, HTTPError, "text/html"),
        (503, ServiceUnavailableError, "application/json"),
        (504, GatewayTimeoutError, "text/html"),
        (401, UnauthorizedError, "application/json"),
        (403, ForbiddenError, "application/json"),
    ],
)
def test_an_injected_status_raises_the_clients_error_class(
    sink: Sink, status: int, error_class: type[HTTPError], content_type: str
) -> None:
    sink.set_faults(rules=[{"status": status}])

    with pytest.raises(error_class) as exc:
        client(sink).send(mail_body())

    assert exc.value.status_code == status
    assert exc.value.headers["Content-Type"] == content_type
    assert sink.stats["faults"] == 1


def test_a_slow_answer_makes_the_client_time_out(sink: Sink) -> None:
    sink.set_faults(rules=[{"delay": 5}])

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client(sink, timeout=0.2).send(mail_body())

    assert time.monotonic() - started < 2


def test_a_slow_answer_within_the_timeout_still_arrives(sink: Sink) -> None:
    sink.set_faults(rules=[{"delay": 0.3}])

    started = time.monotonic()
    response = client(sink).send(mail_body())

    assert response.status_code == 202
    assert time.monotonic() - started >= 0.3


def test_a_dropped_connection_raises_a_network_error(sink: Sink) -> None:
    sink.set_faults(rules=[{"drop": True}])

    with pytest.raises(ConnectionError):
        client(sink).send(mail_body())

    assert sink.stats["dropped"] == 1
    assert sink.messages == []


def test_a_fault_for_the_next_requests_then_stops(sink: Sink) -> None:
    sink.set_faults(rules=[{"status": 503, "next": 2}])
    sg = client(sink)

    assert [status_of(sg) for _ in range(4)] == [503, 503, 202, 202]


def test_a_share_of_requests_repeats_exactly_with_the_same_seed() -> None:
    def statuses(seed: int) -> list[int]:
        with Sink(faults={"seed": seed, "rules": [{"status": 500, "share": 0.5}]}) as sink:
            sg = client(sink)
            return [status_of(sg) for _ in range(20)]

    first = statuses(seed=7)

    assert first == statuses(seed=7)
    assert first != statuses(seed=8)
    assert set(first) == {202, 500}


def test_a_share_of_zero_never_fires_and_one_always_does(sink: Sink) -> None:
    sink.set_faults(rules=[{"status": 500, "share": 0}, {"status": 503, "share": 1}])

    assert {status_of(client(sink)) for _ in range(5)} == {503}


def test_a_time_window_fault_applies_only_inside_the_window() -> None:
    clock = Clock()
    plan = {"rules": [{"status": 503, "after_seconds": 10, "for_seconds": 5}]}
    with Sink(faults=plan, clock=clock) as sink:
        sg = client(sink)
        seen = []
        for offset in (0, 10, 14.9, 15):
            clock.now = 1_800_000_000.0 + offset
            seen.append(status_of(sg))

    assert seen == [202, 503, 503, 202]


def test_a_bad_recipient_refuses_the_batch_naming_its_field(sink: Sink) -> None:
    sink.set_faults(bad_recipients=["U7@example.com"])
    sg = client(sink)

    with pytest.raises(BadRequestsError) as exc:
        sg.send(mail_body(10))

    errors = json.loads(exc.value.body)["errors"]
    assert [error["field"] for error in errors] == ["personalizations.7.to.0.email"]


def test_a_client_can_isolate_a_bad_recipient_by_splitting_the_batch(sink: Sink) -> None:
    sink.set_faults(bad_recipients=["u5@example.com"])
    body = mail_body(8)
    sg = client(sink)

    def send(personalizations: list[dict]) -> list[str]:
        """Send, splitting refused batches in halves; return the refused addresses."""
        try:
            sg.send({**body, "personalizations": personalizations})
            return []
        except HTTPError:
            if len(personalizations) == 1:
                return [personalizations[0]["to"][0]["email"]]
            half = len(personalizations) // 2
            return send(personalizations[:half]) + send(personalizations[half:])

    assert send(body["personalizations"]) == ["u5@example.com"]
    assert sink.stats["messages"] == 7


def test_clearing_faults_restores_normal_answers(sink: Sink) -> None:
    sink.set_faults(rules=[{"status": 500}])
    sink.clear_faults()

    assert status_of(client(sink)) == 202


@pytest.mark.parametrize(
    "plan",
    [
        {"rules": [{"status": 404}]},
        {"rules": [{"share": 0.5}]},
        {"rules": [{"status": 500, "share": 1.5}]},
        {"rules": [{"status": 500, "drop": True}]},
        {"rules": [{"status": 500, "nxet": 1}]},
        {"bad_recipients": "a@example.com"},
        {"seed": "seven"},
    ],
)
def test_a_plan_that_cannot_be_followed_is_refused(sink: Sink, plan: dict) -> None:
    with pytest.raises(PlanError):
        sink.set_faults(plan)
