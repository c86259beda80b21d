"""The API's one error shape: {"error": {"field": ..., "message": ...}}."""

from __future__ import annotations

from flask import jsonify
from werkzeug.wrappers import Response


def error(status: int, field: str | None, message: str) -> tuple[Response, int]:
    return jsonify({"error": {"field": field, "message": message}}), status
