"""Pick the mail backend the settings ask for."""

from __future__ import annotations

from drip.config import Settings
from drip.mail.base import Mailer
from drip.mail.outbox import OutboxMailer
from drip.mail.sendgrid import SendGridMailer


def make_mailer(settings: Settings) -> Mailer:
    if settings.email_backend == "sendgrid":
        assert settings.sendgrid_api_key is not None  # config.load_settings guarantees it
        return SendGridMailer(
            api_key=settings.sendgrid_api_key,
            host=settings.sendgrid_host,
            timeout=settings.sendgrid_timeout,
        )
    return OutboxMailer(settings.outbox_dir)
