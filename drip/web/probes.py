"""Liveness and readiness for load balancers and docker-compose health checks."""

from __future__ import annotations

import redis
from flask import Blueprint, jsonify
from sqlalchemy import text
from werkzeug.wrappers import Response

from drip.data.migrate import is_current
from drip.ops.health import redis_client
from drip.services import current_services

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


def _check_database() -> str:
    services = current_services()
    try:
        with services.database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return "ok" if is_current(services.database) else "migrations pending: run drip db upgrade"
    except Exception as exc:  # any driver error means "not ready"; the message says which
        return f"unreachable: {type(exc).__name__}"


def _check_redis() -> str:
    try:
        client = redis_client(current_services().settings)
        try:
            client.ping()
        finally:
            client.close()
        return "ok"
    except redis.RedisError as exc:
        return f"unreachable: {type(exc).__name__}"


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks = {"database": _check_database(), "redis": _check_redis()}
    ready = all(value == "ok" for value in checks.values())
    return jsonify({"status": "ok" if ready else "unavailable", "checks": checks}), (
        200 if ready else 503
    )
