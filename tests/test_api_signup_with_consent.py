"""A write key may sign up someone who opted in elsewhere, stating where; anyone else
gets the double opt-in as before."""

from __future__ import annotations

from sqlalchemy import select

from drip.data.models import Consent, Subscriber
from drip.integrations.api_keys import Scope, create
from tests.conftest import Stack, wait_until
from tests.mailbox import messages, text_part

CONSENT = {"source": "checkout:acme", "confirmed": True}


def bearer(stack: Stack, scope: Scope) -> dict[str, str]:
    with stack.session() as session:
        _, plain = create(session, "shop", scope, now=stack.clock())
    return {"Authorization": f"Bearer {plain}"}


def consents(stack: Stack) -> list[tuple[str, bool]]:
    with stack.session() as session:
        rows = session.scalars(select(Consent).order_by(Consent.id))
        return [(row.source, row.confirmed_at is not None) for row in rows]


def test_a_write_key_with_consent_creates_a_confirmed_enrolled_subscriber(stack: Stack) -> None:
    answer = stack.client.post(
        "/api/v1/subscribers",
        json={"email": "Buyer@Example.com", "first_name": "Bea", "consent": CONSENT},
        headers=bearer(stack, Scope.WRITE),
    )
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["status"] == "active" and body["email"] == "buyer@example.com"
    assert body["enrollment"]["status"] == "active" and body["enrollment"]["next_lesson"] == 1
    assert consents(stack) == [("checkout:acme", True)]
    # No confirmation email: lesson 1 is the first thing they get.
    first = wait_until(lambda: messages(stack.outbox, to="buyer@example.com"))[0]
    assert "/confirm/" not in text_part(first)


def test_stating_consent_again_for_an_active_subscriber_changes_nothing(stack: Stack) -> None:
    write = bearer(stack, Scope.WRITE)
    payload = {"email": "again@example.com", "consent": CONSENT}
    first = stack.client.post("/api/v1/subscribers", json=payload, headers=write).get_json()
    second = stack.client.post("/api/v1/subscribers", json=payload, headers=write)
    assert second.status_code == 200 and second.get_json()["id"] == first["id"]
    assert consents(stack) == [("checkout:acme", True)]


def test_consent_without_a_write_key_is_refused_and_nothing_is_stored(stack: Stack) -> None:
    payload = {"email": "nokey@example.com", "consent": CONSENT}
    assert stack.client.post("/api/v1/subscribers", json=payload).status_code == 401
    read = bearer(stack, Scope.READ)
    assert stack.client.post("/api/v1/subscribers", json=payload, headers=read).status_code == 403
    with stack.session() as session:
        assert session.scalars(select(Subscriber)).all() == []


def test_a_consent_that_was_not_confirmed_or_has_no_source_is_invalid(stack: Stack) -> None:
    write = bearer(stack, Scope.WRITE)
    for consent in (
        {"source": "checkout:acme", "confirmed": False},
        {"source": "", "confirmed": True},
        {"source": "has spaces", "confirmed": True},
        {"confirmed": True},
    ):
        answer = stack.client.post(
            "/api/v1/subscribers",
            json={"email": "x@example.com", "consent": consent},
            headers=write,
        )
        assert answer.status_code == 422 and answer.get_json()["error"]["field"] == "consent"


def test_without_consent_it_stays_the_anonymous_double_opt_in(stack: Stack) -> None:
    answer = stack.client.post("/api/v1/subscribers", json={"email": "anon@example.com"})
    assert answer.status_code == 202
    assert consents(stack) == [("api", False)]
    mail = wait_until(lambda: messages(stack.outbox, to="anon@example.com"))[0]
    assert "/confirm/" in text_part(mail)
