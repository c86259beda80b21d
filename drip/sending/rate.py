"""A global send rate (DRIP_SEND_RATE, emails per second) shared by every worker through Redis.

A token bucket kept as one number, the bucket's "theoretical arrival time"
(GCRA): a batch of n emails reserves n tokens in one atomic script and learns
how long to wait before sending. The bucket holds one second of tokens, so a
batch larger than the rate waits for its tokens to accrue over several
seconds. Redis's own clock (TIME) is the only clock, so workers on different
machines agree.

When other workers have already reserved more than ``max_wait`` seconds
of sending, a batch reserves nothing and is handed back as ``RateLimited``:
the sender schedules it for later instead of sleeping past its lease. (With
a rate set, config.py caps a batch at a minute of sending for the same reason.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from drip.mail.base import Batch, Mailer, RateLimited, SendResult

KEY = "drip:send-rate"
MAX_WAIT_SECONDS = 60.0

# KEYS[1]: the bucket; ARGV: rate (tokens/s), burst (tokens), n, max wait (s).
# Returns the seconds to wait (as a string: Lua numbers become integers), or
# minus the wait for those ahead when that is over max wait (nothing reserved).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local n, max_wait = tonumber(ARGV[3]), tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local ahead = tat - burst / rate - now
if ahead > max_wait then return tostring(-ahead) end
local new_tat = tat + n / rate
local wait = new_tat - burst / rate - now
if wait < 0 then wait = 0 end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now) * 1000) + 1000)
return tostring(wait)
"""


class SendRate:
    """At most ``rate`` emails a second across every process sharing this Redis and key."""

    def __init__(
        self,
        client: redis.Redis,
        rate: float,
        *,
        key: str = KEY,
        max_wait: float = MAX_WAIT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be greater than 0 emails per second")
        self.rate = rate
        self.burst = max(rate, 1.0)  # one second of tokens, and at least one email
        self.key = key
        self.max_wait = max_wait
        self._sleep = sleep
        self._script: Any = client.register_script(_RESERVE)

    @classmethod
    def from_url(cls, url: str, rate: float, **options: Any) -> SendRate:
        # from_url connects lazily: nothing touches Redis until the first batch.
        return cls(redis.Redis.from_url(url), rate, **options)

    def reserve(self, emails: int) -> float:
        """Reserve tokens for ``emails``: the seconds to wait, or -seconds when refused."""
        answer = self._script(keys=[self.key], args=[self.rate, self.burst, emails, self.max_wait])
        return float(answer)

    def acquire(self, emails: int) -> None:
        """Wait until ``emails`` may go, or raise RateLimited when the queue ahead is too long."""
        if emails <= 0:
            return
        wait = self.reserve(emails)
        if wait < 0:
            raise RateLimited(
                f"DRIP_SEND_RATE={self.rate:g}/s: {-wait:.0f}s of sending already queued "
                "by other workers; the batch goes later",
                reset_at=time.time() - wait,
            )
        if wait > 0:
            self._sleep(wait)


class RateLimitedMailer:
    """A Mailer that takes a batch's tokens from the shared SendRate before sending it."""

    def __init__(self, mailer: Mailer, rate: SendRate) -> None:
        self.mailer = mailer
        self.rate = rate
        self.name = mailer.name

    def send(self, batch: Batch) -> list[SendResult]:
        self.rate.acquire(len(batch.recipients))
        return self.mailer.send(batch)
