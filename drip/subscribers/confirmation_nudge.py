"""Wake a confirmation sender after a signup, without a task per signup.

The signup's consent row is the queue (drip.subscribers.confirmations); this
only shortens the wait. One Redis key marks "a sender has been asked": the
first signup after a sender started sets it (SET NX) and queues the sender;
the signups behind it find it set and publish nothing. A sender deletes the
key *before* it looks for due rows, so every signup either is seen by that
look or sets the key again and wakes the next sender. If Redis or the broker
fails, the periodic sender (the beat) still finds the row.

A web process nudges from a thread of its own (`soon`), off the signup's
request, and waits GATHER_SECONDS between setting the key and queueing the
sender: every signup of that moment, in any process, finds the key set, so
one sender takes them all in one batch (one provider request) instead of a
sender run, a claim and a provider request for every few signups.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from functools import lru_cache

import redis
from kombu.exceptions import OperationalError

from drip.config import Settings

log = logging.getLogger(__name__)

# Long enough to cover a sender's start-up; should a publish be lost after the
# key was set, signups nudge again once it expires (and the beat covers the gap).
EXPIRY_SECONDS = 30
# How long a process's nudging thread waits after a nudge: the signups of that
# moment share the next one instead of a Redis round trip each.
COALESCE_SECONDS = 0.02
# How long a web process waits between asking for a sender (the key set) and
# queueing it, so that the signups meanwhile join its batch. Adds this much to
# a confirmation's wait (the target is 5 s at the 95th percentile).
GATHER_SECONDS = 0.25


@lru_cache(maxsize=8)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2)


def _key(settings: Settings) -> str:
    return f"drip-confirm-nudge:{settings.task_queue}"


def nudge(settings: Settings, publish: Callable[[], None], *, gather: float = 0) -> None:
    """Queue a sender unless one is already asked for; never fails the signup.

    With `gather`, wait that long between asking and queueing (see above).
    """
    client = _client(settings.broker_url)
    try:
        first = bool(client.set(_key(settings), b"1", nx=True, ex=EXPIRY_SECONDS))
    except redis.RedisError:
        first = True
    if not first:
        return
    if gather:
        time.sleep(gather)
    try:
        publish()
    except OperationalError as exc:
        log.warning("confirmation sender not queued (%s); the periodic sender will send", exc)
        forget(settings)


def forget(settings: Settings) -> None:
    """A sender is starting: the next signup must ask for another one."""
    try:
        _client(settings.broker_url).delete(_key(settings))
    except redis.RedisError as exc:
        log.warning("confirmation nudge not cleared (%s)", type(exc).__name__)


class _Waker:
    """A thread of this process that nudges on behalf of its signups, off their requests."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.publish: Callable[[], None] = lambda: None
        self.wanted = threading.Event()
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._run, name="drip-confirm-nudge", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            self.wanted.wait()
            self.wanted.clear()
            try:
                nudge(self.settings, self.publish, gather=GATHER_SECONDS)
            except Exception:  # never let the thread die: the next signup wakes it again
                log.exception("confirmation nudge failed; the periodic sender will send")
            # Signups arriving meanwhile share the next nudge.
            time.sleep(COALESCE_SECONDS)


_wakers: dict[tuple[str, str], _Waker] = {}
_wakers_lock = threading.Lock()


def soon(settings: Settings, publish: Callable[[], None]) -> None:
    """`nudge`, from a thread of this process, within COALESCE_SECONDS; returns at once.

    A signup answers without waiting for Redis or the broker. If the process
    dies before the nudge, the signup's consent row is still due and the
    periodic sender (every 10 s) sends it.
    """
    key = (settings.broker_url, _key(settings))
    with _wakers_lock:
        waker = _wakers.get(key)
        if waker is None or waker.pid != os.getpid():  # none yet, or inherited through a fork
            waker = _wakers[key] = _Waker(settings)
    waker.publish = publish
    waker.wanted.set()
