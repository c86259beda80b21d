"""Each health signal driven into each state with real parts: a Celery worker we stop and
start, the SendGrid backend against the sink (a refused key, refused recipients), the
scheduler tick and the wall clock.

This module builds its own stack so that it can stop the worker. The fake clock starts at
the real time: the worker stamps sends and the circuit with the wall clock, the tick and
the schedule use the fake one.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from celery import Celery
from celery.contrib.testing.worker import start_worker
from drip_devtools.sendgrid_sink import Sink
from sqlalchemy import func, select

from drip.app import create_app
from drip.data.db import Database
from drip.data.migrate import upgrade
from drip.data.models import Delivery
from drip.ops import health
from drip.ops.health import Level
from drip.sending import circuit
from drip.services import Services
from drip.subscribers import subscriptions
from drip.subscribers.validation import SignupInput
from tests.conftest import (
    SENDGRID_API_KEY,
    FakeClock,
    Stack,
    clear_tables,
    database_url_for,
    make_settings,
)
from tests.conftest import wait_until as wait_for

# A Redis database of this module's own: other stacks flush theirs when they start.
OWN_REDIS_DB = {"sqlite": 13, "postgresql": 14}
THRESHOLDS: dict[str, Any] = {
    "health_backlog_age": (600.0, 3600.0),  # 10 min, 1 h
    "health_tick_age": (1.0, 2.0),  # wall-clock seconds: the stale-tick test waits for them
    "health_queue_depth": (2.0, 4.0),
    "health_failures": (1.0, 3.0),
    "health_inspect_timeout": 0.3,
}


class WorkerSwitch:
    """A real in-process Celery worker that a test can stop and start again."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery
        self._running: Any = None

    def start(self) -> None:
        if self._running is None:
            self._running = start_worker(
                self.celery, pool="solo", perform_ping_check=False, loglevel="WARNING"
            )
            self._running.__enter__()

    def stop(self) -> None:
        if self._running is not None:
            self._running.__exit__(None, None, None)
            self._running = None


@dataclass
class Ops:
    stack: Stack
    worker: WorkerSwitch
    sink: Sink

    @property
    def services(self) -> Services:
        return self.stack.services

    def check(self) -> health.Report:
        services = self.services
        celery = self.stack.app.extensions["celery"]
        return health.check(services.database, services.settings, celery, services.now())

    def levels(self) -> dict[str, Level]:
        return {signal.key: signal.level for signal in self.check().signals}


def confirmed_subscribers(stack: Stack, count: int, prefix: str = "reader") -> list[str]:
    """`count` people who signed up and confirmed just now, through the real use cases."""
    services, now = stack.services, stack.clock()
    emails = [f"{prefix}-{secrets.token_hex(3)}@example.com" for _ in range(count)]
    consent = subscriptions.ConsentContext(source="test", text="consent", text_version="v1")
    with stack.session() as session:
        for email in emails:
            outcome = subscriptions.subscribe(
                session,
                SignupInput(email, "Reader", "UTC"),
                consent,
                now=now,
                secret_key=services.settings.secret_key,
            )
            assert outcome.subscriber_id is not None and outcome.consent_id is not None
            subscriptions.confirm(
                session,
                outcome.subscriber_id,
                outcome.consent_id,
                course_slug=services.course.slug,
                now=now,
            )
    return emails


def open_deliveries(stack: Stack) -> int:
    with stack.session() as session:
        count = session.scalar(
            select(func.count()).where(Delivery.status.in_(["queued", "sending", "retrying"]))
        )
    return int(count or 0)


def purge_queue(settings: Any) -> None:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.delete(
            *(health.priority_list(settings.task_queue, p) for p in health.PRIORITY_STEPS)
        )
    finally:
        client.close()


