"""Error pages: JSON for the API, a short HTML page for people."""

from __future__ import annotations

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path.startswith("/webhooks/")


def handle_http_error(exc: HTTPException) -> tuple[Response, int]:
    status = exc.code or 500
    message = exc.description or exc.name
    if status == 413:
        message = "the request body is too large"
    if _wants_json():
        response = jsonify({"error": {"field": None, "message": message}})
    else:
        html = render_template("error.html", status=status, title=exc.name, message=message)
        response = Response(html, content_type="text/html; charset=utf-8")
    # The exception's own headers: Allow on a 405 (RFC 9110 section 15.5.6 requires it),
    # Retry-After and WWW-Authenticate where the raiser set them.
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response, status


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_error)
