"""SendGrid's signed event webhook over real HTTP, on both databases.

As in production, one party both takes the mail and reports on it: lessons go
through the SendGrid backend to the sink, and the sink signs events about the
messages it recorded (with the custom args the backend really sent) with its
own P-256 key and posts them to the app on a live server, which verifies them
with the sink's public key. Both sign and check against the same fake clock.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from drip_devtools.sendgrid_sink import Sink
from drip_devtools.sendgrid_sink import events as sg
from drip_devtools.sendgrid_sink.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSigner
from sqlalchemy import func, select

from drip.data.models import Consent, Delivery, Enrollment, Event, Subscriber, Suppression
from drip.ops.engagement import LessonEngagement, lesson_engagement
from drip.subscribers import confirmations, subscriptions
from drip.subscribers.validation import SignupInput
from tests.browser import live_server
from tests.conftest import SENDGRID_API_KEY, Stack, wait_until

EventList = list[dict[str, Any]]


@dataclass
class Hook:
    """The app behind a live server, and a sink that posts it signed events."""

    stack: Stack
    sink: Sink
    url: str
    key_path: Path

    def now(self) -> float:
        return self.stack.clock().timestamp()

    def post(self, events: EventList) -> int:
        return self.sink.post_events(self.url, events)

    def post_raw(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        for name, value in headers.items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as err:
            with err:
                return err.code, json.loads(err.read())

    def signed_headers(self, body: bytes, at: float | None = None) -> dict[str, str]:
        signer = WebhookSigner.load_or_create(self.key_path)
        return signer.headers(int(self.now() if at is None else at), body)

    def sent(self, key: int | str) -> sg.Target:
        """Whom the sink's events about a message name: a delivery id or "c<consent id>"."""
        [record] = [
            record
            for record in self.sink.messages
            if record["custom_args"].get("drip_key") == str(key)
        ]
        return sg.Target.of(record)

    def mails_to(self, email: str) -> int:
        return sum(1 for record in self.sink.messages if record["to"] == email)


@pytest.fixture(scope="module")
def served(
    stack_factory: Callable[..., Stack], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, Sink, str, Path]]:
    key_path = tmp_path_factory.mktemp("webhook-key") / "sink-key.pem"
    built: dict[str, Stack] = {}
    sink = Sink(
        api_key=SENDGRID_API_KEY,
        webhook_key_path=str(key_path),
        record=True,
        clock=lambda: built["stack"].clock().timestamp(),
    )
    with sink:
        built["stack"] = stack_factory(
            email_backend="sendgrid",
            sendgrid_api_key=SENDGRID_API_KEY,
            sendgrid_host=sink.url,
            sendgrid_webhook_key=sink.public_key_b64,
        )
        with live_server(built["stack"].app) as base_url:
            yield built["stack"], sink, f"{base_url}/webhooks/sendgrid", key_path


@pytest.fixture()
def hook(served: tuple[Stack, Sink, str, Path], stack: Stack) -> Hook:
    built, sink, url, key_path = served
    assert built is stack
    sink.reset()
    return Hook(stack, sink, url, key_path)


# --- helpers: real subscribers, real lessons, events about them ---------------------------


def enrolled(stack: Stack, email: str, *, confirm: bool = True) -> tuple[int, int]:
    """A subscriber signed up (and confirmed) through the use cases; (subscriber, consent)."""
    with stack.session() as session:
        outcome = subscriptions.subscribe(
            session,
            SignupInput(email=email, first_name="Ann", timezone="UTC"),
            subscriptions.ConsentContext(source="test", text="I agree", text_version="t1"),
            now=stack.clock(),
            secret_key=stack.services.settings.secret_key,
        )
        assert outcome.subscriber_id is not None and outcome.consent_id is not None
        if confirm:
            subscriptions.confirm(
                session,
                outcome.subscriber_id,
                outcome.consent_id,
                course_slug=stack.services.course.slug,
                now=stack.clock(),
            )
    return outcome.subscriber_id, outcome.consent_id


def send_due(stack: Stack) -> None:
    """One scheduler tick, then wait for the real worker to send what it handed out."""
    stack.tick()

    def nothing_open() -> bool:
        with stack.session() as session:
            return not session.scalar(
                select(func.count()).where(Delivery.status.in_(["queued", "sending"]))
            )

    wait_until(nothing_open)


