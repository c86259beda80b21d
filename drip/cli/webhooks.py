"""`drip webhooks`: register, list and remove the receivers of outgoing webhooks."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from drip.cli.subscribers import _database, _settings


@click.group("webhooks")
def webhooks() -> None:
    """Outgoing webhooks (Standard Webhooks signatures) to your own services."""


@webhooks.command("add")
@click.argument("url")
@click.option(
    "--events",
    "events",
    multiple=True,
    default=["all"],
    show_default=True,
    help="Event kinds, comma-separated or repeated: signup, confirmation, lesson_sent, "
    "provider_event, cta_click, unsubscribe, conversion; or all.",
)
def add_command(url: str, events: tuple[str, ...]) -> None:
    """Send events to URL; prints the signing secret once."""
    from drip.integrations.webhook_endpoints import InvalidEndpoint, add

    settings = _settings()
    try:
        with _database(settings) as database, database.session() as session:
            row = add(
                session,
                url,
                events,
                allow_private=settings.webhooks_allow_private,
                now=datetime.now(UTC),
            )
            endpoint_id, secret, kinds = row.id, row.secret, row.events
    except InvalidEndpoint as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(secret)
    click.echo(
        f"added endpoint {endpoint_id} for {kinds}; verify signatures with this secret, "
        "copy it now: it is not shown again",
        err=True,
    )


@webhooks.command("list")
def list_command() -> None:
    """One line per endpoint: id, URL, events, state (with why it was disabled)."""
    from drip.integrations.webhook_endpoints import all_endpoints, state

    with _database(_settings()) as database, database.session() as session:
        for row in all_endpoints(session):
            click.echo(f"{row.id}\t{row.url}\t{row.events}\t{state(row)}")


@webhooks.command("remove")
@click.argument("endpoint_id", type=int)
def remove_command(endpoint_id: int) -> None:
    """Stop sending to ENDPOINT_ID and drop what still waits for it."""
    from drip.integrations.webhook_endpoints import remove

    with _database(_settings()) as database, database.session() as session:
        done = remove(session, endpoint_id)
    if not done:
        raise click.ClickException(f"no endpoint {endpoint_id}: see `drip webhooks list`")
    click.echo(f"removed endpoint {endpoint_id}")
