"""Abuse limits: signups per IP, and at most N confirmation emails a day per address."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import Stack, clear_signup_limits, wait_until
from tests.mailbox import csrf_token, messages


@pytest.fixture()
def limited(stack_factory: Callable[..., Stack]) -> Stack:
    stack = stack_factory(signup_rate_limit="5 per minute", confirmations_per_address_per_day=3)
    clear_signup_limits(stack)
    for path in stack.outbox.glob("*.eml") if stack.outbox.exists() else []:
        path.unlink()
    return stack


def test_one_address_gets_at_most_three_confirmation_emails_a_day(limited: Stack) -> None:
    victim = "victim@example.com"
    answers = [
        limited.client.post(
            "/api/v1/subscribers",
            json={"email": victim},
            environ_base={"REMOTE_ADDR": f"10.0.0.{n}"},  # a botnet: a new IP each time
        )
        for n in range(5)
    ]
    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429]
    refused = answers[3]
    assert refused.get_json()["error"]["field"] == "email"
    assert int(refused.headers["Retry-After"]) > 0
    wait_until(lambda: len(messages(limited.outbox, to=victim)) == 3)
    assert len(messages(limited.outbox, to=victim)) == 3


def test_the_form_says_so_too_with_retry_after(limited: Stack) -> None:
    client = limited.client
    token = csrf_token(client.get("/").get_data(as_text=True))
    codes = []
    for n in range(4):
        answer = client.post(
            "/subscribe",
            data={"email": "form-victim@example.com", "csrf_token": token},
            environ_base={"REMOTE_ADDR": f"10.1.0.{n}"},
        )
        codes.append(answer.status_code)
    assert codes == [303, 303, 303, 429]
    assert "Too many confirmation emails" in answer.get_data(as_text=True)
    assert int(answer.headers["Retry-After"]) > 0


def test_signups_per_ip_are_limited_with_a_clear_429(limited: Stack) -> None:
    codes = []
    for n in range(7):
        answer = limited.client.post(
            "/api/v1/subscribers",
            json={"email": f"person{n}@example.com"},
            environ_base={"REMOTE_ADDR": "192.0.2.9"},
        )
        codes.append(answer.status_code)
    assert codes == [202] * 5 + [429] * 2
    assert "too many signups" in answer.get_json()["error"]["message"]
    assert int(answer.headers["Retry-After"]) > 0
    other_ip = limited.client.post(
        "/api/v1/subscribers",
        json={"email": "elsewhere@example.com"},
        environ_base={"REMOTE_ADDR": "192.0.2.10"},
    )
    assert other_ip.status_code == 202


def test_the_limits_keep_counting_after_redis_lost_its_scripts_and_connections(
    limited: Stack,
) -> None:
    """A Redis restart in small: the script cache flushed, the limits' connections cut.
    The next signups are still counted (not let through unchecked): five a minute."""
    import redis

    from drip.web.limits import CLIENT_NAME

    def api(n: int) -> int:
        return int(
            limited.client.post(
                "/api/v1/subscribers",
                json={"email": f"restart{n}@example.com"},
                environ_base={"REMOTE_ADDR": "192.0.2.77"},
            ).status_code
        )

    assert [api(n) for n in range(2)] == [202, 202]
    admin = redis.Redis.from_url(limited.services.settings.broker_url)
    admin.script_flush()
    ours = [c for c in admin.client_list() if c.get("name") == CLIENT_NAME]
    assert ours, "the signups' limits have a connection of their own, named"
    for connection in ours:
        admin.client_kill_filter(_id=connection["id"])
    assert [api(n) for n in range(2, 7)] == [202, 202, 202, 429, 429]


def test_a_signup_goes_through_when_redis_does_not_answer(
    tmp_path: pytest.TempPathFactory,
) -> None:
    """The limits fail open: nothing listens where Redis should be, the signup is stored."""
    from pathlib import Path

    from sqlalchemy import func, select

    from drip.app import create_app
    from drip.data.db import Database
    from drip.data.migrate import upgrade
    from drip.data.models import Consent
    from tests.conftest import make_settings

    var = Path(str(tmp_path))
    url = f"sqlite:///{var}/no-redis.sqlite3"
    upgrade(Database(url))
    settings = make_settings("sqlite", url, "redis://127.0.0.1:9", var, rate_limits_enabled=True)
    client = create_app(settings).test_client()
    answer = client.post("/api/v1/subscribers", json={"email": "no-redis@example.com"})
    assert answer.status_code == 202
    with Database(url).session() as session:
        assert session.scalar(select(func.count()).select_from(Consent)) == 1
