"""The public JSON signup answered below Flask: the one route that takes bursts.

A signup's own work is one Redis round trip and one database statement
(drip/web/signup.py). Measured in one process, Flask's request handling
around it (request and app contexts, routing, the session, request and
response objects, context-local proxies, error handlers) cost more CPU than
that work itself, and under load the web processes' CPU is what limits the
signups per second.

So this WSGI layer, between the proxy fix and Flask, takes `POST
/api/v1/subscribers` from the public when the body is a JSON object with the
signup's fields that validates, and answers it itself: the same steps
(`sign_up`, the same limits, the same consent record) and the same answers,
byte for byte. Everything else goes on to Flask untouched, which stays the
reference and the documentation of the route: other routes and methods,
a keyed caller (Authorization), a body that is too large, not JSON, not an
object, with unknown fields or a stated consent, or input that does not
validate (Flask writes the field's error and counts the refused request).
Nothing is counted or stored before a request is handed on.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.http import HTTP_STATUS_CODES

from drip.services import Services
from drip.subscribers.validation import InvalidInput, clean_signup
from drip.web.api import (
    ACCEPTED,
    ADDRESS_LIMITED_MESSAGE,
    SIGNUP_FIELDS,
    SIGNUPS_PATH,
    SOURCE,
)
from drip.web.api_errors import error_body
from drip.web.limits import AddressLimited
from drip.web.signup import consent_given, sign_up

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)


def json_bytes(value: Any) -> bytes:
    """What Flask's `jsonify` writes outside debug mode: compact, sorted keys, ASCII, a newline."""
    return (json.dumps(value, separators=(",", ":"), sort_keys=True) + "\n").encode()


class SignupFastPath:
    def __init__(
        self,
        app: WSGIApplication,
        services: Services,
        *,
        wake_sender: Callable[[], None],
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.services = services
        self.wake_sender = wake_sender
        self.max_body_bytes = max_body_bytes
        self.accepted = json_bytes(ACCEPTED)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if not self._is_public_json_signup(environ):
            return self.app(environ, start_response)
        length = _content_length(environ)
        if length is None or length > self.max_body_bytes:
            return self.app(environ, start_response)  # Flask answers 411/413 and friends
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # Flask reads it again if handed on
        fields = _signup_fields(body)
        if fields is None:
            return self.app(environ, start_response)
        try:
            signup = clean_signup(
                fields.get("email"), fields.get("first_name"), fields.get("timezone")
            )
        except InvalidInput:
            return self.app(environ, start_response)
        return self._sign_up(environ, start_response, signup)

    def _sign_up(
        self, environ: WSGIEnvironment, start_response: StartResponse, signup: Any
    ) -> Iterable[bytes]:
        client = environ.get("REMOTE_ADDR") or ""
        consent = consent_given(
            self.services, SOURCE, ip=client, user_agent=environ.get("HTTP_USER_AGENT", "")
        )
        try:
            sign_up(self.services, signup, consent, client=client, wake_sender=self.wake_sender)
        except AddressLimited as exc:
            body = json_bytes(error_body("email", ADDRESS_LIMITED_MESSAGE))
            return _answer(start_response, 429, body, [("Retry-After", str(exc.retry_after))])
        except HTTPException as exc:  # over the client's limits (429), database away (503)
            return _error(start_response, exc)
        except Exception:
            # As Flask does with an error nobody handles: logged, a 500 in the API's shape.
            log.exception("Exception on %s [POST]", SIGNUPS_PATH)
            return _error(start_response, InternalServerError())
        return _answer(start_response, 202, self.accepted)

    @staticmethod
    def _is_public_json_signup(environ: WSGIEnvironment) -> bool:
        return (
            environ.get("PATH_INFO") == SIGNUPS_PATH
            and environ.get("REQUEST_METHOD") == "POST"
            and "HTTP_AUTHORIZATION" not in environ
            and _mimetype(environ) == "application/json"
        )


def _mimetype(environ: WSGIEnvironment) -> str:
    return str(environ.get("CONTENT_TYPE", "")).split(";", 1)[0].strip().lower()


def _content_length(environ: WSGIEnvironment) -> int | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    return length if length >= 0 else None


def _signup_fields(body: bytes) -> dict[str, Any] | None:
    """The body as a signup's fields, or None when Flask should answer it."""
    try:
        value = json.loads(body)
    except ValueError:  # not JSON, or not text in a Unicode encoding
        return None
    if not isinstance(value, dict) or "consent" in value or not set(value) <= SIGNUP_FIELDS:
        return None
    return value


def _error(start_response: StartResponse, exc: HTTPException) -> Iterable[bytes]:
    """An HTTP error as drip's error handler renders it for the API."""
    status = exc.code or 500
    body = json_bytes(error_body(None, exc.description or exc.name))
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    return _answer(start_response, status, body, headers)


def _answer(
    start_response: StartResponse,
    status: int,
    body: bytes,
    headers: list[tuple[str, str]] | None = None,
) -> Iterable[bytes]:
    start_response(
        f"{status} {HTTP_STATUS_CODES[status].upper()}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *(headers or []),
        ],
    )
    return [body]
