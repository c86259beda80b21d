"""``serve()``, what ``drip sendgrid-sink`` runs: it serves until Ctrl-C and then stops cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

from drip_devtools.sendgrid_sink.testing import control, mail_body
from sendgrid import SendGridAPIClient

REPO = Path(__file__).resolve().parents[2]


def start(port: int) -> subprocess.Popen[str]:
    code = (
        "from drip_devtools.sendgrid_sink.server import serve; "
        f"serve('127.0.0.1', {port}, 'SG.k', None, None)"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal gives it, whatever an earlier test in this process did
        # to SIGINT: a child that inherits an ignored SIGINT never sees KeyboardInterrupt.
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_serve_answers_until_interrupted_and_shows_its_url_and_key() -> None:
    child = start(0)
    try:
        assert child.stdout is not None
        url = child.stdout.readline().split()[3]
        key_line = child.stdout.readline()
        sg = SendGridAPIClient(api_key="SG.k", host=url)
        sg.client.timeout = 5

        assert sg.send(mail_body()).status_code == 202
        assert key_line.split()[-1] == control(url, "GET", "webhook-public-key")[1]["public_key"]
    finally:
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=30)

    assert child.returncode == 0, err


def test_serve_says_what_to_do_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        child = start(taken.getsockname()[1])
        _, err = child.communicate(timeout=10)

    assert child.returncode == 1
    assert "pick another port" in err
