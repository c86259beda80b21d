"""`drip subscribers export` and `erase`: a person's data out, and then gone, on both databases."""

from __future__ import annotations

import json
from email.message import EmailMessage

from sqlalchemy import select

from drip.data.models import (
    AuditEntry,
    Base,
    Click,
    Consent,
    Delivery,
    Enrollment,
    Event,
    Subscriber,
    Suppression,
)
from drip.sending import delivery as engine
from drip.sending import dispatch
from drip.subscribers.subscriptions import email_hash
from tests.cli import run_cli
from tests.conftest import Stack, wait_until
from tests.mailbox import csrf_token, link, messages

EMAIL = "private@example.com"


def subscribe_and_get_lesson_one(stack: Stack, email: str = EMAIL) -> EmailMessage:
    """Sign up through the form, confirm from the outbox, wait for lesson 1."""
    client = stack.client
    token = csrf_token(client.get("/").get_data(as_text=True))
    form = {"email": email, "first_name": "Priv", "timezone": "Europe/Berlin", "csrf_token": token}
    assert client.post("/subscribe", data=form).status_code == 303
    confirmation = wait_until(lambda: messages(stack.outbox, to=email))[0]
    path = link(confirmation, "/confirm/")
    page = client.get(path).get_data(as_text=True)
    assert client.post(path, data={"csrf_token": csrf_token(page)}).status_code == 200
    lesson = wait_until(lambda: messages(stack.outbox, to=email)[1:])[0]
    wait_until(lambda: all_deliveries_recorded(stack))
    return lesson


def all_deliveries_recorded(stack: Stack) -> bool:
    """The outbox file is written before the send task records the outcome."""
    with stack.session() as session:
        statuses = session.scalars(select(Delivery.status)).all()
    return bool(statuses) and "sending" not in statuses and "queued" not in statuses


def click_and_record_an_event(stack: Stack, lesson: EmailMessage) -> None:
    answer = stack.client.get(link(lesson, "/r/"), headers={"User-Agent": "Mozilla/5.0 Priv"})
    assert answer.status_code == 302
    now = stack.clock()
    with stack.session() as session:
        delivery = session.scalars(select(Delivery)).one()
        # What a provider webhook leaves behind: an event row tied to the delivery.
        session.add(
            Event(
                provider_event_id="evt-1",
                kind="open",
                delivery_id=delivery.id,
                subscriber_id=delivery.subscriber_id,
                occurred_at=now,
                received_at=now,
                data={"email": EMAIL, "useragent": "Mail/1.0"},
            )
        )


def test_export_gives_profile_consent_deliveries_clicks_and_events_as_json(stack: Stack) -> None:
    lesson = subscribe_and_get_lesson_one(stack)
    click_and_record_an_event(stack, lesson)
    result = run_cli(stack, "subscribers", "export", "Private@Example.com")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["profile"]["email"] == EMAIL
    assert data["profile"]["first_name"] == "Priv"
    assert data["profile"]["timezone"] == "Europe/Berlin"
    assert data["profile"]["status"] == "active"
    [consent] = data["consents"]
    assert consent["source"] == "form:/"
    assert consent["text"] == stack.services.course.landing.consent
    assert consent["confirmed_at"] is not None
    [delivery] = data["deliveries"]
    assert (delivery["lesson"], delivery["status"]) == (1, "sent")
    assert delivery["sent_at"] is not None
    [click] = data["clicks"]
    assert (click["lesson"], click["user_agent"]) == (1, "Mozilla/5.0 Priv")
    [event] = data["events"]
    assert event["kind"] == "open"
    assert [e["status"] for e in data["enrollments"]] == ["active"]


def test_export_and_erase_of_an_unknown_address_fail_with_a_clear_message(stack: Stack) -> None:
    for command in ("export", "erase"):
        result = run_cli(stack, "subscribers", command, "nobody@example.com")
        assert result.exit_code == 1
        assert result.stderr.strip() == (
            "Error: no subscriber with the address 'nobody@example.com': check the spelling"
        )


