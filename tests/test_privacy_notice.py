"""The privacy notice at /privacy: linked from the signup form and every email, and it says
who runs the course, what is collected, how long it is kept and how to get it or erase it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from html import unescape

import pytest

from drip.course import render
from tests.conftest import Stack, clear_tables, settle, wait_until
from tests.mailbox import csrf_token, html_part, messages, text_part

OPERATOR = "Gentle Mail LLC"
POSTAL_ADDRESS = "Gentle Mail LLC, 42 Harbour Road, Portland, ME 04101, USA"
PRIVACY_URL = "https://drip.test/privacy"


@pytest.fixture()
def stack(stack_factory: Callable[..., Stack]) -> Iterator[Stack]:
    """The module's stack, with the operator and postal address set as an operator would."""
    current = stack_factory(operator_name=OPERATOR, postal_address=POSTAL_ADDRESS)
    clear_tables(current.services.database)
    for path in current.outbox.glob("*.eml") if current.outbox.exists() else []:
        path.unlink()
    current.clock.set(datetime(2026, 3, 5, 15, 0, tzinfo=UTC))
    yield current
    settle(current)


def visible_text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def test_the_notice_names_the_operator_and_says_what_is_collected_and_for_how_long(
    stack: Stack,
) -> None:
    answer = stack.client.get("/privacy")
    page = visible_text(answer.get_data(as_text=True))

    assert answer.status_code == 200
    assert f"is run by {OPERATOR}, {POSTAL_ADDRESS}" in page
    for collected in (
        "Your email address",
        "Your first name",
        "Your time zone",
        "Your IP address and browser (user agent)",
        "when you sign up and when you confirm",
        "Delivery and engagement events",
        "Clicks",
    ):
        assert collected in page
    assert "never confirmed is deleted with its data after 7 days" in page
    assert "only a keyed hash of your address stays on our suppression list" in page
    assert "Manage preferences" in page
    assert "drip subscribers export" in page
    assert "drip subscribers erase" in page


def test_the_signup_form_links_the_notice_and_shows_the_care_note(stack: Stack) -> None:
    page = stack.client.get("/").get_data(as_text=True)

    form = page[page.index('<form method="post"') : page.index("</form>")]
    assert 'href="/privacy"' in form
    assert stack.services.course.care_note in unescape(page)


def test_the_confirmation_email_links_the_notice_and_carries_the_care_note(
    stack: Stack,
) -> None:
    client = stack.client
    token = csrf_token(client.get("/").get_data(as_text=True))
    form = {"email": "reader@example.com", "timezone": "UTC", "csrf_token": token}
    assert client.post("/subscribe", data=form).status_code == 303

    (confirmation,) = wait_until(lambda: messages(stack.outbox, to="reader@example.com"))

    care_note = stack.services.course.care_note
    assert f"Privacy notice: {PRIVACY_URL}" in text_part(confirmation)
    assert f'<a href="{PRIVACY_URL}"' in html_part(confirmation)
    assert care_note in text_part(confirmation)
    assert care_note in visible_text(html_part(confirmation))
    assert POSTAL_ADDRESS in text_part(confirmation)


def test_every_lesson_links_the_notice_in_both_parts(stack: Stack) -> None:
    course = stack.services.course

    for lesson in course.lessons:
        rendered = render.render_lesson(course, lesson, "https://drip.test")
        assert f"Privacy notice: {PRIVACY_URL}" in rendered.text
        assert f'<a href="{PRIVACY_URL}"' in rendered.html
