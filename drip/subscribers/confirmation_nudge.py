"""Wake a confirmation sender after a signup, without a task per signup.

The signup's consent row is the queue (drip.subscribers.confirmations); this
only shortens the wait. One Redis key marks "a sender has been asked": the
first signup after a sender started sets it (SET NX) and queues the sender;
the signups behind it find it set and publish nothing. A sender deletes the
key *before* it looks for due rows, so every signup either is seen by that
look or sets the key again and wakes the next sender. If Redis or the broker
fails, the periodic sender (the beat) still finds the row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache

import redis
from kombu.exceptions import OperationalError

from drip.config import Settings

log = logging.getLogger(__name__)

# Long enough to cover a sender's start-up; should a publish be lost after the
# key was set, signups nudge again once it expires (and the beat covers the gap).
EXPIRY_SECONDS = 30


@lru_cache(maxsize=8)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2)


def _key(settings: Settings) -> str:
    return f"drip-confirm-nudge:{settings.task_queue}"


def nudge(settings: Settings, publish: Callable[[], None]) -> None:
    """Queue a sender unless one is already asked for; never fails the signup."""
    client = _client(settings.broker_url)
    try:
        first = bool(client.set(_key(settings), b"1", nx=True, ex=EXPIRY_SECONDS))
    except redis.RedisError:
        first = True
    if not first:
        return
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
