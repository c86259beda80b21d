"""`drip sendgrid-sink`: registered with the `drip` command through an entry point."""

from __future__ import annotations

import click

from drip_devtools.sendgrid_sink.server import serve


@click.command("sendgrid-sink")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8025, show_default=True, type=int)
@click.option("--api-key", envvar="SENDGRID_API_KEY", default=None, help="accept only this key")
@click.option("--webhook-url", default=None, help="where to post signed event callbacks")
@click.option("--webhook-key", "webhook_key_path", default=None, help="PEM file of the P-256 key")
def sendgrid_sink(
    host: str, port: int, api_key: str | None, webhook_url: str | None, webhook_key_path: str | None
) -> None:
    """A local server speaking SendGrid's v3 mail-send API (development only)."""
    serve(host, port, api_key, webhook_url, webhook_key_path)
