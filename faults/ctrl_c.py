"""Stop `drip run` with a terminal's Ctrl-C, again and again, and look for leftovers.

A terminal sends SIGINT to the whole foreground process group, so the test
does the same (killpg). A stop passes when `drip run` exits, no process that
carries the run's var dir (in its command line or its environment) is left,
and the web port can be bound again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THREE_DAY = ROOT / "tests" / "course_fixtures" / "three-day"


@dataclass
class Stop:
    seconds: float
    exit_code: int | None
    leftovers: list[int] = field(default_factory=list)
    port_free: bool = True

    @property
    def clean(self) -> bool:
        return self.exit_code is not None and not self.leftovers and self.port_free


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        # SO_REUSEADDR: a closed connection in TIME_WAIT is no listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def processes_of(var_dir: Path) -> list[int]:
    """Processes whose command line or environment names ``var_dir`` (ours only)."""
    marker = str(var_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or another user's
            if (
                marker in (entry / "cmdline").read_bytes()
                or marker in (entry / "environ").read_bytes()
            ):
                found.append(int(entry.name))
    return found


def run_environment(var_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIP_", "SENDGRID_"))}
    env.update(
        DRIP_VAR_DIR=str(var_dir),
        DRIP_COURSE_DIR=str(THREE_DAY),
        DRIP_BASE_URL=f"http://127.0.0.1:{port}",
    )
    return env


def start(var_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    drip = Path(sys.executable).parent / "drip"
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(drip), "run", "--port", str(port)],
            env=run_environment(var_dir, port),
            cwd=var_dir.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own foreground group, as in a terminal
        )


def ctrl_c_once(work_dir: Path, *, twice: bool = False, ready_timeout: float = 90) -> Stop:
    """Start `drip run`, wait until ready, Ctrl-C it (twice: again during the shutdown)."""
    var_dir = work_dir / "var"
    var_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = start(var_dir, port, work_dir / "drip-run.log")
    try:
        deadline = time.monotonic() + ready_timeout
        while not ready(f"http://127.0.0.1:{port}"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"drip run did not get ready; see {work_dir}/drip-run.log")
            time.sleep(0.3)
        started = time.monotonic()
        os.killpg(process.pid, signal.SIGINT)
        if twice:
            time.sleep(0.5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
        try:
            code: int | None = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = None
        seconds = time.monotonic() - started
        time.sleep(0.5)  # a straggler the supervisor missed would still be here
        return Stop(seconds, code, processes_of(var_dir), port_is_free(port))
    finally:
        _clean_up(process, var_dir)


def _clean_up(process: subprocess.Popen[bytes], var_dir: Path) -> None:
    """Whatever a failed stop left behind goes, so the next round starts clean."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid in processes_of(var_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def ctrl_c_rounds(work_dir: Path, rounds: int) -> list[Stop]:
    """``rounds`` stops in a row; every other one gets a second Ctrl-C while stopping."""
    return [ctrl_c_once(work_dir / f"round-{n}", twice=n % 2 == 1) for n in range(rounds)]
