"""Prometheus metrics, computed from the database and Redis when scraped.

Web processes and workers share no memory, so nothing is counted inside a
process: every figure is read at scrape time from the rows and the broker,
and whichever process answers a scrape gives the same numbers. Totals kept
as rows can shrink (unconfirmed signups are purged), so they are gauges;
conversions are never deleted (erasure only unlinks them), so theirs are counters.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import redis
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from drip.data.models import Delivery, DeliveryStatus, Subscriber, SubscriberStatus
from drip.ops import health, revenue, stats
from drip.services import Services

SENDS_WINDOW = timedelta(minutes=1)


class DripCollector(Collector):
    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        # The tick heartbeat is stamped with the wall clock (dispatch.py), the rest with
        # the services clock.
        now, wall_now = self.services.now(), datetime.now(UTC)
        with self.services.database.session() as session:
            yield from _deliveries(session)
            yield from _sending(session, now, self.services.settings.lease_seconds)
            yield from _backlog(session, now)
            yield from _subscribers(session)
            yield from _events(session)
            yield from _tick(session, wall_now)
            yield from _conversions(session)
        yield from _circuit(self.services)
        yield from _queue(self.services)


def render(services: Services, accept: str = "") -> tuple[bytes, str]:
    """(body, content type) in the format the scraper asks for: Prometheus text 0.0.4 by
    default, OpenMetrics when accepted. From a registry of its own, never the global one."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DripCollector(services))
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _deliveries(session: Session) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "drip_deliveries", "Delivery rows by status and lesson.", labels=["status", "lesson"]
    )
    for (status, lesson), count in sorted(stats.deliveries_by_status_and_lesson(session).items()):
        family.add_metric([status, str(lesson)], count)
    yield family


def _sending(session: Session, now: datetime, lease_seconds: int) -> Iterator[Metric]:
    sent = stats.sent_since(session, now - SENDS_WINDOW)
    yield _gauge(
        "drip_sends_per_second",
        "Lessons sent per second over the last minute.",
        sent / SENDS_WINDOW.total_seconds(),
    )
    yield _gauge(
        "drip_failures_last_hour",
        "Deliveries whose last send attempt, in the last hour, failed for good.",
        health.failed_recently(session, now, lease_seconds),
    )
    yield _gauge(
        "drip_retrying",
        "Deliveries waiting for another send attempt (429, 5xx, timeout).",
        health.retrying_now(session),
    )
    family = GaugeMetricFamily(
        "drip_send_errors",
        "Deliveries whose last send attempt failed, by the provider's error class "
        "(permanent, retryable, outcome_unknown, sending_disabled).",
        labels=["class"],
    )
    for error_class, count in _error_classes(session).items():
        family.add_metric([error_class], count)
    yield family


def _error_classes(session: Session) -> dict[str, int]:
    # drip.mail.base's classes, as sending.py leaves them in the rows: a permanent refusal
    # fails the row; a retryable one (429, 503, refused connection) sets it retrying; an
    # unknown outcome (timeout, 500) also flags it a possible duplicate; refused
    # credentials (401, 403) put it back in the queue with the error kept.
    retrying = Delivery.status == DeliveryStatus.RETRYING.value
    classes = {
        "permanent": Delivery.status == DeliveryStatus.FAILED.value,
        "retryable": and_(retrying, ~Delivery.possible_duplicate),
        "outcome_unknown": and_(retrying, Delivery.possible_duplicate),
        "sending_disabled": and_(
            Delivery.status == DeliveryStatus.QUEUED.value, Delivery.error != ""
        ),
    }
    sums = [func.sum(case((condition, 1), else_=0)) for condition in classes.values()]
    row = session.execute(select(*sums)).one()
    return {name: int(count or 0) for name, count in zip(classes, row, strict=True)}


def _backlog(session: Session, now: datetime) -> Iterator[Metric]:
    backlog = health.read_backlog(session, now)
    yield _gauge(
        "drip_backlog_size",
        "Lessons due and not sent: open deliveries plus due enrollments not yet picked up.",
        backlog.total,
    )
    yield _gauge(
        "drip_backlog_oldest_age_seconds",
        "Age of the oldest due-but-unsent lesson; grows when workers or the scheduler stop.",
        backlog.oldest_age(now),
    )


