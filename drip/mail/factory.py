"""Pick the mail backend the settings ask for."""

from __future__ import annotations

from drip.config import Settings
from drip.mail.base import Mailer
from drip.mail.outbox import OutboxMailer


def make_mailer(settings: Settings) -> Mailer:
    mailer = _backend(settings)
    if settings.send_rate:
        # DRIP_SEND_RATE is one budget for every worker, so it lives in the shared Redis.
        from drip.celery_app import DEFAULT_BROKER
        from drip.send_rate import RateLimitedMailer, SendRate

        rate = SendRate.from_url(settings.redis_url or DEFAULT_BROKER, settings.send_rate)
        return RateLimitedMailer(mailer, rate)
    return mailer


def _backend(settings: Settings) -> Mailer:
    if settings.email_backend == "sendgrid":
        from drip.mail.sendgrid import SendGridMailer

        assert settings.sendgrid_api_key is not None  # config.load_settings guarantees it
        return SendGridMailer(
            api_key=settings.sendgrid_api_key,
            host=settings.sendgrid_host,
            timeout=settings.sendgrid_timeout,
        )
    return OutboxMailer(settings.outbox_dir)
