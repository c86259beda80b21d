"""The sink refuses what SendGrid refuses, with 400 and one error per problem."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from drip_devtools.sendgrid_sink import Sink
from drip_devtools.sendgrid_sink.testing import TEST_API_KEY, mail_body
from python_http_client.exceptions import BadRequestsError
from sendgrid import SendGridAPIClient

Body = dict[str, Any]


@pytest.fixture
def sg(sink: Sink) -> SendGridAPIClient:
    sg = SendGridAPIClient(api_key=TEST_API_KEY, host=sink.url)
    sg.client.timeout = 5
    return sg


def refused_fields(sg: SendGridAPIClient, body: Body) -> list[str]:
    with pytest.raises(BadRequestsError) as exc:
        sg.send(body)
    errors = json.loads(exc.value.body)["errors"]
    assert all(set(error) == {"message", "field", "help"} for error in errors)
    return [error["field"] for error in errors]


def first(body: Body) -> Body:
    return body["personalizations"][0]


def without(key: str) -> Callable[[Body], None]:
    return lambda body: body.pop(key)


RULES: dict[str, tuple[Callable[[Body], Any], list[str]]] = {
    "no personalizations": (without("personalizations"), ["personalizations"]),
    "empty personalizations": (lambda b: b.update(personalizations=[]), ["personalizations"]),
    "a personalization without to": (lambda b: first(b).pop("to"), ["personalizations.0.to"]),
    "an invalid to address": (
        lambda b: first(b).update(to=[{"email": "not-an-address"}]),
        ["personalizations.0.to.0.email"],
    ),
    "an invalid cc address": (
        lambda b: first(b).update(cc=[{"email": "a@b@example.com"}]),
        ["personalizations.0.cc.0.email"],
    ),
    "no from": (without("from"), ["from.email"]),
    "an invalid from address": (lambda b: b.update({"from": {"email": "x"}}), ["from.email"]),
    "an invalid reply_to address": (
        lambda b: b.update(reply_to={"email": "x@"}),
        ["reply_to.email"],
    ),
    "no subject": (without("subject"), ["subject"]),
    "no content": (without("content"), ["content"]),
    "an empty content value": (
        lambda b: b["content"][0].update(value=""),
        ["content.0.value"],
    ),
    "a content item without type": (lambda b: b["content"][1].pop("type"), ["content.1.type"]),
    "html before plain text": (lambda b: b["content"].reverse(), ["content"]),
    "plain text twice": (lambda b: b["content"].append(dict(b["content"][0])), ["content"]),
    "custom_args of 10,000 bytes after merging": (
        lambda b: b.update(custom_args={"campaign": "x" * (10_000 - len("campaigndelivery_id0"))}),
        ["personalizations.0.custom_args"],
    ),
    "a custom_args value that is no string": (
        lambda b: first(b).update(custom_args={"delivery_id": 17}),
        ["personalizations.0.custom_args.delivery_id"],
    ),
    "a substitution value that is no string": (
        lambda b: first(b).update(substitutions={"%%name%%": 3}),
        ["personalizations.0.substitutions.%%name%%"],
    ),
    "a send_at that is no timestamp": (
        lambda b: first(b).update(send_at="tomorrow"),
        ["personalizations.0.send_at"],
    ),
    "11 categories": (
        lambda b: b.update(categories=[f"c{i}" for i in range(11)]),
        ["categories"],
    ),
    "a reserved header in a personalization": (
        lambda b: first(b).update(headers={"Subject": "Sneaky"}),
        ["personalizations.0.headers.Subject"],
    ),
    "a reserved header in any case": (
        lambda b: first(b).update(headers={"DKIM-Signature": "v=1"}),
        ["personalizations.0.headers.DKIM-Signature"],
    ),
    "substitutions over 10,000 bytes": (
        lambda b: first(b).update(substitutions={"%%x%%": "y" * (10_001 - 5)}),
        ["personalizations.0.substitutions"],
    ),
    "send_at more than 72 hours ahead": (
        lambda b: first(b).update(send_at=int(time.time()) + 73 * 3600),
        ["personalizations.0.send_at"],
    ),
    "a message-level send_at more than 72 hours ahead": (
        lambda b: b.update(send_at=int(time.time()) + 73 * 3600),
        ["send_at"],
    ),
}


@pytest.mark.parametrize("rule", RULES, ids=list(RULES))
def test_it_refuses_a_body_breaking_a_rule_naming_the_field(
    sg: SendGridAPIClient, rule: str
) -> None:
    change, fields = RULES[rule]
    body = mail_body()
    change(body)

    assert refused_fields(sg, body) == fields


def test_it_reports_every_problem_in_one_answer(sg: SendGridAPIClient) -> None:
    body = mail_body(2, subject=None, content=[{"type": "text/plain", "value": ""}])
    body["personalizations"][1]["to"] = [{"email": "nope"}]

    assert refused_fields(sg, body) == [
        "content.0.value",
        "personalizations.1.to.0.email",
        "subject",
    ]


def test_it_accepts_1000_personalizations(sg: SendGridAPIClient) -> None:
    assert sg.send(mail_body(1000)).status_code == 202


def test_it_refuses_more_than_1000_personalizations(sg: SendGridAPIClient) -> None:
    assert refused_fields(sg, mail_body(1001)) == ["personalizations"]


def test_it_refuses_more_than_1000_recipients_in_total(sg: SendGridAPIClient) -> None:
    body = mail_body(500)
    for i, personalization in enumerate(body["personalizations"]):
        personalization["cc"] = [{"email": f"cc{i}@example.com"}]
    assert sg.send(body).status_code == 202

    body["personalizations"][0]["bcc"] = [{"email": "one-too-many@example.com"}]
    assert refused_fields(sg, body) == ["personalizations"]


def test_it_refuses_an_address_used_twice_in_a_request_whatever_its_case(
    sg: SendGridAPIClient,
) -> None:
    body = mail_body(3)
    body["personalizations"][2]["to"] = [{"email": "U0@Example.COM"}]

    assert refused_fields(sg, body) == ["personalizations.2.to.0.email"]


def test_it_refuses_an_address_in_both_to_and_cc_of_a_personalization(
    sg: SendGridAPIClient,
) -> None:
    body = mail_body()
    first(body)["cc"] = [{"email": "u0@example.com"}]

    assert refused_fields(sg, body) == ["personalizations.0"]


def test_a_subject_in_every_personalization_replaces_the_message_subject(
    sg: SendGridAPIClient,
) -> None:
    body = mail_body(2)
    del body["subject"]
    for personalization in body["personalizations"]:
        personalization["subject"] = "Their own"

    assert sg.send(body).status_code == 202


def test_it_accepts_the_limits_themselves(sg: SendGridAPIClient) -> None:
    body = mail_body(categories=[f"c{i}" for i in range(10)], custom_args={"c": "x" * 9_000})
    first(body)["custom_args"] = {"delivery_id": "x" * (10_000 - 9_001 - 11 - 1)}
    first(body)["substitutions"] = {"%%x%%": "y" * (10_000 - 5)}
    first(body)["send_at"] = int(time.time()) + 71 * 3600
    first(body)["headers"] = {
        "List-Unsubscribe": "<https://drip.example/u/abc>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }

    assert sg.send(body).status_code == 202


def test_it_accepts_a_template_without_subject_or_content(sg: SendGridAPIClient) -> None:
    body = mail_body(template_id="d-123")
    del body["subject"], body["content"]

    assert sg.send(body).status_code == 202
