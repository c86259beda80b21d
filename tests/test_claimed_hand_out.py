"""Batches the tick hands out already claimed: read, not claimed again, by the first run of
their hand-out; left to the lease when that run dies or the message never arrives."""

from __future__ import annotations

import time
from datetime import datetime

import psycopg
import pytest
from sqlalchemy import select

from drip.data.models import Delivery
from drip.sending import delivery, dispatch
from drip.sending.delivery import BatchReport, deliver_batch
from tests.conftest import Stack, wait_until
from tests.mailbox import messages
from tests.test_concurrency import confirmed_subscribers

HandOut = tuple[list[int], datetime]


def tick_holding(stack: Stack) -> list[HandOut]:
    """A real tick whose hand-outs are kept here instead of reaching the worker."""
    services = stack.services
    settings = services.settings
    held: list[HandOut] = []

    def enqueue(ids: list[int]) -> None:
        raise AssertionError(f"nothing to hand out again, got {ids}")

    dispatch.run_tick(
        services.database,
        services.course,
        now=stack.clock(),
        day_seconds=settings.day_seconds,
        lease_seconds=settings.lease_seconds,
        batch_size=settings.batch_size,
        enqueue=enqueue,
        enqueue_claimed=lambda ids, at: held.append((ids, at)),
    )
    return held


def send(stack: Stack, hand_out: HandOut, name: str) -> BatchReport:
    """One run of a hand-out, as the send task makes it (``name``: its task id)."""
    services = stack.services
    ids, at = hand_out
    return deliver_batch(
        services.database,
        services.course,
        services.mailer,
        services.links,
        ids,
        lease_seconds=services.settings.lease_seconds,
        clock=stack.clock,
        journal=services.journal,
        claimed_at=at,
        hand_out=name,
    )


def rows(stack: Stack) -> list[tuple[str, int, datetime | None, bool]]:
    with stack.session() as session:
        found = session.execute(
            select(
                Delivery.status,
                Delivery.attempts,
                Delivery.enqueued_at,
                Delivery.possible_duplicate,
            ).order_by(Delivery.id)
        ).all()
    return [tuple(row) for row in found]  # type: ignore[misc]


def hand_out_lease(stack: Stack) -> int:
    return dispatch.HAND_OUT_LEASES * stack.services.settings.lease_seconds


def test_the_first_run_of_a_hand_out_sends_it_without_claiming_it_again(stack: Stack) -> None:
    confirmed_subscribers(stack, 3)
    [hand_out] = tick_holding(stack)
    at = hand_out[1]
    assert rows(stack) == [("sending", 1, at, False)] * 3, "inserted claimed, first attempt"
    report = send(stack, hand_out, name="first")
    assert (report.claimed, report.sent) == (3, 3)
    # Still the tick's mark: nothing wrote the rows between the tick and the outcome.
    assert rows(stack) == [("sent", 1, at, False)] * 3
    again = send(stack, hand_out, name="first")  # the same message delivered once more
    assert again.claimed == 0
    assert len(messages(stack.outbox)) == 3


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_batch_the_tick_claimed_is_written_once_more_per_email(stack: Stack) -> None:
    """The server's own count: one update per delivery (its outcome), no claiming one."""
    url = stack.services.settings.database_url

    def updated() -> int:
        with psycopg.connect(url, autocommit=True) as db:
            row = db.execute(
                "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'deliveries'"
            ).fetchone()
        return int(row[0]) if row else 0

    def settled_count() -> int | None:
        first = updated()
        time.sleep(0.5)
        return first if updated() == first else None

    confirmed_subscribers(stack, 4)
    stack.services.database.dispose()  # a session's counts reach the server when it ends
    before = wait_until(settled_count, timeout=15)
    [hand_out] = tick_holding(stack)
    assert send(stack, hand_out, name="counted").sent == 4
    stack.services.database.dispose()
    wait_until(lambda: updated() >= before + 4, timeout=15)
    assert updated() == before + 4


def test_a_run_that_died_mid_send_leaves_the_batch_to_the_lease_and_its_retake_is_flagged(
    stack: Stack,
) -> None:
    confirmed_subscribers(stack, 3)
    [hand_out] = tick_holding(stack)
    ids, _ = hand_out
    journal = stack.services.journal
    assert journal is not None
    # What a first run leaves when killed right after posting: it took the hand-out and
    # noted the request, and had written nothing to the database.
    assert journal.take("died")
    journal.posting(ids)
    assert send(stack, hand_out, name="died").claimed == 0, "a redelivered message takes nothing"
    stack.clock.advance(seconds=hand_out_lease(stack) - 1)
    assert stack.tick().dispatched == 0, "a live lease is left alone"
    stack.clock.advance(seconds=2)
    assert stack.tick().dispatched == 3
    wait_until(lambda: [row[0] for row in rows(stack)] == ["sent"] * 3)
    assert [(row[1], row[3]) for row in rows(stack)] == [(2, True)] * 3
    assert len(messages(stack.outbox)) == 3


def test_a_hand_out_that_never_arrives_is_sent_once_after_its_lease(stack: Stack) -> None:
    confirmed_subscribers(stack, 3)
    tick_holding(stack)  # the message is lost on its way to the worker
    assert stack.tick().dispatched == 0
    stack.clock.advance(seconds=hand_out_lease(stack) + 1)
    assert stack.tick().dispatched == 3
    wait_until(lambda: [row[0] for row in rows(stack)] == ["sent"] * 3)
    # A second attempt, as after a dead worker (which it cannot be told from), and the
    # journal says nothing was posted: unflagged.
    assert [(row[1], row[3]) for row in rows(stack)] == [(2, False)] * 3
    recipients = [str(message["To"]) for message in messages(stack.outbox)]
    assert len(recipients) == len(set(recipients)) == 3


def test_a_batch_taken_while_two_thirds_of_its_lease_are_left_goes_without_a_claim(
    stack: Stack,
) -> None:
    confirmed_subscribers(stack, 3)
    [hand_out] = tick_holding(stack)
    at = hand_out[1]
    lease = stack.services.settings.lease_seconds
    assert hand_out_lease(stack) == lease, "one lease from the hand-out, as a claim gives"
    stack.clock.advance(seconds=lease * (1 - delivery.TAKE_LEFT) - 1)
    assert send(stack, hand_out, name="soon").sent == 3
    assert rows(stack) == [("sent", 1, at, False)] * 3, "the tick's mark: taken without a write"


def test_a_batch_taken_with_less_than_two_thirds_of_a_lease_left_is_claimed_first(
    stack: Stack,
) -> None:
    confirmed_subscribers(stack, 3)
    [hand_out] = tick_holding(stack)
    lease = stack.services.settings.lease_seconds
    stack.clock.advance(seconds=hand_out_lease(stack) - lease * delivery.TAKE_LEFT + 1)
    report = send(stack, hand_out, name="late")
    assert report.sent == 3
    # Claimed with its first attempt, the mark dropped: no other run can take it.
    assert rows(stack) == [("sent", 1, None, False)] * 3
    assert send(stack, hand_out, name="another-run").claimed == 0
    assert len(messages(stack.outbox)) == 3
