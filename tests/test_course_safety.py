"""The shipped course is safe and honest to send.

Every check loads course/ with the project's own loader and renders it with the
project's own templates, the way subscribers receive it:

- where to get help (911, the National Domestic Violence Hotline, the 988
  Suicide & Crisis Lifeline, and a way to find help outside the US) is in
  every lesson's footer in both parts, on the landing page and in the
  confirmation email;
- every call to action is labeled "(affiliate link)", and the commission
  disclosure is read before the button, in type no smaller than the pitch;
- lessons tell the reader to respect a no-contact request or a court order;
- lessons 1-9 end with a "Tomorrow:" teaser and every lesson is signed by
  the named sender;
- US spelling, and none of the phrases removed for being unsafe, unsourced
  or unchecked against the product come back.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from drip.course import render
from drip.course.loader import load_course
from drip.course.model import Course, Lesson
from drip.course.preview import sample_values
from tests.conftest import Stack, wait_until
from tests.mailbox import html_part, messages, text_part

COURSE_DIR = Path(__file__).resolve().parent.parent / "course"
BASE_URL = "https://drip.example"
LESSON_NUMBERS = range(1, 11)
TEXT_DIVIDER = "-" * 40  # where the text part's footer starts (layout.txt)

# What a reader in danger needs, word for word as they would dial or type it.
CRISIS_CONTACTS = (
    "call 911",
    "National Domestic Violence Hotline at 1-800-799-7233",
    "text START to 88788",
    "988 Suicide & Crisis Lifeline",
    "Outside the US, call your local emergency number",
    "findahelpline.com",
)
BRITISH_SPELLINGS = (
    r"\bmums?\b",
    r"\bdiar(?:y|ies)\b",
    r"\bapologis(?:e|ed|es|ing)\b",
    r"\bcounsell(?:ing|or|ors)\b",
    r"\bbehaviours?\b",
    r"\bcolour",
    r"\bfavourites?\b",
    r"\brealis(?:e|ed|es|ing)\b",
    r"\borganis(?:e|ed|es|ing|ation)\b",
)
# Removed on purpose: unsafe advice, claims no source makes, and promises
# about the product that nobody checked.
BANNED_PHRASES = (
    "runs him down",
    "positivity is contagious",
    "plenty of separated husbands",
    "noticing more than he lets on",
    "not the big dramatic betrayals",
    "feel safe coming back to",
    "we only recommend",
    "guided",
    "at your own pace",
)
AFFILIATE_LABEL = "(affiliate link)"


class _VisibleText(HTMLParser):
    """The text a reader sees in an HTML page, whitespace squashed."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self._chunks: list[str] = []
        self._hidden = 0
        self.feed(html)
        self.close()
        self.text = _squash("".join(self._chunks))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in ("style", "title", "script")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("style", "title", "script")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._chunks.append(data)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _visible(html: str) -> str:
    return _VisibleText(html).text


def _missing_contacts(text: str) -> list[str]:
    return [contact for contact in CRISIS_CONTACTS if contact not in text]


@pytest.fixture(scope="module")
def course() -> Course:
    return load_course(COURSE_DIR)


def _received(course: Course, lesson: Lesson) -> tuple[str, str]:
    """(html, text) of a lesson as a subscriber receives it."""
    rendered = render.render_lesson(course, lesson, BASE_URL)
    return render.personalize(rendered, sample_values(course, BASE_URL))


def _care_paragraph(html: str) -> str:
    match = re.search(r'<p class="care"[^>]*>(.*?)</p>', html, re.DOTALL)
    assert match is not None, 'no <p class="care"> in the page'
    return _visible(match.group(1))


def _reader_facing_copy(course: Course) -> list[tuple[str, str]]:
    """(where, text) for every piece of course copy a reader can see."""
    copy = [
        ("title", course.title),
        ("sender name", course.sender_name),
        ("care note", course.care_note),
        ("cta.text", course.cta.text),
        ("cta.disclosure", course.cta.disclosure),
        ("cta.default_lead", course.cta.default_lead),
        ("landing.headline", course.landing.headline),
        ("landing.intro", course.landing.intro),
        ("landing.consent", course.landing.consent),
        *((f"landing.covers[{i}]", cover) for i, cover in enumerate(course.landing.covers)),
    ]
    for lesson in course.lessons:
        name = lesson.path.name
        copy += [
            (f"{name} subject", lesson.subject),
            (f"{name} preheader", lesson.preheader),
            (f"{name} cta_lead", lesson.cta_lead),
            (f"{name} body", lesson.body_markdown),
        ]
    return copy


# --- where to get help ---------------------------------------------------------


@pytest.mark.parametrize("number", LESSON_NUMBERS)
def test_every_lesson_footer_names_the_crisis_contacts_in_both_parts(
    course: Course, number: int
) -> None:
    html, text = _received(course, course.lesson(number))

    footer_html = html[html.index('class="footer"') :]
    assert _missing_contacts(_care_paragraph(footer_html)) == []
    footer_text = _squash(text[text.index(TEXT_DIVIDER) :])
    assert _missing_contacts(footer_text) == []


def test_the_first_lesson_names_the_numbers_in_its_own_words_too(course: Course) -> None:
    body = _squash(render.markdown_to_text(course.lesson(1).body_markdown))

    for number in ("911", "1-800-799-7233", "START to 88788", "findahelpline.com"):
        assert number in body


def test_the_landing_page_shows_the_crisis_contacts_before_the_signup_form(
    stack: Stack,
) -> None:
    page = stack.client.get("/").get_data(as_text=True)

    assert _missing_contacts(_care_paragraph(page)) == []
    assert page.index('<p class="care"') < page.index("<form")


