"""The dependencies that views, tasks and CLI commands hand to the use cases.

Built once per process from the settings: database, course, mailer, links and
the clock. Below the use cases in the layers, so any of them may take it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from flask import current_app
from kombu.exceptions import OperationalError

from drip.clock import Clock, system_clock
from drip.config import Settings
from drip.course.loader import load_course
from drip.course.model import Course
from drip.data.db import Database
from drip.mail.base import Mailer
from drip.mail.factory import make_mailer
from drip.sending.journal import SendJournal
from drip.sending.rate import RateLimitedMailer, SendRate
from drip.tokens import Links, Tokens


@dataclass
class Services:
    settings: Settings
    database: Database
    course: Course
    mailer: Mailer
    tokens: Tokens
    links: Links
    clock: Clock = system_clock
    # Where send tasks note each request to the provider (drip/sending/journal.py).
    journal: SendJournal | None = None

    def now(self) -> datetime:
        return self.clock()


def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    tokens = Tokens(settings.secret_key, confirm_max_age=settings.confirm_max_age_seconds)
    return Services(
        settings=settings,
        database=Database(settings.database_url),
        course=load_course(
            settings.course_dir,
            affiliate_url=settings.affiliate_url,
            overrides=settings.course_overrides,
        ),
        mailer=build_mailer(settings),
        tokens=tokens,
        links=Links(settings.base_url, tokens),
        clock=clock or system_clock,
        # The queue's name keeps two deployments sharing one Redis apart.
        journal=SendJournal.from_url(settings.broker_url, namespace=settings.task_queue),
    )


def build_mailer(settings: Settings) -> Mailer:
    """The backend the settings ask for, behind the shared send rate when one is set."""
    mailer = make_mailer(settings)
    if settings.send_rate:
        # DRIP_SEND_RATE is one budget for every worker, so it lives in the shared Redis.
        return RateLimitedMailer(mailer, SendRate.from_url(settings.broker_url, settings.send_rate))
    return mailer


def send_queue_length(settings: Settings) -> Callable[[], int]:
    """How many messages wait in the send queue (the broker is Redis: a list per queue).

    What a tick paces its hand-outs by (drip/sending/pace.py). Tasks go without a
    priority, so the queue is the one list named after it.
    """
    client = redis.Redis.from_url(settings.broker_url, socket_timeout=2, socket_connect_timeout=2)
    return lambda: int(client.llen(settings.task_queue))


def current_services() -> Services:
    services: Services = current_app.extensions["drip"]
    return services


def enqueue(task_name: str, *args: Any) -> None:
    """Queue a task by name on this Flask app's own Celery app (tests run more than one app).

    By name, so that views and use cases never import the task module.
    """
    current_app.extensions["celery"].send_task(task_name, args=list(args))


def kick_tick() -> None:
    """Run a tick now rather than at the next beat (lesson 1 after confirming, a restart,
    an operator's retry). If the broker is down the periodic tick still finds the work:
    it is due in the database."""
    with contextlib.suppress(OperationalError):
        enqueue("drip.tick")
