"""The HTTP server: SendGrid's mail send plus the control API, and the ``Sink`` to run it.

Stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive: one thread per
connection, the body read and parsed once, nothing stored unless recording.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from drip_devtools.sendgrid_sink import answers, control, events, mailsend
from drip_devtools.sendgrid_sink.answers import Answer
from drip_devtools.sendgrid_sink.faults import FaultPlan, parse_plan
from drip_devtools.sendgrid_sink.signing import WebhookSigner
from drip_devtools.sendgrid_sink.state import SinkState

MAIL_SEND = "/v3/mail/send"
_CHUNK = 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small answers go out at once, no delayed-ACK stall
    server: _SinkHTTPServer

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        size = self._content_length()
        if size is None:
            self.close_connection = True  # we cannot tell where the next request starts
            self._send(answers.error(400, "Bad Request"))
            return
        body = self._read_body(size)
        path = self.path.split("?", 1)[0]
        state = self.server.state
        if path == MAIL_SEND and method == "POST":
            answer = mailsend.handle(state, self.headers.get("Authorization"), body, size)
        elif path.startswith(control.PREFIX):
            answer = control.handle(state, method, path, body)
        else:
            answer = answers.error(404, "resource not found")
        self._send(answer)

    def _content_length(self) -> int | None:
        """The declared body size; None when it is missing-but-chunked or not a number."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return None
        value = self.headers.get("Content-Length") or "0"
        return int(value) if value.isdigit() else None

    def _read_body(self, size: int) -> bytes:
        """Read the whole body, even one too large to keep, so the client sees our answer.

        Closing with unread bytes would reset the connection and the client
        would get a network error instead of the 413.
        """
        if size <= mailsend.MAX_BODY_BYTES:
            return self.rfile.read(size)
        while size > 0:
            chunk = self.rfile.read(min(size, _CHUNK))
            if not chunk:
                break  # the client gave up
            size -= len(chunk)
        return b""

    def _send(self, answer: Answer) -> None:
        if answer.delay and self.server.state.stopping.wait(answer.delay):
            answer.drop = True  # shutting down: do not answer late
        if answer.drop:
            self.close_connection = True
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.body:
            self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a line per request would cost more than the request."""


class _SinkHTTPServer(ThreadingHTTPServer):
    """Tracks open connections so ``stop()`` can end idle keep-alive ones at once."""

    def __init__(self, address: tuple[str, int], state: SinkState) -> None:
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already gone
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or hung up is normal here (slow-answer faults).
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class Sink:
    """A SendGrid stand-in for tests and benchmarks; ``with Sink() as sink: sink.url``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        webhook_url: str | None = None,
        webhook_key_path: str | None = None,
        record: bool = False,
        faults: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        signer = (
            WebhookSigner.load_or_create(webhook_key_path)
            if webhook_key_path
            else WebhookSigner.generate()
        )
        self.state = SinkState(
            signer, api_key=api_key, webhook_url=webhook_url, recording=record, clock=clock
        )
        if faults:
            self.set_faults(faults)
        self._address = (host, port)
        self._server: _SinkHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        self.state.stopping.clear()
        self._server = _SinkHTTPServer(self._address, self.state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self.state.stopping.set()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()  # joins the handler threads
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> Sink:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sink is not running: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.state.messages()

    @property
    def recording(self) -> bool:
        return self.state.recording

    @recording.setter
    def recording(self, enabled: bool) -> None:
        self.state.recording = enabled

    def set_faults(self, plan: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Replace the fault plan: ``set_faults(rules=[{"status": 503, "next": 1}])``."""
        self.state.plan = parse_plan({**(plan or {}), **fields}, self.state.clock())

    def clear_faults(self) -> None:
        self.state.plan = FaultPlan()

    def reset(self) -> None:
        self.state.reset()

    @property
    def public_key_b64(self) -> str:
        return self.state.signer.public_key_b64

    def post_events(self, url: str, events_: list[dict[str, Any]]) -> int:
        """Sign and POST built events (format in ``events``); return the HTTP status."""
        return events.post_events(url, events_, self.state.signer, self.state.clock())

    def send_events(
        self, specs: list[dict[str, Any]], url: str | None = None
    ) -> tuple[int, list[dict[str, Any]]]:
        """Build events from specs as ``POST /__sink/events`` does, post them; return
        the receiver's HTTP status and the events sent."""
        target = url or self.state.webhook_url
        if not target:
            raise ValueError("no webhook URL: pass url or start the sink with webhook_url")
        built = events.from_specs(specs, self.messages, self.state.clock())
        return self.post_events(target, built), built


def serve(
    host: str,
    port: int,
    api_key: str | None,
    webhook_url: str | None,
    webhook_key_path: str | None,
    *,
    record: bool = False,
    faults: Mapping[str, Any] | None = None,
) -> None:
    """Run a sink until Ctrl-C (``drip sendgrid-sink``)."""
    sink = Sink(
        host,
        port,
        api_key=api_key,
        webhook_url=webhook_url,
        webhook_key_path=webhook_key_path,
        record=record,
        faults=faults,
    )
    try:
        sink.start()
    except OSError as exc:
        problem = f"cannot listen on {host}:{port} ({exc.strerror})"
        raise SystemExit(f"{problem}: pick another port") from None
    print(f"SendGrid sink on {sink.url} (control API under {sink.url}/__sink/)", flush=True)
    print(f"Event webhook public key: {sink.public_key_b64}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()
