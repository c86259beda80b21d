"""The sink answers v3 mail send as SendGrid does, to the official client."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request

import pytest
from drip_devtools.sendgrid_sink import Sink
from drip_devtools.sendgrid_sink.testing import TEST_API_KEY, mail_body
from python_http_client.exceptions import (
    BadRequestsError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    UnauthorizedError,
)
from sendgrid import SendGridAPIClient


def client(sink: Sink, key: str = TEST_API_KEY) -> SendGridAPIClient:
    sg = SendGridAPIClient(api_key=key, host=sink.url)
    sg.client.timeout = 5
    return sg


def errors_of(exc: pytest.ExceptionInfo) -> list[dict]:
    return json.loads(exc.value.body)["errors"]


def test_it_accepts_a_valid_message_with_202_and_a_message_id(sink: Sink) -> None:
    response = client(sink).send(mail_body(3))

    assert response.status_code == 202
    assert response.body == b""
    message_id = response.headers["X-Message-Id"]
    assert len(message_id) == 22
    assert message_id.replace("-", "").replace("_", "").isalnum()
    assert sink.stats["accepted"] == 1
    assert sink.stats["messages"] == 3


def test_each_accepted_request_gets_its_own_message_id(sink: Sink) -> None:
    sg = client(sink)
    ids = {sg.send(mail_body()).headers["X-Message-Id"] for _ in range(5)}

    assert len(ids) == 5


def test_sandbox_mode_answers_200_and_records_nothing(sink: Sink) -> None:
    body = mail_body(2, mail_settings={"sandbox_mode": {"enable": True}})

    response = client(sink).send(body)

    assert response.status_code == 200
    assert sink.messages == []
    assert sink.stats["messages"] == 0
    assert sink.stats["sandbox"] == 1


def test_sandbox_mode_still_validates(sink: Sink) -> None:
    body = mail_body(mail_settings={"sandbox_mode": {"enable": True}}, subject="")

    with pytest.raises(BadRequestsError):
        client(sink).send(body)


def test_a_wrong_key_gets_401_and_the_client_raises_unauthorized(sink: Sink) -> None:
    with pytest.raises(UnauthorizedError) as exc:
        client(sink, key="SG.wrong").send(mail_body())

    assert exc.value.status_code == 401
    assert errors_of(exc) == [
        {
            "message": "The provided authorization grant is invalid, expired, or revoked",
            "field": None,
            "help": None,
        }
    ]
    assert sink.messages == []


def test_an_empty_key_gets_401(sink: Sink) -> None:
    with pytest.raises(UnauthorizedError):
        client(sink, key="").send(mail_body())


def test_a_sink_without_a_key_takes_any_key() -> None:
    with Sink() as sink:
        assert client(sink, key="SG.anything").send(mail_body()).status_code == 202


def test_a_key_marked_forbidden_gets_403(sink: Sink) -> None:
    sink.set_faults(forbidden_keys=[TEST_API_KEY])

    with pytest.raises(ForbiddenError) as exc:
        client(sink).send(mail_body())

    assert errors_of(exc) == [{"message": "access forbidden", "field": None, "help": None}]


def test_an_unverified_sender_gets_403_naming_the_sender_identity_rule(sink: Sink) -> None:
    sink.set_faults(unverified_senders=["Course@Example.com"])

    with pytest.raises(ForbiddenError) as exc:
        client(sink).send(mail_body())

    (error,) = errors_of(exc)
    assert error["message"].startswith(
        "The from address does not match a verified Sender Identity."
    )
    assert error["field"] == "from"


def test_a_body_over_30_mb_gets_413(sink: Sink) -> None:
    body = mail_body(content=[{"type": "text/plain", "value": "x" * (30 * 1024 * 1024)}])

    with pytest.raises(PayloadTooLargeError) as exc:
        client(sink).send(body)

    assert errors_of(exc)[0]["message"] == "Payload Too Large"
    assert sink.stats["statuses"] == {"413": 1}


def test_a_body_that_is_not_json_gets_400(sink: Sink) -> None:
    request = urllib.request.Request(
        f"{sink.url}/v3/mail/send",
        data=b"{not json",
        headers={"Authorization": f"Bearer {TEST_API_KEY}", "Content-Type": "application/json"},
        method="POST",
    )

    with pytest.raises(urllib.error.HTTPError) as exc, urllib.request.urlopen(request, timeout=5):
        pass

    with exc.value as err:
        assert err.code == 400
        assert json.loads(err.read())["errors"][0]["message"] == "Bad Request"


def test_a_json_body_that_is_no_object_gets_400(sink: Sink) -> None:
    with pytest.raises(BadRequestsError):
        client(sink).client.mail.send.post(request_body=["not", "an", "object"])


def test_an_unknown_path_gets_404(sink: Sink) -> None:
    with pytest.raises(NotFoundError):
        client(sink).client.mail.batch.post(request_body={})


def test_it_keeps_the_connection_alive_between_requests(sink: Sink) -> None:
    host, port = sink.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    headers = {"Authorization": f"Bearer {TEST_API_KEY}", "Content-Type": "application/json"}
    try:
        statuses = []
        for _ in range(3):
            connection.request("POST", "/v3/mail/send", json.dumps(mail_body()), headers)
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            assert not response.will_close
    finally:
        connection.close()

    assert statuses == [202, 202, 202]


def test_a_request_without_a_usable_length_gets_400_and_a_closed_connection(sink: Sink) -> None:
    host, port = sink.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.putrequest("POST", "/v3/mail/send")
        connection.putheader("Content-Length", "twelve")
        connection.endheaders()
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()

    assert response.status == 400
    assert response.will_close
