"""The `drip` command. Each command is thin and calls the same functions as the web and tasks.

The commands import what they use inside their own bodies: `drip course check` or
`drip --help` should start in a blink, without loading Flask, SQLAlchemy and Celery.
Those lazy imports are the only ones in the package, and they exist for start-up time.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path

import click

from drip.cli.api_keys import api_keys
from drip.cli.check import check, refuse_unready
from drip.cli.status import status
from drip.cli.subscribers import subscribers
from drip.cli.webhooks import webhooks
from drip.config import ConfigError, Settings, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def main() -> None:
    """drip: an email course, one lesson a day."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def run(host: str, port: int) -> None:
    """Run web, worker and scheduler (and Redis when DRIP_REDIS_URL is unset)."""
    from drip.cli.embedded_redis import RedisStartError, free_port
    from drip.cli.runner import run_service
    from drip.course.loader import load_course
    from drip.course.model import CourseError
    from drip.data.db import Database
    from drip.data.migrate import upgrade

    settings = _settings()
    try:
        served = load_course(
            settings.course_dir,
            affiliate_url=settings.affiliate_url,
            overrides=settings.course_overrides,
        )
    except CourseError as exc:
        raise click.ClickException(
            f"the course in {settings.course_dir} has problems:\n{exc}"
        ) from None
    refuse_unready(settings, served)
    if not _port_free(host, port):
        hint = f"another program uses {host}:{port}; stop it or pass --port {free_port()}"
        raise click.ClickException(hint)
    database = Database(settings.database_url)
    upgrade(database)
    database.dispose()
    try:
        sys.exit(run_service(settings, host, port))
    except RedisStartError as exc:
        raise click.ClickException(str(exc)) from None


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the latest version."""
    from drip.data.db import Database
    from drip.data.migrate import head_revision, upgrade

    database = Database(_settings().database_url)
    upgrade(database)
    click.echo(f"database at revision {head_revision()}")


@main.group()
def course() -> None:
    """Check and preview a course."""


@course.command("check")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
def course_check(directory: Path | None) -> None:
    """Validate a course; one line per problem, non-zero exit on any."""
    from drip.course.loader import check_course

    directory = directory or _settings().course_dir
    problems = check_course(directory)
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        sys.exit(1)
    click.echo(f"{directory}: ok")


@course.command("preview")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
def course_preview(directory: Path | None, out_dir: Path) -> None:
    """Render every lesson to OUT/NN.html, OUT/NN.txt and OUT/NN.eml."""
    from drip.course.loader import load_course
    from drip.course.model import CourseError
    from drip.course.preview import write_preview

    settings = _settings()
    try:
        loaded = load_course(
            directory or settings.course_dir,
            affiliate_url=settings.affiliate_url,
            overrides=settings.course_overrides,
        )
    except CourseError as exc:
        raise click.ClickException(str(exc)) from None
    paths = write_preview(loaded, out_dir, settings.base_url)
    click.echo(f"wrote {len(paths)} files to {out_dir}")


main.add_command(subscribers)
main.add_command(status)
main.add_command(check)
main.add_command(api_keys)
main.add_command(webhooks)


def _add_plugin_commands() -> None:
    """Commands other installed distributions add (drip-devtools adds `sendgrid-sink`)."""
    for entry in entry_points(group="drip.commands"):
        main.add_command(entry.load(), entry.name)


_add_plugin_commands()
