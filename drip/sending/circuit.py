"""The sending circuit: when the provider refuses our credentials, stop sending until they work.

A 401 or 403 from SendGrid means every further request would be refused too,
so a worker that sees one opens the circuit. While it is open the tick hands
out nothing (the due backlog grows where operators can see it) except one
probe batch every ``PROBE_SECONDS`` (half-open); the first batch the provider
accepts again closes the circuit and sending resumes by itself.

The state is one row of the ``heartbeats`` table named ``sending-circuit``:
``at`` is when the state last changed or was last probed, ``detail`` holds
``{state, reason, opened_at}``. Every change is a conditional UPDATE, so two
ticks at once still send only one probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from drip.data.db import Database, upsert_into
from drip.data.models import Heartbeat

NAME = "sending-circuit"
PROBE_SECONDS = 300.0
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


@dataclass(frozen=True)
class CircuitStatus:
    open: bool
    reason: str = ""
    since: datetime | None = None  # when it opened
    state: str = CLOSED
    changed_at: datetime | None = None  # when it opened or was last probed


def status(database: Database) -> CircuitStatus:
    with database.session() as session:
        beat = session.get(Heartbeat, NAME)
        return _status(beat)


def _status(beat: Heartbeat | None) -> CircuitStatus:
    if beat is None or beat.detail.get("state", CLOSED) == CLOSED:
        return CircuitStatus(open=False)
    detail = beat.detail
    opened_at = detail.get("opened_at")
    return CircuitStatus(
        open=True,
        reason=str(detail.get("reason", "")),
        since=datetime.fromisoformat(opened_at) if opened_at else beat.at,
        state=str(detail.get("state")),
        changed_at=beat.at,
    )


def open_circuit(database: Database, reason: str, *, now: datetime) -> None:
    """Stop sending. Already open: keep when it opened, restart the wait for the next probe."""
    with database.session() as session:
        _ensure_row(session, now)
        current = _status(session.get(Heartbeat, NAME, with_for_update=True))
        since = current.since if current.open and current.since else now
        # Never move the probe clock back: a refused probe was claimed at `changed_at`,
        # perhaps by a tick whose clock runs ahead of this worker's.
        at = max(now, current.changed_at) if current.open and current.changed_at else now
        _write(session, at, {"state": OPEN, "reason": reason[:500], "opened_at": since})


def close_circuit(database: Database, *, now: datetime) -> bool:
    """Resume sending; True when the circuit was open. Cheap when it is already closed."""
    with database.session() as session:
        return close_in(session, now=now)


def close_in(session: Session, *, now: datetime) -> bool:
    """close_circuit inside the caller's transaction (a sender's outcome write)."""
    beat = session.get(Heartbeat, NAME, populate_existing=True)
    if not _status(beat).open:
        return False
    _write(session, now, {"state": CLOSED, "reason": "", "opened_at": None})
    return True


def claim_probe(database: Database, *, now: datetime, probe_seconds: float = PROBE_SECONDS) -> bool:
    """True for exactly one caller once the circuit has been open ``probe_seconds``.

    The caller then sends one batch: accepted closes the circuit, refused
    opens it again for another ``probe_seconds``.
    """
    with database.session() as session:
        current = _status(session.get(Heartbeat, NAME))
        if not current.open:
            return False
        detail = {"state": HALF_OPEN, "reason": current.reason, "opened_at": current.since}
        won = session.execute(
            update(Heartbeat)
            .where(
                Heartbeat.name == NAME,
                Heartbeat.at <= now - timedelta(seconds=probe_seconds),
            )
            .values(at=now, detail=_serializable(detail))
        )
        return bool(won.rowcount)  # type: ignore[attr-defined]


def _ensure_row(session: Session, now: datetime) -> None:
    session.execute(
        upsert_into(session, Heartbeat)
        .values(name=NAME, at=now, detail={"state": CLOSED})
        .on_conflict_do_nothing()
    )


def _write(session: Session, now: datetime, detail: dict[str, Any]) -> None:
    session.execute(
        update(Heartbeat).where(Heartbeat.name == NAME).values(at=now, detail=_serializable(detail))
    )


def _serializable(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in detail.items()}
