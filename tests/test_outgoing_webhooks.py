"""Outgoing webhooks: signed as Standard Webhooks say, retried with backoff, never to
private addresses unless allowed, and an endpoint failing for a day is disabled."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from drip.data.models import Conversion, WebhookEndpoint, WebhookMessage
from drip.integrations import webhooks
from drip.integrations.webhook_endpoints import add
from drip.integrations.webhook_targets import RefusedTarget, check
from tests.cli import run_cli
from tests.conftest import Stack, clear_tables, settle, wait_until


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records each POST and answers with ``status``."""

    def __init__(self) -> None:
        self.status = 204
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/drip"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def hooked(stack_factory: Callable[..., Stack]) -> Iterator[Stack]:
    """The module's stack, allowed to send to this machine (the receiver is on 127.0.0.1)."""
    current = stack_factory(webhooks_allow_private=True)
    clear_tables(current.services.database)
    current.clock.set(datetime(2026, 3, 5, 15, 0, tzinfo=UTC))
    yield current
    settle(current)


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def register(stack: Stack, url: str, *events: str) -> tuple[int, str]:
    with stack.session() as session:
        row = add(session, url, events, allow_private=True, now=stack.clock())
        return row.id, row.secret


def sweep(stack: Stack) -> dict[str, int]:
    from drip.tasks import run_webhooks_sweep_now

    with stack.app.app_context():
        return run_webhooks_sweep_now()


def message(stack: Stack) -> WebhookMessage:
    with stack.session() as session:
        row = session.scalars(select(WebhookMessage)).one()
        session.expunge(row)
        return row


def endpoint(stack: Stack, endpoint_id: int) -> WebhookEndpoint:
    with stack.session() as session:
        row = session.get(WebhookEndpoint, endpoint_id)
        assert row is not None
        session.expunge(row)
        return row


def attempted(stack: Stack, attempts: int) -> WebhookMessage:
    """The single message once the worker recorded its ``attempts``-th attempt."""
    return wait_until(
        lambda: (row := message(stack)).attempts == attempts and row.status != "sending" and row
    )


def sign_up(stack: Stack, email: str) -> None:
    assert stack.client.post("/api/v1/subscribers", json={"email": email}).status_code == 202


def test_a_signup_arrives_signed_so_the_standard_webhooks_library_verifies_it(
    hooked: Stack, receiver: Receiver
) -> None:
    _, secret = register(hooked, receiver.url, "signup")
    sign_up(hooked, "ann@example.com")
    assert sweep(hooked) == {"fanned_out": 1, "handed_out": 1}
    headers, body = wait_until(lambda: receiver.received)[0]
    payload = Webhook(secret).verify(body, headers)
    assert payload["type"] == "signup"
    assert payload["data"]["kind"] == "signup" and payload["data"]["subscriber_id"]
    assert headers["webhook-id"] == payload["data"]["id"]
    assert b"ann@example.com" not in body
    assert attempted(hooked, 1).status == "delivered"
    # A tampered body fails verification: the signature covers it.
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"signup", b"signuq"), headers)


def test_only_the_kinds_an_endpoint_asked_for_are_sent_and_each_once(
    hooked: Stack, receiver: Receiver
) -> None:
    register(hooked, receiver.url, "unsubscribe")
    sign_up(hooked, "bob@example.com")
    assert sweep(hooked)["fanned_out"] == 0
    assert sweep(hooked)["fanned_out"] == 0  # the re-read of the last minute adds nothing
    assert receiver.received == []


def test_a_failing_receiver_is_retried_with_backoff_under_the_same_webhook_id(
    hooked: Stack, receiver: Receiver
) -> None:
    receiver.status = 500
    _, secret = register(hooked, receiver.url, "signup")
    sign_up(hooked, "cat@example.com")
    sweep(hooked)
    first = attempted(hooked, 1)
    assert first.status == "pending" and first.last_error == "HTTP 500"
    assert first.next_attempt_at == hooked.clock() + webhooks.FIRST_RETRY
    assert sweep(hooked)["handed_out"] == 0  # not due yet

    hooked.clock.advance(seconds=30)
    sweep(hooked)
    second = attempted(hooked, 2)
    assert second.next_attempt_at == hooked.clock() + 2 * webhooks.FIRST_RETRY

    receiver.status = 200
    hooked.clock.advance(seconds=60)
    sweep(hooked)
    assert attempted(hooked, 3).status == "delivered"
    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    assert len(receiver.received) == 3 and len(ids) == 1
    for headers, body in receiver.received:
        Webhook(secret).verify(body, headers)
    assert endpoint(hooked, first.endpoint_id).failing_since is None