@pytest.fixture(scope="module")
def ops_stack(
    backend: str,
    redis_url: str,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sink: Sink,
) -> Iterator[Ops]:
    var_dir = tmp_path_factory.mktemp(f"health-{backend}")
    settings = make_settings(
        backend,
        database_url_for(backend, request, var_dir),
        redis_url,
        var_dir,
        email_backend="sendgrid",
        sendgrid_api_key=SENDGRID_API_KEY,
        sendgrid_host=sink.url,
        sendgrid_timeout=5.0,
        batch_size=1,  # one send task per delivery: the queue depth counts deliveries
        **THRESHOLDS,
    ).with_overrides(redis_url=f"{redis_url}/{OWN_REDIS_DB[backend]}")
    clock = FakeClock(datetime.now(UTC))
    app = create_app(settings, clock=clock)
    services: Services = app.extensions["drip"]
    upgrade(services.database)
    worker = WorkerSwitch(app.extensions["celery"])
    yield Ops(Stack(app, services, clock, backend), worker, sink)
    worker.stop()
    services.database.dispose()


@pytest.fixture()
def ops(ops_stack: Ops) -> Ops:
    ops_stack.worker.stop()
    purge_queue(ops_stack.services.settings)
    clear_tables(ops_stack.services.database)
    ops_stack.stack.clock.set(datetime.now(UTC))
    ops_stack.sink.clear_faults()
    ops_stack.worker.start()
    return ops_stack


def test_a_running_service_is_green_everywhere(ops: Ops) -> None:
    confirmed_subscribers(ops.stack, 2)
    ops.stack.tick()
    wait_for(lambda: open_deliveries(ops.stack) == 0)
    ops.stack.tick()

    report = ops.check()

    assert {s.key: s.level for s in report.signals} == dict.fromkeys(
        ["backlog", "queue", "workers", "tick", "circuit", "failures"], Level.GREEN
    )
    assert report.level == Level.GREEN
    assert report.signal("workers").value == "1 online"
    assert report.signal("circuit").value.startswith("closed")


def test_a_stopped_worker_is_red_and_the_backlog_and_queue_grow(ops: Ops) -> None:
    ops.worker.stop()
    confirmed_subscribers(ops.stack, 3)
    before_tick = ops.check()
    assert before_tick.signal("workers").level == Level.RED
    # Due but not yet picked up by a tick: the backlog counts the enrollments.
    assert before_tick.signal("backlog").details[1][1] == "3"

    ops.stack.tick()  # three send tasks wait in Redis; nobody takes them
    levels = ops.levels()
    assert (levels["workers"], levels["queue"], levels["backlog"]) == (
        Level.RED,
        Level.AMBER,
        Level.GREEN,
    )
    assert ops.check().signal("queue").value == "3 waiting, 0 unacked"

    ops.stack.clock.advance(minutes=15)
    assert ops.levels()["backlog"] == Level.AMBER
    confirmed_subscribers(ops.stack, 2)
    ops.stack.tick()
    ops.stack.clock.advance(hours=1)
    report = ops.check()
    assert report.signal("backlog").level == Level.RED
    assert report.signal("backlog").value == "5 due, oldest 75 min"
    assert report.signal("queue").level == Level.RED
    assert report.level == Level.RED

    ops.worker.start()
    wait_for(lambda: open_deliveries(ops.stack) == 0, timeout=20)
    ops.stack.tick()

    # A restarted worker answers the inspect ping within a moment, not at once:
    # on a loaded machine the first 0.3 s ping can go unanswered.
    def recovered() -> bool:
        report = ops.check()
        levels = tuple(report.signal(name).level for name in ("workers", "queue", "backlog"))
        print({name: report.signal(name).value for name in ("workers", "queue", "backlog")})
        return levels == (Level.GREEN,) * 3

    wait_for(recovered, timeout=10)


def test_a_worker_too_busy_to_answer_the_ping_is_still_online(ops: Ops) -> None:
    ops.sink.set_faults({"rules": [{"delay": 4.0}]})  # one slow SendGrid answer
    before = ops.sink.stats["requests"]
    confirmed_subscribers(ops.stack, 1)
    ops.stack.tick()
    # The solo worker is inside the send: it cannot answer a ping, but its heartbeat goes on.
    wait_for(lambda: ops.sink.stats["requests"] == before + 1)
    started = time.monotonic()
    celery = ops.stack.app.extensions["celery"]
    queue = ops.services.settings.task_queue
    assert health.workers_online(celery, queue, 0.3) == [], "the ping alone misses it"
    signal = ops.check().signal("workers")
    assert time.monotonic() - started < 3.5, "checked while the send was still out"
    assert (signal.level, signal.value) == (Level.GREEN, "1 online")
    wait_for(lambda: open_deliveries(ops.stack) == 0)


