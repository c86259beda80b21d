"""Failed sign-ins per client address, in Redis so every web process counts together.

After MAX_FAILURES failures within WINDOW_SECONDS the address must wait for
the window to end. When Redis does not answer, the count falls back to this
process's memory: the dashboard stays reachable to diagnose a Redis outage,
and guessing is still slowed (the scrypt hash costs each guess ~0.1 s too).
"""

from __future__ import annotations

import contextlib
import threading
import time

import redis

from drip.config import Settings
from drip.ops.health import redis_client

MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60
KEY_PREFIX = "drip:admin-sign-in-failures:"

_memory: dict[str, tuple[int, float]] = {}  # address -> (failures, window ends at)
_memory_lock = threading.Lock()


def wait_seconds(settings: Settings, address: str) -> int:
    """0 when the address may try; otherwise how long until it may."""
    try:
        client = redis_client(settings)
        try:
            pipe = client.pipeline()
            pipe.get(_key(address))
            pipe.ttl(_key(address))
            failures, ttl = pipe.execute()
        finally:
            client.close()
        return max(1, int(ttl)) if int(failures or 0) >= MAX_FAILURES else 0
    except redis.RedisError:
        return _memory_wait(address)


def record_failure(settings: Settings, address: str) -> None:
    try:
        client = redis_client(settings)
        try:
            # The window starts at the first failure; later ones do not extend it.
            pipe = client.pipeline()
            pipe.set(_key(address), 0, ex=WINDOW_SECONDS, nx=True)
            pipe.incr(_key(address))
            pipe.execute()
        finally:
            client.close()
    except redis.RedisError:
        _memory_failure(address)


def clear(settings: Settings, address: str) -> None:
    with _memory_lock:
        _memory.pop(address, None)
    with contextlib.suppress(redis.RedisError):
        client = redis_client(settings)
        try:
            client.delete(_key(address))
        finally:
            client.close()


def _key(address: str) -> str:
    return KEY_PREFIX + address


def _memory_wait(address: str) -> int:
    with _memory_lock:
        failures, ends = _memory.get(address, (0, 0.0))
    left = ends - time.monotonic()
    return max(1, int(left)) if failures >= MAX_FAILURES and left > 0 else 0


def _memory_failure(address: str) -> None:
    now = time.monotonic()
    with _memory_lock:
        failures, ends = _memory.get(address, (0, 0.0))
        if ends <= now:
            failures, ends = 0, now + WINDOW_SECONDS
        _memory[address] = (failures + 1, ends)
