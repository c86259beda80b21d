"""Fixtures: a real database (SQLite and PostgreSQL), a real Redis, a real Celery worker.

Time is a parameter: the app gets a FakeClock that tests move forward, so ten
course days pass in milliseconds.
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery.contrib.testing.worker import start_worker
from drip_devtools.sendgrid_sink import Sink
from flask import Flask
from sqlalchemy import func, select, text

from drip.app import create_app
from drip.config import Settings
from drip.data.db import Database
from drip.data.migrate import upgrade
from drip.data.models import Base, Delivery
from drip.services import Services
from tests import services as real
from tests.mailbox import csrf_token

ROOT = Path(__file__).resolve().parent.parent
COURSE_DIR = ROOT / "course"
# One Redis database per backend, so a SQLite run and a PostgreSQL run never share a queue.
REDIS_DB = {"sqlite": 11, "postgresql": 12}
# The key the SendGrid stand-in accepts; stacks mailing through it use the same.
SENDGRID_API_KEY = "SG.drip-tests.key"


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def set(self, moment: datetime) -> None:
        self.current = moment

    def advance(self, **delta: float) -> datetime:
        self.current += timedelta(**delta)
        return self.current


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy; fail with a clear message otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not real.redis_available():
        real.missing(f"Redis at {real.REDIS_URL}")
    return real.REDIS_URL


@contextmanager
def scratch_postgres_database(prefix: str) -> Iterator[str]:
    """The URL of a new PostgreSQL database of its own, dropped afterwards."""
    if not real.postgres_available():
        real.missing(f"PostgreSQL at {real.POSTGRES_URL}")
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(real.POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{real.POSTGRES_URL.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(real.POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def clear_signup_limits(stack: Stack) -> None:
    """Forget every signup and confirmation count, so a test starts with full windows."""
    import redis

    client = redis.Redis.from_url(stack.services.settings.redis_url)
    for key in client.scan_iter("drip-limits*"):
        client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    with scratch_postgres_database("drip_test") as url:
        yield url


def seed_due_readers(
    url: str, count: int, *, course_slug: str, now: datetime, timezone: str = "UTC"
) -> None:
    """PostgreSQL: `count` active subscribers, each enrolled with lesson 1, 2 or 3 due a
    minute before `now`."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            """INSERT INTO subscribers (email, first_name, timezone, status, created_at)
               SELECT 'reader' || n || '@example.com', 'R', %s, 'active', %s
               FROM generate_series(1, %s) AS n""",
            (timezone, now, count),
        )
        db.execute(
            """INSERT INTO enrollments (subscriber_id, course_slug, status, next_lesson,
                                        next_due_at, started_at)
               SELECT id, %s, 'active', 1 + id %% 3, %s, %s FROM subscribers""",
            (course_slug, now - timedelta(minutes=1), now),
        )


def database_url_for(backend: str, request: pytest.FixtureRequest, tmp_dir: Path) -> str:
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres_database_url"))
    return f"sqlite:///{tmp_dir}/drip.sqlite3"


def clear_tables(database: Database, attempts: int = 5) -> None:
    """Empty every table between tests.

    On PostgreSQL a late task of the previous test (or module) may still hold
    row locks; TRUNCATE then loses a deadlock. That is the test harness racing
    itself, not a fault of the code under test, so it waits and tries again.
    """
    from sqlalchemy.exc import OperationalError

    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    for attempt in range(attempts):
        try:
            with database.engine.begin() as connection:
                if database.is_sqlite:
                    for table in tables:
                        connection.execute(text(f"DELETE FROM {table}"))
                else:
                    connection.execute(text("SET LOCAL lock_timeout = '10s'"))
                    truncate = f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"
                    connection.execute(text(truncate))
            return
        except OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


def make_settings(
    backend: str, database_url: str, redis_url: str, var_dir: Path, **over: Any
) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": f"{redis_url}/{REDIS_DB[backend]}",
        "base_url": "https://drip.test",
        "secret_key": "test-secret-key-0123456789abcdef",
        "email_backend": "outbox",
        "outbox_dir": var_dir / "outbox",
        "course_dir": COURSE_DIR,
        "var_dir": var_dir,
        "task_queue": f"drip-test-{secrets.token_hex(4)}",
        # Tests sign up many people from one address; tests/test_limits.py sets real limits.
        "signup_rate_limit": "10000 per minute",
        "confirmations_per_address_per_day": 1000,
    }
    values.update(over)
    return Settings(**values)


@dataclass
class Stack:
    """One running drip: the Flask app, its services, the fake clock and a real worker."""

    app: Flask
    services: Services
    clock: FakeClock
    backend: str

    @property
    def client(self) -> Any:
        return self.app.test_client()

    @property
    def outbox(self) -> Path:
        return self.services.settings.outbox_dir

    def tick(self) -> Any:
        from drip.tasks import run_tick_now

        with self.app.app_context():
            return run_tick_now(self.clock())

    def session(self) -> Any:
        return self.services.database.session()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def stack_factory(
    backend: str,
    redis_url: str,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Stack]]:
    """Builds the app once per module and backend, with a real in-process Celery worker."""

    var_dir = tmp_path_factory.mktemp(f"var-{backend}")
    database_url = database_url_for(backend, request, var_dir)
    built: dict[str, Any] = {}

    def factory(**overrides: Any) -> Stack:
        if "stack" in built:
            return built["stack"]
        # No flushdb: queues are per run, and another run may share this Redis.
        settings = make_settings(backend, database_url, redis_url, var_dir, **overrides)
        clock = FakeClock(datetime(2026, 3, 5, 15, 0, tzinfo=UTC))
        app = create_app(settings, clock=clock)
        services: Services = app.extensions["drip"]
        upgrade(services.database)
        worker = start_worker(
            app.extensions["celery"],
            pool="solo",
            perform_ping_check=False,
            shutdown_timeout=30,
            loglevel="WARNING",
        )
        worker.__enter__()
        built["worker"] = worker
        built["stack"] = Stack(app, services, clock, backend)
        return built["stack"]

    yield factory
    if "worker" in built:
        built["worker"].__exit__(None, None, None)
        built["stack"].services.database.dispose()


@pytest.fixture()
def stack(stack_factory: Callable[..., Stack]) -> Iterator[Stack]:
    current = stack_factory()
    clear_tables(current.services.database)
    for path in current.outbox.glob("*.eml") if current.outbox.exists() else []:
        path.unlink()
    current.clock.set(datetime(2026, 3, 5, 15, 0, tzinfo=UTC))
    yield current
    settle(current)


def settle(stack: Stack, timeout: float = 30.0) -> None:
    """Wait until the worker has nothing queued or running.

    A test may end while a task it caused (the tick a confirmation kicks) is
    still in flight; clearing the tables under it would race it.
    """
    import redis
    from celery.worker import state

    client = redis.Redis.from_url(stack.services.settings.redis_url)
    queue = stack.services.settings.task_queue
    try:
        wait_until(
            lambda: (
                client.llen(queue) == 0
                and not state.active_requests
                and not state.reserved_requests
            ),
            timeout=timeout,
        )
    finally:
        client.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    """The SendGrid stand-in, recording; on a fixed port so a test can stop and restart it."""
    with Sink(port=free_port(), api_key=SENDGRID_API_KEY, record=True) as running:
        yield running


def sendgrid_stack(stack_factory: Callable[..., Stack], sink: Sink, **overrides: object) -> Stack:
    """The module's stack mailing through the SendGrid backend to ``sink``, emptied for a test."""
    current = stack_factory(
        email_backend="sendgrid",
        sendgrid_api_key=SENDGRID_API_KEY,
        sendgrid_host=sink.url,
        **overrides,
    )
    clear_tables(current.services.database)
    current.clock.set(datetime(2026, 3, 5, 15, 0, tzinfo=UTC))
    sink.clear_faults()
    sink.reset()
    sink.recording = True
    return current


