"""A course as frozen values: its settings, call to action, landing page and lessons."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CallToAction:
    product: str
    author: str
    text: str
    url: str
    disclosure: str
    default_lead: str


DEFAULT_BUYERS_TEXT = (
    "Thank you for your purchase. The course goes on: the next lessons still come, "
    "one a day, with no more recommendations."
)


@dataclass(frozen=True)
class Buyers:
    """What replaces the call to action for someone who already bought."""

    text: str = DEFAULT_BUYERS_TEXT


@dataclass(frozen=True)
class Lesson:
    number: int
    slug: str
    subject: str
    preheader: str
    cta_lead: str
    body_markdown: str
    path: Path


@dataclass(frozen=True)
class Landing:
    headline: str
    intro: str
    covers: tuple[str, ...]
    consent: str


@dataclass(frozen=True)
class Course:
    slug: str
    title: str
    language: str
    send_hour: int
    sender_name: str
    sender_email: str
    reply_to: str
    postal_address: str
    care_note: str
    cta: CallToAction
    landing: Landing
    lessons: tuple[Lesson, ...]
    directory: Path
    buyers: Buyers = Buyers()

    def lesson(self, number: int) -> Lesson:
        for lesson in self.lessons:
            if lesson.number == number:
                return lesson
        raise LookupError(
            f"course {self.slug!r} has no lesson {number}: it has lessons 1..{len(self.lessons)}"
        )

    @property
    def consent_version(self) -> str:
        """Names the exact consent sentence a subscriber was shown (GDPR: provable consent)."""
        return hashlib.sha256(self.landing.consent.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Problem:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


class CourseError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems
