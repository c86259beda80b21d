"""Abuse limits: signups per IP (Flask-Limiter) and confirmation emails per address.

Both live in Redis, so every web process shares them. The per-address limit
is what stops the signup form from being used to mail-bomb someone: whoever
types an address in, it gets at most N confirmation emails a day.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

from flask import Flask, Response
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItemPerDay
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from drip.config import Settings
from drip.services import current_services
from drip.subscribers.subscriptions import email_hash

log = logging.getLogger(__name__)

SIGNUP_LIMIT_MESSAGE = "too many signups from your network; please wait a little and try again"

limiter = Limiter(
    key_func=get_remote_address,
    # No X-RateLimit-* headers on every answer: each costs a Redis round trip per
    # request. A refusal still says when to come back (retry_after_header below).
    headers_enabled=False,
    # A Redis hiccup must not take signups down with it: limits fail open.
    swallow_errors=True,
    strategy="moving-window",
    retry_after="delta-seconds",
    key_prefix="drip-limits",
)


def init_app(app: Flask, settings: Settings) -> None:
    app.config["RATELIMIT_STORAGE_URI"] = redis_url(settings)
    app.config["RATELIMIT_ENABLED"] = settings.rate_limits_enabled
    limiter.init_app(app)
    app.after_request(retry_after_header)


def retry_after_header(response: Response) -> Response:
    """Retry-After on a refusal of the per-IP limit (RFC 9110 section 10.2.3), in seconds."""
    breached = limiter.current_limit if response.status_code == 429 else None
    if breached is not None and breached.breached and "Retry-After" not in response.headers:
        try:
            reset_at = breached.reset_at
        except Exception:  # the storage raises its driver's errors; the refusal still stands
            reset_at = int(time.time()) + 60
        response.headers["Retry-After"] = str(max(1, int(reset_at - time.time())))
    return response


def signup_limit() -> str:
    """The per-IP signup limit, read per request so each app uses its own settings."""
    return current_services().settings.signup_rate_limit


def redis_url(settings: Settings) -> str:
    return settings.broker_url


@lru_cache(maxsize=8)
def _window(url: str) -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(storage_from_string(url))


class AddressLimited(Exception):
    """This address already got its confirmation emails for today."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many confirmation emails for this address today")
        self.retry_after = retry_after


def take_confirmation_slot(settings: Settings, email: str) -> None:
    """Count one confirmation email for `email`; raise AddressLimited past the daily cap.

    The key is a keyed hash, so Redis never holds the address itself.
    """
    if not settings.rate_limits_enabled:
        return
    item = RateLimitItemPerDay(settings.confirmations_per_address_per_day)
    key = email_hash(settings.secret_key, email)
    try:
        window = _window(redis_url(settings))
        if window.hit(item, "confirm-address", key):
            return
        reset_at, _ = window.get_window_stats(item, "confirm-address", key)
    except Exception as exc:  # the storage raises its driver's errors; fail open, but say so
        log.warning("confirmation limit unavailable (%s); allowing", type(exc).__name__)
        return
    raise AddressLimited(max(1, int(reset_at - time.time())))
