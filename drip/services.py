"""What the app, the tasks and the CLI share: settings, database, course, mailer, links, clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from flask import current_app

from drip.config import Settings
from drip.course import Course, load_course
from drip.db import Database
from drip.mail.base import Mailer
from drip.mail.factory import make_mailer
from drip.sending import Links
from drip.tokens import Tokens

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    database: Database
    course: Course
    mailer: Mailer
    tokens: Tokens
    links: Links
    clock: Clock = system_clock

    def now(self) -> datetime:
        return self.clock()


def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    tokens = Tokens(settings.secret_key, confirm_max_age=settings.confirm_max_age_seconds)
    return Services(
        settings=settings,
        database=Database(settings.database_url),
        course=load_course(settings.course_dir, affiliate_url=settings.affiliate_url),
        mailer=make_mailer(settings),
        tokens=tokens,
        links=Links(settings.base_url, tokens),
        clock=clock or system_clock,
    )


def current_services() -> Services:
    services: Services = current_app.extensions["drip"]
    return services
