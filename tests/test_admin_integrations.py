"""/admin/integrations: API keys made (shown once), listed and revoked with CSRF-protected
POSTs; webhook endpoints listed with their state and why one was disabled."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from drip.data.models import AuditEntry, WebhookEndpoint
from drip.integrations.webhook_endpoints import add
from tests.conftest import Stack, clear_tables
from tests.mailbox import csrf_token

PASSWORD = "correct horse battery staple"
PAGE = "/admin/integrations"


@pytest.fixture()
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    current = stack_factory(admin_password=PASSWORD)
    clear_tables(current.services.database)
    current.clock.set(datetime(2026, 3, 5, 15, 0, tzinfo=UTC))
    return current


def operator(stack: Stack) -> FlaskClient:
    client = stack.client
    token = csrf_token(client.get("/admin/login").get_data(as_text=True))
    answer = client.post("/admin/login", data={"password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 303
    return client


def test_a_key_made_on_the_page_is_shown_once_works_and_can_be_revoked(stack: Stack) -> None:
    client = operator(stack)
    token = csrf_token(client.get(PAGE).get_data(as_text=True))
    made = client.post(
        "/admin/api-keys", data={"name": "crm", "scope": "write", "csrf_token": token}
    )
    assert made.status_code == 201 and made.headers["Cache-Control"] == "no-store"
    html = made.get_data(as_text=True)
    key = html.split("<pre>")[1].split("</pre>")[0]
    assert key.startswith("drip_")
    headers = {"Authorization": f"Bearer {key}"}
    assert stack.client.get("/api/v1/stats", headers=headers).status_code == 200

    listed = client.get(PAGE).get_data(as_text=True)
    assert key not in listed and "crm" in listed and key[:13] in listed
    assert "never" not in listed.split('id="api-keys"')[1].split("</table>")[0]

    key_id = listed.split('data-key="')[1].split('"')[0]
    revoked = client.post(f"/admin/api-keys/{key_id}/revoke", data={"csrf_token": token})
    assert revoked.status_code == 303
    assert stack.client.get("/api/v1/stats", headers=headers).status_code == 401
    with stack.session() as session:
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions == ["api_key.create", "api_key.revoke"]


def test_key_operations_without_the_csrf_token_are_refused(stack: Stack) -> None:
    client = operator(stack)
    assert client.post("/admin/api-keys", data={"name": "x", "scope": "read"}).status_code == 400
    assert "No keys yet" in client.get(PAGE).get_data(as_text=True)


def test_the_page_shows_a_disabled_endpoint_with_its_reason(stack: Stack) -> None:
    with stack.session() as session:
        row = add(
            session,
            "https://93.184.215.14/hook",
            ["signup"],
            allow_private=False,
            now=stack.clock(),
        )
        row.disabled_at = stack.clock()
        row.disabled_reason = "every attempt failed since yesterday; last: HTTP 503"
    html = operator(stack).get(PAGE).get_data(as_text=True)
    table = html.split('id="webhooks"')[1]
    assert "https://93.184.215.14/hook" in table and "disabled" in table
    assert "every attempt failed since yesterday; last: HTTP 503" in table
    with stack.session() as session:
        assert session.scalars(select(WebhookEndpoint.secret)).one() not in html
