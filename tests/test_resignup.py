"""Signing up again: who gets a fresh double opt-in and who gets nothing, through HTTP
and the real worker, on both databases. Every case answers the same neutral way.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from drip.data.models import Consent, Enrollment, Subscriber, Suppression
from drip.services import enqueue
from drip.subscribers.subscriptions import email_hash
from tests.conftest import Stack, settled, sign_up, wait_until
from tests.mailbox import csrf_token, link, messages

ANSWER = {"status": "pending_confirmation"}


def sign_up_by_api(stack: Stack, email: str) -> None:
    answer = stack.client.post("/api/v1/subscribers", json={"email": email})
    assert answer.status_code == 202
    assert answer.get_json()["status"] == ANSWER["status"]


def confirm_latest(stack: Stack, email: str) -> None:
    confirmation = [m for m in messages(stack.outbox, to=email) if "/confirm/" in str(m)][-1]
    path = link(confirmation, "/confirm/")
    client = stack.client
    page = client.get(path).get_data(as_text=True)
    assert client.post(path, data={"csrf_token": csrf_token(page)}).status_code == 200


def subjects(stack: Stack, email: str) -> list[str]:
    return [str(m["Subject"]) for m in messages(stack.outbox, to=email)]


def lessons(stack: Stack, email: str) -> list[str]:
    return [s for s in subjects(stack, email) if s.startswith("Day ")]


def become_active(stack: Stack, email: str) -> None:
    sign_up(stack, email)
    wait_until(lambda: subjects(stack, email))
    confirm_latest(stack, email)
    wait_until(lambda: lessons(stack, email) and settled(stack))


def pass_a_day(stack: Stack) -> None:
    for _ in range(24):
        stack.clock.advance(hours=1)
        if stack.tick().dispatched:
            wait_until(lambda: settled(stack))


def suppress(stack: Stack, email: str, reason: str) -> None:
    with stack.session() as session:
        session.add(
            Suppression(
                email_hash=email_hash(stack.services.settings.secret_key, email),
                reason=reason,
                created_at=stack.clock(),
            )
        )


def erase(stack: Stack, email: str) -> None:
    from drip.subscribers.privacy import erase as erase_data
    from drip.subscribers.privacy import find_subscriber_id

    with stack.session() as session:
        subscriber_id = find_subscriber_id(session, email)
        assert subscriber_id is not None
        settings = stack.services.settings
        erase_data(
            session, subscriber_id, secret_key=settings.secret_key, now=stack.clock(), actor="test"
        )


def test_an_active_subscriber_signing_up_again_gets_nothing_and_keeps_their_place(
    stack: Stack,
) -> None:
    email = "active@example.com"
    become_active(stack, email)
    pass_a_day(stack)
    before = subjects(stack, email)
    sign_up(stack, email)
    sign_up_by_api(stack, email)
    pass_a_day(stack)
    after = subjects(stack, email)
    assert after[: len(before)] == before
    assert [s.split(":")[0] for s in lessons(stack, email)] == ["Day 1", "Day 2", "Day 3"]
    with stack.session() as session:
        assert session.scalar(select(func.count()).select_from(Enrollment)) == 1
        assert session.scalar(select(func.count()).select_from(Consent)) == 1


def test_an_unsubscribed_person_may_come_back_through_a_fresh_double_opt_in(
    stack: Stack,
) -> None:
    email = "back@example.com"
    become_active(stack, email)
    lesson_one = messages(stack.outbox, to=email)[-1]
    one_click = {"List-Unsubscribe": "One-Click"}
    assert stack.client.post(link(lesson_one, "/u/"), data=one_click).status_code == 200

    sign_up(stack, email)
    wait_until(lambda: len(subjects(stack, email)) == 3)  # confirmation, lesson 1, confirmation
    pass_a_day(stack)
    assert len(lessons(stack, email)) == 1, "nothing but the confirmation until they confirm"

    confirm_latest(stack, email)
    wait_until(lambda: len(lessons(stack, email)) == 2)
    assert lessons(stack, email)[-1].startswith("Day 1")
    with stack.session() as session:
        statuses = session.scalars(select(Enrollment.status).order_by(Enrollment.id)).all()
        subscriber = session.scalars(select(Subscriber)).one()
    assert statuses == ["cancelled", "active"]
    assert subscriber.status == "active"


@pytest.mark.parametrize("reason", ["bounce", "complaint"])
def test_a_bounced_or_complaining_address_gets_nothing_at_all(stack: Stack, reason: str) -> None:
    email = f"{reason}@example.com"
    suppress(stack, email, reason)
    sign_up(stack, email)
    sign_up_by_api(stack, email)
    # The worker is alive and busy: another signup's confirmation arrives meanwhile.
    sign_up(stack, "witness@example.com")
    wait_until(lambda: subjects(stack, "witness@example.com"))
    assert subjects(stack, email) == []
    with stack.session() as session:
        assert session.scalar(select(func.count()).select_from(Consent)) == 1, "the witness only"


def test_an_erased_person_signs_up_like_someone_new_and_confirming_lifts_the_erasure(
    stack: Stack,
) -> None:
    email = "phoenix@example.com"
    become_active(stack, email)
    erase(stack, email)

    sign_up(stack, email)
    wait_until(lambda: len(subjects(stack, email)) == 3)  # confirmation, lesson 1, confirmation
    pass_a_day(stack)
    assert len(subjects(stack, email)) == 3, "only the confirmation until they confirm"
    with stack.session() as session:
        reasons = session.scalars(select(Suppression.reason)).all()
    assert reasons == ["erased"], "still suppressed until confirmed"

    confirm_latest(stack, email)
    wait_until(lambda: len(lessons(stack, email)) == 2)
    with stack.session() as session:
        assert session.scalars(select(Suppression)).all() == []
        people = session.scalars(select(Subscriber).order_by(Subscriber.id)).all()
    assert [(p.email, p.status) for p in people] == [(None, "erased"), (email, "active")]


def test_an_erased_address_that_had_bounced_stays_blocked(stack: Stack) -> None:
    email = "hardbounce@example.com"
    become_active(stack, email)
    suppress(stack, email, "bounce")
    erase(stack, email)
    sign_up(stack, email)
    sign_up(stack, "witness@example.com")
    wait_until(lambda: subjects(stack, "witness@example.com"))
    assert len(subjects(stack, email)) == 2, "the first confirmation and lesson 1, nothing new"


def test_unconfirmed_signups_expire_with_their_consent_through_the_worker(stack: Stack) -> None:
    sign_up(stack, "late@example.com")
    wait_until(lambda: subjects(stack, "late@example.com"))
    stack.clock.advance(seconds=stack.services.settings.pending_expiry_seconds - 60)
    sign_up(stack, "recent@example.com")
    wait_until(lambda: subjects(stack, "recent@example.com"))
    stack.clock.advance(seconds=120)

    with stack.app.app_context():
        enqueue("drip.housekeeping")

    def remaining() -> list[str | None]:
        with stack.session() as session:
            return list(session.scalars(select(Subscriber.email)))

    wait_until(lambda: remaining() == ["recent@example.com"])
    with stack.session() as session:
        owners = session.scalars(select(Consent.subscriber_id)).all()
        recent = session.scalar(select(Subscriber.id))
    assert owners == [recent], "the expired signup's consent went with it"


def confirmation_recorded(stack: Stack) -> bool:
    with stack.session() as session:
        return session.scalars(select(Subscriber)).one().confirmation_sent_at is not None


def test_a_confirmation_that_never_went_out_is_sent_by_the_sweep(stack: Stack) -> None:
    """Nothing lost: a signup whose confirmation email never left is swept up later."""
    from drip.subscribers import housekeeping

    services = stack.services
    answer = stack.client.post("/api/v1/subscribers", json={"email": "waits@example.com"})
    assert answer.status_code == 202
    wait_until(lambda: messages(stack.outbox, to="waits@example.com"))
    wait_until(lambda: confirmation_recorded(stack))  # the task records it after sending
    # Pretend that first email was lost: the sweep must not resend what was sent.
    with stack.app.app_context():
        assert housekeeping.resend_unsent_confirmations(services) == 0
    with stack.session() as session:
        subscriber = session.scalars(select(Subscriber)).one()
        subscriber.confirmation_sent_at = None
    stack.clock.advance(minutes=5)
    with stack.app.app_context():
        assert housekeeping.resend_unsent_confirmations(services) == 0, "too young to sweep"
    stack.clock.advance(minutes=6)
    with stack.app.app_context():
        assert housekeeping.resend_unsent_confirmations(services) == 1
    wait_until(lambda: len(messages(stack.outbox, to="waits@example.com")) == 2)
    with stack.app.app_context():
        assert housekeeping.resend_unsent_confirmations(services) == 0
