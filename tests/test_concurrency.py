"""Two ticks at once, two workers at once: nothing is recorded or sent twice."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime

from sqlalchemy import func, select

from drip.data.models import Delivery, Subscriber
from drip.sending.delivery import deliver_batch
from drip.sending.dispatch import claim_for_dispatch, materialize_due
from drip.subscribers import subscriptions
from drip.subscribers.subscriptions import ConsentContext
from drip.subscribers.validation import SignupInput
from tests.conftest import Stack, wait_until
from tests.mailbox import messages

CONSENT = ConsentContext(source="test", text="consent", text_version="v1")


def confirmed_subscribers(stack: Stack, count: int) -> list[int]:
    services = stack.services
    ids = []
    with services.database.session() as session:
        for n in range(count):
            signup = SignupInput(f"person{n}@example.com", f"P{n}", "Europe/Berlin")
            outcome = subscriptions.subscribe(
                session, signup, CONSENT, now=stack.clock(), secret_key="k"
            )
            assert outcome.subscriber_id and outcome.consent_id
            subscriptions.confirm(
                session,
                outcome.subscriber_id,
                outcome.consent_id,
                course_slug=services.course.slug,
                now=stack.clock(),
            )
            ids.append(outcome.subscriber_id)
    return ids


def run_together(*targets: object) -> None:
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def runner(target: object) -> None:
        barrier.wait()
        try:
            target()  # type: ignore[operator]
        except BaseException as exc:  # surfaced below, in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=runner, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


def test_two_ticks_at_once_send_nothing_twice(stack: Stack) -> None:
    confirmed_subscribers(stack, 60)
    reports: list[object] = []
    run_together(lambda: reports.append(stack.tick()), lambda: reports.append(stack.tick()))

    def all_sent() -> bool:
        with stack.session() as session:
            return session.scalar(select(func.count()).where(Delivery.status == "sent")) == 60

    wait_until(all_sent)
    with stack.session() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 60
    recipients = Counter(str(m["To"]) for m in messages(stack.outbox))
    assert len(recipients) == 60
    assert set(recipients.values()) == {1}
    dispatched = sum(report.dispatched for report in reports)  # type: ignore[attr-defined]
    assert dispatched == 60, "each delivery is handed out by exactly one of the two ticks"


def test_two_workers_sending_the_same_batch_send_it_once(stack: Stack) -> None:
    confirmed_subscribers(stack, 20)
    services = stack.services
    now = stack.clock()
    materialize_due(services.database, services.course, now=now, day_seconds=86400)
    (batch,) = claim_for_dispatch(
        services.database, services.course, now=now, lease_seconds=300, batch_size=1000
    )

    def send() -> None:
        deliver_batch(
            services.database,
            services.course,
            services.mailer,
            services.links,
            batch,
            lease_seconds=300,
        )

    run_together(send, send)
    assert len(messages(stack.outbox)) == 20


def test_a_crashed_send_is_reclaimed_after_its_lease_and_flagged(stack: Stack) -> None:
    confirmed_subscribers(stack, 3)
    services = stack.services
    now = stack.clock()
    materialize_due(services.database, services.course, now=now, day_seconds=86400)
    claim_for_dispatch(
        services.database, services.course, now=now, lease_seconds=300, batch_size=1000
    )
    # A worker claimed the rows and died before recording anything.
    with stack.session() as session:
        for delivery in session.scalars(select(Delivery)):
            delivery.status = "sending"
            delivery.lease_until = datetime.fromtimestamp(now.timestamp() + 300, now.tzinfo)
    assert stack.tick().dispatched == 0, "a live lease is left alone"
    stack.clock.advance(seconds=301)
    assert stack.tick().dispatched == 3
    wait_until(lambda: len(messages(stack.outbox)) == 3)
    with stack.session() as session:
        flags = session.scalars(select(Delivery.possible_duplicate)).all()
        assert flags == [True, True, True]
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 3


def test_a_time_zone_the_database_does_not_know_cannot_stop_the_tick(stack: Stack) -> None:
    """PostgreSQL computes due times itself; a zone its tz database lacks falls back to Python."""
    ids = confirmed_subscribers(stack, 3)
    with stack.session() as session:
        odd = session.get(Subscriber, ids[1])
        assert odd is not None
        odd.timezone = "Mars/Olympus_Mons"  # as if Python's tz list knew a zone PostgreSQL does not
    report = stack.tick()
    assert report.materialized == 3
    wait_until(lambda: len(messages(stack.outbox)) == 3)
    with stack.session() as session:
        from drip.data.models import Enrollment

        due = session.scalars(select(Enrollment.next_due_at).order_by(Enrollment.id)).all()
    assert all(moment is not None for moment in due)