def lessons_sent(stack: Stack, subscriber_id: int) -> list[int]:
    with stack.session() as session:
        return list(
            session.scalars(
                select(Delivery.lesson)
                .where(Delivery.subscriber_id == subscriber_id, Delivery.status == "sent")
                .order_by(Delivery.lesson)
            )
        )


def delivery_id(stack: Stack, subscriber_id: int, lesson: int = 1) -> int:
    with stack.session() as session:
        found = session.scalar(
            select(Delivery.id).where(
                Delivery.subscriber_id == subscriber_id, Delivery.lesson == lesson
            )
        )
    assert found is not None
    return int(found)


def target(email: str, key: str) -> sg.Target:
    """Events about a message the sink never took (a forged or unknown one)."""
    return sg.Target(email=email, sg_message_id=None, custom_args={"drip_key": key})


def subscriber(stack: Stack, subscriber_id: int) -> Subscriber:
    with stack.session() as session:
        found = session.get(Subscriber, subscriber_id)
        assert found is not None
        return found


def delivery(stack: Stack, delivery_id_: int) -> Delivery:
    with stack.session() as session:
        found = session.get(Delivery, delivery_id_)
        assert found is not None
        return found


def count(stack: Stack, model: type) -> int:
    with stack.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def is_suppressed(stack: Stack, email: str) -> bool:
    with stack.session() as session:
        return subscriptions.is_suppressed(session, stack.services.settings.secret_key, email)


def walk_days(stack: Stack, days: int) -> None:
    for _ in range(days):
        stack.clock.advance(days=1)
        send_due(stack)


def one_lesson_out(hook: Hook, email: str) -> tuple[int, int]:
    """A confirmed subscriber whose lesson 1 went out; (subscriber id, its delivery id)."""
    subscriber_id, _ = enrolled(hook.stack, email)
    send_due(hook.stack)
    assert lessons_sent(hook.stack, subscriber_id) == [1]
    return subscriber_id, delivery_id(hook.stack, subscriber_id)


# --- signature and freshness -------------------------------------------------------------


def test_a_signed_batch_is_accepted_and_recorded(hook: Hook) -> None:
    _, lesson_one = one_lesson_out(hook, "ok@example.com")
    to = hook.sent(lesson_one)
    status = hook.post([sg.processed(to, hook.now()), sg.delivered(to, hook.now())])
    assert status == 200
    assert delivery(hook.stack, lesson_one).provider_status == "delivered"
    with hook.stack.session() as session:
        kinds = sorted(session.scalars(select(Event.kind).where(Event.delivery_id == lesson_one)))
        stored = session.scalars(select(Event.data)).all()
    assert kinds == ["delivered", "processed"]
    # The address stays out of the stored event: the row outlives an erasure.
    assert all("email" not in data for data in stored)


def test_a_tampered_body_is_refused(hook: Hook) -> None:
    body = json.dumps([sg.delivered(target("t@example.com", "1"), hook.now())]).encode()
    headers = hook.signed_headers(body)
    tampered = body.replace(b"delivered", b"bounce")
    status, answer = hook.post_raw(tampered, headers)
    assert status == 403
    assert "signature does not match" in answer["error"]["message"]
    assert count(hook.stack, Event) == 0


def test_a_batch_signed_with_another_key_is_refused(hook: Hook) -> None:
    stranger = Sink(clock=hook.now)  # a fresh key pair that is not the configured one
    assert stranger.public_key_b64 != hook.sink.public_key_b64
    events = [sg.spamreport(target("victim@example.com", "1"), hook.now())]
    assert stranger.post_events(hook.url, events) == 403
    assert count(hook.stack, Event) == 0
    assert not is_suppressed(hook.stack, "victim@example.com")


@pytest.mark.parametrize(
    "signature",
    ["garbage!!", "abc", "", "MAYCAQECAQE=", "not base64 at all \u00e9"],
    ids=["not-base64", "bad-padding", "empty", "short-der", "non-ascii"],
)
def test_a_garbage_signature_is_refused_not_a_crash(hook: Hook, signature: str) -> None:
    body = json.dumps([sg.delivered(target("g@example.com", "1"), hook.now())]).encode()
    headers = hook.signed_headers(body)
    headers[SIGNATURE_HEADER] = signature
    status, answer = hook.post_raw(body, headers)
    assert status == 403, answer
    assert count(hook.stack, Event) == 0


