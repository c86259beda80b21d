"""The send journal: what became of a delivery's request to the provider, kept in Redis.

SendGrid has no idempotency key, so the only way not to resend a batch it
accepted is to remember that it did, somewhere other than the database whose
write may be the very thing that failed. For each delivery in a request:

- before the POST: ``posting`` (the request may reach the provider from now on);
- after a 2xx: ``accepted <message id>``;
- after a definite refusal (4xx, 429, 503, a refused connection): removed.

A worker that reclaims a "sending" delivery (its previous worker died, or
could not record the answer) reads the journal first: accepted means record
it as sent and send nothing; posting means the request may have arrived and
no answer was recorded, so it goes again flagged as a possible duplicate;
nothing means it never left, so it goes again unflagged.

Each note is one Redis string per delivery. A batch's notes are written and
removed by one server-side script call each, given the batch's ids as one
argument (not a thousand SETs in a pipeline, which cost the worker ~9 ms of
packing per 1,000, nor a thousand key arguments), and read by one MGET.
Entries live a day, far longer than a lease; a worker removes them once the
database holds the outcome.

A batch the tick handed out already claimed also gets a mark when a send task
takes it (``take``): set once, by the first run of that hand-out, so that a
redelivered message or a retried task cannot take it a second time.

Redis without persistence loses the journal when it restarts: a batch whose
worker dies in that same window falls back to "never left" (docs/guarantees.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

TTL_SECONDS = 86400
POSTING = "posting"
ACCEPTED = "accepted"


@dataclass(frozen=True)
class Entry:
    state: str  # POSTING or ACCEPTED
    message_id: str = ""


class JournalUnavailable(Exception):
    """Redis did not answer: a batch that cannot be journaled is not posted."""


# SET key value EX ttl for every key: ARGV[1] is the ttl, then one value for every key.
_SET_ALL = """
local ttl = ARGV[1]
for i, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[i + 1], 'EX', ttl)
end
return #KEYS
"""
# The same value for a batch's deliveries, or none (DEL): ARGV is the key prefix, the
# delivery ids as one comma-separated string, then the ttl and the value. One
# argument for a thousand ids: redis-py packed a thousand key arguments per call in
# ~3 ms of the worker's CPU, three calls a batch. (The keys are made in the script,
# so this wants a single Redis, not a cluster, as the broker already does.)
_EACH = """
local prefix, ids, ttl, value = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local count = 0
for id in string.gmatch(ids, '[^,]+') do
    if value then
        redis.call('SET', prefix .. id, value, 'EX', ttl)
    else
        redis.call('DEL', prefix .. id)
    end
    count = count + 1
end
return count
"""


class SendJournal:
    def __init__(self, client: redis.Redis, namespace: str = "drip") -> None:
        self.client = client
        self.prefix = f"drip:journal:{namespace}:"
        self._set_all = client.register_script(_SET_ALL)
        self._each = client.register_script(_EACH)

    @classmethod
    def from_url(cls, url: str, namespace: str = "drip") -> SendJournal:
        # Connects lazily; a short timeout so a Redis that is away fails the batch fast.
        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return cls(client, namespace)

    def _key(self, delivery_id: int | str) -> str:
        return f"{self.prefix}{delivery_id}"

    def read(self, delivery_ids: Sequence[int]) -> dict[int, Entry]:
        if not delivery_ids:
            return {}
        values = self._call(lambda: self.client.mget([self._key(i) for i in delivery_ids]))
        found: dict[int, Entry] = {}
        for delivery_id, raw in zip(delivery_ids, values, strict=True):
            if raw is None:
                continue
            state, _, message_id = raw.decode().partition(" ")
            found[delivery_id] = Entry(state, message_id)
        return found

    def posting(self, delivery_ids: Iterable[int | str]) -> None:
        self._set({i: POSTING for i in delivery_ids})

    def accepted(self, message_ids: Mapping[int | str, str]) -> None:
        self._set({i: f"{ACCEPTED} {message_id}" for i, message_id in message_ids.items()})

    def take(self, hand_out: str) -> bool:
        """True for the first caller only: one hand-out of a batch the tick claimed may
        reach more than one task run (a redelivered message, a retried task)."""
        key = self._key(f"taken:{hand_out}")
        return bool(self._call(lambda: self.client.set(key, 1, nx=True, ex=TTL_SECONDS)))

    def forget(self, delivery_ids: Iterable[int | str], hand_out: str | None = None) -> None:
        names = [str(i) for i in delivery_ids]
        if hand_out is not None:
            names.append(f"taken:{hand_out}")  # the hand-out's mark, under the same prefix
        if names:
            self._call(lambda: self._each(args=[self.prefix, ",".join(names)]))

    def _set(self, values: Mapping[int | str, str]) -> None:
        if not values:
            return
        distinct = set(values.values())
        if len(distinct) == 1:
            ids = ",".join(map(str, values))
            args: list[str | int] = [self.prefix, ids, TTL_SECONDS, distinct.pop()]
            self._call(lambda: self._each(args=args))
            return
        keys = [self._key(delivery_id) for delivery_id in values]
        self._call(lambda: self._set_all(keys=keys, args=[TTL_SECONDS, *values.values()]))

    @staticmethod
    def _call(operation: Any) -> Any:
        try:
            return operation()
        except redis.RedisError as exc:
            raise JournalUnavailable(f"send journal unavailable: {exc}") from exc
