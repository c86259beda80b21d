"""The signup step shared by the form and the JSON API.

What a signup costs on the request: one Redis round trip (every abuse limit,
drip/web/limits.py) and one database statement that commits the subscriber
and its consent (drip/subscribers/subscriptions.py, `record_signup`). The
202 (or the form's redirect) is sent only after that commit, so an accepted
signup is in the database: its consent row is the confirmation email's queue
(drip/subscribers/confirmations.py). Waking a sender happens off the request
(drip/subscribers/confirmation_nudge.py, `soon`).

When the database does not answer, the signup is refused with a 503 and
Retry-After: nothing was accepted. When Redis does not answer, the limits
let the signup through and the periodic sender (every 10 s) sends its email.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import current_app, request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import ServiceUnavailable

from drip.services import Services
from drip.subscribers import confirmation_nudge
from drip.subscribers.subscriptions import (
    ConsentContext,
    SignupOutcome,
    record_signup,
    would_confirm,
)
from drip.subscribers.validation import SignupInput
from drip.web import limits
from drip.web.limits import AddressLimited

log = logging.getLogger(__name__)

SEND_CONFIRMATIONS_TASK = "drip.send_confirmations"
# Retry-After of a signup refused while the database is away.
UNAVAILABLE_RETRY_SECONDS = 5


def consent_given(services: Services, source: str, *, ip: str, user_agent: str) -> ConsentContext:
    """The consent a signup gives: the landing page's text and version, from whom."""
    return ConsentContext(
        source=source,
        text=services.course.landing.consent,
        text_version=services.course.consent_version,
        ip=ip,
        user_agent=user_agent,
    )


def consent_context(services: Services, source: str) -> ConsentContext:
    """The consent of the current Flask request."""
    return consent_given(
        services,
        source,
        ip=request.remote_addr or "",
        user_agent=request.headers.get("User-Agent", ""),
    )


def sender_waker() -> Callable[[], None]:
    """Queue a confirmation sender through the current app's Celery."""
    celery = current_app.extensions["celery"]
    return lambda: celery.send_task(SEND_CONFIRMATIONS_TASK)


def client_address(*, keyed: bool = False) -> str | None:
    """Whom the per-client signup limits count: the client's IP; None for a keyed caller."""
    return None if keyed else (request.remote_addr or "")


def count_refused(services: Services, client: str | None) -> None:
    """A request refused before it became a signup still counts against its client.

    Raises SignupsLimited (a 429) when the client is already over its limits.
    """
    if client is not None:
        limits.hit(services.settings, client=client, email=None)


def sign_up(
    services: Services,
    signup: SignupInput,
    consent: ConsentContext,
    *,
    client: str | None,
    wake_sender: Callable[[], None],
) -> SignupOutcome:
    """Count the signup against its limits, store it with its confirmation due.

    Raises SignupsLimited (too many signups from `client`), AddressLimited (this
    address had its confirmation emails for today) or ServiceUnavailable (the
    database is away; nothing stored).
    """
    settings = services.settings
    counted = limits.hit(settings, client=client, email=signup.email)
    try:
        if counted.address_full_for is not None:
            # Over the per-address cap: refused only if this signup would mail it.
            if would_confirm(services.database, signup.email, secret_key=settings.secret_key):
                raise AddressLimited(counted.address_full_for)
            return SignupOutcome()
        outcome = record_signup(
            services.database,
            signup,
            consent,
            now=services.now(),
            secret_key=settings.secret_key,
        )
    except (OperationalError, InterfaceError, PoolTimeout) as exc:
        limits.give_back(settings, counted)
        log.warning("signup refused: the database did not answer (%s)", type(exc).__name__)
        raise ServiceUnavailable(
            "we could not store your signup just now; please try again in a moment",
            retry_after=UNAVAILABLE_RETRY_SECONDS,
        ) from exc
    if outcome.send_confirmation:
        confirmation_nudge.soon(settings, wake_sender)
    else:
        limits.give_back(settings, counted)  # no email: the address's count stays as it was
    return outcome
