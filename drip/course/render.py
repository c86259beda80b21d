"""Render a lesson or the confirmation email: subject, preheader, HTML and text.

A message is rendered once per lesson with ``%%drip_...%%`` placeholders where
each recipient's own values go. The SendGrid backend passes the values as
per-personalization ``substitutions``; the outbox applies them itself. Both
parts come from one layout (drip/templates/email/layout.html and layout.txt).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import css_inline
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode
from markupsafe import Markup, escape

from drip.course.model import Course, Lesson
from drip.mail.base import apply_substitutions

NAME_HTML = "%%drip_name_html%%"
NAME_TEXT = "%%drip_name_text%%"
UNSUBSCRIBE_URL = "%%drip_unsubscribe_url%%"
PREFERENCES_URL = "%%drip_preferences_url%%"
CTA_URL = "%%drip_cta_url%%"
CONFIRM_URL = "%%drip_confirm_url%%"

_TEMPLATES = Path(__file__).parent.parent / "templates"
# Jinja's Environment() does not autoescape, and a missing variable
# (an unsubscribe link!) must fail rather than vanish. Text gets its own
# environment because escaping would put "&amp;" into the plain-text part.
HTML_ENV = Environment(
    loader=FileSystemLoader(_TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEXT_ENV = Environment(
    loader=FileSystemLoader(_TEMPLATES),
    autoescape=False,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# html=False: raw HTML in a lesson is shown as text, never passed through.
_MARKDOWN = MarkdownIt("commonmark", {"html": False})
# css-inline's docs: without keep_at_rules it drops the @media rules
# (narrow screens, dark mode); keep_style_tags leaves them where clients read them.
_INLINER = css_inline.CSSInliner(
    keep_at_rules=True, keep_style_tags=True, load_remote_stylesheets=False
)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    preheader: str
    html: str
    text: str


def render_lesson(
    course: Course, lesson: Lesson, base_url: str, *, buyer: bool = False
) -> RenderedEmail:
    """A lesson with its call to action; for a ``buyer`` the course's note for buyers instead."""
    cta = {
        "lead": lesson.cta_lead or course.cta.default_lead,
        "text": course.cta.text,
        "url": CTA_URL,
        "disclosure": course.cta.disclosure,
    }
    context = _context(course, base_url, lesson.subject, lesson.preheader) | {
        "subscribed": True,
        "cta": None if buyer else cta,
        "buyers_note": course.buyers.text if buyer else "",
        "body_html": Markup(_MARKDOWN.render(lesson.body_markdown)),
        "body_text": markdown_to_text(lesson.body_markdown),
    }
    return _render("layout", context)


def render_confirmation(course: Course, base_url: str) -> RenderedEmail:
    """The double opt-in email: what they asked for, one button, and no promotion."""
    subject = "Please confirm your free email course"
    preheader = f"One click and lesson 1 of {course.title} is on its way. No click, no more email."
    context = _context(course, base_url, subject, preheader) | {
        "subscribed": False,
        "cta": None,
        "buyers_note": "",
        "confirm_url": CONFIRM_URL,
        "lesson_count": len(course.lessons),
    }
    return _render("confirm", context)


def personal_values(
    *,
    first_name: str,
    unsubscribe_url: str,
    preferences_url: str = "",
    cta_url: str = "",
    confirm_url: str = "",
    check: bool = True,
) -> dict[str, str]:
    """One recipient's placeholder values; an empty URL is left out, so its slot stays visible.

    ``check=False`` skips the check of each URL, for a caller that checked links made
    the same way already (a batch's links differ only in their tokens' safe characters).
    """
    urls = {
        UNSUBSCRIBE_URL: unsubscribe_url,
        # There is no separate preferences page: the unsubscribe page is where
        # a subscriber manages their mail.
        PREFERENCES_URL: preferences_url or unsubscribe_url,
        CTA_URL: cta_url,
        CONFIRM_URL: confirm_url,
    }
    if check:
        values = {slot: _checked_url(url) for slot, url in urls.items() if url}
    else:
        values = {slot: url for slot, url in urls.items() if url}
    name = " ".join(first_name.split()) or "there"
    # The name goes last: substitutions apply in order, so a name that looks
    # like a placeholder is inserted as-is and never expanded.
    values[NAME_HTML] = str(escape(name))
    values[NAME_TEXT] = name
    return values


