"""Affiliate networks report sales here: ClickBank's INS and a generic signed postback.

Thin: drip/subscribers/clickbank.py and generic_postback.py read and check
the report, conversions.py stores it. Bad input is always a 4xx with a JSON
error, never a 5xx: a network retries on anything but 200 (ClickBank does),
and a retry of a bad report would only fail again.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, jsonify, request
from werkzeug.wrappers import Response

from drip.services import current_services
from drip.subscribers import clickbank, conversions, generic_postback
from drip.subscribers.conversions import InvalidReport, Outcome, Report

log = logging.getLogger(__name__)

blueprint = Blueprint("postbacks", __name__)


@blueprint.post("/postbacks/clickbank")
def clickbank_notification() -> tuple[Response, int]:
    secret_key = current_services().settings.clickbank_secret_key
    if not secret_key:
        return _refused("clickbank", InvalidReport(404, "DRIP_CLICKBANK_SECRET_KEY is not set"))
    try:
        envelope = json.loads(request.get_data(cache=False))
    except ValueError:
        return _refused("clickbank", InvalidReport(400, "the body is not JSON"))
    try:
        data = clickbank.decrypt(envelope, secret_key)
        if data.get("transactionType") == "TEST":
            # ClickBank's "Test" button: the URL and the key work; nothing to count.
            return jsonify(status=Outcome.TEST.value), 200
        report = clickbank.read(data)
    except InvalidReport as exc:
        return _refused("clickbank", exc)
    return _store("clickbank", report)


@blueprint.route("/postbacks/generic", methods=["GET", "POST"])
def generic_postback_view() -> tuple[Response, int]:
    services = current_services()
    secret = services.settings.postback_secret
    if not secret:
        return _refused("generic", InvalidReport(404, "DRIP_POSTBACK_SECRET is not set"))
    params = list(request.args.items(multi=True)) + list(request.form.items(multi=True))
    try:
        report = generic_postback.verify(params, secret, now=services.now())
    except InvalidReport as exc:
        return _refused("generic", exc)
    return _store("generic", report)


def _store(source: str, report: Report) -> tuple[Response, int]:
    services = current_services()
    with services.database.session() as session:
        outcome = conversions.record(session, report, now=services.now())
    if outcome is Outcome.UNKNOWN:
        message = "names no known click or sale: nothing stored"
        return _refused(source, InvalidReport(404, message))
    log.info("%s postback %s: %s %s", source, outcome.value, report.kind, report.external_id)
    return jsonify(status=outcome.value), 200


def _refused(source: str, exc: InvalidReport) -> tuple[Response, int]:
    log.warning("%s postback refused (%d): %s", source, exc.status, exc)
    return jsonify(error=str(exc)), exc.status
