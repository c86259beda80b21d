"""The stack's smoke test, run by stack/run.sh once the compose services are up.

It talks to the stack only as a person or an operator would: the published ports on
127.0.0.1 (web, Flower, the SendGrid stand-in's control API) and `podman exec` for the
operator's `drip status`. Standard library only, so it does not depend on drip's code.
Every wait has a deadline; each check prints one line, and the first failure stops it.
"""

from __future__ import annotations

import argparse
import base64
import http.cookiejar
import json
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Any, TypeVar

WEB = "http://127.0.0.1:5000"
FLOWER = "http://127.0.0.1:5555"
SINK = "http://127.0.0.1:8025"
TIMEOUT = 10  # seconds for one request

T = TypeVar("T")


class SmokeError(Exception):
    pass


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are answers to check, not to follow."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Client:
    """One visitor: a cookie jar (the CSRF token lives in the session) and no redirects."""

    def __init__(self) -> None:
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
        )

    def request(
        self,
        url: str,
        data: dict[str, str] | bytes | None = None,
        headers: dict[str, str] | None = None,
        method: str | None = None,
    ) -> tuple[int, Message, str]:
        if not url.startswith("http://127.0.0.1:"):
            raise SmokeError(f"refusing to send traffic anywhere but 127.0.0.1: {url}")
        body = urllib.parse.urlencode(data).encode() if isinstance(data, dict) else data
        req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)
        try:
            with self.opener.open(req, timeout=TIMEOUT) as answer:
                return answer.status, answer.headers, answer.read().decode()
        except urllib.error.HTTPError as answer:
            return answer.code, answer.headers, answer.read().decode(errors="replace")


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SmokeError(message)


PASSED: list[str] = []


def ok(message: str) -> None:
    PASSED.append(message)
    print(f"  ok   {message}", flush=True)


def wait_for(what: str, probe: Callable[[], T | None], limit: float) -> T:
    deadline = time.monotonic() + limit
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise SmokeError(f"gave up after {limit:.0f}s waiting for {what}")
        time.sleep(0.5)


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {name.strip(): value.strip() for name, value in pairs}


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if not match:
        raise SmokeError("no CSRF token in the page")
    return match.group(1)