def settled(stack: Stack) -> bool:
    """No delivery waits or is being sent: the worker has recorded every outcome."""
    with stack.session() as session:
        busy = session.scalar(
            select(func.count()).where(Delivery.status.in_(["queued", "sending"]))
        )
    return busy == 0


def handed_out_settled(stack: Stack) -> bool:
    """Nothing handed to a send task is still waiting for it or being sent.

    Unlike ``settled``, lessons no tick has handed out (an open circuit holds them) may wait.
    """
    with stack.session() as session:
        busy = session.scalar(
            select(func.count()).where(
                (Delivery.status == "sending")
                | ((Delivery.status == "queued") & Delivery.enqueued_at.is_not(None))
            )
        )
    return busy == 0


def drain(stack: Stack, timeout: float = 20.0) -> None:
    """Wait until the worker has sent everything the last tick handed out."""
    wait_until(lambda: settled(stack), timeout=timeout)


def sign_up(
    stack: Stack, email: str, timezone: str = "America/New_York", name: str = "Ann"
) -> None:
    """Sign up through the form, as a person would; every address gets the same answer."""
    client = stack.client
    token = csrf_token(client.get("/").get_data(as_text=True))
    answer = client.post(
        "/subscribe",
        data={"email": email, "first_name": name, "timezone": timezone, "csrf_token": token},
    )
    assert answer.status_code == 303, answer.get_data(as_text=True)
    assert answer.headers["Location"].endswith("/thanks")


def walk_hours(
    stack: Stack, hours: int, lessons_so_far: Callable[[], int]
) -> list[tuple[int, datetime]]:
    """Move the clock an hour at a time, ticking; note (lessons received, when) at each arrival."""
    arrivals = []
    for _ in range(hours):
        now = stack.clock.advance(hours=1)
        if stack.tick().dispatched:
            drain(stack)
            arrivals.append((lessons_so_far(), now))
    return arrivals
