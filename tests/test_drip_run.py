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


def worker_master(run_pid: int) -> int | None:
    """The Celery worker `drip run` started (its direct child with "worker" in the command)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if parent == run_pid and b"worker" in command:
                return int(entry.name)
    return None


def test_a_dead_worker_is_started_again_and_sends_the_next_confirmation(tmp_path: Path) -> None:
    """The worker can exit by itself (a broker lost while it holds a message): `drip run`
    starts it again instead of running without one, and mail goes out again."""
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_drip_run(var_dir, port, tmp_path / "drip-run.log")
    try:
        wait_until(lambda: ready(base), timeout=90, interval=0.3)
        first = wait_until(lambda: worker_master(process.pid), timeout=10)
        os.killpg(first, signal.SIGKILL)  # the worker and its pool children, at once
        second = wait_until(
            lambda: (pid := worker_master(process.pid)) not in (None, first) and pid,
            timeout=10,
            interval=0.2,
        )
        assert second and process.poll() is None, "drip run goes on"
        request = urllib.request.Request(
            f"{base}/api/v1/subscribers",
            data=b'{"email": "after-restart@example.com"}',
            headers={"Content-Type": "application/json"},
        )
        assert urllib.request.urlopen(request, timeout=10).status == 202
        confirmation = wait_until(lambda: outbox(var_dir), timeout=60, interval=0.3)[0]
        assert confirmation["To"] == "after-restart@example.com"
        assert (
            "worker exited with code -9; starting it again"
            in (tmp_path / "drip-run.log").read_text()
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=60)
        for pid in processes_of(var_dir):
            os.kill(pid, signal.SIGKILL)
