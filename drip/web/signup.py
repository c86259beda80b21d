"""The signup step shared by the form and the JSON API."""

from __future__ import annotations

from flask import request

from drip.services import Services, enqueue
from drip.subscribers import confirmation_nudge
from drip.subscribers.subscriptions import ConsentContext, SignupOutcome, subscribe
from drip.subscribers.validation import SignupInput
from drip.web.limits import take_confirmation_slot


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
    """Store the signup with its confirmation due; after commit, wake a sender.

    The email itself leaves from a worker: the stored consent is its queue, so
    nothing is lost if the broker is down now (the periodic sender finds it).
    """
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
    if outcome.send_confirmation:
        confirmation_nudge.nudge(services.settings, lambda: enqueue("drip.send_confirmations"))
    return outcome
