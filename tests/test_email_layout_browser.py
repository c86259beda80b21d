"""Every lesson in a real browser at phone and desktop widths: no sideways scrolling.

Screenshots land in test-artifacts/email-layout/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drip.course import render
from drip.course.loader import load_course
from drip.course.model import Course
from tests.browser import chromium

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "email-layout"
FIXTURE_COURSE = Path(__file__).parent / "course_fixtures" / "sample"
REAL_COURSE = ROOT / "course"
BASE_URL = "https://drip.example"
WIDTHS = (375, 600)
VALUES = render.personal_values(
    first_name="Alexandra",
    unsubscribe_url=f"{BASE_URL}/u/a-long-signed-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    cta_url=f"{BASE_URL}/r/another-long-signed-token-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    confirm_url=f"{BASE_URL}/confirm/a-third-token-ccccccccccccccccccccccccccccccccccccccccc",
)


def _courses() -> list[Any]:
    real_has_lessons = any((REAL_COURSE / "lessons").glob("*.md"))
    skip_real = pytest.mark.skipif(not real_has_lessons, reason="course/ has no lessons yet")
    return [
        pytest.param(FIXTURE_COURSE, id="fixture"),
        pytest.param(REAL_COURSE, id="real", marks=skip_real),
    ]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


def _emails(course: Course) -> Iterator[tuple[str, str]]:
    """(name, personalized HTML) for every lesson and the confirmation."""
    for lesson in course.lessons:
        html, _ = render.personalize(render.render_lesson(course, lesson, BASE_URL), VALUES)
        yield f"{lesson.number:02d}", html
    html, _ = render.personalize(render.render_confirmation(course, BASE_URL), VALUES)
    yield "confirm", html


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("directory", _courses())
def test_every_email_fits_the_screen_without_sideways_scrolling(
    browser: Any, directory: Path, width: int
) -> None:
    course = load_course(directory)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": width, "height": 900})
    overflowing = []
    for name, html in _emails(course):
        page.set_content(html)
        page.screenshot(path=str(ARTIFACTS / f"{course.slug}-{name}-{width}.png"), full_page=True)
        scroll_width, inner_width = page.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        if scroll_width > inner_width:
            overflowing.append(f"{name}: {scroll_width}px wide in a {inner_width}px window")
    page.close()
    assert overflowing == []


@pytest.mark.parametrize("width", WIDTHS)
def test_disclosure_is_visible_right_above_the_button(browser: Any, width: int) -> None:
    course = load_course(FIXTURE_COURSE)
    html, _ = render.personalize(render.render_lesson(course, course.lessons[0], BASE_URL), VALUES)
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_content(html)

    button = page.locator("a.button").bounding_box()
    disclosure = page.locator("p.disclosure")
    box = disclosure.bounding_box()
    font_size = disclosure.evaluate("node => getComputedStyle(node).fontSize")
    lead_size = page.locator("p.cta-lead").evaluate("node => getComputedStyle(node).fontSize")
    page.close()

    assert button is not None and box is not None
    # FTC 16 CFR 255.5: seen before the click, right next to the CTA, never small print.
    assert 0 <= button["y"] - (box["y"] + box["height"]) <= 24
    assert float(font_size.removesuffix("px")) >= float(lead_size.removesuffix("px")) >= 14


def test_dark_mode_rules_apply_in_a_dark_browser(browser: Any) -> None:
    course = load_course(FIXTURE_COURSE)
    html, _ = render.personalize(render.render_lesson(course, course.lessons[0], BASE_URL), VALUES)
    page = browser.new_page(viewport={"width": 375, "height": 900}, color_scheme="dark")
    page.set_content(html)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{course.slug}-01-375-dark.png"), full_page=True)

    card = page.locator("td.card").evaluate("node => getComputedStyle(node).backgroundColor")
    text = page.locator("td.content").evaluate("node => getComputedStyle(node).color")
    page.close()

    assert card == "rgb(36, 34, 31)"  # the @media (prefers-color-scheme: dark) card colour
    assert text == "rgb(236, 232, 225)"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_button_labels_are_white_on_green(browser: Any, scheme: str) -> None:
    course = load_course(FIXTURE_COURSE)
    page = browser.new_page(viewport={"width": 600, "height": 900}, color_scheme=scheme)
    buttons = {}
    for name, html in _emails(course):
        page.set_content(html)
        buttons[name] = page.locator("a.button").evaluate(
            "node => [getComputedStyle(node).color,"
            " getComputedStyle(node.parentElement).backgroundColor]"
        )
    page.close()

    white_on_green = ["rgb(255, 255, 255)", "rgb(29, 107, 79)"]
    assert buttons == dict.fromkeys(buttons, white_on_green)
