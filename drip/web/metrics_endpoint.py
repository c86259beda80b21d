"""GET /metrics for Prometheus; behind a bearer token when DRIP_METRICS_TOKEN is set."""

from __future__ import annotations

import hmac

from flask import Blueprint, request
from werkzeug.wrappers import Response

from drip.ops import metrics
from drip.services import current_services

blueprint = Blueprint("metrics", __name__)


def _authorized(token: str | None) -> bool:
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    # Constant time, so the answer's timing does not reveal how much of a guess was right.
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


@blueprint.get("/metrics")
def scrape() -> Response:
    services = current_services()
    if not _authorized(services.settings.metrics_token):
        return Response(
            "metrics need the bearer token: send Authorization: Bearer <DRIP_METRICS_TOKEN>\n",
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            mimetype="text/plain",
        )
    body, content_type = metrics.render(services, request.headers.get("Accept", ""))
    return Response(body, content_type=content_type)
