"""PostgreSQL away while a batch is out, and a worker that waits longer than its lease.

PostgreSQL only: the test makes the scratch database refuse connections
(``ALLOW_CONNECTIONS false`` and every session ended), as when the server goes away.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import redis
from drip_devtools.sendgrid_sink import Sink
from sqlalchemy import select

from drip.data.models import Delivery
from drip.sending import delivery as engine
from drip.sending.dispatch import claim_for_dispatch, materialize_due
from drip.sending.rate import RateLimitedMailer, SendRate
from tests import services as real
from tests.conftest import Stack, sendgrid_stack, wait_until
from tests.test_sendgrid_backend import add_due_subscribers


@pytest.fixture(scope="module")
def backend() -> str:
    return "postgresql"


@pytest.fixture()
def stack(stack_factory: Callable[..., Stack], sink: Sink) -> Stack:
    return sendgrid_stack(stack_factory, sink)


def claim_due(stack: Stack) -> list[int]:
    services = stack.services
    now = datetime.now(UTC)
    materialize_due(services.database, services.course, now=now, day_seconds=86400)
    lease = services.settings.lease_seconds
    batches = claim_for_dispatch(
        services.database, services.course, now=now, lease_seconds=lease, batch_size=1000
    )
    return [delivery_id for batch in batches for delivery_id in batch]


def in_background(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(work()), daemon=True)
    thread.start()
    return thread, results


def refuse_connections(database_name: str, refuse: bool) -> None:
    with psycopg.connect(real.POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{database_name}" ALLOW_CONNECTIONS {not refuse!s}')
        if refuse:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database_name,),
            )


def test_an_answer_the_database_could_not_take_is_written_when_it_returns(
    stack: Stack, sink: Sink
) -> None:
    services = stack.services
    name = services.database.engine.url.database
    assert name
    add_due_subscribers(stack, 5)
    ids = claim_due(stack)
    sink.set_faults({"rules": [{"delay": 1.5}]})  # SendGrid takes a moment, then answers 202
    thread, results = in_background(
        lambda: engine.deliver_batch(
            services.database,
            services.course,
            services.mailer,
            services.links,
            ids,
            lease_seconds=services.settings.lease_seconds,
            journal=services.journal,
        )
    )
    try:
        wait_until(lambda: sink.stats["requests"] == 1, timeout=10)
        refuse_connections(name, True)  # gone while the request is out
        wait_until(lambda: sink.stats["messages"] == 5, timeout=10)
        time.sleep(3)  # the answer is in; the database is not
        assert thread.is_alive(), "the worker waits for the database, it does not drop the answer"
    finally:
        refuse_connections(name, False)
    thread.join(timeout=30)
    (report,) = results
    assert (report.sent, report.requests) == (5, 1)
    with stack.session() as session:
        rows = session.execute(select(Delivery.status, Delivery.possible_duplicate)).all()
    assert Counter(tuple(row) for row in rows) == {("sent", False): 5}
    assert len({m["to"] for m in sink.messages}) == len(sink.messages) == 5


def test_a_batch_waiting_for_the_send_rate_keeps_its_lease(
    stack: Stack, sink: Sink, redis_url: str
) -> None:
    services = stack.services
    add_due_subscribers(stack, 4)
    ids = claim_due(stack)
    lease = 2
    rate = SendRate(
        redis.Redis.from_url(f"{redis_url}/13"), 10.0, key=f"drip:test-rate:{secrets.token_hex(4)}"
    )
    assert rate.reserve(50) == pytest.approx(4.0, abs=0.2)  # others reserved 4 s of sending
    thread, results = in_background(
        lambda: engine.deliver_batch(
            services.database,
            services.course,
            RateLimitedMailer(services.mailer, rate),
            services.links,
            ids,
            lease_seconds=lease,
            journal=services.journal,
        )
    )
    time.sleep(lease + 1.5)  # past the lease it was claimed with, still waiting for tokens
    assert thread.is_alive()
    retaken = claim_for_dispatch(
        services.database,
        services.course,
        now=datetime.now(UTC),
        lease_seconds=lease,
        batch_size=1000,
    )
    assert retaken == [], "a worker that is waiting keeps its batch"
    thread.join(timeout=30)
    assert results[0].sent == 4
    assert len(sink.messages) == 4
