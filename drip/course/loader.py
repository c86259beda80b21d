"""Load and validate a course directory: ``course.toml`` plus ``lessons/NN-slug.md``.

``load_course`` turns the directory into frozen values or raises ``CourseError``
listing every problem at once; ``check_course`` adds the checks that need the
rendered emails. No database, no Flask: the CLI, the web app and the tests all
call the same two functions.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt

from drip.course import render
from drip.course.model import (
    Buyers,
    CallToAction,
    Course,
    CourseError,
    Landing,
    Lesson,
    Problem,
)

MAX_SUBJECT_CHARS = 60
# Gmail clips HTML over ~102 KB, and the clipped tail
# holds the unsubscribe link and the postal address. Stay clearly below.
MAX_HTML_BYTES = 100_000

_LESSON_NAME = re.compile(r"^(\d\d)-([a-z0-9]+(?:-[a-z0-9]+)*)\.md$")
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_FENCE = "+++"


# Course fields the operator may set in the environment instead of the course file.
OVERRIDABLE = ("sender_name", "sender_email", "reply_to", "postal_address")


def load_course(
    directory: str | Path,
    affiliate_url: str | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Course:
    """The course in ``directory``; ``affiliate_url`` (DRIP_AFFILIATE_URL) replaces cta.url,
    ``overrides`` (DRIP_SENDER_NAME and the like, see Settings.course_overrides) the sender
    and postal address."""
    course, problems = _read_course(Path(directory))
    unknown = set(overrides or {}) - set(OVERRIDABLE)
    if unknown:
        raise ValueError(f"not overridable course fields: {sorted(unknown)}")
    if course is not None and overrides:
        changes: dict[str, Any] = dict(overrides)
        course = replace(course, **changes)
    if course is not None and affiliate_url:
        if _is_https(affiliate_url):
            course = replace(course, cta=replace(course.cta, url=affiliate_url))
        else:
            message = f"{affiliate_url!r} is not an absolute https:// URL: fix or unset it"
            problems.append(Problem("DRIP_AFFILIATE_URL", None, message))
    if problems or course is None:
        raise CourseError(_in_file_order(problems))
    return course


def check_course(directory: str | Path, base_url: str = "https://drip.example") -> list[Problem]:
    """Every problem in the course, structural and in the rendered emails; never raises."""
    course, problems = _read_course(Path(directory))
    if course is not None:
        problems += _rendered_problems(course, base_url)
    return _in_file_order(problems)


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda problem: (problem.path, problem.line or 0))


def _read_course(directory: Path) -> tuple[Course | None, list[Problem]]:
    """The course (None when course.toml is unusable) and every structural problem."""
    lessons, problems, last_number = _read_lessons(directory)
    settings, settings_problems = _read_settings(directory, last_number)
    problems = settings_problems + problems
    if settings is None:
        return None, problems
    return Course(**settings, lessons=lessons, directory=directory), problems


# --- course.toml -------------------------------------------------------------


class _TomlLines:
    """Where keys sit in a TOML text: tomllib gives values, not line numbers."""

    _TABLE = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")

    def __init__(self, text: str, first_line: int = 1, top_line: int | None = None) -> None:
        self.keys: dict[tuple[str, str], int] = {}
        self.tables: dict[str, int] = {}
        self.top_line = top_line  # where to point for a key missing at the top level
        table = ""
        for number, line in enumerate(text.splitlines(), start=first_line):
            if match := self._TABLE.match(line):
                table = match.group(1)
                self.tables.setdefault(table, number)
            elif match := self._KEY.match(line):
                self.keys.setdefault((table, match.group(1)), number)

    def line(self, table: str, key: str | None = None) -> int | None:
        if key is not None and (table, key) in self.keys:
            return self.keys[(table, key)]
        return self.tables.get(table) if table else self.top_line


class _Fields:
    """Typed reads from one TOML table; each bad value becomes a Problem with its line."""

    def __init__(
        self, data: dict[str, Any], where: str, lines: _TomlLines, problems: list[Problem]
    ) -> None:
        self.data, self.where, self.lines, self.problems = data, where, lines, problems
        self.table = ""
        self.absent = False  # the whole table is missing and already reported

    def sub(self, key: str) -> _Fields:
        """The table under ``key``; when it is missing that is one problem, not one per key."""
        fields = _Fields({}, self.where, self.lines, self.problems)
        fields.table = self._name(key)
        if key not in self.data:
            self.problem(None, f"missing table [{fields.table}]: add it with its keys")
            fields.absent = True
        else:
            value = self._get(key, dict, required=True)
            fields.data, fields.absent = value or {}, value is None
        return fields

    def text(self, key: str, *, required: bool = True) -> str:
        value = self._get(key, str, required=required)
        if value is not None and required and not value.strip():
            self.problem(key, f'"{self._name(key)}" is empty')
        return (value or "").strip()

    def integer(self, key: str) -> int | None:
        value: int | None = self._get(key, int, required=True)
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self._get(key, list, required=True)
        if value is None:
            return ()
        if not value or not all(isinstance(item, str) and item.strip() for item in value):
            self.problem(key, f'"{self._name(key)}" must be a non-empty list of non-empty strings')
            return ()
        return tuple(item.strip() for item in value)

    def reject_unknown(self, known: set[str]) -> None:
        for key in sorted(self.data.keys() - known):
            self.problem(key, f'unknown key "{self._name(key)}": check its spelling')

    def problem(self, key: str | None, message: str) -> None:
        self.problems.append(Problem(self.where, self.lines.line(self.table, key), message))

    def _get(self, key: str, kind: type, *, required: bool) -> Any:
        if key not in self.data:
            if required and not self.absent:
                place = f"under [{self.table}]" if self.table else "at the top of the file"
                self.problem(None, f'missing key "{self._name(key)}": add it {place}')
            return None
        value = self.data[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            wanted = {str: "a string", int: "a whole number", list: "a list", dict: "a table"}
            self.problem(key, f'"{self._name(key)}" must be {wanted[kind]}, not {value!r}')
            return None
        return value

    def _name(self, key: str) -> str:
        return f"{self.table}.{key}" if self.table else key


def _read_settings(
    directory: Path, lesson_count: int
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """course.toml as Course keyword arguments, or None when anything in it is wrong."""
    path = directory / "course.toml"
    text, problem = _read_text(path)
    if problem is not None:
        return None, [problem]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [_toml_problem(str(path), exc, first_line=1)]
    problems: list[Problem] = []
    top = _Fields(data, str(path), _TomlLines(text), problems)
    top.reject_unknown({"slug", "title", "language", "send_hour", *_TABLES})
    settings = {
        **_top_from(top),
        **_sender_from(top.sub("sender")),
        **_footer_from(top.sub("footer")),
        "cta": _cta_from(top.sub("cta")),
        "landing": _landing_from(top.sub("landing"), lesson_count),
        "buyers": _buyers_from(top),
    }
    return (None if problems else settings), problems


_TABLES = ("sender", "footer", "cta", "landing", "buyers")


def _top_from(top: _Fields) -> dict[str, Any]:
    slug = top.text("slug")
    if slug and not _SLUG.match(slug):
        top.problem("slug", f'slug "{slug}" must be lowercase letters, digits and hyphens')
    send_hour = top.integer("send_hour")
    if send_hour is not None and not 0 <= send_hour <= 23:
        top.problem("send_hour", f"send_hour is {send_hour}: use a local hour from 0 to 23")
    return {
        "slug": slug,
        "title": top.text("title"),
        "language": top.text("language"),
        "send_hour": send_hour or 0,
    }


def _sender_from(sender: _Fields) -> dict[str, str]:
    sender.reject_unknown({"name", "email", "reply_to"})
    values = {
        "sender_name": sender.text("name"),
        "sender_email": sender.text("email"),
        "reply_to": sender.text("reply_to", required=False),
    }
    for key, value in (("email", values["sender_email"]), ("reply_to", values["reply_to"])):
        if value and not _EMAIL.match(value):
            sender.problem(key, f'sender.{key} "{value}" is not an email address')
    return values


def _footer_from(footer: _Fields) -> dict[str, str]:
    footer.reject_unknown({"postal_address", "care_note"})
    return {
        "postal_address": footer.text("postal_address"),  # CAN-SPAM: in every commercial email
        # Required: a course may reach readers in distress, so it says where real help is
        # (on the landing page, in the confirmation and in every lesson).
        "care_note": footer.text("care_note"),
    }


def _cta_from(cta: _Fields) -> CallToAction:
    keys = ("product", "author", "text", "url", "disclosure", "default_lead")
    cta.reject_unknown(set(keys))
    values = {key: cta.text(key) for key in keys}
    if values["url"] and not _is_https(values["url"]):
        cta.problem("url", f'cta.url "{values["url"]}" must be an absolute https:// URL')
    return CallToAction(**values)


def _buyers_from(top: _Fields) -> Buyers:
    """The optional [buyers] table: a short note shown instead of the pitch after a sale."""
    if "buyers" not in top.data:
        return Buyers()
    buyers = top.sub("buyers")
    buyers.reject_unknown({"text"})
    return Buyers(text=buyers.text("text") or Buyers().text)


def _landing_from(landing: _Fields, lesson_count: int) -> Landing:
    landing.reject_unknown({"headline", "intro", "covers", "consent"})
    covers = landing.texts("covers")
    if covers and lesson_count and len(covers) != lesson_count:
        count = len(covers)
        message = f"landing.covers has {count} lines for {lesson_count} lessons: one per lesson"
        landing.problem("covers", message)
    return Landing(
        headline=landing.text("headline"),
        intro=landing.text("intro"),
        covers=covers,
        consent=landing.text("consent"),
    )


def _toml_problem(where: str, exc: tomllib.TOMLDecodeError, first_line: int) -> Problem:
    message, line = str(exc), None
    if match := re.search(r"\s*\(at line (\d+), column \d+\)$", message):
        message, line = message[: match.start()], int(match.group(1)) + first_line - 1
    return Problem(where, line, f"invalid TOML: {message}")


def _read_text(path: Path) -> tuple[str, Problem | None]:
    try:
        return path.read_text(encoding="utf-8"), None
    except FileNotFoundError:
        return "", Problem(str(path), None, "file is missing")
    except (OSError, UnicodeDecodeError) as exc:
        return "", Problem(str(path), None, f"cannot read the file: {exc}")


def _is_https(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(parts.hostname)


# --- lessons -----------------------------------------------------------------


def _read_lessons(directory: Path) -> tuple[tuple[Lesson, ...], list[Problem], int]:
    """Every readable lesson in number order, the problems of all, and the last number."""
    lessons_dir = directory / "lessons"
    if not lessons_dir.is_dir():
        return (), [Problem(str(lessons_dir), None, "missing: add lessons/01-<slug>.md and on")], 0
    by_number, problems = _lesson_files(lessons_dir)
    lessons = []
    for number, paths in sorted(by_number.items()):
        lesson, lesson_problems = _read_lesson(paths[0], number)
        problems += lesson_problems
        if lesson is not None:
            lessons.append(lesson)
    return tuple(lessons), problems, max(by_number, default=0)


def _lesson_files(lessons_dir: Path) -> tuple[dict[int, list[Path]], list[Problem]]:
    by_number: dict[int, list[Path]] = {}
    problems = []
    for path in sorted(lessons_dir.iterdir()):
        if path.name.startswith("."):  # editor swap files, .DS_Store
            continue
        match = _LESSON_NAME.match(path.name)
        if match is None or not path.is_file():
            message = "not a lesson file name: use NN-slug.md, e.g. 01-first-step.md"
            problems.append(Problem(str(path), None, message))
        elif int(match.group(1)) == 0:
            problems.append(Problem(str(path), None, "lesson numbers start at 01"))
        else:
            by_number.setdefault(int(match.group(1)), []).append(path)
    problems += _numbering_problems(lessons_dir, by_number)
    return by_number, problems


def _numbering_problems(lessons_dir: Path, by_number: dict[int, list[Path]]) -> list[Problem]:
    if not by_number:
        return [Problem(str(lessons_dir), None, "no lessons: add lessons/01-<slug>.md")]
    problems = [
        Problem(str(extra), None, f"lesson number {number:02d} is also used by {paths[0].name}")
        for number, paths in sorted(by_number.items())
        for extra in paths[1:]
    ]
    last = max(by_number)
    problems += [
        Problem(str(lessons_dir), None, f"lesson {number:02d} is missing: number 01..{last:02d}")
        for number in range(1, last + 1)
        if number not in by_number
    ]
    return problems


def _read_lesson(path: Path, number: int) -> tuple[Lesson | None, list[Problem]]:
    text, problem = _read_text(path)
    if problem is not None:
        return None, [problem]
    where = str(path)
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].rstrip("\r\n") != _FENCE:
        message = 'missing front matter: start the file with a line "+++", the keys, then "+++"'
        return None, [Problem(where, 1, message)]
    close = next((i for i, line in enumerate(lines) if i and line.rstrip("\r\n") == _FENCE), None)
    if close is None:
        return None, [Problem(where, 1, 'front matter is not closed: add a line "+++" after it')]
    front, body = "".join(lines[1:close]), "".join(lines[close + 1 :])
    try:
        data = tomllib.loads(front)
    except tomllib.TOMLDecodeError as exc:
        return None, [_toml_problem(where, exc, first_line=2)]
    problems: list[Problem] = []
    fields = _Fields(data, where, _TomlLines(front, first_line=2, top_line=1), problems)
    lesson = Lesson(
        number=number,
        slug=path.stem.split("-", 1)[1],
        subject=fields.text("subject"),
        preheader=fields.text("preheader"),
        cta_lead=fields.text("cta_lead", required=False),
        body_markdown=body,
        path=path,
    )
    fields.reject_unknown({"subject", "preheader", "cta_lead"})
    if len(lesson.subject) > MAX_SUBJECT_CHARS:
        count = len(lesson.subject)
        fields.problem("subject", f"subject is {count} characters: keep it to {MAX_SUBJECT_CHARS}")
    if not body.strip():
        problems.append(Problem(where, close + 2, "the lesson body is empty"))
    problems += _link_problems(where, body, first_line=close + 2)
    return lesson, problems


class _EveryLink(MarkdownIt):
    """Sees links the renderer would silently drop (javascript:, vbscript:) so they get reported."""

    def validateLink(self, url: str) -> bool:
        return True


_LINKS = _EveryLink("commonmark", {"html": False})


def _link_problems(where: str, body: str, first_line: int) -> list[Problem]:
    """Only absolute https URLs in href, built by the server (mailto: is harmless)."""
    problems = []
    for block in _LINKS.parse(body):
        for token in block.children or ():
            url = token.attrGet("href") if token.type == "link_open" else token.attrGet("src")
            if token.type not in ("link_open", "image") or not isinstance(url, str):
                continue
            message = _link_message(url)
            if message:
                line = first_line + block.map[0] if block.map else None
                problems.append(Problem(where, line, message))
    return problems


def _link_message(url: str) -> str | None:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "mailto" or _is_https(url):
        return None
    if not scheme:
        return f'relative link "{url}": write the full https:// address'
    return f'link "{url}" uses {scheme}:, only https:// links (and mailto:) are allowed'


# --- rendered checks ---------------------------------------------------------


class _PageFacts(HTMLParser):
    """The visible text and the link targets of an HTML email."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.hrefs: set[str] = set()
        self._hidden = 0
        self.feed(html)
        self.close()
        self.text = _squash("".join(self.chunks))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in ("style", "title")
        self.hrefs.update(value for name, value in attrs if name == "href" and value)

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("style", "title")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.chunks.append(data)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _rendered_problems(course: Course, base_url: str) -> list[Problem]:
    base = base_url.rstrip("/")
    values = render.personal_values(
        first_name="Sample",
        unsubscribe_url=f"{base}/u/check-unsubscribe",
        preferences_url=f"{base}/u/check-preferences",
        cta_url=f"{base}/r/check-cta",
    )
    problems = []
    for lesson in course.lessons:
        try:
            html, text = render.personalize(render.render_lesson(course, lesson, base_url), values)
        except Exception as exc:  # a check reports a broken course, it never crashes on one
            problems.append(Problem(str(lesson.path), None, f"cannot render the email: {exc}"))
            continue
        messages = _email_messages(course, html, text, values)
        problems += [Problem(str(lesson.path), None, message) for message in messages]
    return problems


