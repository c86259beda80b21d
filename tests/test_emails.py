"""Rendering lessons and the confirmation email (drip.emails)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import jinja2
import pytest

from drip.course import render
from drip.course.loader import load_course
from drip.course.model import Course, Lesson

FIXTURES = Path(__file__).parent / "course_fixtures"
BASE_URL = "https://drip.example"
LESSON_SLOTS = (
    render.NAME_HTML,
    render.NAME_TEXT,
    render.UNSUBSCRIBE_URL,
    render.PREFERENCES_URL,
    render.CTA_URL,
)


@pytest.fixture(scope="module")
def course() -> Course:
    return load_course(FIXTURES / "sample")


def _with_body(course: Course, markdown: str) -> Lesson:
    return dataclasses.replace(course.lessons[0], body_markdown=markdown)


def _values(**overrides: str) -> dict[str, str]:
    arguments = {
        "first_name": "Ann",
        "unsubscribe_url": "https://drip.example/u/tok-unsub",
        "preferences_url": "https://drip.example/u/tok-prefs",
        "cta_url": "https://drip.example/r/tok-cta",
        "confirm_url": "https://drip.example/confirm/tok-confirm",
    } | overrides
    return render.personal_values(**arguments)


def _squash(text: str) -> str:
    return " ".join(text.split())


def test_raw_html_in_a_lesson_is_escaped(course: Course) -> None:
    lesson = _with_body(course, "Hello <script>alert(1)</script> and <b>bold</b>.\n")

    rendered = render.render_lesson(course, lesson, BASE_URL)

    assert "<script" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert "&lt;b&gt;bold&lt;/b&gt;" in rendered.html
    assert "Hello <script>alert(1)</script> and <b>bold</b>." in rendered.text


def test_course_values_are_escaped_in_html(course: Course) -> None:
    risky = dataclasses.replace(course, title="Plants <i>& more</i>")

    rendered = render.render_lesson(risky, risky.lessons[0], BASE_URL)

    assert "Plants &lt;i&gt;&amp; more&lt;/i&gt;" in rendered.html
    assert "<i>" not in rendered.html
    assert 'signed up for "Plants <i>& more</i>"' in rendered.text


def test_first_name_is_escaped_in_html_and_raw_in_text(course: Course) -> None:
    rendered = render.render_lesson(course, course.lessons[0], BASE_URL)

    html, text = render.personalize(rendered, _values(first_name="<b>Ann</b>"))

    assert "Hi &lt;b&gt;Ann&lt;/b&gt;," in html
    assert "<b>Ann</b>" not in html
    assert text.startswith("Hi <b>Ann</b>,\n")


def test_an_unknown_first_name_greets_there(course: Course) -> None:
    rendered = render.render_lesson(course, course.lessons[0], BASE_URL)

    html, text = render.personalize(rendered, _values(first_name="  "))

    assert "Hi there," in html
    assert text.startswith("Hi there,\n")


@pytest.mark.parametrize("environment", [render.HTML_ENV, render.TEXT_ENV], ids=["html", "text"])
def test_a_missing_template_variable_fails(environment: jinja2.Environment) -> None:
    suffix = "html" if environment.autoescape else "txt"
    template = environment.get_template(f"email/layout.{suffix}")

    with pytest.raises(jinja2.UndefinedError, match="unsubscribe_url"):
        template.render(
            language="en",
            subject="s",
            preheader="p",
            course_title="t",
            site="drip.example",
            name_html="n",
            name_text="n",
            sender_name="s",
            postal_address="a",
            care_note="",
            consent="c",
            preferences_url="u",
            subscribed=True,
            cta=None,
            buyers_note="",
            body_html="",
            body_text="",
        )


def test_environments_escape_html_only() -> None:
    assert render.HTML_ENV.autoescape is True
    assert render.TEXT_ENV.autoescape is False
    assert render.HTML_ENV.undefined is jinja2.StrictUndefined
    assert render.TEXT_ENV.undefined is jinja2.StrictUndefined


def test_placeholders_survive_rendering_and_inlining(course: Course) -> None:
    rendered = render.render_lesson(course, course.lessons[0], BASE_URL)

    assert f'href="{render.CTA_URL}"' in rendered.html
    assert f'href="{render.UNSUBSCRIBE_URL}"' in rendered.html
    assert f'href="{render.PREFERENCES_URL}"' in rendered.html
    assert f"Hi {render.NAME_HTML}," in rendered.html
    for slot in (render.NAME_TEXT, render.UNSUBSCRIBE_URL, render.PREFERENCES_URL, render.CTA_URL):
        assert slot in rendered.text


def test_personal_values_fill_every_slot(course: Course) -> None:
    rendered = render.render_lesson(course, course.lessons[0], BASE_URL)

    html, text = render.personalize(rendered, _values())

    assert "%%drip_" not in html
    assert "%%drip_" not in text
    assert 'href="https://drip.example/r/tok-cta"' in html
    assert 'href="https://drip.example/u/tok-unsub"' in html
    assert "Unsubscribe: https://drip.example/u/tok-unsub" in text
    assert "Manage preferences: https://drip.example/u/tok-prefs" in text


def test_preferences_default_to_the_unsubscribe_page() -> None:
    values = render.personal_values(first_name="Ann", unsubscribe_url="https://d.example/u/t")

    assert values[render.PREFERENCES_URL] == "https://d.example/u/t"
    assert render.CTA_URL not in values  # left visible, never silently emptied


def test_a_name_that_looks_like_a_placeholder_is_not_expanded(course: Course) -> None:
    rendered = render.render_lesson(course, course.lessons[0], BASE_URL)

    _, text = render.personalize(rendered, _values(first_name=render.UNSUBSCRIBE_URL))

    assert text.startswith(f"Hi {render.UNSUBSCRIBE_URL},\n")


@pytest.mark.parametrize(
    "url", ['https://x.example/"><script>', "javascript:alert(1)", "https://x.example/a b"]
)
def test_a_link_that_could_break_the_html_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not a usable link"):
        render.personal_values(first_name="Ann", unsubscribe_url=url)


def test_call_to_action_and_disclosure_are_in_both_parts(course: Course) -> None:
    rendered = render.render_lesson(course, course.lessons[0], BASE_URL)

    for part in (rendered.html, rendered.text):
        assert course.cta.text in part
        assert course.cta.disclosure in part
        assert course.lessons[0].cta_lead in part
        assert course.postal_address in part


def _font_size(html: str, css_class: str) -> int:
    tag = re.search(rf'<p class="{css_class}" style="[^"]*font-size: (\d+)px', html)
    assert tag is not None, f"no inlined font-size on p.{css_class}"
    return int(tag.group(1))


def test_disclosure_sits_right_above_the_button_in_readable_text(course: Course) -> None:
    html = render.render_lesson(course, course.lessons[0], BASE_URL).html

    lead = html.index(course.lessons[0].cta_lead)
    disclosure = html.index(course.cta.disclosure)
    button = html.rindex("<a ", 0, html.index(f'href="{render.CTA_URL}"'))  # its <a> tag
    assert lead < disclosure < button  # read before the click, never after it
    between = html[disclosure:button]
    assert "<a " not in between  # nothing else to click between disclosure and button
    assert len(between) < 800
    # FTC 16 CFR 255.5: clear and conspicuous, so no smaller than the pitch it qualifies.
    assert _font_size(html, "disclosure") >= _font_size(html, "cta-lead") >= 17
    disclosure_tag = re.search(r'<p class="disclosure" style="([^"]*)"', html)
    assert disclosure_tag is not None
    assert "color: #222222" in disclosure_tag.group(1)  # dark text on the white card


def test_text_part_puts_the_disclosure_on_the_line_before_the_link(course: Course) -> None:
    lines = render.render_lesson(course, course.lessons[0], BASE_URL).text.splitlines()

    link = lines.index(f"{course.cta.text}: {render.CTA_URL}")
    assert lines[link - 1] == f"Disclosure: {course.cta.disclosure}"
    assert lines.index(course.lessons[0].cta_lead) < link - 1


def test_a_lesson_without_its_own_lead_uses_the_default(course: Course) -> None:
    rendered = render.render_lesson(course, course.lesson(2), BASE_URL)

    assert course.cta.default_lead in rendered.text
    assert _squash(course.cta.default_lead) in _squash(rendered.html)


def test_footer_has_consent_reason_unsubscribe_and_address(course: Course) -> None:
    rendered = render.render_lesson(course, course.lessons[0], BASE_URL)

    for part in (rendered.html, rendered.text):
        assert course.care_note in part
        assert course.landing.consent in part
        assert "drip.example" in part
    assert ">Unsubscribe</a>" in rendered.html
    assert ">Manage preferences</a>" in rendered.html


def test_media_rules_survive_inlining(course: Course) -> None:
    html = render.render_lesson(course, course.lessons[0], BASE_URL).html

    assert "@media (max-width: 620px)" in html
    assert "@media (prefers-color-scheme: dark)" in html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert re.search(r'<td class="content" style="[^"]*font-size: 17px', html)  # inlined too


def test_layout_is_a_600px_table_with_an_outlook_ghost_table(course: Course) -> None:
    html = render.render_lesson(course, course.lessons[0], BASE_URL).html

    assert re.search(r"<table [^>]*class=\"container\"[^>]*max-width: 600px", html)
    assert '<!--[if mso]><table role="presentation" width="600"' in html


def test_preheader_is_hidden_at_the_top(course: Course) -> None:
    rendered = render.render_lesson(course, course.lessons[0], BASE_URL)

    body = rendered.html[rendered.html.index("<body") :]
    assert body.index(rendered.preheader) < body.index("Hi ")
    assert re.search(r'<div class="preheader" style="display: none;', body)
    assert rendered.subject == course.lessons[0].subject


def test_markdown_becomes_plain_text() -> None:
    markdown = (
        "Some *soft* and **strong** words with `code`.\n\n"
        "## A heading\n\n"
        "- one\n- two with [a link](https://x.example/a)\n\n"
        "3. third\n4. fourth\n\n"
        "> quoted\n\n"
        "<https://x.example/auto> and [mail](mailto:a@x.example)\n"
    )

    assert render.markdown_to_text(markdown) == (
        "Some soft and strong words with code.\n\n"
        "A heading\n---------\n\n"
        "- one\n- two with a link (https://x.example/a)\n\n"
        "3. third\n4. fourth\n\n"
        "> quoted\n\n"
        "https://x.example/auto and mail (mailto:a@x.example)\n"
    )


def test_confirmation_asks_for_one_click_and_promotes_nothing(course: Course) -> None:
    rendered = render.render_confirmation(course, BASE_URL)

    assert rendered.subject == "Please confirm your free email course"
    assert course.title in rendered.preheader
    assert f'href="{render.CONFIRM_URL}"' in rendered.html
    assert f"Yes, send me the course: {render.CONFIRM_URL}" in rendered.text
    for part in (rendered.html, rendered.text):
        assert course.title in part
        assert "4 short lessons, one a day" in part
        assert "ignore this email" in part
        assert course.postal_address in part
        for promotion in (
            course.cta.product,
            course.cta.author,
            course.cta.text,
            course.cta.url,
            course.cta.disclosure,
            course.cta.default_lead,
            render.CTA_URL,
            render.UNSUBSCRIBE_URL,
        ):
            assert promotion not in part


def test_confirmation_personalizes(course: Course) -> None:
    rendered = render.render_confirmation(course, BASE_URL)

    html, text = render.personalize(rendered, _values())

    assert 'href="https://drip.example/confirm/tok-confirm"' in html
    assert "%%drip_" not in html + text


@pytest.mark.parametrize("directory", ["sample", "three-day"])
def test_every_lesson_stays_well_under_gmails_clipping_size(directory: str) -> None:
    course = load_course(FIXTURES / directory)

    for lesson in course.lessons:
        html, _ = render.personalize(render.render_lesson(course, lesson, BASE_URL), _values())
        assert len(html.encode("utf-8")) < 100_000  # Gmail clips HTML at ~102 KB
    confirmation = render.render_confirmation(course, BASE_URL)
    assert len(confirmation.html.encode("utf-8")) < 100_000
