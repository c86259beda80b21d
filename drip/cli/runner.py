"""`drip run`: web, worker and scheduler (and a Redis when none is configured) in one terminal.

Ctrl-C stops them all; if one of them dies, the others are stopped too, so
the service never runs half-alive without saying so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

import click

from drip.cli.embedded_redis import EmbeddedRedis
from drip.config import Settings


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]


def child_commands(settings: Settings, host: str, port: int) -> dict[str, list[str]]:
    python = sys.executable
    return {
        "web": [python, "-m", "gunicorn", "--workers", "2", "--threads", "4",
                "--bind", f"{host}:{port}", "--access-logfile", "-", "drip.wsgi:app"],
        "worker": [python, "-m", "celery", "-A", "drip.worker:celery", "worker",
                   "--loglevel", "INFO", "--concurrency", "2", "--without-gossip",
                   "--without-mingle"],
        "scheduler": [python, "-m", "celery", "-A", "drip.worker:celery", "beat",
                      "--loglevel", "INFO",
                      "--schedule", str(settings.var_dir / "celerybeat-schedule")],
    }  # fmt: skip


def run_service(settings: Settings, host: str, port: int) -> int:
    env = dict(os.environ)
    redis_server = None
    if not settings.redis_url:
        redis_server = EmbeddedRedis(settings.var_dir / "redis")
        env["DRIP_REDIS_URL"] = redis_server.start()
        click.echo(f"drip: started an embedded Redis at {env['DRIP_REDIS_URL']}")
    children: list[Child] = []
    stopping = False

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        for name, command in child_commands(settings, host, port).items():
            children.append(Child(name, subprocess.Popen(command, env=env)))
        click.echo(
            f"drip: web on http://{host}:{port}, worker and scheduler started; Ctrl-C stops all"
        )
        return _watch(children, lambda: stopping)
    finally:
        _stop_all(children)
        if redis_server:
            redis_server.stop()
        click.echo("drip: stopped")


def _watch(children: list[Child], stopping: Callable[[], bool]) -> int:
    while not stopping():
        for child in children:
            code = child.process.poll()
            if code is not None:
                click.echo(
                    f"drip: {child.name} exited with code {code}; stopping the rest", err=True
                )
                return code or 1
        time.sleep(0.3)
    return 0


def _stop_all(children: list[Child], grace: float = 10.0) -> None:
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            child.process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
