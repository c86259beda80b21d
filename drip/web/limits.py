"""Abuse limits: signups per client address, confirmation emails per email address.

Both live in Redis, so every web process shares them. The per-address limit
is what stops the signup form from being used to mail-bomb someone: whoever
types an address in, it gets at most N confirmation emails a day.

A signup checks and counts all of its limits in one round trip: one Lua
script over moving windows (per key, a list of the latest hit times, newest
first, at most `amount` long: a hit is allowed while the entry at
`amount - 1` is older than the window). The per-client windows are all or
nothing (a refused signup counts in none of them), as the per-address one,
which is only counted when the client is allowed. A refused client gets a
429 with Retry-After; a Redis that does not answer lets signups through (the
limits fail open, with a warning in the log).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis
from limits import parse_many
from redis.connection import ConnectionInterface
from redis.exceptions import NoScriptError
from werkzeug.exceptions import TooManyRequests

from drip.config import Settings
from drip.subscribers.subscriptions import email_hash

log = logging.getLogger(__name__)

SIGNUP_LIMIT_MESSAGE = "too many signups from your network; please wait a little and try again"
KEY_PREFIX = "drip-limits"
DAY_SECONDS = 24 * 3600

# KEYS: the per-client windows, then (optionally) the per-address window.
# ARGV[1]: now in seconds; ARGV[2]: how many of KEYS are per-client windows;
# ARGV[3..]: amount and window seconds of each key, in the order of KEYS.
# Returns {0} when counted, or {i, seconds until the window of KEYS[i] has room}.
HIT_SCRIPT = """
local now = tonumber(ARGV[1])
local clients = tonumber(ARGV[2])
local function full(i)
  local amount = tonumber(ARGV[1 + 2 * i])
  local seconds = tonumber(ARGV[2 + 2 * i])
  local oldest = redis.call('LINDEX', KEYS[i], amount - 1)
  if oldest and tonumber(oldest) > now - seconds then
    return tostring(tonumber(oldest) + seconds - now)
  end
  return false
end
local function count(i)
  local amount = tonumber(ARGV[1 + 2 * i])
  redis.call('LPUSH', KEYS[i], ARGV[1])
  redis.call('LTRIM', KEYS[i], 0, amount - 1)
  redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2 + 2 * i]))
end
for i = 1, clients do
  local wait = full(i)
  if wait then return {i, wait} end
