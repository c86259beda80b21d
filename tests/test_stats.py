"""The dashboard's numbers (drip.ops.stats) computed from a known set of rows, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from drip.data.models import Click, Delivery, Enrollment, Event, Subscriber
from drip.ops import stats
from tests.conftest import Stack

NOW = datetime(2026, 3, 5, 15, 0, tzinfo=UTC)


def add_person(stack: Stack, name: str, status: str, sent: list[int], **delivery: object) -> int:
    """A subscriber with an enrollment and one delivery per lesson in ``sent``, all sent."""
    slug = stack.services.course.slug
    with stack.session() as session:
        person = Subscriber(
            email=f"{name}@example.com", status=status, created_at=NOW, confirmed_at=NOW
        )
        session.add(person)
        session.flush()
        enrollment = Enrollment(
            subscriber_id=person.id, course_slug=slug, status="active", started_at=NOW
        )
        session.add(enrollment)
        session.flush()
        for lesson in sent:
            session.add(
                Delivery(
                    enrollment_id=enrollment.id, subscriber_id=person.id, course_slug=slug,
                    lesson=lesson, status="sent", due_at=NOW, created_at=NOW, sent_at=NOW,
                    **delivery,
                )
            )  # fmt: skip
        return person.id


def delivery_of(stack: Stack, subscriber_id: int, lesson: int) -> int:
    with stack.session() as session:
        return session.query(Delivery.id).filter_by(subscriber_id=subscriber_id, lesson=lesson)[0][
            0
        ]


def test_the_funnel_counts_each_step_and_each_way_out(stack: Stack) -> None:
    add_person(stack, "ann", "active", [1, 2, 3])
    add_person(stack, "bob", "active", [1])
    add_person(stack, "cat", "unsubscribed", [1, 2])
    with stack.session() as session:
        session.add(Subscriber(email="dan@example.com", status="pending", created_at=NOW))
    with stack.session() as session:
        steps = {step.label: step for step in stats.funnel(session, stack.services.course)}
    assert steps["signed up"].count == 4 and steps["confirmed"].count == 3
    assert [steps[f"lesson {n}"].count for n in (1, 2, 3, 4)] == [3, 2, 1, 0]
    assert steps["unsubscribed"].count == 1 and steps["unsubscribed"].exit
    assert not steps["lesson 1"].exit


def test_lesson_stats_keep_people_machines_and_scanners_apart(stack: Stack) -> None:
    ann = add_person(stack, "ann", "active", [1])
    bob = add_person(stack, "bob", "unsubscribed", [1, 2])
    first = delivery_of(stack, ann, 1)
    with stack.session() as session:
        session.add_all(
            [
                Event(provider_event_id="e1", kind="open", delivery_id=first, subscriber_id=ann,
                      machine=False, occurred_at=NOW, received_at=NOW),
                Event(provider_event_id="e2", kind="open", delivery_id=first, subscriber_id=ann,
                      machine=False, occurred_at=NOW, received_at=NOW),
                Event(provider_event_id="e3", kind="open", delivery_id=delivery_of(stack, bob, 1),
                      subscriber_id=bob, machine=True, occurred_at=NOW, received_at=NOW),
                Click(delivery_id=first, subscriber_id=ann, lesson=1, clicked_at=NOW),
                Click(delivery_id=first, subscriber_id=ann, lesson=1, clicked_at=NOW),
                Click(delivery_id=first, subscriber_id=ann, lesson=1, clicked_at=NOW,
                      scanner=True),
            ]
        )  # fmt: skip
    with stack.session() as session:
        by_lesson = {row.number: row for row in stats.lesson_stats(session, stack.services.course)}
    one, two = by_lesson[1], by_lesson[2]
    assert (one.sent, one.opened, one.machine_opened) == (2, 1, 1)  # two opens, one person
    assert (one.clicks, one.clickers, one.scanner_clicks) == (2, 1, 1)
    assert one.click_rate == 0.5
    assert (two.sent, two.unsubscribes, one.unsubscribes) == (1, 1, 0)  # bob left after lesson 2
    assert by_lesson[3].sent == 0 and by_lesson[3].click_rate == 0.0


def test_daily_counts_signups_and_sends_per_utc_day(stack: Stack) -> None:
    add_person(stack, "ann", "active", [1])
    yesterday = NOW - timedelta(days=1)
    with stack.session() as session:
        session.add(Subscriber(email="old@example.com", status="pending", created_at=yesterday))
    with stack.session() as session:
        days = stats.daily(session, NOW, days=3)
    assert [(day.signups, day.sends) for day in days] == [(0, 0), (1, 0), (1, 1)]
    assert days[-1].day == NOW.date()


def test_sent_since_counts_only_sent_lessons_from_that_moment(stack: Stack) -> None:
    add_person(stack, "ann", "active", [1, 2])
    with stack.session() as session:
        assert stats.sent_since(session, NOW) == 2
        assert stats.sent_since(session, NOW + timedelta(seconds=1)) == 0