def test_an_endpoint_failing_for_a_day_is_disabled_with_the_reason(
    hooked: Stack, receiver: Receiver
) -> None:
    receiver.status = 503
    endpoint_id, _ = register(hooked, receiver.url)
    sign_up(hooked, "dan@example.com")
    start = hooked.clock()
    attempts = 0
    while endpoint(hooked, endpoint_id).disabled_at is None:
        sweep(hooked)
        attempts += 1
        row = attempted(hooked, attempts)
        assert row.next_attempt_at is not None and attempts < 30
        hooked.clock.set(row.next_attempt_at)
    disabled = endpoint(hooked, endpoint_id)
    assert disabled.disabled_at is not None
    assert disabled.disabled_at - start >= webhooks.DISABLE_AFTER
    assert "every attempt failed" in disabled.disabled_reason
    assert "HTTP 503" in disabled.disabled_reason
    assert "disabled" in run_cli(hooked, "webhooks", "list").stdout
    hooked.clock.advance(hours=5)
    assert sweep(hooked)["handed_out"] == 0
    assert len(receiver.received) == attempts


def test_a_loopback_receiver_is_refused_at_send_time_without_the_allow_setting(
    hooked: Stack, receiver: Receiver
) -> None:
    register(hooked, receiver.url, "signup")
    sign_up(hooked, "eve@example.com")
    strict = dataclasses.replace(
        hooked.services,
        settings=hooked.services.settings.with_overrides(webhooks_allow_private=False),
    )
    handed: list[int] = []
    webhooks.sweep(strict, handed.append)
    assert webhooks.deliver(strict, handed[0]) == "retrying"
    assert "not a public address" in message(hooked).last_error
    assert receiver.received == []


def test_the_cli_refuses_loopback_and_private_urls(hooked: Stack) -> None:
    for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/x"):
        answer = run_cli(hooked, "webhooks", "add", url)
        assert answer.exit_code != 0
        assert "not a public address" in answer.output
    assert run_cli(hooked, "webhooks", "list").stdout == ""


def test_the_cli_adds_lists_and_removes_an_endpoint(hooked: Stack) -> None:
    made = run_cli(hooked, "webhooks", "add", "https://93.184.215.14/hook", "--events", "signup")
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip()
    assert secret.startswith("whsec_")
    Webhook(secret)  # the library accepts it as a signing secret
    listed = run_cli(hooked, "webhooks", "list").stdout
    assert "https://93.184.215.14/hook\tsignup\tlive" in listed and secret not in listed
    endpoint_id = listed.split("\t")[0]
    unknown = run_cli(hooked, "webhooks", "add", "https://93.184.215.14/", "--events", "sale")
    assert unknown.exit_code != 0 and "unknown event kind sale" in unknown.output
    assert run_cli(hooked, "webhooks", "remove", endpoint_id).exit_code == 0
    assert run_cli(hooked, "webhooks", "list").stdout == ""
    assert run_cli(hooked, "webhooks", "remove", endpoint_id).exit_code != 0


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",  # cloud metadata (link-local)
        "http://[::1]/hook",
        "http://[fc00::1]/hook",
        "http://100.64.0.1/hook",  # shared address space (RFC 6598)
        "http://0.0.0.0/hook",
        "ftp://93.184.215.14/hook",
        "http://user:pw@93.184.215.14/hook",
    ],
)
def test_non_global_addresses_and_odd_urls_are_refused(url: str) -> None:
    with pytest.raises(RefusedTarget):
        check(url, allow_private=False)


def test_a_global_address_passes_and_private_ones_pass_when_allowed() -> None:
    check("https://93.184.215.14/hook", allow_private=False)
    check("http://127.0.0.1:9/hook", allow_private=True)


def test_the_payload_is_the_feed_item_and_nothing_more() -> None:
    item = {
        "id": "signup-1",
        "kind": "signup",
        "occurred_at": "2026-03-05T15:00:00+00:00",
        "subscriber_id": 1,
        "lesson": None,
        "detail": None,
    }
    assert json.loads(webhooks.body_for(item)) == {
        "type": "signup",
        "timestamp": item["occurred_at"],
        "data": item,
    }


def test_a_conversion_reaches_the_feed_and_its_webhook_without_the_amount_or_buyer(
    hooked: Stack, receiver: Receiver
) -> None:
    _, secret = register(hooked, receiver.url, "conversion")
    with hooked.session() as session:
        session.add(
            Conversion(
                source="clickbank",
                external_id="RCPT1",
                kind="SALE",
                amount_cents=2750,
                currency="USD",
                occurred_at=hooked.clock(),
                received_at=hooked.clock(),
                lesson=3,
            )
        )
    assert sweep(hooked)["fanned_out"] == 1
    headers, body = wait_until(lambda: receiver.received)[0]
    data = Webhook(secret).verify(body, headers)["data"]
    assert (data["kind"], data["detail"], data["lesson"]) == ("conversion", "SALE", 3)
    assert b"RCPT1" not in body and b"2750" not in body
