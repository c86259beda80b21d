"""Health signals for the dashboard, `drip status` and /metrics.

Each signal is read by a plain function that returns values, then judged
against the thresholds in the settings (DRIP_HEALTH_*) as green, amber or red.

Two clocks are in play. Everything drip schedules and records runs on the
services clock (tests move it by hand), but dispatch.py stamps the tick
heartbeat with the wall clock, so the tick's age is measured against that.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from drip.config import Settings
from drip.data.db import Database
from drip.data.models import (
    OPEN_DELIVERY,
    Delivery,
    DeliveryStatus,
    Enrollment,
    EnrollmentStatus,
    Heartbeat,
)
from drip.ops.heartbeat import beating_workers
from drip.sending import circuit

# kombu's Redis transport keeps priority p of queue q in the list q + "\x06\x16" + p,
# and every fetched-but-unacknowledged message in the hash "unacked" (kombu's Redis transport).
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
UNACKED_KEY = "unacked"
UNACKED_SCAN_LIMIT = 10_000  # prefetch keeps this small; the cap bounds a pathological case
FAILURE_WINDOW = timedelta(hours=1)


class Level(enum.IntEnum):
    """Also the exit code of `drip status`: cron and CI alert on non-zero."""

    GREEN = 0
    AMBER = 1
    RED = 2

    @property
    def label(self) -> str:
        return self.name.lower()


def judge(value: float, thresholds: tuple[float, float]) -> Level:
    amber, red = thresholds
    if value >= red:
        return Level.RED
    if value >= amber:
        return Level.AMBER
    return Level.GREEN


@dataclass(frozen=True)
class Signal:
    key: str
    label: str
    level: Level
    value: str  # what an operator reads first: "12 due, oldest 4 min"
    rule: str = ""  # the thresholds it was judged by
    hint: str = ""  # what to do when it is not green
    details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Report:
    measured_at: datetime
    signals: tuple[Signal, ...]

    @property
    def level(self) -> Level:
        return max((signal.level for signal in self.signals), default=Level.GREEN)

    def signal(self, key: str) -> Signal:
        return next(signal for signal in self.signals if signal.key == key)


# --- Reading the values -------------------------------------------------------------------


@dataclass(frozen=True)
class Backlog:
    """Lessons that are due and not sent: delivery rows still open, plus due enrollments
    the tick has not turned into deliveries yet (which is what a dead scheduler leaves)."""

    deliveries: int
    enrollments: int
    oldest_due_at: datetime | None

    @property
    def total(self) -> int:
        return self.deliveries + self.enrollments

    def oldest_age(self, now: datetime) -> float:
        if self.oldest_due_at is None:
            return 0.0
        return max(0.0, (now - self.oldest_due_at).total_seconds())


def read_backlog(session: Session, now: datetime) -> Backlog:
    deliveries, oldest_delivery = session.execute(
        select(func.count(), func.min(Delivery.due_at)).where(
            Delivery.status.in_(OPEN_DELIVERY), Delivery.due_at <= now
        )
    ).one()
    enrollments, oldest_enrollment = session.execute(
        select(func.count(), func.min(Enrollment.next_due_at)).where(
            Enrollment.status == EnrollmentStatus.ACTIVE.value, Enrollment.next_due_at <= now
        )
    ).one()
    oldest = min((t for t in (oldest_delivery, oldest_enrollment) if t is not None), default=None)
    return Backlog(int(deliveries), int(enrollments), oldest)


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    by_priority: dict[int, int]  # messages waiting in each priority list
    unacked: int  # fetched by a worker, not yet acknowledged (acks_late: running or prefetched)

    @property
    def waiting(self) -> int:
        return sum(self.by_priority.values())

    @property
    def total(self) -> int:
        return self.waiting + self.unacked


def priority_list(queue: str, priority: int) -> str:
    return queue if priority == 0 else f"{queue}{PRIORITY_SEPARATOR}{priority}"


def read_queue_depth(client: redis.Redis, queue: str) -> QueueDepth:
    pipe = client.pipeline(transaction=False)
    for priority in PRIORITY_STEPS:
        pipe.llen(priority_list(queue, priority))
    lengths = pipe.execute()
    return QueueDepth(
        queue, dict(zip(PRIORITY_STEPS, lengths, strict=True)), _unacked(client, queue)
    )


def _unacked(client: redis.Redis, queue: str) -> int:
    # The hash is shared by every queue on this Redis database: count only ours. Each value
    # is kombu's JSON [message, exchange, routing_key]; the routing key is the queue name.
    count = 0
    for seen, (_tag, raw) in enumerate(client.hscan_iter(UNACKED_KEY, count=500)):
        if seen >= UNACKED_SCAN_LIMIT:
            break
        try:
            routing_key = json.loads(raw)[2]
        except (ValueError, IndexError, TypeError):
            continue
        count += routing_key == queue
    return count


def redis_client(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2, socket_timeout=2)


def workers_online(
    celery: Celery, queue: str, timeout: float, client: redis.Redis | None = None
) -> list[str]:
    """Workers that consume our queue and answer within `timeout` or keep their heartbeat.

    An inspect call is a ping that also says which queues each worker reads;
    a worker of another drip (or another test run) on the same Redis does not
    send our lessons, so it does not count. A worker too busy to answer the
    ping still refreshes its heartbeat key (drip/ops/heartbeat.py).
    """
    beating = set(beating_workers(client, queue)) if client is not None else set()
    replies = celery.control.inspect(timeout=timeout).active_queues() or {}
    answering = {
        name
        for name, queues in replies.items()
        if any(isinstance(q, dict) and q.get("name") == queue for q in queues or [])
    }
    return sorted(beating | answering)


@dataclass(frozen=True)
class Tick:
    at: datetime
    detail: dict[str, Any]

    def age(self, wall_now: datetime) -> float:
        return max(0.0, (wall_now - self.at).total_seconds())

    @property
    def duration(self) -> float | None:
        value = self.detail.get("duration")
        return float(value) if isinstance(value, int | float) else None


def read_last_tick(session: Session) -> Tick | None:
    beat = session.get(Heartbeat, "tick")
    return None if beat is None else Tick(beat.at, dict(beat.detail or {}))


def failed_recently(session: Session, now: datetime, lease_seconds: int) -> int:
    """Deliveries whose last send attempt, within the last hour, failed for good.

    A delivery has no attempted-at column; each attempt sets lease_until to
    claim time + lease, so the attempt's time is read from it. Rows waiting
    for a retry (a 429, a 5xx, a timeout) are not failed sends: they are
    counted apart (``retrying_now``), or a provider's storm would read as
    thousands of failures that all go out minutes later. Deliveries held back
    by refused credentials are not failures of their own: the circuit signal
    shows them.
    """
    since = now - FAILURE_WINDOW + timedelta(seconds=lease_seconds)
    failed = Delivery.status == DeliveryStatus.FAILED.value
    count = session.scalar(select(func.count()).where(failed, Delivery.lease_until >= since))
    return int(count or 0)


def retrying_now(session: Session) -> int:
    """Deliveries waiting for another attempt."""
    retrying = Delivery.status == DeliveryStatus.RETRYING.value
    return int(session.scalar(select(func.count()).where(retrying)) or 0)


def read_circuit(database: Database) -> circuit.CircuitStatus:
    return circuit.status(database)


# --- Judging them ------------------------------------------------------------------------


def human_seconds(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


def _rule(thresholds: tuple[float, float], unit: str = "") -> str:
    amber, red = thresholds
    if unit == "s":
        return f"amber from {human_seconds(amber)}, red from {human_seconds(red)}"
    return f"amber from {amber:g}, red from {red:g}"


def backlog_signal(backlog: Backlog, now: datetime, thresholds: tuple[float, float]) -> Signal:
    age = backlog.oldest_age(now)
    value = f"{backlog.total} due, oldest {human_seconds(age)}" if backlog.total else "nothing due"
    return Signal(
        "backlog",
        "Due-but-unsent backlog",
        judge(age, thresholds),
        value,
        _rule(thresholds, "s") + " (age of the oldest)",
        "lessons are late: check the workers, the scheduler tick and the sending circuit",
        (
            ("delivery rows waiting to send", str(backlog.deliveries)),
            ("due lessons the tick has not picked up", str(backlog.enrollments)),
        ),
    )


def queue_signal(depth: QueueDepth, thresholds: tuple[float, float]) -> Signal:
    details = [
        (f"{depth.queue} (priority {p})" if p else depth.queue, str(n))
        for p, n in depth.by_priority.items()
    ]
    details.append(("unacked (fetched by a worker, not done)", str(depth.unacked)))
    return Signal(
        "queue",
        "Redis queue depth",
        judge(depth.total, thresholds),
        f"{depth.waiting} waiting, {depth.unacked} unacked",
        _rule(thresholds),
        "tasks pile up: start more workers or look for a stuck one",
        tuple(details),
    )


def workers_signal(workers: Sequence[str], queue: str) -> Signal:
    return Signal(
        "workers",
        "Workers online",
        Level.GREEN if workers else Level.RED,
        f"{len(workers)} online" if workers else f"none answers on queue {queue}",
        "red when none answers",
        "start a worker: celery -A drip.worker:celery worker",
        tuple((name, "answered") for name in workers),
    )


def tick_signal(tick: Tick | None, wall_now: datetime, thresholds: tuple[float, float]) -> Signal:
    hint = "start the scheduler: celery -A drip.worker:celery beat (exactly one)"
    rule = _rule(thresholds, "s")
    if tick is None:
        return Signal("tick", "Last scheduler tick", Level.RED, "never ran", rule, hint)
    age = tick.age(wall_now)
    details = tuple((key, str(value)) for key, value in sorted(tick.detail.items()))
    return Signal(
        "tick",
        "Last scheduler tick",
        judge(age, thresholds),
        f"{human_seconds(age)} ago",
        rule,
        hint,
        (("at", tick.at.strftime("%Y-%m-%d %H:%M:%S UTC")), *details),
    )


def circuit_signal(state: circuit.CircuitStatus) -> Signal:
    if not state.open:
        return Signal("circuit", "Sending circuit", Level.GREEN, "closed: sending", "red when open")
    since = state.since.strftime("%Y-%m-%d %H:%M UTC") if state.since else "unknown"
    return Signal(
        "circuit",
        "Sending circuit",
        Level.RED,
        f"{state.state}: {state.reason or 'sending stopped'}",
        "red when open",
        "sending is stopped: fix the cause (e.g. the SendGrid API key); lessons wait meanwhile "
        "and go once a probe batch is accepted",
        (("reason", state.reason), ("open since", since)),
    )


def failures_signal(count: int, thresholds: tuple[float, float], retrying: int = 0) -> Signal:
    value = f"{count} failed send{'s' if count != 1 else ''}"
    if retrying:
        value += f"; {retrying} waiting for a retry"
    return Signal(
        "failures",
        "Failures in the last hour",
        judge(count, thresholds),
        value,
        _rule(thresholds) + " (failed for good; retries are not counted)",
        "see Deliveries for the reasons; retry or skip them there",
        (("failed for good", str(count)), ("waiting for a retry", str(retrying))),
    )


UNREACHABLE_HINTS = {
    "Redis": "check that Redis is running and DRIP_REDIS_URL points at it",
    "the database": "check that the database is running, DRIP_DATABASE_URL points at it "
    "and `drip db upgrade` has run",
}


def unreachable(key: str, label: str, what: str, exc: Exception) -> Signal:
    value = f"{what} unreachable ({type(exc).__name__})"
    return Signal(key, label, Level.RED, value, hint=UNREACHABLE_HINTS[what])


# --- Everything at once ------------------------------------------------------------------


def check(database: Database, settings: Settings, celery: Celery, now: datetime) -> Report:
    """Every health signal, in the order the dashboard shows them.

    `now` is the services clock; the wall clock is read here for the tick heartbeat.
    """
    wall_now = datetime.now(UTC)
    backlog, tick, failures = _database_signals(database, settings, now, wall_now)
    queue, workers = _broker_signals(settings, celery)
    return Report(wall_now, (backlog, queue, workers, tick, _circuit(database), failures))


def _database_signals(
    database: Database, settings: Settings, now: datetime, wall_now: datetime
) -> list[Signal]:
    try:
        with database.session() as session:
            backlog = read_backlog(session, now)
            tick = read_last_tick(session)
            failures = failed_recently(session, now, settings.lease_seconds)
            retrying = retrying_now(session)
    except SQLAlchemyError as exc:
        return [
            unreachable("backlog", "Due-but-unsent backlog", "the database", exc),
            unreachable("tick", "Last scheduler tick", "the database", exc),
            unreachable("failures", "Failures in the last hour", "the database", exc),
        ]
    return [
        backlog_signal(backlog, now, settings.health_backlog_age),
        tick_signal(tick, wall_now, settings.health_tick_age),
        failures_signal(failures, settings.health_failures, retrying),
    ]


def _broker_signals(settings: Settings, celery: Celery) -> list[Signal]:
    client = redis_client(settings)
    try:
        depth = read_queue_depth(client, settings.task_queue)
        workers = workers_online(
            celery, settings.task_queue, settings.health_inspect_timeout, client
        )
    except redis.RedisError as exc:
        # No broker, no ping: asking the workers would only wait for Celery's reconnects.
        return [
            unreachable("queue", "Redis queue depth", "Redis", exc),
            unreachable("workers", "Workers online", "Redis", exc),
        ]
    finally:
        client.close()
    return [
        queue_signal(depth, settings.health_queue_depth),
        workers_signal(workers, settings.task_queue),
    ]


def _circuit(database: Database) -> Signal:
    try:
        return circuit_signal(read_circuit(database))
    except SQLAlchemyError as exc:
        return unreachable("circuit", "Sending circuit", "the database", exc)
