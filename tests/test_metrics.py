"""/metrics: the bearer token, and every figure checked against the database and Redis
for the dashboard's known state (tests/test_admin.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import redis
from drip_devtools.sendgrid_sink import Sink
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from drip.data.models import Delivery, Event, Heartbeat, Subscriber
from drip.ops import health
from tests.conftest import Stack
from tests.test_admin import (
    KnownState,
    add_confirmed,
    admin_stack,
    build_known_state,
    drain,
    side_app,
)

TOKEN = "metrics-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture()
def stack(stack_factory: Callable[..., Stack], sink: Sink) -> Stack:
    return admin_stack(stack_factory, sink, metrics_token=TOKEN)


@pytest.fixture()
def known(stack: Stack, sink: Sink) -> KnownState:
    return build_known_state(stack, sink)


def scrape(stack: Stack) -> Samples:
    answer = stack.client.get("/metrics", headers=AUTH)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_need_the_bearer_token_when_one_is_set(stack: Stack) -> None:
    assert stack.client.get("/metrics").status_code == 401
    wrong = stack.client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert "DRIP_METRICS_TOKEN" in wrong.get_data(as_text=True)
    assert stack.client.get("/metrics", headers=AUTH).status_code == 200
    openmetrics = stack.client.get(
        "/metrics", headers=AUTH | {"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    open_app = side_app(stack, metrics_token=None)
    assert open_app.test_client().get("/metrics").status_code == 200


def test_deliveries_by_status_and_lesson_match_the_database(
    stack: Stack, known: KnownState
) -> None:
    samples = scrape(stack)
    with stack.session() as session:
        rows = session.execute(
            select(Delivery.status, Delivery.lesson, func.count()).group_by(
                Delivery.status, Delivery.lesson
            )
        ).all()
    assert {(s, lesson): n for s, lesson, n in rows} == {
        ("sent", 1): 5,
        ("failed", 1): 1,
        ("sent", 2): 3,
        ("failed", 2): 1,
    }
    for status, lesson, count in rows:
        assert value(samples, "drip_deliveries", status=status, lesson=str(lesson)) == count
    assert value(samples, "drip_send_errors", **{"class": "permanent"}) == 2
    assert value(samples, "drip_send_errors", **{"class": "retryable"}) == 0
    assert value(samples, "drip_failures_last_hour") == 1  # eve's lesson 2, ten minutes ago


def test_subscriber_and_event_counts_match_the_database(stack: Stack, known: KnownState) -> None:
    samples = scrape(stack)
    with stack.session() as session:
        statuses = select(Subscriber.status, func.count()).group_by(Subscriber.status)
        by_status = {status: count for status, count in session.execute(statuses)}
        kinds = select(Event.kind, func.count()).group_by(Event.kind)
        by_kind = {kind: count for kind, count in session.execute(kinds)}
    assert (value(samples, "drip_signups"), value(samples, "drip_confirmations")) == (7, 6)
    assert value(samples, "drip_unsubscribes") == by_status["unsubscribed"] == 1
    for status in ("pending", "active", "unsubscribed", "bounced"):
        assert value(samples, "drip_subscribers", status=status) == by_status.get(status, 0)
    assert by_kind == {"open": 4, "delivered": 1}
    for kind, count in by_kind.items():
        assert value(samples, "drip_webhook_events", type=kind) == count


def test_sends_per_second_and_the_tick_come_from_the_rows(stack: Stack, known: KnownState) -> None:
    assert value(scrape(stack), "drip_sends_per_second") == 0  # the last sends: 10 min ago
    add_confirmed(stack, {"now1": "UTC", "now2": "UTC"})
    stack.tick()
    drain(stack)
    samples = scrape(stack)
    with stack.session() as session:
        recent = session.scalar(
            select(func.count()).where(
                Delivery.status == "sent",
                Delivery.sent_at >= stack.clock() - timedelta(minutes=1),
            )
        )
    assert recent == 2
    assert value(samples, "drip_sends_per_second") == pytest.approx(recent / 60)
    assert value(samples, "drip_last_tick_age_seconds") < 60
    assert value(samples, "drip_last_tick_materialized") == 2
    assert value(samples, "drip_sending_circuit_open") == 0
    with stack.session() as session:
        beat = session.get(Heartbeat, "tick")
        assert beat is not None
    assert value(samples, "drip_tick_duration_seconds") == pytest.approx(beat.detail["duration"])
    assert 0 < beat.detail["duration"] < 30


def test_backlog_and_queue_depth_match_the_database_and_redis(
    stack: Stack, known: KnownState
) -> None:
    assert value(scrape(stack), "drip_backlog_size") == 0
    add_confirmed(stack, {"late": "UTC"})  # due now; no tick picks it up
    stack.clock.advance(seconds=90)
    samples = scrape(stack)
    assert value(samples, "drip_backlog_size") == 1
    assert value(samples, "drip_backlog_oldest_age_seconds") == 90
    settings = stack.services.settings
    client = redis.Redis.from_url(settings.redis_url)
    try:
        for priority in health.PRIORITY_STEPS:
            waiting = client.llen(health.priority_list(settings.task_queue, priority))
            part = f"priority-{priority}"
            got = value(samples, "drip_queue_depth", queue=settings.task_queue, part=part)
            assert got == waiting
    finally:
        client.close()
    assert value(samples, "drip_redis_up") == 1