def personalize(rendered: RenderedEmail, values: dict[str, str]) -> tuple[str, str]:
    """(html, text) as one recipient receives them."""
    return apply_substitutions(rendered.html, values), apply_substitutions(rendered.text, values)


# The same value fills an href and the text part, so it cannot be escaped for
# one of them: refuse what could break out of the attribute instead. A regex,
# not urlsplit: this runs for every link of every recipient of every batch.
_USABLE_URL = re.compile(r"https?://[^\"'<>\s\\]+", re.IGNORECASE)


def _checked_url(url: str) -> str:
    if not _USABLE_URL.fullmatch(url):
        raise ValueError(f"not a usable link for an email: {url!r}")
    return url


def privacy_url(base_url: str) -> str:
    """The privacy notice (GET /privacy), linked from the signup form and every email."""
    return f"{base_url.rstrip('/')}/privacy"


def _context(course: Course, base_url: str, subject: str, preheader: str) -> dict[str, Any]:
    return {
        "language": course.language,
        "subject": subject,
        "preheader": preheader,
        "course_title": course.title,
        "site": urlsplit(base_url).netloc or base_url,
        "name_html": NAME_HTML,
        "name_text": NAME_TEXT,
        "sender_name": course.sender_name,
        "postal_address": course.postal_address,
        "care_note": course.care_note,
        "privacy_url": privacy_url(base_url),
        "consent": course.landing.consent,
        "unsubscribe_url": UNSUBSCRIBE_URL,
        "preferences_url": PREFERENCES_URL,
    }


def _render(name: str, context: dict[str, Any]) -> RenderedEmail:
    html = HTML_ENV.get_template(f"email/{name}.html").render(context)
    text = TEXT_ENV.get_template(f"email/{name}.txt").render(context)
    return RenderedEmail(
        subject=context["subject"],
        preheader=context["preheader"],
        html=_INLINER.inline(html),
        text=_tidy_text(text),
    )


def _tidy_text(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    tidy: list[str] = []
    for line in lines:
        if line or (tidy and tidy[-1]):  # at most one blank line in a row
            tidy.append(line)
    return "\n".join(tidy) + "\n"


# --- Markdown to plain text ----------------------------------------------------


def markdown_to_text(source: str) -> str:
    """The plain-text twin of a lesson, from the same Markdown tokens as its HTML."""
    root = SyntaxTreeNode(_MARKDOWN.parse(source))
    return "\n\n".join(_blocks(root)) + "\n"


def _blocks(node: SyntaxTreeNode) -> list[str]:
    return [text for child in node.children if (text := _block(child))]


def _block(node: SyntaxTreeNode) -> str:
    kind = node.type
    if kind == "paragraph":
        return _inline(node.children[0])
    if kind == "heading":
        title = _inline(node.children[0])
        return f"{title}\n{'-' * len(title)}"
    if kind in ("bullet_list", "ordered_list"):
        return _list(node)
    if kind == "blockquote":
        inner = "\n\n".join(_blocks(node))
        return "\n".join(f"> {line}".rstrip() for line in inner.splitlines())
    if kind in ("code_block", "fence"):
        return "\n".join(f"    {line}" for line in node.content.rstrip("\n").splitlines())
    if kind == "hr":
        return "----"
    return "\n\n".join(_blocks(node))


def _list(node: SyntaxTreeNode) -> str:
    start = int(node.attrs.get("start", 1))
    items = []
    for index, item in enumerate(node.children):
        marker = f"{start + index}. " if node.type == "ordered_list" else "- "
        body = "\n".join(_blocks(item)).splitlines() or [""]
        indent = " " * len(marker)
        items.append("\n".join([marker + body[0], *(indent + line for line in body[1:])]))
    return "\n".join(items)


def _inline(node: SyntaxTreeNode) -> str:
    parts = []
    for child in node.children:
        if child.type == "text" or child.type == "code_inline":
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "link":
            parts.append(_link_text(_inline(child), str(child.attrs["href"])))
        elif child.type == "image":
            parts.append(_link_text(_inline(child) or "image", str(child.attrs["src"])))
        else:  # em, strong: the words stay, the markup goes
            parts.append(_inline(child))
    return "".join(parts)


def _link_text(label: str, url: str) -> str:
    if label in (url, url.removeprefix("mailto:")):
        return url
    return f"{label} ({url})"
