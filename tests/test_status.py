"""`drip status`, the console script itself, against the module's running stack: the health
screen and the funnel in the terminal, and exit codes 0/1/2 for green/amber/red."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import Stack, drain
from tests.test_admin import add_confirmed


def drip_status(stack: Stack, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `drip status` with the stack's settings in the environment (and nothing else of ours)."""
    settings = stack.services.settings
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DRIP_", "SENDGRID_"))}
    ours: dict[str, Any] = {
        "DRIP_DATABASE_URL": settings.database_url,
        "DRIP_REDIS_URL": settings.redis_url,
        "DRIP_SECRET_KEY": settings.secret_key,
        "DRIP_BASE_URL": settings.base_url,
        "DRIP_COURSE_DIR": settings.course_dir,
        "DRIP_VAR_DIR": settings.var_dir,
        "DRIP_OUTBOX_DIR": settings.outbox_dir,
        "DRIP_TASK_QUEUE": settings.task_queue,
        "DRIP_HEALTH_INSPECT_TIMEOUT": "0.5",
        "NO_COLOR": "1",
    }
    command = [_drip_command(), "status"]
    return subprocess.run(
        command,
        env=clean | {k: str(v) for k, v in ours.items()} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _drip_command() -> str:
    # The console script installed beside this interpreter, not whatever is first on PATH.
    beside_python = os.path.join(os.path.dirname(sys.executable), "drip")
    return beside_python if os.path.exists(beside_python) else "drip"


@pytest.fixture()
def running(stack: Stack) -> Stack:
    # The command reads the real clock; so does this stack from here on.
    stack.clock.set(datetime.now(UTC))
    add_confirmed(stack, {"ann": "UTC", "ben": "UTC"})
    add_confirmed(stack, {"pat": ""})
    stack.tick()
    drain(stack)
    stack.tick()
    return stack


def test_a_healthy_service_exits_0_and_shows_the_funnel(running: Stack) -> None:
    result = drip_status(running)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("UTC: GREEN")
    labels = ["Due-but-unsent backlog", "Redis queue depth", "Workers online",
              "Last scheduler tick", "Sending circuit", "Failures in the last hour"]  # fmt: skip
    for label in labels:
        assert any(line.startswith("GREEN") and label in line for line in lines), label
    assert "funnel: signed up 3 > confirmed 2 > lesson 1 2 > lesson 2 0" in result.stdout
    assert "left: unsubscribed 0, bounced 0, complained 0" in result.stdout


def test_an_amber_signal_exits_1(running: Stack) -> None:
    result = drip_status(running, DRIP_HEALTH_TICK_AGE="0.001,3600")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].endswith("UTC: AMBER")
    assert any(line.startswith("AMBER  Last scheduler tick") for line in result.stdout.splitlines())


def test_a_red_signal_exits_2_and_says_what_to_do(running: Stack) -> None:
    result = drip_status(running, DRIP_HEALTH_TICK_AGE="0.001,0.002")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].endswith("UTC: RED")
    assert "-> start the scheduler" in result.stdout


def test_a_bad_setting_exits_2_with_one_line_naming_it(running: Stack) -> None:
    result = drip_status(running, DRIP_HEALTH_QUEUE_DEPTH="ten")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "drip status: cannot check: DRIP_HEALTH_QUEUE_DEPTH: "
        "expected AMBER,RED like '300,900', got 'ten'"
    )
