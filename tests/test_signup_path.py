"""The signup's short path: CSRF on the form, the per-address count given back when no
email goes out, and an honest 503 when the database is away (nothing accepted)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from drip.app import create_app
from drip.data.models import Consent, Subscriber
from drip.subscribers.subscriptions import unsubscribe
from tests.conftest import Stack, clear_signup_limits, make_settings, wait_until
from tests.mailbox import csrf_token, link, messages


@pytest.fixture()
def limited(stack_factory: Callable[..., Stack]) -> Stack:
    # Every test of this module uses this one stack: the app is built once per module.
    stack = stack_factory(signup_rate_limit="50 per minute", confirmations_per_address_per_day=2)
    clear_signup_limits(stack)
    return stack


def count(stack: Stack, model: type) -> int:
    with stack.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_the_form_without_its_csrf_token_is_refused_and_stores_nothing(limited: Stack) -> None:
    client = limited.client
    subscribers, consents = count(limited, Subscriber), count(limited, Consent)
    answer = client.post("/subscribe", data={"email": "no-token@example.com"})
    assert answer.status_code == 400
    forged = client.post("/subscribe", data={"email": "no-token@example.com", "csrf_token": "x"})
    assert forged.status_code == 400
    assert (count(limited, Subscriber), count(limited, Consent)) == (subscribers, consents)
    token = csrf_token(client.get("/").get_data(as_text=True))
    form = client.post("/subscribe", data={"email": "no-token@example.com", "csrf_token": token})
    assert form.status_code == 303, "the same form with its token is taken"
    assert count(limited, Consent) == consents + 1


def test_signups_that_send_nothing_give_the_address_its_count_back(limited: Stack) -> None:
    """Cap 2 a day. An active subscriber signing up again is sent nothing, so those
    signups do not count: after unsubscribing, a new signup still gets its email."""
    email = "returning@example.com"

    def api(n: int) -> int:
        answer = limited.client.post(
            "/api/v1/subscribers",
            json={"email": email},
            environ_base={"REMOTE_ADDR": f"10.9.0.{n}"},
        )
        return int(answer.status_code)

    assert api(1) == 202
    wait_until(lambda: messages(limited.outbox, to=email))
    confirmation = link(messages(limited.outbox, to=email)[0], "/confirm/")
    browser = limited.client  # one client: the CSRF token lives in its session cookie
    page = browser.get(confirmation).get_data(as_text=True)
    confirmed = browser.post(confirmation, data={"csrf_token": csrf_token(page)})
    assert confirmed.status_code == 200
    assert [api(n) for n in range(2, 7)] == [202] * 5, "active: the same neutral answer"
    with limited.session() as session:
        subscriber = session.scalar(select(Subscriber).where(Subscriber.email == email))
        assert subscriber is not None
        unsubscribe(session, subscriber.id, now=limited.clock())
    assert api(7) == 202
    wait_until(
        lambda: len([m for m in messages(limited.outbox, to=email) if "/confirm/" in str(m)]) == 2
    )
    assert api(8) == 429, "the cap of two is reached now, and only now"


def test_a_signup_while_the_database_is_away_is_refused_with_503(
    redis_url: str, tmp_path: Path
) -> None:
    """Nothing listens on the database's port: the answer says so; nothing was accepted."""
    settings = make_settings(
        "postgresql",
        "postgresql://postgres@127.0.0.1:9/nowhere",
        redis_url,
        tmp_path,
        rate_limits_enabled=True,
    )
    client = create_app(settings).test_client()
    answer = client.post("/api/v1/subscribers", json={"email": "later@example.com"})
    assert answer.status_code == 503
    assert int(answer.headers["Retry-After"]) > 0
    assert "try again" in answer.get_json()["error"]["message"]
    token = csrf_token(client.get("/").get_data(as_text=True))
    form = client.post("/subscribe", data={"email": "later@example.com", "csrf_token": token})
    assert form.status_code == 503


def test_the_short_path_stores_times_as_the_orm_does(tmp_path: Path) -> None:
    """SQLite keeps times as text and compares them as text (what is due): the signup's
    own statements must write the ORM's format, microseconds included."""
    from datetime import UTC, datetime

    from drip.data.db import Database
    from drip.data.migrate import upgrade
    from drip.subscribers.subscriptions import ConsentContext, record_signup, subscribe
    from drip.subscribers.validation import SignupInput

    database = Database(f"sqlite:///{tmp_path}/times.sqlite3")
    upgrade(database)
    consent = ConsentContext(source="api", text="yes", text_version="1")
    on_the_second = datetime(2026, 12, 1, 3, 0, 0, tzinfo=UTC)
    record_signup(
        database, SignupInput("short@example.com", "", "UTC"), consent, now=on_the_second,
        secret_key="k" * 32,
    )  # fmt: skip
    with database.session() as session:
        subscribe(
            session, SignupInput("orm@example.com", "", "UTC"), consent, now=on_the_second,
            secret_key="k" * 32,
        )  # fmt: skip
    with database.engine.connect() as connection:
        stored = connection.exec_driver_sql(
            "SELECT s.created_at, c.created_at, c.confirmation_due_at"
            " FROM subscribers s JOIN consents c ON c.subscriber_id = s.id ORDER BY s.id"
        ).all()
    database.dispose()
    assert stored[0] == stored[1] == ("2026-12-01 03:00:00.000000",) * 3


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_signup_survives_its_pooled_connection_being_dropped(limited: Stack) -> None:
    """PostgreSQL restarted (here: the signups' connections terminated): the next signup
    notices its dead connection, takes a new one and is stored, once. (The pool of
    single statements exists on PostgreSQL only.)"""
    from sqlalchemy import text

    from drip.data.prepared import STATEMENTS_APPLICATION_NAME

    def api(email: str) -> int:
        return int(limited.client.post("/api/v1/subscribers", json={"email": email}).status_code)

    assert api("before-restart@example.com") == 202
    with limited.services.database.engine.connect() as admin:
        ended = admin.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = :name"
            ),
            {"name": STATEMENTS_APPLICATION_NAME},
        ).scalar()
    assert ended and ended >= 1
    assert api("after-restart@example.com") == 202
    with limited.session() as session:
        stored = session.scalar(
            select(func.count())
            .select_from(Consent)
            .join(Subscriber, Subscriber.id == Consent.subscriber_id)
            .where(Subscriber.email == "after-restart@example.com")
        )
    assert stored == 1


def test_sqlite_signups_leave_checkpoints_to_a_thread_which_makes_them(tmp_path: Path) -> None:
    """Signups turn SQLite's checkpoint-on-commit off (a ~20 ms stall of one signup in
    about 140); the rows still reach the database file: a thread of the process
    checkpoints, so the log does not grow for as long as signups come."""
    import threading
    from datetime import UTC, datetime

    from drip.data.db import Database
    from drip.data.migrate import upgrade
    from drip.subscribers.subscriptions import ConsentContext, record_signup
    from drip.subscribers.validation import SignupInput

    path = tmp_path / "wal.sqlite3"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    empty = path.stat().st_size
    consent = ConsentContext(source="api", text="yes " * 80, text_version="1")
    now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    for n in range(500):
        record_signup(
            database, SignupInput(f"wal{n}@example.com", "", "UTC"), consent, now=now,
            secret_key="k" * 32,
        )  # fmt: skip
    assert "drip-wal-checkpoints" in {t.name for t in threading.enumerate()}
    # 500 consents of 320 characters each are in the file, not only in the log.
    wait_until(lambda: path.stat().st_size > empty + 500 * 320)
    database.dispose()
