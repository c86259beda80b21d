"""Bad input gets a clear 4xx, nothing is stored half-way, and the server keeps serving."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from drip.data.models import Consent, Subscriber
from tests.conftest import Stack
from tests.mailbox import csrf_token

API = "/api/v1/subscribers"


def stored(stack: Stack) -> tuple[int, int]:
    with stack.session() as session:
        return (
            session.scalar(select(func.count()).select_from(Subscriber)) or 0,
            session.scalar(select(func.count()).select_from(Consent)) or 0,
        )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"email": "a@b"}, "email"),
        ({"email": ("x" * 250) + "@example.com"}, "email"),
        ({"email": "ann@example.com\r\nBcc: victim@example.com"}, "email"),
        ({"email": "ann@example.com", "first_name": "Ann\r\nBcc: x@example.com"}, "first_name"),
        ({"email": "ann@example.com", "first_name": "A" * 81}, "first_name"),
        ({"email": "ann@example.com", "timezone": "Mars/Olympus_Mons"}, "timezone"),
        ({"email": "ann@example.com", "timezone": "../../etc/passwd"}, "timezone"),
        ({"email": 42}, "email"),
        ({}, "email"),
        ({"email": "ann@example.com", "admin": True}, "admin"),
    ],
)
def test_api_refuses_bad_fields_by_name(stack: Stack, body: dict[str, object], field: str) -> None:
    answer = stack.client.post(API, json=body)
    assert answer.status_code == 422
    assert answer.get_json()["error"]["field"] == field
    assert stored(stack) == (0, 0)


def test_api_requires_json_content_type(stack: Stack) -> None:
    answer = stack.client.post(API, data="email=ann@example.com", content_type="text/plain")
    assert answer.status_code == 415
    assert "application/json" in answer.get_json()["error"]["message"]
    assert stored(stack) == (0, 0)


def test_api_refuses_malformed_json_and_non_objects(stack: Stack) -> None:
    for raw in ["{not json", "[1, 2]", '"ann@example.com"']:
        answer = stack.client.post(API, data=raw, content_type="application/json")
        assert answer.status_code == 400, raw
        assert answer.get_json()["error"]["message"]
    assert stored(stack) == (0, 0)


def test_a_one_megabyte_body_is_refused_and_the_server_keeps_serving(stack: Stack) -> None:
    huge = '{"email": "' + "a" * (1024 * 1024) + '@example.com"}'
    answer = stack.client.post(API, data=huge, content_type="application/json")
    assert answer.status_code == 413
    assert answer.get_json()["error"]["message"] == "the request body is too large"
    form = stack.client.post("/subscribe", data={"email": "a" * (1024 * 1024)})
    assert form.status_code == 413
    assert stored(stack) == (0, 0)
    ok = stack.client.post(API, json={"email": "after@example.com"})
    assert ok.status_code == 202
    assert stored(stack) == (1, 1)


def test_form_shows_the_error_next_to_the_field(stack: Stack) -> None:
    client = stack.client
    token = csrf_token(client.get("/").get_data(as_text=True))
    answer = client.post("/subscribe", data={"email": "nope", "csrf_token": token})
    assert answer.status_code == 400
    page = answer.get_data(as_text=True)
    assert 'role="alert">Email:' in page
    assert 'value="nope"' in page
    assert stored(stack) == (0, 0)


def test_form_refuses_an_unknown_time_zone(stack: Stack) -> None:
    client = stack.client
    token = csrf_token(client.get("/").get_data(as_text=True))
    answer = client.post(
        "/subscribe",
        data={"email": "tz@example.com", "timezone": "Nowhere/Else", "csrf_token": token},
    )
    assert answer.status_code == 400
    assert "Time zone:" in answer.get_data(as_text=True)
    assert stored(stack) == (0, 0)


def test_form_without_csrf_token_is_refused(stack: Stack) -> None:
    answer = stack.client.post("/subscribe", data={"email": "csrf@example.com"})
    assert answer.status_code == 400
    assert stored(stack) == (0, 0)


def test_honeypot_answers_like_success_but_stores_nothing(stack: Stack) -> None:
    client = stack.client
    token = csrf_token(client.get("/").get_data(as_text=True))
    answer = client.post(
        "/subscribe",
        data={"email": "bot@example.com", "website": "http://spam.example", "csrf_token": token},
    )
    assert answer.status_code == 303
    assert stored(stack) == (0, 0)


def test_forged_links_get_a_clear_404(stack: Stack) -> None:
    for path in ["/confirm/forged", "/u/forged", "/p/forged"]:
        answer = stack.client.get(path)
        assert answer.status_code == 404, path
        assert "not valid" in answer.get_data(as_text=True)
    assert stack.client.post("/u/forged").status_code == 404


def test_forged_click_token_still_reaches_the_offer(stack: Stack) -> None:
    answer = stack.client.get("/r/forged")
    assert answer.status_code == 302
    assert answer.headers["Location"] == stack.services.course.cta.url
