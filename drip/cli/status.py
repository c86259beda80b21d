"""`drip status`: the dashboard's health screen and the funnel, in a terminal.

The exit code is the worst signal: 0 green, 1 amber, 2 red, so cron or a CI
job can alert on it. When the check itself cannot run (a bad setting, a broken
course) the exit code is 2 as well: nobody can vouch for the service then.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from drip.ops import health, stats

COLORS = ("green", "yellow", "red")  # by level: green, amber, red
CANNOT_CHECK = 2


def report_lines(report: health.Report) -> list[str]:
    title = f"drip status at {report.measured_at:%Y-%m-%d %H:%M:%S} UTC: "
    lines = [title + click.style(report.level.label.upper(), fg=COLORS[report.level], bold=True)]
    for signal in report.signals:
        level = click.style(f"{signal.level.label.upper():<6}", fg=COLORS[signal.level])
        lines.append(f"{level} {signal.label:<27} {signal.value}")
        if signal.level and signal.hint:
            lines.append(f"{'':<7}{'':<27} -> {signal.hint}")
    return lines


def funnel_lines(steps: list[stats.Step]) -> list[str]:
    forward = " > ".join(f"{step.label} {step.count}" for step in steps if not step.exit)
    exits = ", ".join(f"{step.label} {step.count}" for step in steps if step.exit)
    return [f"funnel: {forward}", f"left: {exits}"]


def conversion_line(last_sale: datetime | None, now: datetime) -> str:
    if last_sale is None:
        return "last conversion: none yet"
    age = max(0, int((now - last_sale).total_seconds()))
    days, rest = divmod(age, 86400)
    hours, rest = divmod(rest, 3600)
    ago = f"{days}d {hours}h" if days else f"{hours}h {rest // 60}m"
    return f"last conversion: {ago} ago ({last_sale:%Y-%m-%d %H:%M} UTC)"


@click.command()
def status() -> None:
    """Health (backlog, queue, workers, tick, circuit, failures) and the funnel.

    Exit code 0 green, 1 amber, 2 red.
    """
    # Imported here so that `drip --help` stays quick.
    from sqlalchemy.exc import SQLAlchemyError

    from drip.app import create_app
    from drip.config import ConfigError, load_settings
    from drip.course.model import CourseError
    from drip.ops import health, revenue, stats

    try:
        app = create_app(load_settings())
    except (ConfigError, CourseError) as exc:
        click.echo(f"drip status: cannot check: {exc}", err=True)
        sys.exit(CANNOT_CHECK)
    services = app.extensions["drip"]
    celery = app.extensions["celery"]
    report = health.check(services.database, services.settings, celery, services.now())
    for line in report_lines(report):
        click.echo(line)
    try:
        with services.database.session() as session:
            steps = stats.funnel(session, services.course)
            last_sale = revenue.last_conversion_at(session)
    except SQLAlchemyError as exc:
        click.echo(f"funnel: the database is unreachable ({type(exc).__name__})")
    else:
        for line in funnel_lines(steps):
            click.echo(line)
        click.echo(conversion_line(last_sale, services.now()))
    services.database.dispose()
    sys.exit(int(report.level))
