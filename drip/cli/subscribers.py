"""`drip subscribers`: import, export and erase. Thin: the work is in importer and privacy."""

from __future__ import annotations

import getpass
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from drip.clock import system_clock
from drip.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from drip.data.db import Database
    from drip.subscribers.importer import ImportReport

PROGRESS_EVERY = 100_000  # rows between progress lines when stderr is not a terminal


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def _database(settings: Settings) -> Iterator[Database]:
    from drip.data.db import Database
    from drip.data.migrate import is_current

    database = Database(settings.database_url)
    try:
        if not is_current(database):
            message = "the database schema is not up to date: run `drip db upgrade`"
            raise click.ClickException(message)
        yield database
    finally:
        database.dispose()


@click.group()
def subscribers() -> None:
    """Import, export and erase subscribers."""


@subscribers.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-size", default=5000, show_default=True, type=click.IntRange(1, 100_000))
def import_command(csv_file: Path, batch_size: int) -> None:
    """Import already-consented subscribers from CSV_FILE (header: email,first_name,timezone).

    Each new address becomes a confirmed subscriber whose lesson 1 is due now;
    addresses already present or suppressed are skipped, so running the same
    file twice imports nothing the second time.
    """
    from drip.course.loader import load_course
    from drip.course.model import CourseError
    from drip.subscribers.importer import ImportContext, ImportFileError, import_csv

    settings = _settings()
    try:
        course = load_course(
            settings.course_dir,
            affiliate_url=settings.affiliate_url,
            overrides=settings.course_overrides,
        )
    except CourseError as exc:
        message = f"the course in {settings.course_dir} has problems:\n{exc}"
        raise click.ClickException(message) from None
    context = ImportContext(
        source=f"import:{csv_file.name}",
        consent_text=course.landing.consent,
        consent_version=course.consent_version,
        course_slug=course.slug,
        secret_key=settings.secret_key,
        now=system_clock(),
    )

    def bad_row(line: int, reason: str) -> None:
        click.echo(f"{csv_file.name}: line {line}: {reason}", err=True)

    with _database(settings) as database, _Progress(csv_file.stat().st_size) as progress:
        try:
            report = import_csv(
                database,
                csv_file,
                context,
                batch_size=batch_size,
                on_bad_row=bad_row,
                on_progress=progress.update,
            )
        except ImportFileError as exc:
            raise click.ClickException(f"{csv_file.name}: {exc}") from None
    click.echo(report.summary())


class _Progress:
    """A progress bar on a terminal; otherwise a line every PROGRESS_EVERY rows."""

    def __init__(self, total_bytes: int) -> None:
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        self.total = total_bytes
        self.shown = 0
        self.next_line = PROGRESS_EVERY
        self.started = time.perf_counter()

    def __enter__(self) -> _Progress:
        if self.tty:
            self.bar = click.progressbar(
                length=self.total, label="importing", file=sys.stderr, item_show_func=lambda x: x
            )
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def update(self, report: ImportReport, read: int) -> None:
        rate = report.rows / max(time.perf_counter() - self.started, 1e-6)
        status = f"{report.rows:,} rows, {rate:,.0f} rows/s"
        if self.bar is not None:
            self.bar.update(read - self.shown, status)
            self.shown = read
        elif report.rows >= self.next_line:
            click.echo(f"read {status}", err=True)
            self.next_line = (report.rows // PROGRESS_EVERY + 1) * PROGRESS_EVERY


def _subscriber_id(database: Database, email: str) -> int:
    from drip.subscribers.privacy import find_subscriber_id

    with database.session() as session:
        found = find_subscriber_id(session, email)
    if found is None:
        raise click.ClickException(f"no subscriber with the address {email!r}: check the spelling")
    return found


@subscribers.command("export")
@click.argument("email")
def export_command(email: str) -> None:
    """Print everything kept about EMAIL as JSON."""
    from drip.subscribers.privacy import export

    with _database(_settings()) as database:
        subscriber_id = _subscriber_id(database, email)
        with database.session() as session:
            data = export(session, subscriber_id)
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@subscribers.command("erase")
@click.argument("email")
def erase_command(email: str) -> None:
    """Erase EMAIL's personal data; the address is never mailed again without a new opt-in."""
    from drip.subscribers.privacy import erase

    settings = _settings()
    with _database(settings) as database:
        subscriber_id = _subscriber_id(database, email)
        with database.session() as session:
            erase(
                session,
                subscriber_id,
                secret_key=settings.secret_key,
                now=system_clock(),
                actor=f"cli:{_operator()}",
            )
    click.echo(f"erased subscriber {subscriber_id}")


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"