def _email_messages(course: Course, html: str, text: str, values: dict[str, str]) -> list[str]:
    page, plain = _PageFacts(html), _squash(text)
    messages = []
    # CAN-SPAM and the FTC Endorsement Guides (16 CFR 255.5): CTA with its disclosure,
    # a working opt-out and the postal
    # address (CAN-SPAM) must be in both parts: some people only ever see one.
    required_text = {
        "call-to-action text": course.cta.text,
        "affiliate disclosure": course.cta.disclosure,
        "postal address": course.postal_address,
        "care note": course.care_note,
    }
    for label, wanted in required_text.items():
        for part, seen in (("HTML", page.text), ("text", plain)):
            if _squash(wanted) not in seen:
                messages.append(f"the {part} part lacks the {label}")
    links = {"call-to-action": render.CTA_URL, "unsubscribe": render.UNSUBSCRIBE_URL}
    for label, placeholder in links.items():
        if values[placeholder] not in page.hrefs:
            messages.append(f"the HTML part lacks the {label} link")
        if values[placeholder] not in text:
            messages.append(f"the text part lacks the {label} link")
    for marker in ("{{", "{%", "%%drip_"):
        if marker in html or marker in text:
            messages.append(
                f'unresolved template syntax "{marker}" in the email: lessons are plain Markdown'
            )
    size = len(html.encode("utf-8"))
    if size >= MAX_HTML_BYTES:
        messages.append(f"the HTML is {size} bytes: keep it under {MAX_HTML_BYTES} (Gmail clips)")
    return messages
