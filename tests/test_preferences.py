"""The preferences page (/p/<token> from every lesson footer): pause, resume, restart,
change when lessons go, unsubscribe, download and erase, through HTTP and the real
worker on both databases, and once in chromium.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from drip.data.models import Delivery, Enrollment, Subscriber
from drip.sending import dispatch
from tests.browser import chromium, live_server
from tests.cli import run_cli
from tests.conftest import Stack, settled, wait_until
from tests.mailbox import csrf_token, link, messages

EMAIL = "prefs@example.com"
NEW_YORK = ZoneInfo("America/New_York")


def lessons(stack: Stack) -> list[str]:
    return [str(m["Subject"]).split(":")[0] for m in messages(stack.outbox, to=EMAIL)[1:]]


def subscribe(stack: Stack) -> str:
    """Sign up in New York, confirm, wait for lesson 1; return its preferences path."""
    client = stack.client
    token = csrf_token(client.get("/").get_data(as_text=True))
    form = {"email": EMAIL, "timezone": "America/New_York", "csrf_token": token}
    assert client.post("/subscribe", data=form).status_code == 303
    confirmation = wait_until(lambda: messages(stack.outbox, to=EMAIL))[0]
    path = link(confirmation, "/confirm/")
    page = client.get(path).get_data(as_text=True)
    assert client.post(path, data={"csrf_token": csrf_token(page)}).status_code == 200
    wait_until(lambda: lessons(stack) == ["Day 1"] and settled(stack))
    return link(messages(stack.outbox, to=EMAIL)[1], "/p/")


def act(client: Any, path: str, action: str, **fields: str) -> Any:
    """Press one of the page's buttons: read the page's CSRF token, post the form."""
    page = client.get(path)
    assert page.status_code == 200
    data = {"csrf_token": csrf_token(page.get_data(as_text=True)), **fields}
    return client.post(f"{path}/{action}", data=data)


def walk(stack: Stack, hours: int) -> list[datetime]:
    """Tick every hour; return the moments at which a lesson went out."""
    sent_at = []
    for _ in range(hours):
        now = stack.clock.advance(hours=1)
        if stack.tick().dispatched:
            wait_until(lambda: settled(stack))
            sent_at.append(now)
    return sent_at


def enrollment(stack: Stack) -> Enrollment:
    with stack.session() as session:
        return session.scalars(select(Enrollment).order_by(Enrollment.id.desc())).first()


def materialize_only(stack: Stack) -> None:
    """What the first half of a tick does: due lessons become queued deliveries, unsent."""
    services = stack.services
    dispatch.materialize_due(
        services.database,
        services.course,
        now=stack.clock(),
        day_seconds=services.settings.day_seconds,
    )


def test_the_page_shows_the_subscription_and_looking_changes_nothing(stack: Stack) -> None:
    path = subscribe(stack)
    client = stack.client
    for _ in range(3):
        page = client.get(path)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert EMAIL in html
    assert "You have had 1 of 10 lessons. Lesson 2 comes on Friday 6 March at 08:00" in html
    assert html.count('name="csrf_token"') == 4  # pause, restart, schedule, download
    assert "<option selected>America/New_York</option>" in html
    assert '<option value="8" selected>08:00</option>' in html
    running = enrollment(stack)
    assert (running.status, running.next_lesson) == ("active", 2)


def test_a_change_without_the_csrf_token_is_refused(stack: Stack) -> None:
    path = subscribe(stack)
    for action in ("pause", "restart", "schedule", "export", "erase"):
        assert stack.client.post(f"{path}/{action}", data={}).status_code == 400
    assert enrollment(stack).status == "active"
    with stack.session() as session:
        assert session.scalar(select(Subscriber.status)) == "active"


def test_pause_holds_every_lesson_and_resume_goes_on_where_it_stopped(stack: Stack) -> None:
    path = subscribe(stack)
    client = stack.client
    # 08:00 in New York the next day: lesson 2 is queued, not yet sent.
    stack.clock.set(datetime(2026, 3, 6, 13, 0, tzinfo=UTC))
    materialize_only(stack)
    answer = act(client, path, "pause")
    assert answer.status_code == 303
    paused = enrollment(stack)
    assert (paused.status, paused.next_lesson, paused.next_due_at) == ("paused", 2, None)
    with stack.session() as session:
        assert session.scalars(select(Delivery.lesson)).all() == [1], "queued lesson 2 removed"
    assert "Your course is paused" in client.get(path).get_data(as_text=True)

    assert walk(stack, 72) == []
    assert lessons(stack) == ["Day 1"]

    assert act(client, path, "resume").status_code == 303
    resumed = enrollment(stack)
    # Resumed at 13:00 on 9 March (09:00 in New York, after the DST change): the next
    # send slot is 08:00 New York time on 10 March.
    assert resumed.status == "active"
    assert resumed.next_due_at == datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    sent_at = walk(stack, 24 * 10)
    assert lessons(stack) == [f"Day {n}" for n in range(1, 11)]
    assert {t.astimezone(NEW_YORK).hour for t in sent_at} == {8}
    with stack.session() as session:
        numbers = session.scalars(select(Delivery.lesson).order_by(Delivery.lesson)).all()
    assert numbers == list(range(1, 11)), "each lesson exactly once"


def test_a_new_send_hour_and_time_zone_move_the_next_lesson(stack: Stack) -> None:
    path = subscribe(stack)
    client = stack.client
    answer = act(client, path, "schedule", send_hour="20", timezone="Asia/Tokyo")
    assert answer.status_code == 303
    page = client.get(path).get_data(as_text=True)
    assert "Saved: lessons now go at 20:00, Asia/Tokyo time." in page
    # Lesson 1 went at 15:00 UTC on 5 March, midnight of the 6th in Tokyo: lesson 2
    # goes the next Tokyo day at 20:00.
    assert enrollment(stack).next_due_at == datetime(2026, 3, 7, 11, 0, tzinfo=UTC)
    sent_at = walk(stack, 48)
    assert [t.astimezone(ZoneInfo("Asia/Tokyo")).hour for t in sent_at] == [20]
    assert lessons(stack) == ["Day 1", "Day 2"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"send_hour": "24", "timezone": "UTC"}, "send hour: choose an hour from 0 to 23"),
        ({"send_hour": "7", "timezone": "Mars/Olympus"}, "unknown time zone"),
    ],
)
def test_a_bad_send_hour_or_time_zone_is_refused_with_the_reason(
    stack: Stack, fields: dict[str, str], message: str
) -> None:
    path = subscribe(stack)
    answer = act(stack.client, path, "schedule", **fields)
    assert answer.status_code == 400
    assert message in answer.get_data(as_text=True)
    with stack.session() as session:
        subscriber = session.scalars(select(Subscriber)).one()
    assert (subscriber.send_hour, subscriber.timezone) == (None, "America/New_York")


def test_restart_begins_again_at_lesson_one_and_never_sends_a_lesson_twice(stack: Stack) -> None:
    path = subscribe(stack)
    walk(stack, 48)
    assert lessons(stack) == ["Day 1", "Day 2", "Day 3"]
    stack.clock.set(datetime(2026, 3, 8, 12, 0, tzinfo=UTC))  # 08:00 New York, after DST
    materialize_only(stack)  # lesson 4 queued
    first = enrollment(stack)

    assert act(stack.client, path, "restart").status_code == 303
    wait_until(lambda: lessons(stack)[-1:] == ["Day 1"] and settled(stack))
    walk(stack, 1)
    assert lessons(stack) == ["Day 1", "Day 2", "Day 3", "Day 1"]
    with stack.session() as session:
        rows = session.execute(
            select(Delivery.enrollment_id, Delivery.lesson, Delivery.status).order_by(Delivery.id)
        ).all()
        statuses = dict(session.execute(select(Enrollment.id, Enrollment.status)).all())
    second = max(statuses)
    assert statuses == {first.id: "cancelled", second: "active"}
    assert [tuple(r) for r in rows] == [
        (first.id, 1, "sent"),
        (first.id, 2, "sent"),
        (first.id, 3, "sent"),
        (first.id, 4, "skipped"),
        (second, 1, "sent"),
    ]


def test_unsubscribe_on_the_page_is_the_one_click_unsubscribe(stack: Stack) -> None:
    path = subscribe(stack)
    client = stack.client
    html = client.get(path).get_data(as_text=True)
    unsubscribe_path = link(messages(stack.outbox, to=EMAIL)[1], "/u/")
    assert f'action="{unsubscribe_path}"' in html
    assert client.post(unsubscribe_path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert "You are unsubscribed" in client.get(path).get_data(as_text=True)
    assert walk(stack, 24) == []


def test_download_my_data_is_a_json_attachment_with_what_the_cli_exports(stack: Stack) -> None:
    path = subscribe(stack)
    answer = act(stack.client, path, "export")
    assert answer.status_code == 200
    assert answer.mimetype == "application/json"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="my-data.json"'
    downloaded = json.loads(answer.get_data(as_text=True))
    assert downloaded["profile"]["email"] == EMAIL
    assert [d["lesson"] for d in downloaded["deliveries"]] == [1]
    assert downloaded == json.loads(export_with_the_cli(stack))


def export_with_the_cli(stack: Stack) -> str:
    result = run_cli(stack, "subscribers", "export", EMAIL)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_erase_asks_first_and_then_leaves_nothing_to_mail(stack: Stack) -> None:
    path = subscribe(stack)
    client = stack.client
    question = client.get(f"{path}/erase")
    assert question.status_code == 200
    assert "Erase your data?" in question.get_data(as_text=True)
    with stack.session() as session:
        assert session.scalar(select(Subscriber.status)) == "active", "asking changes nothing"

    answer = client.post(
        f"{path}/erase", data={"csrf_token": csrf_token(question.get_data(as_text=True))}
    )
    assert answer.status_code == 200
    assert "Your data is erased" in answer.get_data(as_text=True)
    with stack.session() as session:
        subscriber = session.scalars(select(Subscriber)).one()
    assert (subscriber.email, subscriber.status) == (None, "erased")
    assert client.get(path).status_code == 404
    assert walk(stack, 48) == []


def test_a_forged_or_borrowed_token_finds_nothing(stack: Stack) -> None:
    subscribe(stack)
    unsubscribe_token = link(messages(stack.outbox, to=EMAIL)[1], "/u/").removeprefix("/u/")
    for path in ("/p/forged", f"/p/{unsubscribe_token}", f"/p/{unsubscribe_token}/erase"):
        assert stack.client.get(path).status_code == 404


@pytest.mark.browser
def test_a_person_changes_the_schedule_and_pauses_in_a_real_browser(stack: Stack) -> None:
    path = subscribe(stack)
    with live_server(stack.app) as base, chromium() as browser:
        page = browser.new_page(viewport={"width": 390, "height": 900})
        page.goto(base + path)
        assert "You have had 1 of 10 lessons" in page.inner_text("#state")
        page.select_option("#send_hour", "19")
        page.select_option("#timezone", "Europe/Lisbon")
        page.click("text=Save")
        page.wait_for_selector("text=Saved: lessons now go at 19:00, Europe/Lisbon time.")
        page.click("text=Pause the course")
        page.wait_for_selector("text=Your course is paused at lesson 2 of 10")
        page.click("text=Resume the course")
        page.wait_for_selector("text=Your course is running again")
        page.click("text=Erase my data")
        page.wait_for_selector("text=Erase your data?")
        page.click("text=No, go back")
        page.wait_for_selector("text=Your subscription")
    with stack.session() as session:
        subscriber = session.scalars(select(Subscriber)).one()
    assert (subscriber.send_hour, subscriber.timezone, subscriber.status) == (
        19,
        "Europe/Lisbon",
        "active",
    )
    assert enrollment(stack).status == "active"


def test_a_lesson_claimed_just_before_a_pause_is_handed_back_not_lost(stack: Stack) -> None:
    """The pause lands between a send task's claim and its send: the lesson waits too."""
    from drip.sending.delivery import deliver_batch
    from drip.sending.dispatch import claim_for_dispatch

    path = subscribe(stack)
    stack.clock.set(datetime(2026, 3, 6, 13, 0, tzinfo=UTC))
    materialize_only(stack)
    services = stack.services
    (batch,) = claim_for_dispatch(
        services.database, services.course, now=stack.clock(), lease_seconds=300, batch_size=1000
    )
    # The race: the send task holds lesson 2 when the course is paused. Pausing
    # removes only unclaimed lessons, so mark it as the worker would have.
    with stack.session() as session:
        delivery = session.scalars(select(Delivery).where(Delivery.lesson == 2)).one()
        delivery.status = "sending"
    assert act(stack.client, path, "pause").status_code == 303
    with stack.session() as session:
        delivery = session.scalars(select(Delivery).where(Delivery.lesson == 2)).one()
        delivery.status = "queued"  # back to the moment just before the task's claim
    report = deliver_batch(
        services.database, services.course, services.mailer, services.links, batch,
        lease_seconds=300, clock=services.clock,
    )  # fmt: skip
    assert (report.sent, report.skipped) == (0, 1)
    assert lessons(stack) == ["Day 1"]
    paused = enrollment(stack)
    assert (paused.status, paused.next_lesson) == ("paused", 2)
    assert act(stack.client, path, "resume").status_code == 303
    walk(stack, 48)
    assert lessons(stack)[:2] == ["Day 1", "Day 2"]
