"""The API's one error shape: {"error": {"field": ..., "message": ...}}."""

from __future__ import annotations

from flask import jsonify
from werkzeug.wrappers import Response


def error_body(field: str | None, message: str) -> dict[str, dict[str, str | None]]:
    return {"error": {"field": field, "message": message}}


def error(status: int, field: str | None, message: str) -> tuple[Response, int]:
    return jsonify(error_body(field, message)), status
