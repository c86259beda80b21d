"""A person in a real browser: fill the form, confirm from the outbox, see lesson 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import chromium, live_server
from tests.conftest import ROOT, Stack, wait_until
from tests.mailbox import link, messages

pytestmark = pytest.mark.browser
ARTIFACTS = ROOT / "test-artifacts" / "browser"


@pytest.fixture(scope="module")
def backend() -> str:
    # The browser path is the same on both databases: once, on SQLite, is enough.
    return "sqlite"


def test_a_person_signs_up_confirms_and_sees_lesson_one(stack: Stack) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    email = "browser@example.com"
    with live_server(stack.app) as base, chromium() as browser:
        page = browser.new_page(viewport={"width": 390, "height": 900}, timezone_id="Europe/Paris")
        page.goto(f"{base}/")
        assert page.locator("h1").inner_text() == stack.services.course.landing.headline
        page.fill("#email", email)
        page.fill("#first_name", "Léa")
        page.screenshot(path=str(ARTIFACTS / "landing.png"), full_page=True)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/thanks")
        assert "Check your inbox" in page.content()

        confirmation = wait_until(lambda: messages(stack.outbox, to=email))[0]
        page.goto(base + link(confirmation, "/confirm/"))
        page.click("button[type=submit]")
        page.wait_for_selector("text=You're in")

        wait_until(lambda: len(messages(stack.outbox, to=email)) == 2)
        page.goto(f"{base}/outbox")
        lesson_link = page.locator("a", has_text="Day 1:")
        lesson_link.first.click()
        frame = page.frame_locator("iframe.mail")
        frame.locator("text=Léa").first.wait_for()
        page.screenshot(path=str(ARTIFACTS / "lesson-1-in-outbox.png"), full_page=True)
        with stack.session() as session:
            from sqlalchemy import select

            from drip.data.models import Subscriber

            subscriber = session.scalars(select(Subscriber)).one()
        assert subscriber.timezone == "Europe/Paris", "the form sends the browser's time zone"
        assert subscriber.first_name == "Léa"
    assert Path(ARTIFACTS / "lesson-1-in-outbox.png").exists()