@pytest.mark.parametrize("missing", [SIGNATURE_HEADER, TIMESTAMP_HEADER, "both"])
def test_missing_signature_headers_are_refused(hook: Hook, missing: str) -> None:
    body = json.dumps([sg.delivered(target("m@example.com", "1"), hook.now())]).encode()
    headers = hook.signed_headers(body)
    for name in (SIGNATURE_HEADER, TIMESTAMP_HEADER) if missing == "both" else (missing,):
        del headers[name]
    status, answer = hook.post_raw(body, headers)
    assert status == 403
    assert "missing" in answer["error"]["message"]
    assert count(hook.stack, Event) == 0


@pytest.mark.parametrize(
    ("offset_minutes", "accepted"),
    [(-11, False), (-9, True), (4, True), (6, False)],
    ids=["11-min-old", "9-min-old", "4-min-ahead", "6-min-ahead"],
)
def test_stale_or_future_timestamps_are_refused(
    hook: Hook, offset_minutes: int, accepted: bool
) -> None:
    # A second sink with the same key whose clock is off: a replay of an old capture,
    # or a sender far ahead.
    skewed = Sink(
        webhook_key_path=str(hook.key_path),
        clock=lambda: hook.now() + offset_minutes * 60,
    )
    status = skewed.post_events(hook.url, [sg.delivered(target("s@example.com", "1"))])
    assert status == (200 if accepted else 403)
    assert count(hook.stack, Event) == (1 if accepted else 0)


def test_a_timestamp_that_is_not_a_number_is_refused(hook: Hook) -> None:
    body = b"[]"
    headers = hook.signed_headers(body)
    headers[TIMESTAMP_HEADER] = "yesterday"
    status, answer = hook.post_raw(body, headers)
    assert status == 403
    assert "Unix time" in answer["error"]["message"]


# --- body shape ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"event": "delivered"}', b"[{", b'"a string"', b"[" * 5000 + b"]" * 5000],
    ids=["text", "object", "truncated", "string", "deeply-nested"],
)
def test_a_body_that_is_not_a_json_array_gets_400(hook: Hook, body: bytes) -> None:
    status, answer = hook.post_raw(body, hook.signed_headers(body))
    assert status == 400
    assert "JSON array" in answer["error"]["message"]


def test_unknown_event_types_and_odd_elements_are_ignored_without_error(hook: Hook) -> None:
    _, lesson_one = one_lesson_out(hook, "odd@example.com")
    to = hook.sent(lesson_one)
    events: list[Any] = [
        sg.build("delivered", to, hook.now()),
        {**sg.delivered(to, hook.now()), "event": "teleported"},
        42,
        "text",
        {"no": "event"},
        {"event": "bounce", "sg_event_id": "no-address-no-key"},
        {"event": "spamreport"},  # no id either: a digest of the event stands in
        {**sg.delivered(to, hook.now()), "timestamp": "not a time", "drip_key": ["x"]},
    ]
    status = hook.post(events)
    assert status == 200
    with hook.stack.session() as session:
        kinds = sorted(session.scalars(select(Event.kind)))
    assert kinds == ["bounce", "delivered", "delivered", "spamreport", "teleported"]
    assert delivery(hook.stack, lesson_one).provider_status == "delivered"


def test_a_large_batch_of_2000_events_is_accepted_quickly(hook: Hook) -> None:
    _, lesson_one = one_lesson_out(hook, "busy@example.com")
    to = hook.sent(lesson_one)
    events = [sg.opened(to, hook.now(), sg_machine_open=n % 2 == 0) for n in range(1990)]
    events += [sg.clicked(to, hook.now()) for _ in range(10)]
    assert len(json.dumps(events)) > 64 * 1024  # over the limit every other route keeps
    started = time.perf_counter()
    status = hook.post(events)
    elapsed = time.perf_counter() - started
    assert status == 200
    assert count(hook.stack, Event) == 2000
    assert elapsed < 5, f"2,000 events took {elapsed:.2f}s"


