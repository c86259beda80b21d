"""Signups only queue their confirmation; senders take it from the table in batches."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select

from drip.data.models import Consent, Subscriber
from drip.subscribers import confirmations
from drip.tokens import CONFIRM
from tests.conftest import Stack, wait_until
from tests.mailbox import link, messages

BURST = 60


def post(stack: Stack, n: int) -> int:
    answer = stack.client.post(
        "/api/v1/subscribers", json={"email": f"burst{n}@example.com", "first_name": f"P{n}"}
    )
    return int(answer.status_code)


def test_every_signup_of_a_burst_gets_its_consent_and_its_own_confirmation(stack: Stack) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda n: post(stack, n), range(BURST)))
    assert codes == [202] * BURST

    wait_until(lambda: len(messages(stack.outbox)) >= BURST, timeout=30)
    with stack.session() as session:
        consents = {c.subscriber_id: c for c in session.scalars(select(Consent))}
        subscribers = session.scalars(select(Subscriber)).all()
    assert len(subscribers) == len(consents) == BURST
    assert all(s.confirmation_sent_at is not None for s in subscribers)
    assert all(c.confirmation_due_at is None for c in consents.values()), "none left queued"
    for subscriber in subscribers:
        (message,) = messages(stack.outbox, to=subscriber.email)
        consent = consents[subscriber.id]
        token = link(message, "/confirm/").removeprefix("/confirm/")
        assert stack.services.tokens.read(CONFIRM, token) == [subscriber.id, consent.id]


def test_two_senders_racing_never_take_the_same_confirmation(stack: Stack) -> None:
    from sqlalchemy import update

    assert post(stack, 1) == 202
    wait_until(lambda: messages(stack.outbox, to="burst1@example.com"))
    with stack.session() as session:  # queue it again, as if the email had never left
        session.execute(update(Consent).values(confirmation_due_at=stack.clock()))
    services = stack.services
    first = confirmations.claim_due(services, limit=10)
    second = confirmations.claim_due(services, limit=10)
    assert [w.email for w in first] == ["burst1@example.com"]
    assert second == [], "a leased confirmation is not handed out twice"
    stack.clock.advance(seconds=confirmations.LEASE.total_seconds() + 1)
    third = confirmations.claim_due(services, limit=10)
    assert [w.email for w in third] == ["burst1@example.com"], "a dead sender's claim returns"
    assert confirmations.send_claimed(services, third) == 1
    assert confirmations.claim_due(services, limit=10) == []
    stack.clock.advance(minutes=1)
    assert len(messages(stack.outbox, to="burst1@example.com")) == 2
