"""`drip run`: web, worker and scheduler (and a Redis when none is configured) in one terminal.

Ctrl-C stops them all. If the worker dies it is started again (a few times, then
everything stops): Celery's worker can exit on a broker connection lost while
it holds a message (kombu fails to restore it to a Redis that is down), and a
restarted worker loses nothing, since a batch it held is handed out again once
its send lease passes. If any other child dies, the others are stopped too, so
the service never runs half-alive without saying so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

import click

from drip.cli.embedded_redis import EmbeddedRedis
from drip.config import Settings

# Children started again when they exit, and how often within RESTART_WINDOW seconds.
RESTARTABLE = frozenset({"worker"})
MAX_RESTARTS = 5
RESTART_WINDOW = 300.0


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    command: list[str]
    env: dict[str, str]
    restarts: list[float] = field(default_factory=list)  # monotonic times of restarts


# Worker children: one per core sends, and one more for the tick, which spends a
# morning's send mostly waiting for the send queue to go down (drip/sending/pace.py)
# rather than computing; without it the tick would hold one of the two senders.
WORKER_CHILDREN = 3


def child_commands(settings: Settings, host: str, port: int) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "web": [python, "-m", "gunicorn", "--workers", "2", "--threads", "4",
                "--bind", f"{host}:{port}", "--access-logfile", "-", "drip.wsgi:app"],
        "worker": [python, "-m", "celery", "-A", "drip.worker:celery", "worker",
                   "--loglevel", "INFO", "--concurrency", str(WORKER_CHILDREN), "--without-gossip",
                   "--without-mingle"],
        "scheduler": [python, "-m", "celery", "-A", "drip.worker:celery", "beat",
                      "--loglevel", "INFO",
                      "--schedule", str(settings.var_dir / "celerybeat-schedule")],
    }  # fmt: skip


def run_service(settings: Settings, host: str, port: int) -> int:
    env = dict(os.environ)
    children: list[Child] = []
    redis_server: EmbeddedRedis | None = None
    stopping = False

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        # Only a flag: a second Ctrl-C during the shutdown changes nothing.
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        if not settings.redis_url:
            redis_server = EmbeddedRedis(settings.var_dir / "redis")
            env["DRIP_REDIS_URL"] = redis_server.start()
            click.echo(f"drip: started an embedded Redis at {env['DRIP_REDIS_URL']}")
        for name, command in child_commands(settings, host, port).items():
            if stopping:
                break
            children.append(Child(name, _start_child(command, env), command, env))
        click.echo(
            f"drip: web on http://{host}:{port}, worker and scheduler started; Ctrl-C stops all"
        )
        return _watch(children, lambda: stopping)
    finally:
        _stop_all(children)
        if redis_server:
            redis_server.stop()  # last: the worker may still talk to it while it stops
        click.echo("drip: stopped")


def _start_child(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A child in its own session and process group, so the terminal's Ctrl-C reaches only us.

    gunicorn's gthread worker shuts its thread pool down inside a signal
    handler; a second signal re-entering it deadlocks (CPython issue 121649)
    and the worker hangs on to the port. With its own group, each child gets
    exactly one SIGTERM, from us (and gunicorn's workers one from their master).
    """
    return subprocess.Popen(command, env=env, start_new_session=True)


def _watch(children: list[Child], stopping: Callable[[], bool]) -> int:
    while not stopping():
        for child in children:
            code = child.process.poll()
            if code is None:
                continue
            if not _restart(child, code):
                click.echo(
                    f"drip: {child.name} exited with code {code}; stopping the rest", err=True
                )
                return code or 1
        time.sleep(0.3)
    return 0


def _restart(child: Child, code: int) -> bool:
    """Start a restartable child again, unless it keeps dying (then the run stops)."""
    now = time.monotonic()
    child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW]
    if child.name not in RESTARTABLE or len(child.restarts) >= MAX_RESTARTS:
        return False
    # Its pool children must not outlive it, as on a stop.
    _signal_group(child.process.pid, signal.SIGKILL)
    child.restarts.append(now)
    click.echo(
        f"drip: {child.name} exited with code {code}; starting it again "
        f"({len(child.restarts)} of {MAX_RESTARTS} restarts in {RESTART_WINDOW:.0f}s)",
        err=True,
    )
    child.process = _start_child(child.command, child.env)
    return True


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pid, signum)


# Children stopped by a SIGTERM to their main process only, as `docker stop` does:
# Celery's warm shutdown lets each pool child finish the batch it holds, where a
# SIGTERM to the group kills them mid-batch, and those batches wait for their lease.
WARM_SHUTDOWN = frozenset({"worker"})


def _stop_all(children: list[Child], grace: float = 10.0) -> None:
    """SIGTERM each child's group once (a Celery worker's main process: WARM_SHUTDOWN);
    SIGKILL the whole group of any straggler.

    The group, not only the child: gunicorn's workers and celery's pool
    children must not outlive a master that died first.
    """
    for child in children:
        if child.name in WARM_SHUTDOWN:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.process.pid, signal.SIGTERM)
        else:
            _signal_group(child.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            child.process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            click.echo(f"drip: {child.name} did not stop within {grace:.0f}s; killing it", err=True)
        # Whatever is left in the group (a hung worker, an orphaned pool child) goes now.
        _signal_group(child.process.pid, signal.SIGKILL)
        child.process.wait()