def everything_stored(stack: Stack) -> str:
    """Every row of every table, as text: what an erased address must not appear in."""
    dump = []
    with stack.session() as session:
        for table in Base.metadata.sorted_tables:
            dump.extend(repr(tuple(row)) for row in session.execute(select(table)))
    return "\n".join(dump)


def test_erase_leaves_no_personal_data_only_a_keyed_hash_and_an_audit_entry(stack: Stack) -> None:
    lesson = subscribe_and_get_lesson_one(stack)
    click_and_record_an_event(stack, lesson)
    assert EMAIL in everything_stored(stack)

    result = run_cli(stack, "subscribers", "erase", EMAIL)
    assert result.exit_code == 0, result.output

    stored = everything_stored(stack)
    for personal in (EMAIL, "Priv", "Europe/Berlin", "Mozilla/5.0 Priv", "Mail/1.0"):
        assert personal not in stored
    with stack.session() as session:
        subscriber = session.scalars(select(Subscriber)).one()
        suppression = session.scalars(select(Suppression)).one()
        audit = session.scalars(select(AuditEntry)).one()
        assert session.scalars(select(Consent)).all() == []
        assert session.scalars(select(Click)).one().lesson == 1, "counts survive, anonymous"
        assert session.scalars(select(Delivery)).one().status == "sent"
    assert (subscriber.email, subscriber.status) == (None, "erased")
    secret_key = stack.services.settings.secret_key
    assert (suppression.email_hash, suppression.reason) == (email_hash(secret_key, EMAIL), "erased")
    assert audit.action == "erase" and audit.actor.startswith("cli:")
    assert audit.subject == f"subscriber:{subscriber.id}"
    # The preferences link of the old emails now leads nowhere.
    assert stack.client.get(link(lesson, "/p/")).status_code == 404


def test_a_lesson_already_queued_is_never_sent_after_erasure(stack: Stack) -> None:
    subscribe_and_get_lesson_one(stack)
    services = stack.services
    settings = services.settings
    stack.clock.advance(days=1)
    # Lesson 2 is materialized and handed out, as a tick would, but not sent yet.
    dispatch.materialize_due(
        services.database, services.course, now=stack.clock(), day_seconds=settings.day_seconds
    )
    [batch] = dispatch.claim_for_dispatch(
        services.database,
        services.course,
        now=stack.clock(),
        lease_seconds=settings.lease_seconds,
        batch_size=settings.batch_size,
    )
    assert run_cli(stack, "subscribers", "erase", EMAIL).exit_code == 0

    # The send task for that batch runs after the erasure: nothing goes out.
    report = engine.deliver_batch(
        services.database,
        services.course,
        services.mailer,
        services.links,
        batch,
        lease_seconds=settings.lease_seconds,
        now=stack.clock(),
    )
    assert report.sent == 0
    for _ in range(3):
        stack.clock.advance(days=1)
        stack.tick()
    assert len(messages(stack.outbox, to=EMAIL)) == 2, "the confirmation and lesson 1 only"
    with stack.session() as session:
        assert session.scalar(select(Delivery.status).where(Delivery.lesson == 2)) == "skipped"
        assert session.scalars(select(Enrollment.status)).all() == ["cancelled"]


def test_erasing_a_bounced_address_keeps_it_suppressed_as_a_bounce(stack: Stack) -> None:
    now = stack.clock()
    secret_key = stack.services.settings.secret_key
    with stack.session() as session:
        session.add(Subscriber(email="gone@example.com", status="bounced", created_at=now))
        session.add(
            Suppression(
                email_hash=email_hash(secret_key, "gone@example.com"),
                reason="bounce",
                created_at=now,
            )
        )
    assert run_cli(stack, "subscribers", "erase", "gone@example.com").exit_code == 0
    with stack.session() as session:
        assert session.scalars(select(Suppression.reason)).all() == ["bounce"]
        assert session.scalars(select(Subscriber.status)).all() == ["erased"]
