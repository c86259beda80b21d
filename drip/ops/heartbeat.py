"""Worker heartbeats in Redis: a busy worker is still a worker.

A ping (Celery's inspect) goes unanswered while every process of a worker is
busy sending, and a short ping timeout then reports "none online" during a
burst. So each worker's main process also refreshes a key of its own every
few seconds, from a thread of its own; the key expires a few beats after the
worker stops. `drip status` counts a worker online if it answers the ping or
its key is fresh.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import redis

log = logging.getLogger(__name__)

BEAT_SECONDS = 5.0
EXPIRE_SECONDS = 20  # four beats missed: the worker is gone (or cannot reach Redis)


def key_prefix(queue: str) -> str:
    return f"drip:worker:{queue}:"


class WorkerHeartbeat:
    def __init__(self, client: redis.Redis, queue: str, hostname: str) -> None:
        self.client = client
        self.key = f"{key_prefix(queue)}{hostname}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drip-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        with contextlib.suppress(redis.RedisError):  # else it expires by itself
            self.client.delete(self.key)

    def _run(self) -> None:
        while True:
            try:
                self.client.set(self.key, "alive", ex=EXPIRE_SECONDS)
            except redis.RedisError as exc:
                log.warning("worker heartbeat: Redis unreachable (%s)", type(exc).__name__)
            if self._stop.wait(BEAT_SECONDS):
                return


def beating_workers(client: redis.Redis, queue: str) -> list[str]:
    """Workers on ``queue`` whose heartbeat key has not expired."""
    prefix = key_prefix(queue)
    return sorted(
        key.decode().removeprefix(prefix) for key in client.scan_iter(match=f"{prefix}*", count=500)
    )
