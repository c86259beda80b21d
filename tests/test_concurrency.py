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


def crashed_mid_send(stack: Stack, count: int) -> list[int]:
    """Deliveries a worker claimed and then died on, recording nothing in the database."""
    confirmed_subscribers(stack, count)
    services = stack.services
    now = stack.clock()
    lease = services.settings.lease_seconds
    materialize_due(services.database, services.course, now=now, day_seconds=86400)
    claim_for_dispatch(
        services.database, services.course, now=now, lease_seconds=lease, batch_size=1000
    )
    with stack.session() as session:
        for delivery in session.scalars(select(Delivery)):
            delivery.status = "sending"
            delivery.attempts = 1
            delivery.lease_until = datetime.fromtimestamp(now.timestamp() + lease, now.tzinfo)
        ids = sorted(session.scalars(select(Delivery.id)).all())
    assert stack.tick().dispatched == 0, "a live lease is left alone"
    return ids


def reclaim(stack: Stack) -> None:
    stack.clock.advance(seconds=stack.services.settings.lease_seconds + 1)
    assert stack.tick().dispatched == 3


def test_a_batch_posted_before_its_worker_died_is_resent_flagged(stack: Stack) -> None:
    ids = crashed_mid_send(stack, 3)
    journal = stack.services.journal
    assert journal is not None
    journal.posting(ids)  # the request may have reached the provider; no answer was noted
    reclaim(stack)
    wait_until(lambda: len(messages(stack.outbox)) == 3)
    wait_until(lambda: _statuses(stack) == ["sent"] * 3)
    with stack.session() as session:
        flags = session.scalars(select(Delivery.possible_duplicate)).all()
        assert flags == [True, True, True]
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 3


def test_a_batch_claimed_but_never_posted_is_resent_unflagged(stack: Stack) -> None:
    crashed_mid_send(stack, 3)  # died between the claim and the request: the journal is empty
    reclaim(stack)
    wait_until(lambda: _statuses(stack) == ["sent"] * 3)
    assert len(messages(stack.outbox)) == 3
    with stack.session() as session:
        assert session.scalars(select(Delivery.possible_duplicate)).all() == [False] * 3


def test_a_batch_the_provider_accepted_before_its_worker_died_is_recorded_not_resent(
    stack: Stack,
) -> None:
    ids = crashed_mid_send(stack, 3)
    journal = stack.services.journal
    assert journal is not None
    journal.accepted({delivery_id: f"msg-{delivery_id}" for delivery_id in ids})
    reclaim(stack)
    wait_until(lambda: _statuses(stack) == ["sent"] * 3)
    assert messages(stack.outbox) == [], "the provider had them already"
    with stack.session() as session:
        rows = session.execute(
            select(Delivery.message_id, Delivery.possible_duplicate).order_by(Delivery.id)
        ).all()
    assert [tuple(row) for row in rows] == [(f"msg-{i}", False) for i in ids]
    assert journal.read(ids) == {}, "once recorded, the journal forgets them"


def _statuses(stack: Stack) -> list[str]:
    with stack.session() as session:
        return list(session.scalars(select(Delivery.status).order_by(Delivery.id)))


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