def test_only_the_webhook_takes_large_bodies(hook: Hook) -> None:
    client = hook.stack.client
    big = b"[" + b" " * (70 * 1024) + b"]"
    refused = client.post("/api/v1/subscribers", data=big, content_type="application/json")
    assert refused.status_code == 413
    huge = b"[" + b" " * (6 * 1024 * 1024) + b"]"
    too_big = client.post("/webhooks/sendgrid", data=huge, content_type="application/json")
    assert too_big.status_code == 413
    assert too_big.get_json()["error"]["message"] == "the request body is too large"


# --- dedupe --------------------------------------------------------------------------------


def test_a_replayed_batch_is_counted_once(hook: Hook) -> None:
    _, lesson_one = one_lesson_out(hook, "twice@example.com")
    to = hook.sent(lesson_one)
    batch = [sg.delivered(to, hook.now()), sg.opened(to, hook.now()), sg.clicked(to, hook.now())]
    # SendGrid retries non-2xx answers for 24 hours: the same events come again, and
    # a batch may even carry one event twice.
    assert hook.post([*batch, batch[1]]) == 200
    assert hook.post(batch) == 200
    body = json.dumps(batch).encode()
    status, report = hook.post_raw(body, hook.signed_headers(body))
    assert status == 200
    assert (report["received"], report["recorded"], report["duplicates"]) == (3, 0, 3)
    assert count(hook.stack, Event) == 3
    [row] = lesson_engagement_rows(hook.stack)
    assert (row.human_opens, row.clicks) == (1, 1)


# --- suppression -------------------------------------------------------------------------


def test_a_hard_bounce_stops_further_lessons_but_a_blocked_one_does_not(hook: Hook) -> None:
    stack = hook.stack
    hard_id, hard_lesson = one_lesson_out(hook, "gone@example.com")
    blocked_id, blocked_lesson = one_lesson_out(hook, "busy-server@example.com")
    status = hook.post(
        [
            sg.bounce(hook.sent(hard_lesson), hook.now()),
            sg.bounce(
                hook.sent(blocked_lesson),
                hook.now(),
                type="blocked",
                reason="550 5.7.1 blocked by policy",
            ),
        ]
    )
    assert status == 200
    walk_days(stack, 3)

    assert lessons_sent(stack, hard_id) == [1]
    assert hook.mails_to("gone@example.com") == 1
    assert subscriber(stack, hard_id).status == "bounced"
    assert is_suppressed(stack, "gone@example.com")
    assert delivery(stack, hard_lesson).provider_status == "bounce"
    assert "does not exist" in delivery(stack, hard_lesson).error

    assert lessons_sent(stack, blocked_id) == [1, 2, 3, 4]
    assert subscriber(stack, blocked_id).status == "active"
    assert not is_suppressed(stack, "busy-server@example.com")
    assert delivery(stack, blocked_lesson).provider_status == "blocked"
    assert delivery(stack, blocked_lesson).error == "550 5.7.1 blocked by policy"


@pytest.mark.parametrize(
    ("kind", "status", "reason"),
    [
        ("spamreport", "complained", "complaint"),
        ("unsubscribe", "unsubscribed", "unsubscribe"),
        ("group_unsubscribe", "unsubscribed", "unsubscribe"),
        ("dropped", "bounced", "bounce"),
    ],
)
def test_complaints_unsubscribes_and_drops_stop_further_lessons(
    hook: Hook, kind: str, status: str, reason: str
) -> None:
    stack = hook.stack
    email = f"{kind}@example.com"
    subscriber_id, lesson_one = one_lesson_out(hook, email)
    assert hook.post([sg.build(kind, hook.sent(lesson_one), hook.now())]) == 200
    walk_days(stack, 2)

    assert lessons_sent(stack, subscriber_id) == [1]
    assert subscriber(stack, subscriber_id).status == status
    with stack.session() as session:
        enrollment_status = session.scalar(
            select(Enrollment.status).where(Enrollment.subscriber_id == subscriber_id)
        )
        suppression = session.scalar(select(Suppression.reason))
        withdrawn = session.scalar(
            select(Consent.withdrawn_at).where(Consent.subscriber_id == subscriber_id)
        )
    assert enrollment_status == "cancelled"
    assert suppression == reason
    # A spam report or an unsubscribe withdraws consent; a bad address does not.
    assert (withdrawn is not None) == (reason != "bounce")
    # And the address cannot sign up again.
    with stack.session() as session:
        outcome = subscriptions.subscribe(
            session,
            SignupInput(email=email, first_name="Ann", timezone="UTC"),
            subscriptions.ConsentContext(source="test", text="I agree", text_version="t1"),
            now=stack.clock(),
            secret_key=stack.services.settings.secret_key,
        )
    assert not outcome.send_confirmation


