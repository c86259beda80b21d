"""Measure emails/s through the official sendgrid client against a sink.

    python -m drip_devtools.sendgrid_sink.bench --requests 200 --per-request 1000

Starts a sink in its own process (so client and sink do not share one GIL)
unless ``--url`` names a running one, then sends the same batch over and over
from one client thread, as a sending worker would.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from typing import Any

from sendgrid import SendGridAPIClient

SINK_COMMAND = (
    "from drip_devtools.sendgrid_sink.server import serve; serve('127.0.0.1', 0, None, None, None)"
)


def batch(per_request: int) -> dict[str, Any]:
    """A lesson for ``per_request`` readers, shaped as drip's SendGrid backend sends it."""
    return {
        "personalizations": [
            {
                "to": [{"email": f"reader{i}@example.com"}],
                "substitutions": {
                    "%%drip_name%%": f"Reader {i}",
                    "%%drip_unsubscribe_url%%": f"https://drip.example/u/{i:08d}.signature",
                },
                "headers": {
                    "List-Unsubscribe": f"<https://drip.example/u/{i:08d}.signature>",
                    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                },
                "custom_args": {"delivery_id": str(i)},
            }
            for i in range(per_request)
        ],
        "from": {"email": "course@example.com", "name": "The Course"},
        "subject": "Lesson 3: small steps, %%drip_name%%",
        "content": [
            {"type": "text/plain", "value": "Hello %%drip_name%%, ... %%drip_unsubscribe_url%%"},
            {"type": "text/html", "value": "<p>Hello %%drip_name%%</p>" * 40},
        ],
        "categories": ["lesson-03"],
    }


def run(url: str, requests: int, per_request: int) -> float:
    sg = SendGridAPIClient(api_key="SG.bench", host=url)
    sg.client.timeout = 30
    body = batch(per_request)
    started = time.perf_counter()
    for _ in range(requests):
        sg.send(body)
    return requests * per_request / (time.perf_counter() - started)


def _start_sink() -> tuple[subprocess.Popen[str], str]:
    child = subprocess.Popen(
        [sys.executable, "-c", SINK_COMMAND], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    first_line = child.stdout.readline()  # "SendGrid sink on http://127.0.0.1:PORT (...)"
    return child, first_line.split()[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running sink; default: start one")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--per-request", type=int, default=1000)
    args = parser.parse_args()
    child, url = (None, args.url) if args.url else _start_sink()
    try:
        rate = run(url, args.requests, args.per_request)
    finally:
        if child is not None:
            child.send_signal(signal.SIGINT)
            child.wait(timeout=10)
    print(f"{args.requests} requests x {args.per_request} personalizations: {rate:,.0f} emails/s")


if __name__ == "__main__":
    main()
