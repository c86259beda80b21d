"""The fault plan: which requests get a refusal, a slow answer or a dropped connection.

A plan is JSON (the control API takes it as is)::

    {"seed": 7,
     "rules": [{"status": 429, "share": 0.5, "limit": 600, "reset_in": 2},
               {"status": 503, "next": 2},
               {"delay": 1.5, "share": 0.1},
               {"drop": true, "after_seconds": 0, "for_seconds": 30}],
     "bad_recipients": ["bounce@example.com"],
     "forbidden_keys": ["SG.no-mail-send"],
     "unverified_senders": ["someone@elsewhere.example"]}

A rule does one thing: answer ``status`` (401, 403, 429, 500, 502, 503, 504),
``drop`` the connection without answering, or only ``delay`` the answer; a
delay may come before a status or a drop too. It fires on requests that pass
all its selectors: ``share`` (a probability drawn from the plan's seeded RNG,
so a seed replays the same sequence), ``next`` (the next N requests it would
fire on) and the window ``after_seconds``/``for_seconds`` counted from when
the plan was set. The first rule that fires wins.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STATUSES = frozenset({401, 403, 429, 500, 502, 503, 504})
PLAN_KEYS = frozenset({"seed", "rules", "bad_recipients", "forbidden_keys", "unverified_senders"})
RULE_KEYS = frozenset(
    {
        "status",
        "delay",
        "drop",
        "share",
        "next",
        "after_seconds",
        "for_seconds",
        "limit",
        "reset_in",
    }
)


class PlanError(ValueError):
    """A fault plan that cannot be followed; the message names the bad part."""


@dataclass
class Rule:
    status: int | None = None
    delay: float = 0.0
    drop: bool = False
    share: float | None = None
    remaining: int | None = None
    starts: float | None = None
    ends: float | None = None
    limit: int = 600  # X-RateLimit-Limit on a 429
    reset_in: int = 1  # seconds until X-RateLimit-Reset on a 429

    def fires(self, now: float, rng: random.Random) -> bool:
        """Decide for one request; a ``next`` rule uses up one of its requests when it fires."""
        if self.remaining == 0:
            return False
        if (self.starts is not None and now < self.starts) or (
            self.ends is not None and now >= self.ends
        ):
            return False
        if self.share is not None and rng.random() >= self.share:
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True


class FaultPlan:
    """Rules plus the address and key lists; safe to consult from many handler threads."""

    def __init__(
        self,
        rules: list[Rule] | None = None,
        seed: int | None = None,
        bad_recipients: frozenset[str] = frozenset(),
        forbidden_keys: frozenset[str] = frozenset(),
        unverified_senders: frozenset[str] = frozenset(),
    ) -> None:
        self.rules = rules or []
        self.bad_recipients = bad_recipients
        self.forbidden_keys = forbidden_keys
        self.unverified_senders = unverified_senders
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def pick(self, now: float) -> Rule | None:
        if not self.rules:
            return None
        with self._lock:
            for rule in self.rules:
                if rule.fires(now, self._rng):
                    return rule
        return None


def parse_plan(data: Any, now: float) -> FaultPlan:
    if not isinstance(data, Mapping):
        raise PlanError('a fault plan is a JSON object, e.g. {"rules": [{"status": 503}]}')
    _no_unknown_keys(data, PLAN_KEYS, "fault plan")
    rules = data.get("rules", [])
    if not isinstance(rules, list):
        raise PlanError("fault plan: rules must be a list of rule objects")
    seed = data.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise PlanError("fault plan: seed must be an integer")
    return FaultPlan(
        rules=[parse_rule(rule, now, i) for i, rule in enumerate(rules)],
        seed=seed,
        bad_recipients=_lowercased(data, "bad_recipients"),
        forbidden_keys=frozenset(_strings(data, "forbidden_keys")),
        unverified_senders=_lowercased(data, "unverified_senders"),
    )


def parse_rule(data: Any, now: float, index: int = 0) -> Rule:
    where = f"fault rule {index}"
    if not isinstance(data, Mapping):
        raise PlanError(f'{where}: a rule is an object such as {{"status": 503, "next": 1}}')
    _no_unknown_keys(data, RULE_KEYS, where)
    rule = Rule(
        status=data.get("status"),
        delay=_number(data, "delay", where, 0.0),
        drop=data.get("drop", False) is True,
        share=_share(data, where),
        remaining=_count(data, "next", where),
    )
    for key in ("limit", "reset_in"):  # the 429's headers; the defaults stay unless given
        value = _count(data, key, where)
        if value is not None:
            setattr(rule, key, value)
    if rule.status is not None and rule.status not in STATUSES:
        raise PlanError(f"{where}: status must be one of {sorted(STATUSES)}")
    if rule.status is None and not rule.drop and not rule.delay:
        raise PlanError(f"{where}: say what to do: status, drop or delay")
    if rule.status is not None and rule.drop:
        raise PlanError(f"{where}: a rule either answers a status or drops, not both")
    _window(rule, data, now, where)
    return rule


def _window(rule: Rule, data: Mapping[str, Any], now: float, where: str) -> None:
    if "after_seconds" in data or "for_seconds" in data:
        rule.starts = now + _number(data, "after_seconds", where, 0.0)
    if "for_seconds" in data:
        rule.ends = (rule.starts or now) + _number(data, "for_seconds", where, 0.0)


def _no_unknown_keys(data: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise PlanError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")


def _number(data: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = data.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise PlanError(f"{where}: {key} must be a number of seconds >= 0")
    return float(value)


def _share(data: Mapping[str, Any], where: str) -> float | None:
    if "share" not in data:
        return None
    share = _number(data, "share", where, 0.0)
    if share > 1:
        raise PlanError(f"{where}: share is a fraction of requests, from 0 to 1")
    return share


def _count(data: Mapping[str, Any], key: str, where: str) -> int | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
        raise PlanError(f"{where}: {key} must be a whole number >= 0")
    return value


def _strings(data: Mapping[str, Any], key: str) -> list[str]:
    values = data.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise PlanError(f"fault plan: {key} must be a list of strings")
    return values


def _lowercased(data: Mapping[str, Any], key: str) -> frozenset[str]:
    # Addresses compare case-insensitively, as SendGrid's duplicate check does.
    return frozenset(v.lower() for v in _strings(data, key))
