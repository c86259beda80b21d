"""``POST /v3/mail/send``: answer one request as SendGrid would, or as the fault plan says.

The order of checks:
1. a fault rule that fires (status, drop, or a delay before the usual answer);
2. size over 30 MB -> 413; 3. the API key -> 401/403;
4. the JSON body, validated as SendGrid does -> 400;
5. an unverified sender -> 403; a bad recipient from the plan -> 400;
6. sandbox mode -> 200, nothing kept; otherwise 202 with X-Message-Id.
"""

from __future__ import annotations

import json
from typing import Any

from drip_devtools.sendgrid_sink import answers
from drip_devtools.sendgrid_sink.answers import Answer
from drip_devtools.sendgrid_sink.faults import FaultPlan, Rule
from drip_devtools.sendgrid_sink.record import new_message_id, records_for
from drip_devtools.sendgrid_sink.state import SinkState
from drip_devtools.sendgrid_sink.validate import INVALID_ADDRESS, Checked, address_field, check

MAX_BODY_BYTES = 30 * 1024 * 1024  # SendGrid v3 mail send: a message must be under 30 MB


def handle(state: SinkState, authorization: str | None, body: bytes, size: int) -> Answer:
    """Answer a mail send whose declared size is ``size`` (``body`` is empty when too large)."""
    now = state.clock()
    plan = state.plan
    rule = plan.pick(now)
    if rule is not None and (rule.status is not None or rule.drop):
        return _fault(state, rule, now)
    answer = _answer(state, plan, authorization, body, size, now)
    if rule is not None:
        answer.delay = rule.delay
    return answer


def _fault(state: SinkState, rule: Rule, now: float) -> Answer:
    if rule.drop:
        state.count(None, faults=1, dropped=1)
        return Answer(drop=True, delay=rule.delay)
    assert rule.status is not None
    state.count(rule.status, faults=1)
    answer = answers.injected(rule.status, now, rule.limit, rule.reset_in)
    answer.delay = rule.delay
    return answer


def _answer(
    state: SinkState, plan: FaultPlan, authorization: str | None, body: bytes, size: int, now: float
) -> Answer:
    refusal = _refusal(state, plan, authorization, size)
    if refusal is not None:
        state.count(refusal.status)
        return refusal
    try:
        data = json.loads(body)
    except ValueError:
        state.count(400)
        return answers.error(400, "Bad Request")
    return _checked_answer(state, plan, data, check(data, now))


def _refusal(
    state: SinkState, plan: FaultPlan, authorization: str | None, size: int
) -> Answer | None:
    if size > MAX_BODY_BYTES:
        return answers.error(413, "Payload Too Large")
    key = _bearer(authorization)
    if state.api_key is not None and key is None:
        return answers.error(401, answers.AUTHORIZATION_REQUIRED)
    if state.api_key is not None and key != state.api_key:
        return answers.error(401, answers.UNAUTHORIZED)
    if key in plan.forbidden_keys:
        return answers.error(403, answers.FORBIDDEN)
    return None


def _bearer(authorization: str | None) -> str | None:
    scheme, _, key = (authorization or "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" and key.strip() else None


def _checked_answer(state: SinkState, plan: FaultPlan, data: Any, checked: Checked) -> Answer:
    problems = checked.problems or _bad_recipients(plan, checked)
    if problems:
        state.count(400)
        return answers.errors(400, problems)
    if checked.from_email.lower() in plan.unverified_senders:
        state.count(403)
        return answers.error(403, answers.UNVERIFIED_SENDER, "from")
    if checked.sandbox:
        state.count(200, sandbox=1)
        return Answer(200)
    return _accept(state, data, checked)


def _bad_recipients(plan: FaultPlan, checked: Checked) -> list[dict[str, Any]]:
    """Refuse, naming each field, any address the plan calls bad: a client can bisect its batch."""
    found = sorted(checked.addresses[a] for a in plan.bad_recipients if a in checked.addresses)
    return [answers.error_entry(INVALID_ADDRESS, address_field(where)) for where in found]


def _accept(state: SinkState, data: dict[str, Any], checked: Checked) -> Answer:
    message_id = new_message_id()
    if state.recording:
        state.keep(records_for(data, message_id))
    state.count(202, accepted=1, messages=checked.personalizations, recipients=checked.recipients)
    return Answer(202, headers={"X-Message-Id": message_id})
