"""The JSON API: the same signup as the form, for other front ends."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from werkzeug.wrappers import Response

from drip.services import current_services
from drip.subscribers.validation import InvalidInput, clean_signup
from drip.web.limits import SIGNUP_LIMIT_MESSAGE, AddressLimited, limiter, signup_limit
from drip.web.openapi import OPENAPI
from drip.web.signup import sign_up

blueprint = Blueprint("api", __name__)

ACCEPTED_MESSAGE = "Check your inbox: we sent a link to confirm your address."


def error(status: int, field: str | None, message: str) -> tuple[Response, int]:
    return jsonify({"error": {"field": field, "message": message}}), status


@blueprint.post("/api/v1/subscribers")
@limiter.limit(signup_limit, error_message=SIGNUP_LIMIT_MESSAGE)
def create_subscriber() -> tuple[Response, int]:
    if request.mimetype != "application/json":
        return error(415, None, "send the body as JSON with Content-Type: application/json")
    body: Any = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error(400, None, "the body must be a JSON object")
    unknown = sorted(set(body) - {"email", "first_name", "timezone"})
    if unknown:
        return error(422, unknown[0], "unknown field")
    try:
        signup = clean_signup(body.get("email"), body.get("first_name"), body.get("timezone"))
    except InvalidInput as exc:
        return error(422, exc.field, exc.message)
    try:
        sign_up(current_services(), signup, source="api")
    except AddressLimited as exc:
        response, status = error(
            429, "email", "too many confirmation emails for this address today; try tomorrow"
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response, status
    # The same answer whether the address is new, pending or already active:
    # the API must not tell who is subscribed.
    return jsonify({"status": "pending_confirmation", "message": ACCEPTED_MESSAGE}), 202


@blueprint.get("/openapi.json")
def openapi() -> Response:
    return jsonify(OPENAPI)
