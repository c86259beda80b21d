"""The one command: `drip run` starts Redis, web, worker and beat, runs a course, stops."""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import re
import signal
import subprocess
import sys
import urllib.request
from email.message import EmailMessage
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode

from drip.cli.embedded_redis import free_port
from faults.ctrl_c import ctrl_c_rounds, port_is_free, processes_of
from faults.ctrl_c import start as start_drip_run
from tests.conftest import ROOT, wait_until

THREE_DAY = ROOT / "tests" / "course_fixtures" / "three-day"


def outbox(var_dir: Path) -> list[EmailMessage]:
    found = []
    for path in sorted((var_dir / "outbox").glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_drip_run_serves_a_whole_course_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIP_", "SENDGRID_"))}
    env.update(
        DRIP_VAR_DIR=str(tmp_path / "var"),
        DRIP_COURSE_DIR=str(THREE_DAY),
        DRIP_BASE_URL=base,
        DRIP_DAY_SECONDS="2",
        DRIP_TICK_SECONDS="0.5",
    )
    drip = Path(sys.executable).parent / "drip"
    process = subprocess.Popen(
        [str(drip), "run", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: ready(base), timeout=60, interval=0.3)
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        request = urllib.request.Request(
            f"{base}/api/v1/subscribers",
            data=b'{"email": "run@example.com", "timezone": "Europe/Berlin"}',
            headers={"Content-Type": "application/json"},
        )
        assert opener.open(request, timeout=10).status == 202
        confirmation = wait_until(lambda: outbox(tmp_path / "var"), timeout=30)[0]
        body = confirmation.get_body(preferencelist=("plain",))
        assert body is not None
        match = re.search(re.escape(base) + r"(/confirm/\S+)", body.get_content())
        assert match
        page = opener.open(base + match.group(1), timeout=10).read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        form = urlencode({"csrf_token": token.group(1)}).encode()
        assert opener.open(base + match.group(1), data=form, timeout=10).status == 200
        # Three lessons, two seconds apart, sent by the beat-driven tick and the worker.
        wait_until(lambda: len(outbox(tmp_path / "var")) == 4, timeout=45, interval=0.3)
        subjects = [str(m["Subject"]) for m in outbox(tmp_path / "var")[1:]]
        assert len(subjects) == 3
    finally:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        output, _ = process.communicate(timeout=60)
    text = output.decode(errors="replace")
    assert "started an embedded Redis" in text
    assert "drip: stopped" in text
    assert not ready(base)
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "var")], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout.strip() == "", "no child process outlives drip run"


def test_three_terminal_ctrl_c_stops_in_a_row_leave_no_process_and_a_free_port(
    tmp_path: Path,
) -> None:
    stops = ctrl_c_rounds(tmp_path, rounds=3)  # the second also gets a Ctrl-C while stopping
    for stop in stops:
        assert stop.exit_code is not None, "drip run exits within a minute of Ctrl-C"
        assert stop.leftovers == [], "no process of the run outlives it"
        assert stop.port_free, "the web port is free again"


def test_one_child_dying_stops_drip_run_and_all_the_others(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    port = free_port()
    process = start_drip_run(var_dir, port, tmp_path / "drip-run.log")
    try:
        wait_until(lambda: ready(f"http://127.0.0.1:{port}"), timeout=90, interval=0.3)
        # The scheduler is the child whose command line names the var dir (its schedule file).
        beat = subprocess.run(
            ["pgrep", "-f", f"beat.*{var_dir}"], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(beat) == 1
        os.kill(int(beat[0]), signal.SIGKILL)
        assert process.wait(timeout=60) != 0
        wait_until(lambda: processes_of(var_dir) == [], timeout=5)
        assert port_is_free(port)
        assert "scheduler exited" in (tmp_path / "drip-run.log").read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        for pid in processes_of(var_dir):
            os.kill(pid, signal.SIGKILL)
