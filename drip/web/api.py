"""The JSON API: the same signup as the form, for other front ends."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from werkzeug.wrappers import Response

from drip.integrations import directory
from drip.services import current_services, kick_tick
from drip.subscribers.subscriptions import subscribe_confirmed
from drip.subscribers.validation import (
    InvalidInput,
    SignupInput,
    clean_consent_source,
    clean_signup,
)
from drip.web.api_auth import current_caller
from drip.web.api_errors import error
from drip.web.limits import AddressLimited
from drip.web.openapi import document
from drip.web.signup import (
    client_address,
    consent_context,
    count_refused,
    sender_waker,
    sign_up,
)

blueprint = Blueprint("api", __name__)

SIGNUPS_PATH = "/api/v1/subscribers"
SIGNUP_FIELDS = frozenset({"email", "first_name", "timezone", "consent"})
SOURCE = "api"  # the consent record's source for a signup through the API
ACCEPTED_MESSAGE = "Check your inbox: we sent a link to confirm your address."
ACCEPTED = {"status": "pending_confirmation", "message": ACCEPTED_MESSAGE}
ADDRESS_LIMITED_MESSAGE = "too many confirmation emails for this address today; try tomorrow"


def _keyed() -> bool:
    # A caller with a key answers for its own traffic; the per-address limit is for the public.
    return current_caller() is not None


@blueprint.post(SIGNUPS_PATH)
def create_subscriber() -> tuple[Response, int]:
    # Per-client limits (a 429 past them) count every request, refused or not,
    # except a keyed caller's; the per-address limit counts confirmation emails.
    services = current_services()
    client = client_address(keyed=_keyed())
    if request.mimetype != "application/json":
        count_refused(services, client)
        return error(415, None, "send the body as JSON with Content-Type: application/json")
    body: Any = request.get_json(silent=True)
    if not isinstance(body, dict):
        count_refused(services, client)
        return error(400, None, "the body must be a JSON object")
    unknown = sorted(set(body) - SIGNUP_FIELDS)
    if unknown:
        count_refused(services, client)
        return error(422, unknown[0], "unknown field")
    if "consent" in body:
        count_refused(services, client)
        return _create_confirmed(body)
    try:
        signup = clean_signup(body.get("email"), body.get("first_name"), body.get("timezone"))
    except InvalidInput as exc:
        count_refused(services, client)
        return error(422, exc.field, exc.message)
    try:
        sign_up(
            services,
            signup,
            consent_context(services, SOURCE),
            client=client,
            wake_sender=sender_waker(),
        )
    except AddressLimited as exc:
        response, status = error(429, "email", ADDRESS_LIMITED_MESSAGE)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response, status
    # The same answer whether the address is new, pending or already active:
    # the API must not tell who is subscribed.
    return jsonify(ACCEPTED), 202


def _create_confirmed(body: dict[str, Any]) -> tuple[Response, int]:
    """A write key vouching for a consent given elsewhere: subscribed, confirmed, enrolled."""
    caller = current_caller()
    if caller is None:
        response, status = error(401, "consent", "only a write key may state a consent")
        response.headers["WWW-Authenticate"] = 'Bearer realm="drip"'
        return response, status
    if not caller.can_write:
        return error(403, "consent", "this key may only read; create one with --scope write")
    try:
        signup: SignupInput = clean_signup(
            body.get("email"), body.get("first_name"), body.get("timezone")
        )
        source = clean_consent_source(body["consent"])
    except InvalidInput as exc:
        return error(422, exc.field, exc.message)
    services = current_services()
    with services.database.session() as session:
        subscriber_id = subscribe_confirmed(
            session,
            signup,
            consent_context(services, source),
            course_slug=services.course.slug,
            now=services.now(),
            secret_key=services.settings.secret_key,
        )
        if subscriber_id is None:
            return error(409, "email", "this address is suppressed (bounce, complaint)")
        row = directory.find_subscriber(session, subscriber_id)
        assert row is not None
        view = directory.subscriber_view(session, row, services.course.slug)
    kick_tick()  # lesson 1 is due now
    return jsonify(view), 200


@blueprint.get("/openapi.json")
def openapi() -> Response:
    return jsonify(document())