def test_a_complaint_outranks_an_earlier_bounce(hook: Hook) -> None:
    subscriber_id, lesson_one = one_lesson_out(hook, "both@example.com")
    to = hook.sent(lesson_one)
    assert hook.post([sg.bounce(to, hook.now())]) == 200
    assert hook.post([sg.spamreport(to, hook.now())]) == 200
    assert hook.post([sg.unsubscribe(to, hook.now())]) == 200
    assert subscriber(hook.stack, subscriber_id).status == "complained"


# --- correlation ---------------------------------------------------------------------------


def test_a_delayed_bounce_without_message_id_is_matched_on_our_custom_args(hook: Hook) -> None:
    subscriber_id, lesson_one = one_lesson_out(hook, "late@example.com")
    hook.stack.clock.advance(hours=30)
    late = sg.bounce(replace(hook.sent(lesson_one), sg_message_id=None), hook.now())
    assert "sg_message_id" not in late
    # The address in the event differs in case only; our key still says whose it is.
    late["email"] = "LATE@example.com"
    assert hook.post([late]) == 200
    assert subscriber(hook.stack, subscriber_id).status == "bounced"
    assert delivery(hook.stack, lesson_one).provider_status == "bounce"
    assert is_suppressed(hook.stack, "late@example.com")


def test_delivery_id_is_accepted_as_the_key_too(hook: Hook) -> None:
    _, lesson_one = one_lesson_out(hook, "alt@example.com")
    to = sg.Target("alt@example.com", None, {"delivery_id": str(lesson_one)})
    assert hook.post([sg.deferred(to, hook.now())]) == 200
    found = delivery(hook.stack, lesson_one)
    assert (found.provider_status, found.error) == ("deferred", "451 4.7.1 Please try again later")


def test_a_bounced_confirmation_is_matched_on_its_consent_key(hook: Hook) -> None:
    subscriber_id, consent_id = enrolled(hook.stack, "typo@exmaple.com", confirm=False)
    assert confirmations.send_confirmation(hook.stack.services, subscriber_id, consent_id)
    to = replace(hook.sent(f"c{consent_id}"), sg_message_id=None)
    assert hook.post([sg.bounce(to, hook.now())]) == 200
    assert subscriber(hook.stack, subscriber_id).status == "bounced"
    assert is_suppressed(hook.stack, "typo@exmaple.com")


def test_a_late_deferral_does_not_hide_a_delivery(hook: Hook) -> None:
    _, lesson_one = one_lesson_out(hook, "order@example.com")
    to = hook.sent(lesson_one)
    assert hook.post([sg.delivered(to, hook.now())]) == 200
    assert hook.post([sg.deferred(to, hook.now() - 60)]) == 200
    assert delivery(hook.stack, lesson_one).provider_status == "delivered"


# --- engagement ----------------------------------------------------------------------------


def lesson_engagement_rows(stack: Stack) -> list[LessonEngagement]:
    with stack.session() as session:
        return lesson_engagement(session, stack.services.course.slug)


def test_machine_opens_are_kept_apart_from_human_opens(hook: Hook) -> None:
    stack = hook.stack
    readers = [one_lesson_out(hook, f"reader{n}@example.com") for n in range(3)]
    events: EventList = []
    for n, (_, lesson_one) in enumerate(readers):
        to = hook.sent(lesson_one)
        events.append(sg.opened(to, hook.now(), sg_machine_open=True))  # every proxy fetches
        if n < 2:
            events += [sg.opened(to, hook.now()), sg.opened(to, hook.now())]  # two people read
        if n == 0:
            events.append(sg.clicked(to, hook.now()))
    assert hook.post(events) == 200

    assert lesson_engagement_rows(stack) == [
        LessonEngagement(lesson=1, sent=3, human_opens=2, machine_opens=3, clicks=1)
    ]
    with stack.session() as session:
        machine = session.scalar(select(func.count()).where(Event.machine.is_(True)))
    assert machine == 3
