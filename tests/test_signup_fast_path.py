"""The public JSON signup answered below Flask (drip/web/signup_fast_path.py): the same
answers, byte for byte, as Flask's view gives; everything else still goes to Flask; a
request handed on is counted once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import request, request_started

from tests.conftest import Stack, clear_signup_limits

# An Authorization header that names no key: the request goes to Flask's view, which
# treats it as a caller from the public, so both paths must answer it the same.
NOT_A_KEY = {"Authorization": "Bearer not-a-key"}


@pytest.fixture()
def limited(stack_factory: Callable[..., Stack]) -> Stack:
    stack = stack_factory(signup_rate_limit="4 per minute", confirmations_per_address_per_day=1)
    clear_signup_limits(stack)
    return stack


@pytest.fixture()
def flask_requests(limited: Stack) -> Iterator[list[str]]:
    """The paths of the requests Flask's own request handling saw."""
    seen: list[str] = []

    def started(sender: Any, **extra: Any) -> None:
        seen.append(request.path)

    request_started.connect(started, limited.app)
    yield seen
    request_started.disconnect(started, limited.app)


def post(stack: Stack, body: Any, ip: str, headers: dict[str, str] | None = None) -> Any:
    return stack.client.post(
        "/api/v1/subscribers", json=body, headers=headers or {}, environ_base={"REMOTE_ADDR": ip}
    )


def answer(response: Any) -> tuple[int, bytes, str, str | None]:
    return (
        response.status_code,
        response.get_data(),
        response.headers["Content-Type"],
        response.headers.get("Retry-After"),
    )


def test_a_valid_signup_is_answered_below_flask_as_flask_answers_it(
    limited: Stack, flask_requests: list[str]
) -> None:
    fast = post(limited, {"email": "fast@example.com", "first_name": "Ann"}, "10.20.0.1")
    assert flask_requests == [], "the fast path answered without Flask's request handling"
    through_flask = post(limited, {"email": "slow@example.com"}, "10.20.0.2", NOT_A_KEY)
    assert flask_requests == ["/api/v1/subscribers"]
    assert answer(fast) == answer(through_flask)
    assert fast.status_code == 202
    assert fast.get_json()["status"] == "pending_confirmation"
    assert "Set-Cookie" not in fast.headers and "Set-Cookie" not in through_flask.headers


def test_the_limits_answer_the_same_on_both_paths(
    limited: Stack, flask_requests: list[str]
) -> None:
    # Per address: one confirmation a day; a second signup of the pending address would
    # send another, so it is refused (429 on the email field, Retry-After).
    assert post(limited, {"email": "once@example.com"}, "10.21.0.1").status_code == 202
    fast = post(limited, {"email": "once@example.com"}, "10.21.0.2")
    through_flask = post(limited, {"email": "once@example.com"}, "10.21.0.3", NOT_A_KEY)
    assert answer(fast) == answer(through_flask)
    assert fast.status_code == 429 and fast.get_json()["error"]["field"] == "email"
    assert int(fast.headers["Retry-After"]) > 0
    # Per client: four a minute. The fifth from one address is refused on both paths.
    for n in range(4):
        assert post(limited, {"email": f"c{n}@example.com"}, "10.21.1.1").status_code == 202
    fast = post(limited, {"email": "c5@example.com"}, "10.21.1.1")
    through_flask = post(limited, {"email": "c6@example.com"}, "10.21.1.1", NOT_A_KEY)
    status, body, content_type, retry_after = answer(fast)
    assert (status, body, content_type) == answer(through_flask)[:3]
    assert status == 429 and retry_after is not None and int(retry_after) > 0
    assert fast.get_json()["error"]["field"] is None
    assert flask_requests == ["/api/v1/subscribers"] * 2, "only the keyed-looking ones"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        ({"email": "not-an-address"}, "application/json", 422, "email"),
        ({"email": "a@example.com", "timezone": "Mars/Base"}, "application/json", 422, "timezone"),
        ({"email": "a@example.com", "favourite": 1}, "application/json", 422, "favourite"),
        ({"email": "a@example.com", "consent": "import"}, "application/json", 401, "consent"),
        (["a@example.com"], "application/json", 400, None),
        ({"email": "a@example.com"}, "text/plain", 415, None),
        ("x" * 70_000, "application/json", 413, None),
    ],
)
def test_everything_but_a_valid_public_signup_is_answered_by_flask(
    limited: Stack,
    flask_requests: list[str],
    body: Any,
    content_type: str,
    status: int,
    field: str | None,
) -> None:
    data = json.dumps(body) if content_type == "application/json" else str(body)
    response = limited.client.post(
        "/api/v1/subscribers",
        data=data,
        content_type=content_type,
        environ_base={"REMOTE_ADDR": "10.22.0.1"},
    )
    assert response.status_code == status
    assert response.get_json()["error"]["field"] == field
    assert flask_requests == ["/api/v1/subscribers"]


def test_a_request_handed_to_flask_counts_once_against_its_client(limited: Stack) -> None:
    """Four a minute. Two refused inputs count two (in Flask's view, not also before it),
    so two valid signups still go through and only the fifth request is refused."""
    ip = "10.23.0.1"
    assert post(limited, {"email": "nope"}, ip).status_code == 422
    assert post(limited, {"email": "a@example.com", "extra": 1}, ip).status_code == 422
    assert post(limited, {"email": "first@example.com"}, ip).status_code == 202
    assert post(limited, {"email": "second@example.com"}, ip).status_code == 202
    assert post(limited, {"email": "third@example.com"}, ip).status_code == 429
