"""Helpers for tests that drive the sink: a mail-send body, control calls, a webhook receiver."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


def mail_body(recipients: int = 1, **fields: Any) -> dict[str, Any]:
    """A valid v3 body with one personalization per recipient (u0@example.com, ...)."""
    body: dict[str, Any] = {
        "personalizations": [
            {
                "to": [{"email": f"u{i}@example.com"}],
                "substitutions": {"%%name%%": f"Reader {i}"},
                "custom_args": {"delivery_id": str(i)},
            }
            for i in range(recipients)
        ],
        "from": {"email": "course@example.com", "name": "The Course"},
        "subject": "Lesson 1 for %%name%%",
        "content": [
            {"type": "text/plain", "value": "Hello %%name%%"},
            {"type": "text/html", "value": "<p>Hello %%name%%</p>"},
        ],
    }
    body.update(fields)
    return body


def control(base_url: str, method: str, route: str, data: Any = None) -> tuple[int, Any]:
    """Call the control API (``route`` like "stats"); return the status and decoded JSON."""
    body = None if data is None else json.dumps(data).encode()
    request = urllib.request.Request(f"{base_url}/__sink/{route}", data=body, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


class WebhookReceiver:
    """A tiny HTTP server on 127.0.0.1 keeping each POST's headers and raw body."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append((dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/webhooks/sendgrid"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


# The key the sink accepts in the sink's own tests; any other is refused with a 401.
TEST_API_KEY = "SG.key"
