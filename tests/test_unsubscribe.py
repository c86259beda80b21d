"""RFC 8058 one-click unsubscribe, as Gmail and Yahoo send it, and CAN-SPAM's visible link."""

from __future__ import annotations

from sqlalchemy import select

from drip.data.models import Consent, Delivery, Enrollment, Subscriber
from drip.sending.delivery import deliver_batch
from drip.sending.dispatch import claim_for_dispatch, materialize_due
from tests.conftest import Stack, wait_until
from tests.mailbox import link, messages, text_part
from tests.test_concurrency import confirmed_subscribers


def first_lesson(stack: Stack, email: str) -> object:
    stack.tick()
    return wait_until(lambda: messages(stack.outbox, to=email))[-1]


def status_of(stack: Stack, subscriber_id: int) -> str:
    with stack.session() as session:
        subscriber = session.get(Subscriber, subscriber_id)
        assert subscriber is not None
        return subscriber.status


def test_every_lesson_carries_one_click_headers_and_a_visible_link(stack: Stack) -> None:
    confirmed_subscribers(stack, 1)
    lesson = first_lesson(stack, "person0@example.com")
    header = lesson["List-Unsubscribe"]  # type: ignore[index]
    assert header.startswith("<https://drip.test/u/") and header.endswith(">")
    assert header.count("<") == 1, "exactly one https URI"
    assert lesson["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # type: ignore[index]
    assert header[1:-1] in text_part(lesson)  # type: ignore[arg-type]
    assert "person0" not in header, "the token carries no address"


def test_one_click_post_urlencoded_without_cookies_unsubscribes_with_200(stack: Stack) -> None:
    (subscriber_id,) = confirmed_subscribers(stack, 1)
    path = link(first_lesson(stack, "person0@example.com"), "/u/")  # type: ignore[arg-type]
    client = stack.app.test_client(use_cookies=False)
    answer = client.post(
        path,
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status_code == 200, "no redirect: mailbox providers do not follow one"
    assert "Location" not in answer.headers
    assert status_of(stack, subscriber_id) == "unsubscribed"
    again = client.post(path, data="List-Unsubscribe=One-Click")
    assert again.status_code == 200, "idempotent"


def test_one_click_post_multipart_unsubscribes(stack: Stack) -> None:
    (subscriber_id,) = confirmed_subscribers(stack, 1)
    path = link(first_lesson(stack, "person0@example.com"), "/u/")  # type: ignore[arg-type]
    client = stack.app.test_client(use_cookies=False)
    answer = client.post(
        path, data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data"
    )
    assert answer.status_code == 200
    assert status_of(stack, subscriber_id) == "unsubscribed"


def test_get_shows_a_button_and_changes_nothing(stack: Stack) -> None:
    (subscriber_id,) = confirmed_subscribers(stack, 1)
    path = link(first_lesson(stack, "person0@example.com"), "/u/")  # type: ignore[arg-type]
    page = stack.client.get(path)
    assert page.status_code == 200
    assert "<button" in page.get_data(as_text=True)
    assert status_of(stack, subscriber_id) == "active"


def test_unsubscribe_withdraws_consent_and_stops_the_course(stack: Stack) -> None:
    confirmed_subscribers(stack, 1)
    path = link(first_lesson(stack, "person0@example.com"), "/u/")  # type: ignore[arg-type]
    stack.client.post(path)
    with stack.session() as session:
        consent = session.scalars(select(Consent)).one()
        enrollment = session.scalars(select(Enrollment)).one()
    assert consent.withdrawn_at is not None
    assert enrollment.status == "cancelled" and enrollment.next_due_at is None


def test_no_lesson_goes_after_unsubscribe_even_from_an_already_claimed_batch(stack: Stack) -> None:
    ids = confirmed_subscribers(stack, 5)
    services = stack.services
    now = stack.clock()
    materialize_due(services.database, services.course, now=now, day_seconds=86400)
    (batch,) = claim_for_dispatch(
        services.database, services.course, now=now, lease_seconds=300, batch_size=1000
    )
    # The batch is claimed and about to be sent; one subscriber unsubscribes now.
    token = services.tokens.make("drip.unsubscribe", ids[2])
    assert stack.client.post(f"/u/{token}").status_code == 200
    report = deliver_batch(
        services.database, services.course, services.mailer, services.links, batch,
        lease_seconds=300,
    )  # fmt: skip
    assert (report.sent, report.skipped) == (4, 1)
    assert messages(stack.outbox, to="person2@example.com") == []
    with stack.session() as session:
        skipped = session.scalars(select(Delivery).where(Delivery.subscriber_id == ids[2])).one()
    assert skipped.status == "skipped"