def test_the_confirmation_email_names_the_crisis_contacts_in_both_parts(stack: Stack) -> None:
    response = stack.client.post("/api/v1/subscribers", json={"email": "safe@example.com"})
    assert response.status_code < 300, response.get_data(as_text=True)

    confirmation = wait_until(lambda: messages(stack.outbox, to="safe@example.com"))[0]

    assert "confirm" in str(confirmation["Subject"]).lower()
    assert _missing_contacts(_care_paragraph(html_part(confirmation))) == []
    assert _missing_contacts(_squash(text_part(confirmation))) == []


# --- the affiliate link is labeled, and disclosed before the click --------------------


def test_every_cta_lead_in_is_labeled_as_an_affiliate_link(course: Course) -> None:
    assert AFFILIATE_LABEL in course.cta.default_lead
    for lesson in course.lessons:
        lead = lesson.cta_lead or course.cta.default_lead
        assert AFFILIATE_LABEL in lead, f"{lesson.path.name}: cta_lead lacks {AFFILIATE_LABEL}"
        html, text = _received(course, lesson)
        assert AFFILIATE_LABEL in _visible(html)
        assert AFFILIATE_LABEL in text


def test_cta_lead_ins_promise_nothing_unchecked_about_the_product(course: Course) -> None:
    leads = [course.cta.default_lead, *(lesson.cta_lead for lesson in course.lessons)]
    for lead in leads:
        for word in ("guided", "at your own pace", "longer"):
            assert word not in lead.lower(), f"{word!r} in lead-in: {lead}"


def _font_size(html: str, css_class: str) -> int:
    match = re.search(rf'<p class="{css_class}" style="[^"]*font-size: (\d+)px', html)
    assert match is not None, f"no inlined font-size on p.{css_class}"
    return int(match.group(1))


@pytest.mark.parametrize("number", LESSON_NUMBERS)
def test_the_disclosure_comes_before_the_button_in_both_parts(course: Course, number: int) -> None:
    lesson = course.lesson(number)
    html, text = _received(course, lesson)
    lead = lesson.cta_lead or course.cta.default_lead

    button = html.rindex("<a ", 0, html.index(f'href="{course.cta.url}"'))
    disclosure = html.index(course.cta.disclosure)
    assert html.index(lead) < disclosure < button
    assert "<a " not in html[disclosure:button]  # nothing else to click in between
    assert _font_size(html, "disclosure") >= _font_size(html, "cta-lead")

    link_line = f"{course.cta.text}: {course.cta.url}"
    assert text.index(lead) < text.index(course.cta.disclosure) < text.index(link_line)


def test_the_disclosure_states_the_commission_and_no_unrecorded_review(course: Course) -> None:
    disclosure = course.cta.disclosure.lower()

    assert "commission" in disclosure
    assert "recommend" not in disclosure


# --- contact the reader must not make -------------------------------------------------


@pytest.mark.parametrize("number", [1, 3, 4, 5, 7])
def test_lessons_say_to_respect_a_no_contact_request_or_court_order(
    course: Course, number: int
) -> None:
    body = _squash(course.lesson(number).body_markdown).lower()

    assert re.search(r"\bno[- ]contact\b", body), f"lesson {number} does not mention no-contact"
    assert "court order" in body, f"lesson {number} does not mention a court order"


# --- craft: a reason to open tomorrow, and a person who signs ---------------------------


@pytest.mark.parametrize("number", LESSON_NUMBERS)
def test_lessons_end_with_a_teaser_and_a_signed_sign_off(course: Course, number: int) -> None:
    body = course.lesson(number).body_markdown
    paragraphs = [p.strip() for p in body.strip().split("\n\n")]
    first_name = course.sender_name.split()[0]

    assert paragraphs[-1].splitlines()[-1] == first_name, f"lesson {number}: not signed"
    assert first_name in course.sender_name and first_name != course.sender_name
    teasers = [p for p in paragraphs if p.startswith("**Tomorrow:**")]
    if number < len(course.lessons):
        assert len(teasers) == 1, f"lesson {number}: needs one '**Tomorrow:**' teaser"
        assert "\n" not in teasers[0], f"lesson {number}: the teaser is one line"
        assert paragraphs.index(teasers[0]) > max(
            i for i, p in enumerate(paragraphs) if p.startswith("**Today:**")
        )
    else:
        assert teasers == [], "the last lesson has no tomorrow"


# --- language ---------------------------------------------------------------------------


def test_the_course_uses_us_spelling(course: Course) -> None:
    found = [
        f"{where}: {match.group(0)!r}"
        for where, copy in _reader_facing_copy(course)
        for pattern in BRITISH_SPELLINGS
        for match in re.finditer(pattern, copy, re.IGNORECASE)
    ]
    for lesson in course.lessons:
        html, text = _received(course, lesson)
        for part, copy in (("HTML", _visible(html)), ("text", text)):
            found += [
                f"lesson {lesson.number} {part} part: {match.group(0)!r}"
                for pattern in BRITISH_SPELLINGS
                for match in re.finditer(pattern, copy, re.IGNORECASE)
            ]
    assert found == []


def test_none_of_the_removed_phrases_come_back(course: Course) -> None:
    found = [
        f"{where}: {phrase!r}"
        for where, copy in _reader_facing_copy(course)
        for phrase in BANNED_PHRASES
        if phrase in _squash(copy).lower()
    ]
    assert found == []
