"""The ten-day walk: sign up, confirm, get one lesson a day at the send hour, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from drip.data.models import Delivery, Subscriber
from tests.conftest import Stack, sign_up, wait_until, walk_hours
from tests.mailbox import csrf_token, link, messages, text_part

NEW_YORK = ZoneInfo("America/New_York")


def confirm_from_outbox(stack: Stack, email: str) -> None:
    confirmation = wait_until(lambda: messages(stack.outbox, to=email))[0]
    path = link(confirmation, "/confirm/")
    client = stack.client
    page = client.get(path)
    assert page.status_code == 200
    answer = client.post(path, data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert answer.status_code == 200, answer.get_data(as_text=True)


def lessons_for(stack: Stack, email: str) -> list[str]:
    return [str(m["Subject"]) for m in messages(stack.outbox, to=email)[1:]]


def test_ten_lessons_arrive_one_a_day_at_the_send_hour_across_dst(stack: Stack) -> None:
    email = "ann@example.com"
    sign_up(stack, email)
    confirm_from_outbox(stack, email)
    # Lesson 1 goes right after confirmation (the confirm view kicks a tick).
    wait_until(lambda: len(lessons_for(stack, email)) == 1)
    arrivals = walk_hours(stack, 24 * 10, lambda: len(lessons_for(stack, email)))

    subjects = lessons_for(stack, email)
    assert [s.split(":")[0] for s in subjects] == [f"Day {k}" for k in range(1, 11)]
    # Lessons 2..10: each appeared at the tick when it became 08:00 in New York,
    # on consecutive local days, across the 8 March 2026 DST change.
    assert [count for count, _ in arrivals] == list(range(2, 11))
    local_times = [moment.astimezone(NEW_YORK) for _, moment in arrivals]
    assert all(t.hour == 8 and t.minute == 0 for t in local_times), local_times
    days = [t.date() for t in local_times]
    assert days == [days[0] + timedelta(days=k) for k in range(9)]
    offsets = {t.utcoffset() for t in local_times}
    assert offsets == {timedelta(hours=-5), timedelta(hours=-4)}, "the walk must cross DST"


def test_every_lesson_ends_with_the_call_to_action_and_unsubscribe(stack: Stack) -> None:
    email = "cta@example.com"
    sign_up(stack, email)
    confirm_from_outbox(stack, email)
    wait_until(lambda: len(lessons_for(stack, email)) == 1)
    walk_hours(stack, 24 * 10, lambda: len(lessons_for(stack, email)))
    course = stack.services.course
    lessons = messages(stack.outbox, to=email)[1:]
    assert len(lessons) == 10
    for message in lessons:
        text = text_part(message)
        assert course.cta.disclosure.split(".")[0] in text
        assert "https://drip.test/r/" in text
        assert "https://drip.test/u/" in text
        assert course.postal_address in text
        assert message["List-Unsubscribe"].startswith("<https://drip.test/u/")
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message.get_body(preferencelist=("html",)) is not None


def test_unsubscribed_subscriber_gets_no_further_lessons(stack: Stack) -> None:
    email = "leaves@example.com"
    sign_up(stack, email)
    confirm_from_outbox(stack, email)
    wait_until(lambda: len(lessons_for(stack, email)) == 1)
    walk_hours(stack, 48, lambda: len(lessons_for(stack, email)))
    assert len(lessons_for(stack, email)) == 3
    lesson = messages(stack.outbox, to=email)[-1]
    unsubscribe_path = link(lesson, "/u/")
    page = stack.client.get(unsubscribe_path)
    assert page.status_code == 200
    with stack.session() as session:
        assert session.scalar(select(Subscriber.status)) == "active", "GET must change nothing"
    answer = stack.client.post(unsubscribe_path, data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    walk_hours(stack, 24 * 9, lambda: len(lessons_for(stack, email)))
    assert len(lessons_for(stack, email)) == 3


def test_unconfirmed_signup_gets_only_the_confirmation(stack: Stack) -> None:
    email = "maybe@example.com"
    sign_up(stack, email)
    wait_until(lambda: messages(stack.outbox, to=email))
    walk_hours(stack, 24 * 3, lambda: len(lessons_for(stack, email)))
    assert len(messages(stack.outbox, to=email)) == 1
    with stack.session() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_confirm_link_get_changes_nothing(stack: Stack) -> None:
    email = "scanner@example.com"
    sign_up(stack, email)
    confirmation = wait_until(lambda: messages(stack.outbox, to=email))[0]
    path = link(confirmation, "/confirm/")
    for _ in range(3):
        assert stack.client.get(path).status_code == 200
    with stack.session() as session:
        assert session.scalar(select(Subscriber.status)) == "pending"


def test_resignup_of_active_subscriber_neither_restarts_nor_reveals(stack: Stack) -> None:
    email = "again@example.com"
    sign_up(stack, email)
    confirm_from_outbox(stack, email)
    wait_until(lambda: len(lessons_for(stack, email)) == 1)
    walk_hours(stack, 24, lambda: len(lessons_for(stack, email)))
    before = len(messages(stack.outbox, to=email))
    # The same answer as for a new address, and nothing is sent or restarted.
    sign_up(stack, email)
    answer = stack.client.post(
        "/api/v1/subscribers", json={"email": email, "timezone": "America/New_York"}
    )
    assert answer.status_code == 202
    new = stack.client.post("/api/v1/subscribers", json={"email": "someone-new@example.com"})
    assert answer.get_json() == new.get_json()
    walk_hours(stack, 1, lambda: len(lessons_for(stack, email)))
    assert len(messages(stack.outbox, to=email)) == before
    with stack.session() as session:
        lessons = session.scalars(
            select(Delivery.lesson)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Subscriber.email == email)
        ).all()
    assert sorted(lessons) == [1, 2]


def test_lesson_one_arrives_within_seconds_of_confirming(stack: Stack) -> None:
    email = "quick@example.com"
    sign_up(stack, email)
    confirm_from_outbox(stack, email)
    started = datetime.now(UTC)
    wait_until(lambda: len(lessons_for(stack, email)) == 1, timeout=10)
    assert datetime.now(UTC) - started < timedelta(seconds=10)
