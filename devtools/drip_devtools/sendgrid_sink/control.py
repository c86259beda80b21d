"""The control API under ``/__sink/``: look at what was sent, inject faults, send events.

Routes (JSON in, JSON out):
- GET /__sink/stats -> counters, see ``SinkState.stats``
- GET /__sink/messages -> {"messages": [record, ...]} (only while recording)
- POST /__sink/reset -> forget counters and records
- POST /__sink/recording {"enabled": true} -> keep accepted messages (costs memory)
- POST /__sink/faults <plan> -> replace the fault plan (format in ``faults``)
- DELETE /__sink/faults -> no faults
- GET /__sink/webhook-public-key -> {"public_key": base64 DER}
- POST /__sink/events {"events": [spec, ...], "url": optional} -> sign and post them
  to ``url`` or the configured webhook URL (spec format in ``drip_devtools.sendgrid_sink.events``)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from drip_devtools.sendgrid_sink import answers, events
from drip_devtools.sendgrid_sink.answers import Answer
from drip_devtools.sendgrid_sink.faults import FaultPlan, PlanError, parse_plan
from drip_devtools.sendgrid_sink.state import SinkState

PREFIX = "/__sink/"


def handle(state: SinkState, method: str, path: str, body: bytes) -> Answer:
    route = ROUTES.get((method, path.removeprefix(PREFIX)))
    if route is None:
        return answers.as_json(404, {"error": f"no control route {method} {path}"})
    try:
        data = json.loads(body) if body.strip() else {}
    except ValueError:
        return answers.as_json(400, {"error": "the body must be JSON"})
    try:
        return route(state, data)
    except (PlanError, events.EventSpecError) as exc:
        return answers.as_json(400, {"error": str(exc)})


def _stats(state: SinkState, data: Any) -> Answer:
    return answers.as_json(200, state.stats())


def _messages(state: SinkState, data: Any) -> Answer:
    return answers.as_json(200, {"messages": state.messages()})


def _reset(state: SinkState, data: Any) -> Answer:
    state.reset()
    return answers.as_json(200, {"ok": True})


def _recording(state: SinkState, data: Any) -> Answer:
    if not isinstance(data, dict) or not isinstance(data.get("enabled"), bool):
        return answers.as_json(400, {"error": 'send {"enabled": true} or {"enabled": false}'})
    state.recording = data["enabled"]
    return answers.as_json(200, {"recording": state.recording})


def _set_faults(state: SinkState, data: Any) -> Answer:
    state.plan = parse_plan(data, state.clock())
    return answers.as_json(200, {"ok": True, "rules": len(state.plan.rules)})


def _clear_faults(state: SinkState, data: Any) -> Answer:
    state.plan = FaultPlan()
    return answers.as_json(200, {"ok": True})


def _public_key(state: SinkState, data: Any) -> Answer:
    return answers.as_json(200, {"public_key": state.signer.public_key_b64})


def _events(state: SinkState, data: Any) -> Answer:
    if not isinstance(data, dict):
        raise events.EventSpecError('send {"events": [...], "url": optional}')
    url = data.get("url") or state.webhook_url
    if not url:
        return answers.as_json(
            400, {"error": "no webhook URL: start the sink with one or send url"}
        )
    built = events.from_specs(data.get("events"), state.messages(), state.clock())
    try:
        status = events.post_events(url, built, state.signer, state.clock())
    except OSError as exc:
        return answers.as_json(502, {"error": f"could not post to {url}: {exc}"})
    return answers.as_json(200, {"posted": len(built), "status": status, "events": built})


ROUTES: dict[tuple[str, str], Callable[[SinkState, Any], Answer]] = {
    ("GET", "stats"): _stats,
    ("GET", "messages"): _messages,
    ("POST", "reset"): _reset,
    ("POST", "recording"): _recording,
    ("POST", "faults"): _set_faults,
    ("DELETE", "faults"): _clear_faults,
    ("GET", "webhook-public-key"): _public_key,
    ("POST", "events"): _events,
}
