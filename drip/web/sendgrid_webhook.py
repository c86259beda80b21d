"""POST /webhooks/sendgrid: SendGrid's signed event webhook. Thin: provider_events does the work."""

from __future__ import annotations

import logging
from dataclasses import asdict

from flask import Blueprint, jsonify, request
from werkzeug.wrappers import Response

from drip.services import current_services
from drip.subscribers import provider_events

log = logging.getLogger(__name__)

blueprint = Blueprint("webhooks", __name__)


@blueprint.before_request
def allow_event_batches() -> None:
    # Per request (Flask 3.1), so every other route keeps the app-wide 64 KB limit.
    request.max_content_length = provider_events.MAX_BODY_BYTES


@blueprint.post("/webhooks/sendgrid")
def sendgrid_events() -> tuple[Response, int]:
    services = current_services()
    # The raw bytes, before anything parses them: the signature covers exactly these.
    body = request.get_data(cache=True)
    try:
        provider_events.verify(
            services.settings.sendgrid_webhook_key,
            body,
            request.headers.get(provider_events.SIGNATURE_HEADER),
            request.headers.get(provider_events.TIMESTAMP_HEADER),
            now=services.now(),
        )
        events, ignored = provider_events.parse_events(body, now=services.now())
    except provider_events.NotConfigured as exc:
        log.error("sendgrid webhook refused: %s", exc.message)
        return _error(exc)
    except provider_events.Refused as exc:
        log.warning("sendgrid webhook refused: %s", exc.message)
        return _error(exc)
    report = provider_events.record_events(
        services.database,
        events,
        now=services.now(),
        secret_key=services.settings.secret_key,
        ignored=ignored,
    )
    log.info(
        "sendgrid webhook received=%d recorded=%d duplicates=%d suppressed=%d",
        report.received,
        report.recorded,
        report.duplicates,
        report.suppressed,
    )
    return jsonify(asdict(report)), 200


def _error(exc: provider_events.Refused) -> tuple[Response, int]:
    return jsonify({"error": {"field": None, "message": exc.message}}), exc.status
