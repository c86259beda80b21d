"""Bearer-key authentication for /api/v1: who calls, and may they write."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import g, request

from drip.integrations.api_keys import Caller, Scope, authenticate
from drip.services import current_services
from drip.web.api_errors import error


def presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


def current_caller() -> Caller | None:
    """The caller behind the request's key, or None; looked up once per request."""
    if "api_caller" not in g:
        key = presented_key()
        caller = None
        if key is not None:
            services = current_services()
            with services.database.session() as session:
                caller = authenticate(session, key, now=services.now())
        g.api_caller = caller
    return g.api_caller


def requires(scope: Scope) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """401 without a live key; 403 when a read key tries to write."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            caller = current_caller()
            if caller is None:
                response, status = error(
                    401, None, "send a live API key: Authorization: Bearer KEY"
                )
                response.headers["WWW-Authenticate"] = 'Bearer realm="drip"'
                return response, status
            if scope == Scope.WRITE and not caller.can_write:
                return error(403, None, "this key may only read; create one with --scope write")
            return view(*args, **kwargs)

        return wrapped

    return decorate