def sink_json(method: str, path: str, payload: Any = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    status, _, body = Client().request(
        f"{SINK}/__sink/{path}",
        data=data,
        headers={"Content-Type": "application/json"},
        method=method,
    )
    check(status == 200, f"sink control {method} {path}: {status} {body[:200]}")
    return json.loads(body)


def mailbox(email: str) -> list[dict[str, Any]]:
    return [m for m in sink_json("GET", "messages")["messages"] if m["to"] == email]


def link(message: dict[str, Any], path_prefix: str) -> str:
    """The first link to WEB under path_prefix in the text part, as a path."""
    match = re.search(
        rf"{re.escape(WEB)}({re.escape(path_prefix)}[A-Za-z0-9_.~\-]+)", message["text"]
    )
    if not match:
        raise SmokeError(f"no {WEB}{path_prefix} link in {message['subject']!r}")
    return match.group(1)


def readiness() -> None:
    status, _, body = Client().request(f"{WEB}/readyz")
    check(status == 200, f"/readyz answered {status}: {body[:200]}")
    check(json.loads(body).get("status") == "ok", f"/readyz: {body[:200]}")
    ok(f"/readyz 200 {body.strip()}")


def signup_and_lesson_one(env: dict[str, str]) -> None:
    sink_json("POST", "recording", {"enabled": True})
    sink_json("POST", "reset")
    email = f"stack-{secrets.token_hex(4)}@example.com"
    visitor = Client()
    status, _, page = visitor.request(f"{WEB}/")
    check(status == 200, f"the landing page answered {status}")
    form = {"email": email, "first_name": "Stack", "timezone": "Europe/Berlin"}
    status, headers, body = visitor.request(
        f"{WEB}/subscribe", data={**form, "csrf_token": csrf_token(page)}
    )
    check(status == 303, f"the signup answered {status}: {body[:300]}")
    check(headers.get("Location", "").endswith("/thanks"), f"signup went to {headers}")
    ok(f"signed up {email} through the web container (303 to /thanks)")

    confirmation = wait_for("the confirmation at the SendGrid stand-in", lambda: mailbox(email), 60)
    check(confirmation[0]["categories"] == ["confirmation"], f"first mail: {confirmation[0]}")
    ok(f"the worker handed the confirmation to the sink: {confirmation[0]['subject']!r}")

    path = link(confirmation[0], "/confirm/")
    status, _, page = visitor.request(f"{WEB}{path}")
    check(status == 200, f"the confirmation page answered {status}")
    status, _, body = visitor.request(f"{WEB}{path}", data={"csrf_token": csrf_token(page)})
    check(status == 200, f"confirming answered {status}: {body[:300]}")
    ok("confirmed through the link in that email")

    def lesson_one() -> dict[str, Any] | None:
        lessons = [m for m in mailbox(email) if m["categories"] == ["lesson-01"]]
        return lessons[0] if lessons else None

    lesson = wait_for("lesson 1 at the SendGrid stand-in", lesson_one, 60)
    check("Stack" in lesson["text"], "lesson 1 is not personalised")
    link(lesson, "/u/")  # the unsubscribe link points back at this web container
    ok(f"beat ticked, the worker sent lesson 1: {lesson['subject']!r}")
    stats = sink_json("GET", "stats")
    check(stats["accepted"] == 2 and stats["messages"] == 2, f"sink stats: {stats}")
    ok(f"the sink accepted exactly 2 messages ({stats['statuses']})")


def flower(env: dict[str, str], worker_host: str) -> None:
    for path in ("/", "/api/workers"):
        status, _, _ = Client().request(f"{FLOWER}{path}")
        check(status == 401, f"Flower answered {status} to an anonymous GET {path}")
    _, headers, _ = Client().request(f"{FLOWER}/")
    challenge = headers.get("WWW-Authenticate", "")
    check(challenge.startswith("Basic"), f"no login prompt for a browser: {challenge!r}")
    wrong = base64.b64encode(f"{env['FLOWER_USER']}:not-the-password".encode()).decode()
    status, _, _ = Client().request(
        f"{FLOWER}/api/workers", headers={"Authorization": f"Basic {wrong}"}
    )
    check(status == 401, f"Flower answered {status} to a wrong password")
    ok("Flower refuses anonymous requests (401, Basic login prompt) and a wrong password")

    right = base64.b64encode(f"{env['FLOWER_USER']}:{env['FLOWER_PASSWORD']}".encode()).decode()

    def workers() -> dict[str, Any] | None:
        status, _, body = Client().request(
            f"{FLOWER}/api/workers?refresh=1", headers={"Authorization": f"Basic {right}"}
        )
        check(status == 200, f"Flower with its password answered {status}")
        return json.loads(body) or None

    listed = wait_for("Flower to list the worker", workers, 30)
    check(f"celery@{worker_host}" in listed, f"Flower lists {sorted(listed)}, not {worker_host}")
    ok(f"Flower, with its password, lists the worker celery@{worker_host}")


def status_green(worker: str) -> None:
    answer = subprocess.run(
        ["podman", "exec", worker, "drip", "status"], capture_output=True, text=True, timeout=60
    )
    first = answer.stdout.splitlines()[0] if answer.stdout else answer.stderr.strip()
    check(answer.returncode == 0 and first.endswith("GREEN"), f"drip status: {answer.stdout}")
    ok(f"`drip status` in the worker container: {first}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--env", type=Path, required=True, help="the stack's generated .env")
    parser.add_argument("--worker", required=True, help="the worker's container name")
    args = parser.parse_args()
    env = read_env(args.env)
    if env.get("DRIP_BASE_URL") != WEB:
        raise SystemExit(f"DRIP_BASE_URL must be {WEB} so every link stays on 127.0.0.1")
    worker_host = subprocess.run(
        ["podman", "inspect", "--format", "{{.Config.Hostname}}", args.worker],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    try:
        readiness()
        signup_and_lesson_one(env)
        flower(env, worker_host)
        status_green(args.worker)
    except SmokeError as exc:
        print(f"  FAIL {exc}", flush=True)
        print(f"smoke: {len(PASSED)} passed, 1 failed", flush=True)
        return 1
    print(f"smoke: {len(PASSED)} passed, 0 failed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
