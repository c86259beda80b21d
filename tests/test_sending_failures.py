"""What happens to deliveries when SendGrid refuses, fails or says nothing, through
``drip.sending.delivery.deliver_batch`` and through the tick and the real worker, against the sink.

The fake clock starts at the real time here: the worker records retry and circuit
times on the real clock, and the tick reads the fake one.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from drip_devtools.sendgrid_sink import Sink
from sqlalchemy import select

from drip.data.models import Delivery, Subscriber
from drip.sending import circuit
from drip.sending import delivery as engine
from drip.sending.dispatch import claim_for_dispatch, materialize_due
from tests.conftest import SENDGRID_API_KEY, Stack, handed_out_settled, sendgrid_stack, wait_until
from tests.test_sendgrid_backend import add_due_subscribers

BATCH_SIZE = 10
TIMEOUT = 1.0  # the SendGrid client's timeout in this module's stack
# SendGrid answered with an error: it did not take the batch.
SERVER_ERRORS = [
    pytest.param({"status": 500}, id="500"),
    pytest.param({"status": 502}, id="502"),
    pytest.param({"status": 503}, id="503"),
    pytest.param({"status": 504}, id="504"),
]
# No answer at all: the batch may have gone out.
UNKNOWN_OUTCOMES = [
    pytest.param({"delay": TIMEOUT + 1}, id="timeout"),
    pytest.param({"drop": True}, id="dropped"),
]


@pytest.fixture()
def stack(stack_factory: Callable[..., Stack], sink: Sink) -> Stack:
    current = sendgrid_stack(stack_factory, sink, batch_size=BATCH_SIZE, sendgrid_timeout=TIMEOUT)
    current.clock.set(datetime.now(UTC))
    return current


def statuses(stack: Stack) -> Counter[str]:
    with stack.session() as session:
        return Counter(session.scalars(select(Delivery.status)))


def deliveries(stack: Stack) -> list[Any]:
    with stack.session() as session:
        return list(
            session.execute(
                select(Delivery, Subscriber.email)
                .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
                .order_by(Delivery.id)
            ).all()
        )


def claim_due(stack: Stack) -> list[int]:
    """What a tick would hand to one send task: every due delivery, as one batch."""
    services = stack.services
    now = stack.clock()
    materialize_due(services.database, services.course, now=now, day_seconds=86400)
    batches = claim_for_dispatch(
        services.database, services.course, now=now, lease_seconds=300, batch_size=1000
    )
    return [delivery_id for batch in batches for delivery_id in batch]


def send_now(stack: Stack, ids: list[int], course: Any = None) -> engine.BatchReport:
    services = stack.services
    return engine.deliver_batch(
        services.database,
        course or services.course,
        services.mailer,
        services.links,
        ids,
        lease_seconds=300,
        now=datetime.now(UTC),
    )


def tick_and_settle(stack: Stack, **advance: float) -> int:
    """Move the clock, run a tick, wait for the worker; how many deliveries it handed out."""
    if advance:
        stack.clock.advance(**advance)
    report = stack.tick()
    wait_until(lambda: handed_out_settled(stack), timeout=20)
    return int(report.dispatched)


def requests(sink: Sink) -> int:
    return int(sink.stats["requests"])


# --- 400: one bad address -----------------------------------------------------------


def test_one_bad_address_among_ten_fails_alone_and_nine_are_sent(stack: Stack, sink: Sink) -> None:
    emails = add_due_subscribers(stack, 10)
    sink.set_faults(bad_recipients=[emails[3]])

    report = send_now(stack, claim_due(stack))

    assert (report.sent, report.failed) == (9, 1)
    assert requests(sink) == report.requests <= 2 * math.ceil(math.log2(10)) + 1
    assert sorted(m["to"] for m in sink.messages) == sorted(set(emails) - {emails[3]})
    for delivery, email in deliveries(stack):
        if email == emails[3]:
            assert delivery.status == "failed"
            assert "Does not contain a valid address" in delivery.error
        else:
            assert delivery.status == "sent" and delivery.message_id


def test_the_worker_isolates_a_bad_address_and_sends_the_rest(stack: Stack, sink: Sink) -> None:
    emails = add_due_subscribers(stack, 10)
    sink.set_faults(bad_recipients=[emails[7]])

    assert tick_and_settle(stack) == 10

    assert statuses(stack) == {"sent": 9, "failed": 1}
    assert requests(sink) <= 2 * math.ceil(math.log2(10)) + 1
    assert emails[7] not in {m["to"] for m in sink.messages}


# --- 413: a message too large for anyone ----------------------------------------------


def test_a_lesson_over_30_mb_fails_every_recipient_in_one_request(stack: Stack, sink: Sink) -> None:
    # The worker's course cannot be swapped for a test, so this case runs through
    # deliver_batch only; the worker calls the same function.
    add_due_subscribers(stack, 3)
    course = stack.services.course
    huge = dataclasses.replace(course.lessons[0], body_markdown=("word " * 200 + "\n\n") * 16000)
    big_course = dataclasses.replace(course, lessons=(huge, *course.lessons[1:]))
    try:
        report = send_now(stack, claim_due(stack), course=big_course)
    finally:
        engine.rendered_lesson.cache_clear()

    assert (report.failed, report.requests) == (3, 1), "splitting cannot shrink the content"
    assert sink.stats["statuses"] == {"413": 1}
    for delivery, _ in deliveries(stack):
        assert delivery.status == "failed" and "30 MB" in delivery.error


# --- 401 / 403: the circuit -------------------------------------------------------------

REFUSALS = [
    pytest.param({"rules": [{"status": 401}]}, "401", id="401"),
    pytest.param({"forbidden_keys": [SENDGRID_API_KEY]}, "403", id="403"),
]


@pytest.mark.parametrize(("plan", "status"), REFUSALS)
def test_refused_credentials_keep_the_batch_queued_and_open_the_circuit(
    stack: Stack, sink: Sink, plan: dict[str, Any], status: str
) -> None:
    add_due_subscribers(stack, 4)
    sink.set_faults(plan)
    ids = claim_due(stack)

    report = send_now(stack, ids)

    assert (report.released, report.failed, report.requests) == (4, 0, 1)
    assert statuses(stack) == {"queued": 4}
    assert all(d.attempts == 0 and d.enqueued_at is None for d, _ in deliveries(stack))
    state = circuit.status(stack.services.database)
    assert state.open and status in state.reason and state.since is not None

    sink.clear_faults()  # the key is fixed
    report = send_now(stack, ids)

    assert report.sent == 4
    assert not circuit.status(stack.services.database).open


@pytest.mark.parametrize(("plan", "status"), REFUSALS)
def test_while_the_circuit_is_open_only_a_probe_goes_until_the_key_works(
    stack: Stack, sink: Sink, plan: dict[str, Any], status: str
) -> None:
    add_due_subscribers(stack, 25)
    sink.set_faults(plan)
    assert tick_and_settle(stack) == 25  # three batches, each refused
    assert statuses(stack) == {"queued": 25}, "nothing failed, nothing lost"
    assert circuit.status(stack.services.database).open
    refused = requests(sink)

    # Open: the backlog stays put and SendGrid hears nothing.
    assert tick_and_settle(stack, minutes=1) == 0
    assert requests(sink) == refused
    # Half-open after the probe interval: one batch tries, is refused, back to waiting.
    assert tick_and_settle(stack, seconds=circuit.PROBE_SECONDS) == BATCH_SIZE
    assert requests(sink) == refused + 1
    assert statuses(stack) == {"queued": 25}
    assert tick_and_settle(stack, minutes=1) == 0

    sink.clear_faults()  # the key is fixed: the next probe closes the circuit
    assert tick_and_settle(stack, seconds=circuit.PROBE_SECONDS) == BATCH_SIZE
    assert not circuit.status(stack.services.database).open
    assert tick_and_settle(stack, minutes=1) == 25 - BATCH_SIZE
    assert statuses(stack) == {"sent": 25}
    assert len({m["to"] for m in sink.messages}) == len(sink.messages) == 25


# --- 429: wait for the reset ---------------------------------------------------------------


def test_a_rate_limited_batch_waits_for_the_reset(stack: Stack, sink: Sink) -> None:
    add_due_subscribers(stack, 3)
    sink.set_faults(rules=[{"status": 429, "next": 1, "reset_in": 2}])

    report = send_now(stack, claim_due(stack))

    assert report.retrying == 3
    reset = datetime.fromtimestamp(int(datetime.now(UTC).timestamp()) + 2, UTC)
    for delivery, _ in deliveries(stack):
        assert delivery.status == "retrying" and delivery.attempts == 0, "waiting is no failure"
        assert reset - timedelta(seconds=1) <= delivery.next_attempt_at
        assert delivery.next_attempt_at <= reset + timedelta(
            seconds=engine.RATE_LIMIT_JITTER_SECONDS
        )
    assert tick_and_settle(stack) == 0, "not before the reset"
    stack.clock.set(datetime.now(UTC) + timedelta(seconds=2 + engine.RATE_LIMIT_JITTER_SECONDS))
    assert tick_and_settle(stack) == 3
    assert statuses(stack) == {"sent": 3}


def test_the_worker_comes_back_after_a_rate_limit_reset(stack: Stack, sink: Sink) -> None:
    add_due_subscribers(stack, 12)
    sink.set_faults(rules=[{"status": 429, "next": 1, "reset_in": 2}])

    assert tick_and_settle(stack) == 12
    assert statuses(stack) == {"retrying": BATCH_SIZE, "sent": 2}
    assert tick_and_settle(stack) == 0
    assert tick_and_settle(stack, seconds=2 + engine.RATE_LIMIT_JITTER_SECONDS) == BATCH_SIZE
    assert statuses(stack) == {"sent": 12}
    assert engine.possible_duplicates(stack.services.database) == 0


# --- 503 and a refused connection: SendGrid did not take it, retry --------------------------


def test_a_503_is_retried_with_backoff_and_delivered_once(stack: Stack, sink: Sink) -> None:
    add_due_subscribers(stack, 3)
    sink.set_faults(rules=[{"status": 503, "next": 1}])

    report = send_now(stack, claim_due(stack))
    assert report.retrying == 3
    for delivery, _ in deliveries(stack):
        assert delivery.status == "retrying" and delivery.attempts == 1
        assert delivery.next_attempt_at <= datetime.now(UTC) + timedelta(seconds=30)
        assert not delivery.possible_duplicate

    assert tick_and_settle(stack, hours=1) == 3
    assert statuses(stack) == {"sent": 3}
    assert len(sink.messages) == 3


def test_lessons_backing_off_go_at_the_next_tick_once_sendgrid_takes_a_batch_again(
    stack: Stack, sink: Sink
) -> None:
    add_due_subscribers(stack, 3)
    sink.set_faults(rules=[{"status": 500, "next": 1}])
    database = stack.services.database

    def send(ids: list[int]) -> engine.BatchReport:
        services = stack.services
        return engine.deliver_batch(
            database, services.course, services.mailer, services.links, ids,
            lease_seconds=300, now=stack.clock(),
        )  # fmt: skip

    assert send(claim_due(stack)).retrying == 3
    with stack.session() as session:  # a long backoff, as after the fifth failure in a row
        for delivery in session.scalars(select(Delivery)):
            delivery.next_attempt_at = stack.clock() + timedelta(hours=1)
    add_due_subscribers(stack, 1, prefix="later")
    assert send(claim_due(stack)).sent == 1  # SendGrid is back

    assert tick_and_settle(stack) == 3  # no hour to wait
    assert statuses(stack) == {"sent": 4}


def test_the_worker_retries_when_sendgrid_is_unreachable(stack: Stack, sink: Sink) -> None:
    add_due_subscribers(stack, 3)
    sink.stop()
    try:
        assert tick_and_settle(stack) == 3
        assert statuses(stack) == {"retrying": 3}
        (delivery, _), *_ = deliveries(stack)
        assert "unreachable" in delivery.error
    finally:
        sink.start()
    assert tick_and_settle(stack, hours=1) == 3
    assert statuses(stack) == {"sent": 3}
    assert engine.possible_duplicates(stack.services.database) == 0


def test_the_worker_retries_a_503(stack: Stack, sink: Sink) -> None:
    add_due_subscribers(stack, 3)
    sink.set_faults(rules=[{"status": 503, "next": 2}])
    assert tick_and_settle(stack) == 3
    assert tick_and_settle(stack, hours=1) == 3
    assert statuses(stack) == {"retrying": 3}
    assert tick_and_settle(stack, hours=1) == 3
    assert statuses(stack) == {"sent": 3}
    assert [d.attempts for d, _ in deliveries(stack)] == [3, 3, 3]


# --- 5xx answers: not taken, retried without a flag -----------------------------------------


@pytest.mark.parametrize("fault", SERVER_ERRORS)
def test_a_server_error_answer_is_retried_without_a_flag(
    stack: Stack, sink: Sink, fault: dict[str, Any]
) -> None:
    add_due_subscribers(stack, 3)
    sink.set_faults(rules=[{**fault, "next": 1}])

    report = send_now(stack, claim_due(stack))

    assert (report.retrying, report.possible_duplicates) == (3, 0)
    assert statuses(stack) == {"retrying": 3}
    assert tick_and_settle(stack, hours=1) == 3
    assert statuses(stack) == {"sent": 3}
    assert engine.possible_duplicates(stack.services.database) == 0
    assert len(sink.messages) == 3  # the refused request delivered nothing


# --- timeouts, dropped connections: outcome unknown -------------------------------------------


@pytest.mark.parametrize("fault", UNKNOWN_OUTCOMES)
def test_an_unknown_outcome_is_retried_and_flagged_a_possible_duplicate(
    stack: Stack, sink: Sink, fault: dict[str, Any]
) -> None:
    add_due_subscribers(stack, 3)
    sink.set_faults(rules=[{**fault, "next": 1}])

    report = send_now(stack, claim_due(stack))

    assert (report.retrying, report.possible_duplicates) == (3, 3)
    assert engine.possible_duplicates(stack.services.database) == 3
    assert statuses(stack) == {"retrying": 3}
    assert tick_and_settle(stack, hours=1) == 3
    assert statuses(stack) == {"sent": 3}
    assert all(d.possible_duplicate for d, _ in deliveries(stack))


@pytest.mark.parametrize("fault", UNKNOWN_OUTCOMES)
def test_the_worker_retries_an_unknown_outcome_and_counts_it(
    stack: Stack, sink: Sink, fault: dict[str, Any]
) -> None:
    add_due_subscribers(stack, 12)
    sink.set_faults(rules=[{**fault, "next": 1}])

    assert tick_and_settle(stack) == 12
    assert statuses(stack) == {"retrying": BATCH_SIZE, "sent": 2}
    assert tick_and_settle(stack, hours=1) == BATCH_SIZE
    assert statuses(stack) == {"sent": 12}
    assert engine.possible_duplicates(stack.services.database) == BATCH_SIZE
    if "delay" in fault:
        # SendGrid took the slow request after all: the flag was right.
        wait_until(lambda: len(sink.messages) == 12 + BATCH_SIZE, timeout=5)


def test_two_ticks_at_once_claim_one_probe(stack: Stack) -> None:
    database = stack.services.database
    now = datetime.now(UTC)
    circuit.open_circuit(database, "SendGrid refused the API key (401)", now=now)
    later = now + timedelta(seconds=circuit.PROBE_SECONDS)
    assert not circuit.claim_probe(database, now=later - timedelta(seconds=1))
    assert [circuit.claim_probe(database, now=later) for _ in range(2)] == [True, False]
    state = circuit.status(database)
    assert (state.open, state.state, state.since) == (True, circuit.HALF_OPEN, now)


def test_a_confirmation_refused_for_credentials_opens_the_circuit_and_is_swept_later(
    stack: Stack, sink: Sink
) -> None:
    from datetime import timedelta

    from drip.subscribers import housekeeping

    sink.set_faults(rules=[{"status": 401}])
    answer = stack.client.post("/api/v1/subscribers", json={"email": "later@example.com"})
    assert answer.status_code == 202
    wait_until(lambda: circuit.status(stack.services.database).open)
    assert [m for m in sink.messages if m["to"] == "later@example.com"] == []
    sink.clear_faults()
    stack.clock.set(stack.clock() + timedelta(minutes=11))
    with stack.app.app_context():
        assert housekeeping.resend_unsent_confirmations(stack.services) == 1
    wait_until(lambda: [m for m in sink.messages if m["to"] == "later@example.com"])
