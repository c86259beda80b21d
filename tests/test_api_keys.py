"""The integrators' API: keys and scopes, pages, the event feed, and erasure everywhere."""

from __future__ import annotations

from typing import Any

from drip.integrations.api_keys import Scope, create
from tests.cli import run_cli
from tests.conftest import Stack, wait_until
from tests.mailbox import csrf_token, link, messages


def key(stack: Stack, scope: Scope) -> dict[str, str]:
    with stack.session() as session:
        _, plain = create(session, "test", scope, now=stack.clock())
    return {"Authorization": f"Bearer {plain}"}


def confirmed(stack: Stack, email: str) -> int:
    assert stack.client.post("/api/v1/subscribers", json={"email": email}).status_code == 202
    mail = wait_until(lambda: messages(stack.outbox, to=email))
    client = stack.client
    path = link(mail[0], "/confirm/")
    client.post(path, data={"csrf_token": csrf_token(client.get(path).get_data(as_text=True))})
    page = stack.client.get(f"/api/v1/subscribers?email={email}", headers=key(stack, Scope.READ))
    return int(page.get_json()["items"][0]["id"])


def get(stack: Stack, path: str, headers: dict[str, str]) -> Any:
    return stack.client.get(path, headers=headers)


def test_no_key_or_an_unknown_key_gets_401_with_a_bearer_challenge(stack: Stack) -> None:
    for headers in ({}, {"Authorization": "Bearer drip_not-a-real-key"}):
        answer = get(stack, "/api/v1/subscribers", headers)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert answer.get_json()["error"]["message"]


def test_a_read_key_reads_but_cannot_write(stack: Stack) -> None:
    sid = confirmed(stack, "ann@example.com")
    read = key(stack, Scope.READ)
    assert get(stack, f"/api/v1/subscribers/{sid}", read).status_code == 200
    assert stack.client.post(f"/api/v1/subscribers/{sid}/pause", headers=read).status_code == 403
    assert stack.client.delete(f"/api/v1/subscribers/{sid}", headers=read).status_code == 403
    write = key(stack, Scope.WRITE)
    paused = stack.client.post(f"/api/v1/subscribers/{sid}/pause", headers=write)
    assert paused.status_code == 200
    assert paused.get_json()["enrollment"]["status"] == "paused"


def test_a_revoked_key_stops_working_and_the_cli_lists_its_last_use(stack: Stack) -> None:
    made = run_cli(stack, "api-keys", "create", "crm", "--scope", "read")
    assert made.exit_code == 0
    plain = made.stdout.strip().splitlines()[0]
    headers = {"Authorization": f"Bearer {plain}"}
    assert get(stack, "/api/v1/stats", headers).status_code == 200
    listed = run_cli(stack, "api-keys", "list").stdout
    assert "crm" in listed and "never used" not in listed and plain not in listed
    key_id = listed.split("\t")[0]
    assert run_cli(stack, "api-keys", "revoke", key_id).exit_code == 0
    assert get(stack, "/api/v1/stats", headers).status_code == 401


def test_pages_follow_the_cursor_without_repeats(stack: Stack) -> None:
    for n in range(5):
        stack.client.post("/api/v1/subscribers", json={"email": f"p{n}@example.com"})
    read = key(stack, Scope.READ)
    seen: list[int] = []
    cursor = ""
    while True:
        page = get(stack, f"/api/v1/subscribers?limit=2{cursor}", read).get_json()
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert len(seen) == 5 and seen == sorted(set(seen))


def test_the_feed_shows_signup_and_confirmation_then_resumes_after_its_cursor(
    stack: Stack,
) -> None:
    sid = confirmed(stack, "ann@example.com")
    read = key(stack, Scope.READ)
    first = get(stack, "/api/v1/events", read).get_json()
    kinds = [(item["kind"], item["subscriber_id"]) for item in first["items"]]
    assert ("signup", sid) in kinds and ("confirmation", sid) in kinds
    again = get(stack, f"/api/v1/events?cursor={first['next_cursor']}", read).get_json()
    seen = {item["id"] for item in first["items"]}
    assert not seen & {item["id"] for item in again["items"]}


def test_an_erased_subscriber_disappears_from_every_endpoint(stack: Stack) -> None:
    sid = confirmed(stack, "ann@example.com")
    write = key(stack, Scope.WRITE)
    assert stack.client.delete(f"/api/v1/subscribers/{sid}", headers=write).status_code == 204
    for path in (f"/api/v1/subscribers/{sid}", f"/api/v1/subscribers/{sid}/export"):
        assert get(stack, path, write).status_code == 404
    for path in ("/api/v1/subscribers", "/api/v1/enrollments", "/api/v1/events"):
        answer = get(stack, path, write)
        assert answer.get_json()["items"] == [], path
        assert "ann@example.com" not in answer.get_data(as_text=True)
