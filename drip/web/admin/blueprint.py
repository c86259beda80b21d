"""The /admin blueprint; its routes live in signin.py, pages.py and operations.py."""

from __future__ import annotations

from flask import Blueprint, request
from werkzeug.wrappers import Response

blueprint = Blueprint("admin", __name__, url_prefix="/admin")

# Operator pages hold personal data: never cached, never framed, no referrer leaves them.
# The lesson preview's iframe inherits this policy, so it fetches nothing either.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
}


@blueprint.after_request
def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def actor() -> str:
    """Who did it, for the audit log: there is one operator password, so say from where."""
    return f"admin@{request.remote_addr or 'unknown'}"
