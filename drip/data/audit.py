"""The audit log's one writer: who did what, to what, and when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from drip.data.models import AuditEntry


def audit(
    session: Session, actor: str, action: str, subject: str, now: datetime, **detail: Any
) -> None:
    """Record an action in the caller's transaction, so it lands only if the action does."""
    session.add(
        AuditEntry(at=now, actor=actor[:100], action=action, subject=subject, detail=detail)
    )
