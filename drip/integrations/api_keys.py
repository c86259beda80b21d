"""API keys: made once, kept only as a hash, checked in constant time, revocable.

A key is 32 random bytes (256 bits). A fast hash (SHA-256) is enough to store
it: slow password hashes exist to make guessing low-entropy secrets costly, and
nobody can enumerate a 256-bit space however fast the hash is.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from drip.data.models import ApiKey

KEY_PREFIX = "drip_"
PREFIX_LENGTH = len(KEY_PREFIX) + 8


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Caller:
    key_id: int
    name: str
    scope: Scope

    @property
    def can_write(self) -> bool:
        return self.scope == Scope.WRITE


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(session: Session, name: str, scope: Scope, *, now: datetime) -> tuple[ApiKey, str]:
    """A new key; the plain key is returned here once and never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        scope=scope.value,
        prefix=key[:PREFIX_LENGTH],
        key_hash=_digest(key),
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row, key


def all_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke(session: Session, key_id_or_prefix: str, *, now: datetime) -> bool:
    """Revoke by id or prefix; True if a live key was revoked."""
    condition = (
        ApiKey.id == int(key_id_or_prefix)
        if key_id_or_prefix.isdigit()
        else ApiKey.prefix == key_id_or_prefix
    )
    row = session.scalar(select(ApiKey).where(condition))
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = now
    return True


def authenticate(session: Session, presented: str, *, now: datetime) -> Caller | None:
    """The caller a presented key stands for, or None (unknown, wrong or revoked)."""
    if not presented.startswith(KEY_PREFIX) or len(presented) > 200:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == presented[:PREFIX_LENGTH]))
    if row is None or row.revoked_at is not None:
        return None
    # Constant time, so response timing tells nothing about how much of the hash matched.
    if not hmac.compare_digest(row.key_hash, _digest(presented)):
        return None
    row.last_used_at = now
    return Caller(row.id, row.name, Scope(row.scope))
