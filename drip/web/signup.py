"""The signup step shared by the form and the JSON API."""

from __future__ import annotations

import logging

from flask import request
from kombu.exceptions import OperationalError

from drip.services import Services, enqueue
from drip.subscribers.subscriptions import ConsentContext, SignupOutcome, subscribe
from drip.subscribers.validation import SignupInput
from drip.web.limits import take_confirmation_slot

log = logging.getLogger(__name__)


class ConfirmationQueueDown(Exception):
    """The signup is stored but the confirmation email could not be queued."""


def consent_context(services: Services, source: str) -> ConsentContext:
    landing = services.course.landing
    return ConsentContext(
        source=source,
        text=landing.consent,
        text_version=services.course.consent_version,
        ip=request.remote_addr or "",
        user_agent=request.headers.get("User-Agent", ""),
    )


def sign_up(services: Services, signup: SignupInput, source: str) -> SignupOutcome:
    """Store the signup, then (after commit) queue the confirmation email."""
    with services.database.session() as session:
        outcome = subscribe(
            session,
            signup,
            consent_context(services, source),
            now=services.now(),
            secret_key=services.settings.secret_key,
        )
        if outcome.send_confirmation:
            # Raises AddressLimited past the daily cap, rolling the signup back.
            take_confirmation_slot(services.settings, signup.email)
    if outcome.subscriber_id is not None and outcome.consent_id is not None:
        try:
            enqueue("drip.send_confirmation", outcome.subscriber_id, outcome.consent_id)
        except OperationalError as exc:
            log.error("confirmation not queued for subscriber %s: %s", outcome.subscriber_id, exc)
            raise ConfirmationQueueDown() from exc
    return outcome