end
for i = 1, clients do count(i) end
if #KEYS > clients then
  local wait = full(#KEYS)
  if wait then return {#KEYS, wait} end
  count(#KEYS)
end
return {0}
"""


class SignupsLimited(TooManyRequests):
    """Too many signups from this client: a 429 with Retry-After (errors.py renders it)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(description=SIGNUP_LIMIT_MESSAGE, retry_after=retry_after)


class AddressLimited(Exception):
    """This address already got its confirmation emails for today."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many confirmation emails for this address today")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Hit:
    """What one signup counted: the per-address entry to give back if no email goes out."""

    address_key: str | None = None
    stamp: str = ""
    # Seconds until the address may get another confirmation; None: it was counted.
    address_full_for: int | None = None


@dataclass(frozen=True)
class Window:
    key: str
    amount: int
    seconds: int


@lru_cache(maxsize=8)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


# How these connections name themselves to Redis (CLIENT LIST).
CLIENT_NAME = "drip-signup-limits"
HIT_SCRIPT_SHA = hashlib.sha1(HIT_SCRIPT.encode()).hexdigest()


class _ThreadConnection(threading.local):
    """A connection of this thread's own for the signup's one Redis command.

    redis-py's client around a command (a connection taken from the pool and
    given back, its retry wrapper, its event hooks) cost twice the round trip
    itself (in one process: 87 us against 28 us for EVALSHA), so each thread
    of a web process keeps one connection and sends the command on it.
    """

    def __init__(self) -> None:
        self.connection: ConnectionInterface | None = None
        self.url = ""
        self.pid = 0

    def get(self, url: str) -> ConnectionInterface:
        connection = self.connection
        if connection is None or self.url != url or self.pid != os.getpid():
            pool = redis.ConnectionPool.from_url(
                url, socket_timeout=2, socket_connect_timeout=2, client_name=CLIENT_NAME
            )
            connection = self.connection = pool.make_connection()
            self.url, self.pid = url, os.getpid()
        return connection


_thread_connection = _ThreadConnection()


def _run_hit_script(url: str, keys: list[str], args: list[str | int]) -> Any:
    """EVALSHA (the script's text crosses the network once per server, not per signup).

    A connection that broke since its last use (Redis restarted) is opened
    again once; a server that lost its scripts gets the text with EVAL.
    """
    connection = _thread_connection.get(url)
    for attempt in (1, 2):
        try:
            try:
                connection.send_command("EVALSHA", HIT_SCRIPT_SHA, len(keys), *keys, *args)
                return connection.read_response()
            except NoScriptError:
                connection.send_command("EVAL", HIT_SCRIPT, len(keys), *keys, *args)
                return connection.read_response()
        except (redis.ConnectionError, redis.TimeoutError):
            connection.disconnect()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@lru_cache(maxsize=32)
def _client_windows(limit: str) -> tuple[tuple[int, int], ...]:
    return tuple((item.amount, item.get_expiry()) for item in parse_many(limit))


def client_windows(settings: Settings, client: str) -> list[Window]:
    return [
        Window(f"{KEY_PREFIX}:signup:{client}:{amount}/{seconds}", amount, seconds)
        for amount, seconds in _client_windows(settings.signup_rate_limit)
    ]


def address_window(settings: Settings, email: str) -> Window:
    # A keyed hash, so Redis never holds the address itself.
    digest = email_hash(settings.secret_key, email)
    amount = settings.confirmations_per_address_per_day
    return Window(f"{KEY_PREFIX}:confirm-address:{digest}", amount, DAY_SECONDS)


def _wait(seconds: object) -> int:
    text = seconds.decode() if isinstance(seconds, bytes) else str(seconds)
    return max(1, int(float(text) + 0.999))


def hit(settings: Settings, *, client: str | None, email: str | None) -> Hit:
    """Count a signup from `client` (None: a keyed caller, no per-client limit) that would
    send a confirmation to `email` (None: none would). One round trip.

    Raises SignupsLimited when the client is over its limits (nothing counted).
    A full per-address window is returned (`address_full_for`), not raised: only
    the database knows whether this signup would send an email at all.
    """
    if not settings.rate_limits_enabled:
        return Hit()
    windows = client_windows(settings, client) if client is not None else []
    address = address_window(settings, email) if email is not None else None
    keys = [w.key for w in windows] + ([address.key] if address else [])
    if not keys:
        return Hit()
    stamp = f"{time.time():.6f}"
    args: list[str | int] = [stamp, len(windows)]
    for window in [*windows, *([address] if address else [])]:
        args += [window.amount, window.seconds]
    try:
        answer = _run_hit_script(settings.broker_url, keys, args)
    except redis.RedisError as exc:  # fail open, but say so
        log.warning("signup limits unavailable (%s); allowing", type(exc).__name__)
        return Hit()
    full = int(answer[0])
    if full == 0:
        return Hit(address.key if address else None, stamp)
    if full <= len(windows):
        raise SignupsLimited(_wait(answer[1]))
    return Hit(address_full_for=_wait(answer[1]))


def give_back(settings: Settings, counted: Hit) -> None:
    """Uncount the per-address entry of a signup that sends no email after all."""
    if counted.address_key is None:
        return
    try:
        _client(settings.broker_url).lrem(counted.address_key, 1, counted.stamp)
    except redis.RedisError as exc:
        log.warning("confirmation limit not given back (%s)", type(exc).__name__)
