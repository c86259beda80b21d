"""`drip api-keys`: create, list and revoke keys for the integrators' API."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from drip.cli.subscribers import _database, _settings


@click.group("api-keys")
def api_keys() -> None:
    """Keys for the /api/v1 integrators' API."""


@api_keys.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(["read", "write"]), default="read", show_default=True)
def create_command(name: str, scope: str) -> None:
    """Create a key and print it once: it is stored only as a hash."""
    from drip.integrations.api_keys import Scope, create

    with _database(_settings()) as database, database.session() as session:
        row, key = create(session, name, Scope(scope), now=datetime.now(UTC))
        prefix = row.prefix
    click.echo(key)
    click.echo(
        f"created {scope} key {prefix}… for {name!r}; copy it now, it is not shown again", err=True
    )


@api_keys.command("list")
def list_command() -> None:
    """One line per key: id, prefix, scope, name, last use, revoked."""
    from drip.integrations.api_keys import all_keys

    with _database(_settings()) as database, database.session() as session:
        for row in all_keys(session):
            used = row.last_used_at.isoformat() if row.last_used_at else "never used"
            state = f"revoked {row.revoked_at.isoformat()}" if row.revoked_at else "live"
            click.echo(f"{row.id}\t{row.prefix}…\t{row.scope}\t{row.name}\t{used}\t{state}")


@api_keys.command("revoke")
@click.argument("key")
def revoke_command(key: str) -> None:
    """Revoke KEY (its id or prefix as `list` shows them); it stops working at once."""
    from drip.integrations.api_keys import revoke

    with _database(_settings()) as database, database.session() as session:
        done = revoke(session, key.rstrip("…"), now=datetime.now(UTC))
    if not done:
        raise click.ClickException(f"no live key {key!r}: see `drip api-keys list`")
    click.echo(f"revoked {key}")