def test_a_stale_tick_turns_amber_then_red(ops: Ops) -> None:
    never = ops.check().signal("tick")
    assert (never.level, never.value) == (Level.RED, "never ran")

    ops.stack.tick()
    ticked = time.monotonic()
    assert ops.check().signal("tick").level == Level.GREEN
    time.sleep(max(0.0, ticked + 1.2 - time.monotonic()))
    assert ops.check().signal("tick").level == Level.AMBER
    time.sleep(max(0.0, ticked + 2.2 - time.monotonic()))
    assert ops.check().signal("tick").level == Level.RED


def test_a_refused_sendgrid_key_opens_the_circuit_until_the_key_works(ops: Ops) -> None:
    ops.sink.set_faults({"forbidden_keys": [SENDGRID_API_KEY]})
    confirmed_subscribers(ops.stack, 1)
    ops.stack.tick()
    wait_for(lambda: circuit.status(ops.services.database).open)

    signal = ops.check().signal("circuit")
    assert signal.level == Level.RED
    assert signal.value.startswith("open: SendGrid refused the API key (403")

    ops.sink.clear_faults()  # the key works again: the next probe closes the circuit
    ops.stack.clock.advance(seconds=circuit.PROBE_SECONDS + 1)
    ops.stack.tick()
    wait_for(lambda: not circuit.status(ops.services.database).open)
    assert ops.check().signal("circuit").level == Level.GREEN


def test_refused_recipients_count_as_failures_in_the_last_hour(ops: Ops) -> None:
    first = confirmed_subscribers(ops.stack, 2, prefix="first")
    ops.sink.set_faults(bad_recipients=first[:1])
    ops.stack.tick()
    wait_for(lambda: open_deliveries(ops.stack) == 0)
    signal = ops.check().signal("failures")
    assert (signal.level, signal.value) == (Level.AMBER, "1 failed send")

    more = confirmed_subscribers(ops.stack, 2, prefix="more")
    ops.sink.set_faults(bad_recipients=more)
    ops.stack.tick()
    wait_for(lambda: open_deliveries(ops.stack) == 0)
    signal = ops.check().signal("failures")
    assert (signal.level, signal.value) == (Level.RED, "3 failed sends")


def test_deliveries_waiting_for_a_retry_are_not_counted_as_failures(ops: Ops) -> None:
    ops.sink.set_faults({"rules": [{"status": 503}]})  # SendGrid unavailable: retry later
    confirmed_subscribers(ops.stack, 2)
    ops.stack.tick()

    def waiting_for_retry() -> bool:
        with ops.stack.session() as session:
            count = session.scalar(select(func.count()).where(Delivery.status == "retrying"))
        return count == 2

    wait_for(waiting_for_retry)
    signal = ops.check().signal("failures")
    assert (signal.level, signal.value) == (Level.GREEN, "0 failed sends; 2 waiting for a retry")


def test_an_unreachable_redis_turns_queue_and_workers_red(ops: Ops) -> None:
    services = ops.services
    nowhere = services.settings.with_overrides(redis_url="redis://127.0.0.1:9/0")
    celery = ops.stack.app.extensions["celery"]
    started = time.monotonic()
    report = health.check(services.database, nowhere, celery, services.now())
    assert time.monotonic() - started < 5, "no waiting for Celery's reconnects"
    for key in ("queue", "workers"):
        assert report.signal(key).level == Level.RED
        assert report.signal(key).value.startswith("Redis unreachable")


def test_an_unreachable_database_turns_its_signals_red(ops: Ops) -> None:
    services = ops.services
    nowhere = Database("postgresql://drip@127.0.0.1:9/none", connect_args={"connect_timeout": 2})
    celery = ops.stack.app.extensions["celery"]
    report = health.check(nowhere, services.settings, celery, services.now())
    for key in ("backlog", "tick", "failures", "circuit"):
        assert report.signal(key).level == Level.RED, key
        assert report.signal(key).value.startswith("the database unreachable"), key
    assert "DRIP_DATABASE_URL" in report.signal("backlog").hint
    assert report.signal("workers").level == Level.GREEN  # the rest still reports
    nowhere.dispose()
