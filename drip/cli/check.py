"""`drip check`: is this configuration ready to send real mail?

One line per problem. Exit 1 on any error (a placeholder sender or address, no
affiliate link, plain http, a weak key, no webhook key); warnings alone exit 0.
`drip run` applies the same rules at start (``refuse_unready``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from drip.config import ConfigError, load_settings

if TYPE_CHECKING:
    from drip.config import Settings
    from drip.course.model import Course


@click.command()
def check() -> None:
    """Check the configuration is ready for real mail; one line per problem, exit 1 on an error."""
    from drip.course.loader import load_course
    from drip.course.model import CourseError
    from drip.ops import readiness

    try:
        settings = load_settings()
        course = load_course(
            settings.course_dir,
            affiliate_url=settings.affiliate_url,
            overrides=settings.course_overrides,
        )
    except (ConfigError, CourseError) as exc:
        click.echo(f"error: {exc}")
        sys.exit(1)
    problems = readiness.check(settings, course)
    for problem in problems:
        click.echo(str(problem))
    if any(problem.level == readiness.ERROR for problem in problems):
        sys.exit(1)
    click.echo("ready to send real mail" + (" (see the warnings above)" if problems else ""))


def refuse_unready(settings: Settings, course: Course) -> None:
    """For `drip run`: exit 1 on an error when mail really goes out, else print them as warnings."""
    from drip.ops import readiness

    problems = readiness.check(settings, course)
    if not problems:
        return
    real = readiness.sends_real_mail(settings)
    if real and any(problem.level == readiness.ERROR for problem in problems):
        for problem in problems:
            click.echo(str(problem), err=True)
        click.echo("not starting: mail would really go out through SendGrid; set these", err=True)
        sys.exit(1)
    if real:
        heading = "warnings:"
    else:
        outbox = settings.email_backend == "outbox"
        where = "the outbox (files)" if outbox else settings.sendgrid_host
        heading = f"not ready for real mail (fine while mail goes to {where}):"
    click.echo(heading, err=True)
    for problem in problems:
        click.echo(f"  {problem}", err=True)
