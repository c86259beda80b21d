"""/admin: sign-in rules, every route refused to anonymous requests, the numbers on the
dashboard against the database, and the audited retry/skip/pause/resume/unsubscribe actions.

The stack mails through the SendGrid backend to the sink, so failed deliveries are real
refusals. ``build_known_state`` makes the state tests/test_metrics.py and the browser
test check as well.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as day_time
from typing import Any

import pytest
from drip_devtools.sendgrid_sink import Sink
from flask import Flask
from flask.testing import FlaskClient
from markupsafe import escape
from sqlalchemy import func, insert, select

from drip.app import create_app
from drip.data.models import AuditEntry, Click, Delivery, Enrollment, Event, Subscriber
from drip.subscribers import subscriptions
from drip.subscribers.validation import SignupInput
from drip.web.admin import attempts
from tests.conftest import SENDGRID_API_KEY, Stack, clear_tables, drain
from tests.mailbox import csrf_token

PASSWORD = "correct horse battery staple"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126 Safari/537.36"
LOGIN = "/admin/login"


# --- The known state ---------------------------------------------------------------------


@dataclass
class KnownState:
    ids: dict[str, int]  # person -> subscriber id
    deliveries: dict[tuple[str, int], int]  # (person, lesson) -> delivery id


def add_confirmed(stack: Stack, people: dict[str, str]) -> dict[str, int]:
    """Sign up and confirm each person (name -> time zone) through the real use cases."""
    services, now, ids = stack.services, stack.clock(), {}
    consent = subscriptions.ConsentContext(
        source="form:/", text="Send me the course.", text_version="v1", ip="192.0.2.7"
    )
    with stack.session() as session:
        for name, zone in people.items():
            outcome = subscriptions.subscribe(
                session,
                SignupInput(f"{name}@example.com", name.title(), zone),
                consent,
                now=now,
                secret_key=services.settings.secret_key,
            )
            assert outcome.subscriber_id is not None and outcome.consent_id is not None
            if zone:
                subscriptions.confirm(
                    session,
                    outcome.subscriber_id,
                    outcome.consent_id,
                    course_slug=services.course.slug,
                    now=now,
                )
            ids[name] = outcome.subscriber_id
    return ids


def click(stack: Stack, delivery_id: int, user_agent: str = BROWSER, method: str = "GET") -> None:
    path = stack.services.links.click(delivery_id).removeprefix(stack.services.settings.base_url)
    answer = stack.client.open(path, method=method, headers={"User-Agent": user_agent})
    assert answer.status_code == 302


def add_events(stack: Stack, events: list[tuple[str, int, str, bool]]) -> None:
    """Provider events as the webhook records them: (person, delivery id, kind, machine)."""
    now = stack.clock()
    with stack.session() as session:
        subscriber_of = dict(session.execute(select(Delivery.id, Delivery.subscriber_id)).all())
        session.execute(
            insert(Event),
            [
                {
                    "provider_event_id": secrets.token_hex(8),
                    "kind": kind,
                    "delivery_id": delivery_id,
                    "subscriber_id": subscriber_of[delivery_id],
                    "machine": machine,
                    "occurred_at": now,
                    "received_at": now,
                    "data": {},
                }
                for _person, delivery_id, kind, machine in events
            ],
        )


def build_known_state(stack: Stack, sink: Sink) -> KnownState:
    """Seven signups, two lesson days, a refused recipient, an unsubscribe, clicks and opens.

    ann, ben, cat, dan and eve confirm (UTC); pat never confirms; zoe (Tokyo) joins on
    day 2. eve's address is refused by the provider, so both her lessons fail. dan
    unsubscribes after lesson 1. ann clicks lesson 1 twice and lesson 2 once; a link
    scanner follows ben's lesson 1. ann and cat open lesson 1, a machine opens ben's,
    cat opens lesson 2.
    """
    # Noon UTC, so lesson 2 (08:00 local) is due on the next day's tick.
    start = datetime.combine(datetime.now(UTC).date(), day_time(12), tzinfo=UTC)
    stack.clock.set(start)
    ids = add_confirmed(stack, {n: "UTC" for n in ("ann", "ben", "cat", "dan", "eve")})
    ids |= add_confirmed(stack, {"pat": ""})
    sink.set_faults(bad_recipients=["eve@example.com"])
    stack.tick()
    drain(stack)
    with stack.session() as session:
        subscriptions.unsubscribe(session, ids["dan"], now=stack.clock())
    stack.clock.set(start + timedelta(days=1))
    ids |= add_confirmed(stack, {"zoe": "Asia/Tokyo"})
    stack.tick()
    drain(stack)
    sink.clear_faults()
    with stack.session() as session:
        rows = session.execute(select(Delivery.subscriber_id, Delivery.lesson, Delivery.id)).all()
    name_of = {subscriber_id: name for name, subscriber_id in ids.items()}
    deliveries = {(name_of[s], lesson): d for s, lesson, d in rows}
    stack.clock.advance(minutes=10)  # past the scanner window, within the failures' hour
    click(stack, deliveries[("ann", 1)])
    click(stack, deliveries[("ann", 1)])
    click(stack, deliveries[("ann", 2)])
    click(stack, deliveries[("ben", 1)], user_agent="Mimecast URL Protect")
    add_events(
        stack,
        [
            ("ann", deliveries[("ann", 1)], "open", False),
            ("ann", deliveries[("ann", 1)], "delivered", False),
            ("ben", deliveries[("ben", 1)], "open", True),
            ("cat", deliveries[("cat", 1)], "open", False),
            ("cat", deliveries[("cat", 2)], "open", False),
        ],
    )
    return KnownState(ids, deliveries)


# What the known state must show, worked out by hand from its story.
FUNNEL = {"signed up": 7, "confirmed": 6, "lesson 1": 5, "lesson 2": 3, "lesson 3": 0}
FUNNEL_EXITS = {"completed": 0, "unsubscribed": 1, "bounced": 0, "complained": 0}
LESSONS = {
    1: {"sent": 5, "failed": 1, "opened": 2, "machine_opened": 1, "clicks": 2,
        "click_rate": "20.0%", "scanner_clicks": 1, "unsubscribes": 1},
    2: {"sent": 3, "failed": 1, "opened": 1, "machine_opened": 0, "clicks": 1,
        "click_rate": "33.3%", "scanner_clicks": 0, "unsubscribes": 0},
}  # fmt: skip


# --- Fixtures and helpers ----------------------------------------------------------------


def admin_stack(stack_factory: Callable[..., Stack], sink: Sink, **overrides: Any) -> Stack:
    stack = stack_factory(
        email_backend="sendgrid",
        sendgrid_api_key=SENDGRID_API_KEY,
        sendgrid_host=sink.url,
        admin_password=PASSWORD,
        **overrides,
    )
    clear_tables(stack.services.database)
    sink.clear_faults()
    return stack


@pytest.fixture()
def stack(stack_factory: Callable[..., Stack], sink: Sink) -> Stack:
    return admin_stack(stack_factory, sink)


@pytest.fixture()
def known(stack: Stack, sink: Sink) -> KnownState:
    return build_known_state(stack, sink)


def side_app(stack: Stack, **overrides: Any) -> Flask:
    """Another app on the stack's database, with settings the stack does not have.

    create_app makes its Celery app the process default, and the stack's in-process
    worker then runs its tasks in the new app (its clock, its settings); give the
    default back to the stack.
    """
    app = create_app(stack.services.settings.with_overrides(**overrides))
    stack.app.extensions["celery"].set_default()
    return app


def sign_in(client: FlaskClient, password: str = PASSWORD, address: str = "127.0.0.1") -> Any:
    token = csrf_token(client.get(LOGIN).get_data(as_text=True))
    return client.post(
        LOGIN,
        data={"password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": address},
    )


def signed_in_client(stack: Stack) -> FlaskClient:
    client = stack.client
    assert sign_in(client).status_code == 303
    return client


def page_token(client: FlaskClient, path: str = "/admin/deliveries") -> str:
    return csrf_token(client.get(path).get_data(as_text=True))


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def cells(html: str, row_attribute: str) -> dict[str, dict[str, str]]:
    """{row key: {data-col: cell text}} for rows like <tr data-lesson="3">."""
    rows = {}
    for key, body in re.findall(rf'<tr {row_attribute}="([^"]+)">(.*?)</tr>', html, re.S):
        found = re.findall(r'data-col="([^"]+)">(.*?)</td>', body, re.S)
        rows[key] = {name: text_of(value).strip() for name, value in found}
    return rows


def forget_attempts(stack: Stack, address: str) -> None:
    attempts.clear(stack.services.settings, address)


# --- Signing in --------------------------------------------------------------------------


def test_the_password_is_kept_hashed_and_a_right_one_signs_in(stack: Stack) -> None:
    hashed = stack.app.extensions["drip_admin_password"].hashed
    assert hashed.startswith("scrypt:") and PASSWORD not in hashed
    client = stack.client
    answer = sign_in(client)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/admin/"
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie
    assert client.get("/admin/").status_code == 200


def test_a_wrong_password_is_refused(stack: Stack) -> None:
    forget_attempts(stack, "198.51.100.1")
    client = stack.client
    answer = sign_in(client, "wrong", address="198.51.100.1")
    assert answer.status_code == 401
    assert "Wrong password" in answer.get_data(as_text=True)
    assert client.get("/admin/").status_code == 303


def test_a_hashed_password_in_the_settings_works_as_is(stack: Stack) -> None:
    from werkzeug.security import generate_password_hash

    hashed = generate_password_hash("from a file")
    app = side_app(stack, admin_password=hashed)
    assert app.extensions["drip_admin_password"].hashed == hashed
    assert sign_in(app.test_client(), "from a file").status_code == 303
    assert sign_in(app.test_client(), hashed).status_code == 401


def test_failed_sign_ins_are_limited_per_address_with_429(stack: Stack) -> None:
    address = f"203.0.113.{secrets.randbelow(250)}"
    forget_attempts(stack, address)
    client = stack.client
    codes = [sign_in(client, "guess", address).status_code for _ in range(attempts.MAX_FAILURES)]
    assert codes == [401] * attempts.MAX_FAILURES
    refused = sign_in(client, PASSWORD, address)  # even the right password, for now
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= attempts.WINDOW_SECONDS
    assert "Too many failed sign-ins" in refused.get_data(as_text=True)
    # Counted in Redis, so another web process refuses the address too.
    other_process = side_app(stack).test_client()
    assert sign_in(other_process, PASSWORD, address).status_code == 429
    assert sign_in(stack.client, PASSWORD, "192.0.2.200").status_code == 303  # others may
    forget_attempts(stack, address)


def test_without_redis_failed_sign_ins_are_still_limited_in_memory(stack: Stack) -> None:
    client = side_app(stack, redis_url="redis://127.0.0.1:9/0").test_client()
    settings = stack.services.settings
    address = f"198.51.100.{secrets.randbelow(250)}"
    codes = [sign_in(client, "guess", address).status_code for _ in range(attempts.MAX_FAILURES)]
    assert codes == [401] * attempts.MAX_FAILURES
    assert sign_in(client, PASSWORD, address).status_code == 429
    attempts.clear(settings, address)


def test_without_a_password_every_sign_in_is_refused_with_how_to_set_one(stack: Stack) -> None:
    app = side_app(stack, admin_password=None)
    client = app.test_client()
    page = client.get(LOGIN).get_data(as_text=True)
    assert "set DRIP_ADMIN_PASSWORD" in page and 'type="password"' not in page
    token = csrf_token(client.get("/").get_data(as_text=True))  # the session's valid token
    for guess in ("", "admin", PASSWORD):
        answer = client.post(LOGIN, data={"password": guess, "csrf_token": token})
        assert answer.status_code == 403
        assert "set DRIP_ADMIN_PASSWORD" in answer.get_data(as_text=True)
    assert client.get("/admin/").status_code == 303


def test_signing_out_ends_the_session(stack: Stack) -> None:
    client = signed_in_client(stack)
    answer = client.post("/admin/logout", data={"csrf_token": page_token(client)})
    assert answer.status_code == 303
    assert answer.headers["Location"] == LOGIN
    assert client.get("/admin/").status_code == 303


def test_a_session_expires_after_twelve_hours(stack: Stack) -> None:
    client = signed_in_client(stack)
    with client.session_transaction() as session:
        session["admin_signed_in_at"] = time.time() - 12 * 3600 - 1
    answer = client.get("/admin/course")
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/admin/login?next=/admin/course"


def test_after_sign_in_the_operator_lands_where_they_were_going_but_never_offsite(
    stack: Stack,
) -> None:
    for wanted, landing in [
        ("/admin/course", "/admin/course"),
        ("//evil.example/admin", "/admin/"),
        ("https://evil.example/", "/admin/"),
    ]:
        client = stack.client
        token = csrf_token(client.get(LOGIN).get_data(as_text=True))
        answer = client.post(
            LOGIN, query_string={"next": wanted}, data={"password": PASSWORD, "csrf_token": token}
        )
        assert answer.headers["Location"] == landing


# --- Every route refuses anonymous requests ----------------------------------------------


def admin_routes(stack: Stack) -> list[tuple[str, str]]:
    """(method, path) for every /admin route, with real ids filled in."""
    routes = []
    for rule in stack.app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin.") or rule.endpoint.startswith("admin.login"):
            continue
        path = re.sub(r"<int:[a-z_]+>", "1", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((method, path))
    return routes


def test_every_admin_route_and_action_refuses_an_anonymous_request(
    stack: Stack, known: KnownState
) -> None:
    routes = admin_routes(stack)
    assert {m for m, _ in routes} == {"GET", "POST"}
    assert len(routes) >= 13, routes
    with stack.session() as session:
        before = sorted(session.execute(select(Delivery.id, Delivery.status)).all())
        subscribers_before = sorted(session.execute(select(Subscriber.id, Subscriber.status)))
    client = stack.client
    token = csrf_token(client.get(LOGIN).get_data(as_text=True))  # a valid token, no sign-in
    for method, path in routes:
        path = path.replace("/1", f"/{known.ids['ann']}")
        answer = client.open(path, method=method, data={"csrf_token": token})
        assert answer.status_code == 303, (method, path)
        assert answer.headers["Location"].startswith(LOGIN), (method, path)
    with stack.session() as session:
        assert sorted(session.execute(select(Delivery.id, Delivery.status)).all()) == before
        assert sorted(session.execute(select(Subscriber.id, Subscriber.status))) == (
            subscribers_before
        )
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == 0


def test_every_admin_page_loads_for_a_signed_in_operator(stack: Stack, known: KnownState) -> None:
    client = signed_in_client(stack)
    for method, path in admin_routes(stack):
        if method != "GET":
            continue
        path = path.replace("/1", f"/{known.ids['zoe']}") if "subscribers/" in path else path
        answer = client.get(path, follow_redirects=True)
        assert answer.status_code == 200, path
        assert answer.headers["Cache-Control"] == "no-store"
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]


def test_an_action_without_the_csrf_token_is_refused(stack: Stack, known: KnownState) -> None:
    client = signed_in_client(stack)
    failed = known.deliveries[("eve", 1)]
    answer = client.post(f"/admin/deliveries/{failed}/skip")
    assert answer.status_code == 400
    with stack.session() as session:
        assert session.get(Delivery, failed).status == "failed"


# --- The numbers on the dashboard --------------------------------------------------------


def test_the_funnel_on_the_dashboard_matches_the_database(stack: Stack, known: KnownState) -> None:
    page = signed_in_client(stack).get("/admin/course").get_data(as_text=True)
    shown = {step: int(count) for step, count in re.findall(r'data-step="([^"]+)">(\d+)<', page)}
    assert {k: shown[k] for k in FUNNEL} == FUNNEL
    assert {k: shown[k] for k in FUNNEL_EXITS} == FUNNEL_EXITS
    course = stack.services.course
    assert [k for k in shown if k.startswith("lesson")] == [
        f"lesson {n}" for n in range(1, len(course.lessons) + 1)
    ]
    with stack.session() as session:
        assert shown["signed up"] == session.scalar(select(func.count(Subscriber.id)))
        assert shown["confirmed"] == session.scalar(
            select(func.count()).where(Subscriber.confirmed_at.is_not(None))
        )
        for lesson in (1, 2):
            reached = session.scalar(
                select(func.count(func.distinct(Delivery.subscriber_id))).where(
                    Delivery.lesson == lesson, Delivery.status == "sent"
                )
            )
            assert shown[f"lesson {lesson}"] == reached
        assert shown["unsubscribed"] == session.scalar(
            select(func.count()).where(Subscriber.status == "unsubscribed")
        )


def test_per_lesson_numbers_on_the_dashboard_match_the_database(
    stack: Stack, known: KnownState
) -> None:
    page = signed_in_client(stack).get("/admin/course").get_data(as_text=True)
    table = cells(page, "data-lesson")
    for lesson, expected in LESSONS.items():
        assert {k: table[str(lesson)][k] for k in expected} == {
            k: str(v) for k, v in expected.items()
        }
    assert table["3"]["sent"] == "0" and table["3"]["click_rate"] == "0.0%"
    with stack.session() as session:
        for lesson in (1, 2):
            for status in ("sent", "failed"):
                count = session.scalar(
                    select(func.count()).where(Delivery.lesson == lesson, Delivery.status == status)
                )
                assert table[str(lesson)][status] == str(count)
            human_clicks = session.scalar(
                select(func.count()).where(Click.lesson == lesson, Click.scanner.is_(False))
            )
            assert table[str(lesson)]["clicks"] == str(human_clicks)
    assert page.count("<svg") == 3, "three charts, drawn on the server"


def test_the_health_screen_shows_each_signal_with_its_level(
    stack: Stack, known: KnownState
) -> None:
    page = signed_in_client(stack).get("/admin/").get_data(as_text=True)
    levels = dict(re.findall(r'id="signal-([a-z]+)" data-level="([a-z]+)"', page))
    assert set(levels) == {"backlog", "queue", "workers", "tick", "circuit", "failures"}
    assert levels["workers"] == "green"  # the module's worker answers
    assert levels["tick"] == "green"  # build_known_state just ticked
    assert levels["failures"] == "green"  # under the default amber of 5
    assert "1 failed send" in text_of(page)  # eve's lesson 2; lesson 1 failed a day ago


def test_the_deliveries_page_lists_failures_with_their_reason(
    stack: Stack, known: KnownState
) -> None:
    page = signed_in_client(stack).get("/admin/deliveries").get_data(as_text=True)
    listed = re.findall(r'<tr data-delivery="(\d+)">', page)
    assert sorted(int(d) for d in listed) == sorted(
        [known.deliveries[("eve", 1)], known.deliveries[("eve", 2)]]
    )
    assert "eve@example.com" in page
    with stack.session() as session:
        reason = session.get(Delivery, known.deliveries[("eve", 1)]).error
    assert reason and str(escape(reason)) in page


def test_a_subscriber_page_shows_consent_and_the_calendar_in_their_own_time(
    stack: Stack, known: KnownState
) -> None:
    page = signed_in_client(stack).get(f"/admin/subscribers/{known.ids['zoe']}")
    html = page.get_data(as_text=True)
    calendar = cells(html, "data-lesson")
    assert calendar["1"]["state"] == "sent"
    assert calendar["2"]["state"] == "planned"
    # Lesson 2 goes the next local day at 08:00 in Tokyo.
    assert calendar["2"]["when"].endswith("08:00 JST")
    assert calendar["10"]["when"].endswith("08:00 JST")
    assert "192.0.2.7" in html and "form:/" in html and "Send me the course." in html
    ann = signed_in_client(stack).get(f"/admin/subscribers/{known.ids['ann']}")
    assert ann.get_data(as_text=True).count("<td>person</td>") == 3  # her three clicks


def test_the_lesson_preview_renders_html_and_text_of_the_current_course(stack: Stack) -> None:
    client = signed_in_client(stack)
    course = stack.services.course
    page = client.get("/admin/preview/3").get_data(as_text=True)
    assert course.lesson(3).subject in page
    assert "Alex" in page and "%%drip_" not in page
    assert 'sandbox srcdoc="' in page and 'id="text-part"' in page
    assert client.get("/admin/preview/0").status_code == 404
    assert client.get(f"/admin/preview/{len(course.lessons) + 1}").status_code == 404
    assert client.get("/admin/preview").headers["Location"] == "/admin/preview/1"


# --- Actions -----------------------------------------------------------------------------


def audit_log(stack: Stack) -> list[tuple[str, str, str]]:
    with stack.session() as session:
        entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [(e.actor, e.action, e.subject) for e in entries]


def test_retrying_a_failed_delivery_sends_it_and_is_audited(
    stack: Stack, known: KnownState
) -> None:
    client = signed_in_client(stack)
    failed = known.deliveries[("eve", 1)]  # the sink takes eve's address again now
    answer = client.post(
        f"/admin/deliveries/{failed}/retry", data={"csrf_token": page_token(client)}
    )
    assert answer.status_code == 303
    assert "goes again" in client.get("/admin/deliveries").get_data(as_text=True)
    drain(stack)
    with stack.session() as session:
        assert session.get(Delivery, failed).status == "sent"
    assert audit_log(stack) == [("admin@127.0.0.1", "delivery.retry", f"delivery:{failed}")]
    again = client.post(
        f"/admin/deliveries/{failed}/retry", data={"csrf_token": page_token(client)}
    )
    assert again.status_code == 303 and len(audit_log(stack)) == 1  # a sent one stays sent


def test_skipping_a_failed_delivery_is_audited_with_what_it_was(
    stack: Stack, known: KnownState
) -> None:
    client = signed_in_client(stack)
    failed = known.deliveries[("eve", 2)]
    client.post(f"/admin/deliveries/{failed}/skip", data={"csrf_token": page_token(client)})
    with stack.session() as session:
        assert session.get(Delivery, failed).status == "skipped"
        entry = session.scalars(select(AuditEntry)).one()
    assert (entry.action, entry.subject, entry.detail["status"]) == (
        "delivery.skip",
        f"delivery:{failed}",
        "failed",
    )
    assert entry.at == stack.clock()


def test_pause_resume_and_unsubscribe_from_the_subscriber_page(
    stack: Stack, known: KnownState
) -> None:
    client = signed_in_client(stack)
    cat = known.ids["cat"]
    token = page_token(client, f"/admin/subscribers/{cat}")

    def enrollment_status() -> str:
        with stack.session() as session:
            return str(
                session.scalar(select(Enrollment.status).where(Enrollment.subscriber_id == cat))
            )

    client.post(f"/admin/subscribers/{cat}/pause", data={"csrf_token": token})
    assert enrollment_status() == "paused"
    page = client.get(f"/admin/subscribers/{cat}").get_data(as_text=True)
    assert cells(page, "data-lesson")["3"]["state"] == "paused"
    client.post(f"/admin/subscribers/{cat}/resume", data={"csrf_token": token})
    assert enrollment_status() == "active"
    client.post(f"/admin/subscribers/{cat}/unsubscribe", data={"csrf_token": token})
    with stack.session() as session:
        assert session.get(Subscriber, cat).status == "unsubscribed"
    assert [action for _, action, _ in audit_log(stack)] == [
        "subscriber.pause",
        "subscriber.resume",
        "subscriber.unsubscribe",
    ]
    nothing = client.post(f"/admin/subscribers/{cat}/resume", data={"csrf_token": token})
    assert nothing.status_code == 303 and len(audit_log(stack)) == 3
    assert "Nothing to resume" in client.get(f"/admin/subscribers/{cat}").get_data(as_text=True)


def test_subscribers_can_be_found_by_part_of_their_address(stack: Stack, known: KnownState) -> None:
    page = signed_in_client(stack).get("/admin/subscribers", query_string={"q": "ZOE@"})
    html = page.get_data(as_text=True)
    assert "zoe@example.com" in html and "ann@example.com" not in html
    nothing = signed_in_client(stack).get("/admin/subscribers", query_string={"q": "%"})
    assert "No subscriber matches" in nothing.get_data(as_text=True)
