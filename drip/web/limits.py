"""Abuse limits: signups per client address, confirmation emails per email address.

Both live in Redis, so every web process shares them. The per-address limit
is what stops the signup form from being used to mail-bomb someone: whoever
types an address in, it gets at most N confirmation emails a day.

A signup checks and counts all of its limits in one round trip (and the
signups of a batch share it): one Lua script over moving windows (per key,
a list of the latest hit times, newest first, at most `amount` long: a hit
is allowed while the entry at `amount - 1` is older than the window). The
per-client windows are all or nothing (a refused signup counts in none of
them); the per-address one is counted only when the client is allowed. A refused client gets a
429 with Retry-After; a Redis that does not answer lets signups through (the
limits fail open, with a warning in the log).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import redis
from limits import parse_many
from redis.commands.core import Script
from werkzeug.exceptions import TooManyRequests

from drip.config import Settings
from drip.subscribers.subscriptions import email_hash

log = logging.getLogger(__name__)

SIGNUP_LIMIT_MESSAGE = "too many signups from your network; please wait a little and try again"
KEY_PREFIX = "drip-limits"
DAY_SECONDS = 24 * 3600

# One call for the signups of a batch (drip/web/batching.py), in their order.
# ARGV[1]: now in seconds; ARGV[2]: how many signups. Then per signup: how
# many per-client windows it has, whether it has a per-address window (0/1),
# and the amount and seconds of each of its windows; its KEYS, in the same
# order, follow those of the signup before it.
# Returns per signup {0} when counted, or {i, seconds until its i-th window has room}.
HIT_SCRIPT = """
local now = tonumber(ARGV[1])
local signups = tonumber(ARGV[2])
local arg = 3
local key = 1
local answers = {}
for s = 1, signups do
  local clients = tonumber(ARGV[arg])
  local windows = clients + tonumber(ARGV[arg + 1])
  arg = arg + 2
  local function full(i)
    local amount = tonumber(ARGV[arg + 2 * i - 2])
    local seconds = tonumber(ARGV[arg + 2 * i - 1])
    local oldest = redis.call('LINDEX', KEYS[key + i - 1], amount - 1)
    if oldest and tonumber(oldest) > now - seconds then
      return tostring(tonumber(oldest) + seconds - now)
    end
    return false
  end
  local function count(i)
    local amount = tonumber(ARGV[arg + 2 * i - 2])
    redis.call('LPUSH', KEYS[key + i - 1], ARGV[1])
    redis.call('LTRIM', KEYS[key + i - 1], 0, amount - 1)
    redis.call('EXPIRE', KEYS[key + i - 1], tonumber(ARGV[arg + 2 * i - 1]))
  end
  local answer = {0}
  for i = 1, clients do
    local wait = full(i)
    if wait then answer = {i, wait} break end
  end
  if answer[1] == 0 then
    for i = 1, clients do count(i) end
    if windows > clients then
      local wait = full(windows)
      if wait then answer = {windows, wait} else count(windows) end
    end
  end
  answers[s] = answer
  arg = arg + 2 * windows
  key = key + windows
end
return answers
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


@lru_cache(maxsize=8)
def _hit_script(url: str) -> Script:
    # EVALSHA: the script's text crosses the network once per connection, not per signup.
    return _client(url).register_script(HIT_SCRIPT)


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
    """Count one signup from `client` (None: a keyed caller, no per-client limit) that
    would send a confirmation to `email` (None: none would). One round trip.

    Raises SignupsLimited when the client is over its limits (nothing counted).
    A full per-address window is returned (`address_full_for`), not raised: only
    the database knows whether this signup would send an email at all.
    """
    (answer,) = hit_many(settings, [(client, email)])
    if isinstance(answer, SignupsLimited):
        raise answer
    return answer


def hit_many(
    settings: Settings, signups: Sequence[tuple[str | None, str | None]]
) -> list[Hit | SignupsLimited]:
    """`hit` for (client, email) of several signups, in order, in one round trip;
    a refused client's answer is its SignupsLimited."""
    if not settings.rate_limits_enabled:
        return [Hit() for _ in signups]
    stamp = f"{time.time():.6f}"
    keys: list[str] = []
    args: list[str | int] = [stamp, len(signups)]
    shapes: list[tuple[int, Window | None]] = []
    for client, email in signups:
        windows = client_windows(settings, client) if client is not None else []
        address = address_window(settings, email) if email is not None else None
        every = [*windows, *([address] if address else [])]
        args += [len(windows), 1 if address else 0]
        for window in every:
            args += [window.amount, window.seconds]
        keys += [window.key for window in every]
        shapes.append((len(windows), address))
    if not keys:
        return [Hit() for _ in signups]
    try:
        answers = _hit_script(settings.broker_url)(keys=keys, args=args)
    except redis.RedisError as exc:  # fail open, but say so
        log.warning("signup limits unavailable (%s); allowing", type(exc).__name__)
        return [Hit() for _ in signups]
    results: list[Hit | SignupsLimited] = []
    for (clients, address), answer in zip(shapes, answers, strict=True):
        full = int(answer[0])
        if full == 0:
            results.append(Hit(address.key if address else None, stamp))
        elif full <= clients:
            results.append(SignupsLimited(_wait(answer[1])))
        else:
            results.append(Hit(address_full_for=_wait(answer[1])))
    return results


def give_back(settings: Settings, counted: Hit) -> None:
    """Uncount the per-address entry of a signup that sends no email after all."""
    if counted.address_key is None:
        return
    try:
        _client(settings.broker_url).lrem(counted.address_key, 1, counted.stamp)
    except redis.RedisError as exc:
        log.warning("confirmation limit not given back (%s)", type(exc).__name__)
