"""Error pages: JSON for the API, a short HTML page for people."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path.startswith("/webhooks/")


def handle_http_error(exc: HTTPException) -> tuple[Response | str, int]:
    status = exc.code or 500
    message = exc.description or exc.name
    if status == 413:
        message = "the request body is too large"
    if _wants_json():
        return jsonify({"error": {"field": None, "message": message}}), status
    return render_template("error.html", status=status, title=exc.name, message=message), status


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_error)
