"""Consent is provable: when, how, what the person was told, and when they confirmed."""

from __future__ import annotations

from sqlalchemy import select

from drip.data.models import Consent
from tests.conftest import Stack, wait_until
from tests.mailbox import csrf_token, link, messages

AGENT = "Mozilla/5.0 (consent test)"


def test_a_form_signup_records_consent_and_its_confirmation(stack: Stack) -> None:
    client = stack.client
    token = csrf_token(client.get("/").get_data(as_text=True))
    client.post(
        "/subscribe",
        data={"email": "proof@example.com", "csrf_token": token},
        headers={"User-Agent": AGENT},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    with stack.session() as session:
        consent = session.scalars(select(Consent)).one()
    course = stack.services.course
    assert consent.source == "form:/"
    assert consent.text == course.landing.consent
    assert consent.text_version == course.consent_version
    assert (consent.ip, consent.user_agent) == ("198.51.100.7", AGENT)
    assert consent.created_at == stack.clock()
    assert consent.confirmed_at is None

    confirmation = wait_until(lambda: messages(stack.outbox, to="proof@example.com"))[0]
    path = link(confirmation, "/confirm/")
    page = client.get(path).get_data(as_text=True)
    stack.clock.advance(minutes=3)
    client.post(
        path, data={"csrf_token": csrf_token(page)}, environ_base={"REMOTE_ADDR": "198.51.100.8"}
    )
    with stack.session() as session:
        consent = session.scalars(select(Consent)).one()
    assert consent.confirmed_at == stack.clock()
    assert consent.confirmed_ip == "198.51.100.8"


def test_the_consent_text_names_the_course_and_the_commission(stack: Stack) -> None:
    consent = stack.services.course.landing.consent.lower()
    assert "commission" in consent
    assert "save the marriage" in consent
    page = stack.client.get("/").get_data(as_text=True)
    assert "commission" in page


def test_the_confirmation_email_carries_no_promotion(stack: Stack) -> None:
    stack.client.post("/api/v1/subscribers", json={"email": "plain@example.com"})
    confirmation = wait_until(lambda: messages(stack.outbox, to="plain@example.com"))[0]
    body = confirmation.get_body(preferencelist=("html",))
    assert body is not None
    html = str(body.get_content())
    assert stack.services.course.cta.url not in html
    assert "/r/" not in html