def _subscribers(session: Session) -> Iterator[Metric]:
    counts = stats.subscriber_counts(session)
    confirmed = session.scalar(select(func.count()).where(Subscriber.confirmed_at.is_not(None)))
    yield _gauge("drip_signups", "Subscribers on record (every signup not yet purged).",
                 sum(counts.values()))  # fmt: skip
    yield _gauge("drip_confirmations", "Subscribers who confirmed their address.", confirmed or 0)
    yield _gauge(
        "drip_unsubscribes",
        "Subscribers who unsubscribed.",
        counts.get(SubscriberStatus.UNSUBSCRIBED.value, 0),
    )
    family = GaugeMetricFamily("drip_subscribers", "Subscribers by status.", labels=["status"])
    for status in SubscriberStatus:
        family.add_metric([status.value], counts.get(status.value, 0))
    yield family


def _events(session: Session) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        "drip_webhook_events", "Provider webhook events recorded, by type.", labels=["type"]
    )
    for kind, count in sorted(stats.events_by_kind(session).items()):
        family.add_metric([kind], count)
    yield family


def _conversions(session: Session) -> Iterator[Metric]:
    family = CounterMetricFamily(
        "drip_conversions",
        "Sales and their reversals reported by affiliate networks, by the lesson whose link "
        'sold (lesson="" when from no click of ours) and by type (SALE, RFND, CGBK, ...).',
        labels=["lesson", "type"],
    )
    counts = revenue.conversions_by_lesson_and_kind(session)
    for (lesson, kind), count in sorted(
        counts.items(), key=lambda item: (item[0][0] or 0, item[0][1])
    ):
        family.add_metric(["" if lesson is None else str(lesson), kind], count)
    yield family
    # A counter may not go down, so refunds are a second counter: net = revenue - reversed.
    earned, taken = revenue.money_by_currency(session)
    family = CounterMetricFamily(
        "drip_revenue",
        "Money earned by sales, in currency units, before refunds and chargebacks.",
        labels=["currency"],
    )
    for currency, cents in sorted(earned.items()):
        family.add_metric([currency], cents / 100)
    yield family
    family = CounterMetricFamily(
        "drip_revenue_reversed",
        "Money taken back by refunds and chargebacks, in currency units.",
        labels=["currency"],
    )
    for currency, cents in sorted(taken.items()):
        family.add_metric([currency], cents / 100)
    yield family


def _tick(session: Session, wall_now: datetime) -> Iterator[Metric]:
    tick = health.read_last_tick(session)
    if tick is None:
        return
    yield _gauge(
        "drip_last_tick_timestamp_seconds", "When the scheduler last ran.", tick.at.timestamp()
    )
    yield _gauge("drip_last_tick_age_seconds", "Seconds since the scheduler last ran.",
                 tick.age(wall_now))  # fmt: skip
    for key in ("materialized", "dispatched"):
        if isinstance(tick.detail.get(key), int):
            yield _gauge(f"drip_last_tick_{key}", f"Deliveries {key} by the last tick.",
                         tick.detail[key])  # fmt: skip
    if tick.duration is not None:
        yield _gauge("drip_tick_duration_seconds", "How long the last tick took.", tick.duration)


def _circuit(services: Services) -> Iterator[Metric]:
    state = health.read_circuit(services.database)
    yield _gauge("drip_sending_circuit_open", "1 while sending is stopped.", int(state.open))


def _queue(services: Services) -> Iterator[Metric]:
    settings = services.settings
    client = health.redis_client(settings)
    try:
        depth = health.read_queue_depth(client, settings.task_queue)
    except redis.RedisError:
        yield _gauge("drip_redis_up", "1 when Redis answered this scrape.", 0)
        return
    finally:
        client.close()
    yield _gauge("drip_redis_up", "1 when Redis answered this scrape.", 1)
    family = GaugeMetricFamily(
        "drip_queue_depth",
        "Celery messages in Redis: waiting per priority list, and fetched but unacknowledged.",
        labels=["queue", "part"],
    )
    for priority, count in depth.by_priority.items():
        family.add_metric([depth.queue, f"priority-{priority}"], count)
    family.add_metric([depth.queue, "unacked"], depth.unacked)
    yield family
