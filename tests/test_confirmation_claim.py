"""A sender's claim reads the rows it claimed, not every pending signup.

Among thousands of unconfirmed signups, the statements of one claim must
find their rows by key: a plan that walks the subscribers' status index
costs time in proportion to the whole list, inside the transaction that on
SQLite holds the database's only write lock (every signup waits for it).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, insert, select, text

from drip.data.models import Consent, Subscriber
from drip.subscribers import confirmations
from tests.conftest import Stack

PENDING = 3000
DUE = 300


def _seed(stack: Stack) -> dict[str, int]:
    """PENDING unconfirmed signups; the last DUE of them due now, four of those no longer wanted."""
    now = stack.clock()
    people = [
        {"email": f"claim{n}@example.com", "first_name": f"P{n}", "status": "pending",
         "created_at": now}
        for n in range(PENDING)
    ]  # fmt: skip
    with stack.session() as session:
        session.execute(insert(Subscriber), people)
        rows = session.execute(select(Subscriber.email, Subscriber.id))
        ids = {email: id_ for email, id_ in rows}
        consents = [
            {"subscriber_id": ids[f"claim{n}@example.com"], "source": "api", "text": "yes",
             "text_version": "v1", "created_at": now,
             "confirmation_due_at": now if n >= PENDING - DUE else None}
            for n in range(PENDING)
        ]  # fmt: skip
        session.execute(insert(Consent), consents)
        unwanted = {
            "withdrawn": ids[f"claim{PENDING - 1}@example.com"],
            "confirmed": ids[f"claim{PENDING - 2}@example.com"],
            "bounced": ids[f"claim{PENDING - 3}@example.com"],
            "erased": ids[f"claim{PENDING - 4}@example.com"],
        }
        session.execute(
            Consent.__table__.update()
            .where(Consent.subscriber_id == unwanted["withdrawn"])
            .values(withdrawn_at=now)
        )
        session.execute(
            Consent.__table__.update()
            .where(Consent.subscriber_id == unwanted["confirmed"])
            .values(confirmed_at=now)
        )
        session.execute(
            Subscriber.__table__.update()
            .where(Subscriber.id == unwanted["bounced"])
            .values(status="bounced")
        )
        session.execute(
            Subscriber.__table__.update()
            .where(Subscriber.id == unwanted["erased"])
            .values(email=None, status="unsubscribed")
        )
    return unwanted


def _plans(stack: Stack, statements: list[tuple[str, Any]]) -> list[str]:
    explain = "EXPLAIN QUERY PLAN " if stack.backend == "sqlite" else "EXPLAIN "
    plans = []
    with stack.services.database.engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        for statement, parameters in statements:
            cursor = raw.cursor()
            cursor.execute(explain + statement, parameters)
            plans.append("\n".join(str(row) for row in cursor.fetchall()))
            cursor.close()
        connection.rollback()
    return plans


def test_a_claim_among_thousands_of_pending_signups_reads_only_its_rows(stack: Stack) -> None:
    unwanted = _seed(stack)
    engine = stack.services.database.engine
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE")):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        waiting = confirmations.claim_due(stack.services, limit=1000)
    finally:
        event.remove(engine, "before_cursor_execute", record)

    claimed = {w.subscriber_id for w in waiting}
    assert len(claimed) == DUE - len(unwanted)
    assert not claimed & set(unwanted.values()), "withdrawn, confirmed, bounced, erased: not sent"
    with stack.session() as session:
        still_due = session.scalar(
            select(text("count(*)"))
            .select_from(Consent)
            .where(
                Consent.subscriber_id.in_(unwanted.values()),
                Consent.confirmation_due_at.is_not(None),
            )
        )
    assert still_due == 0, "a confirmation no longer wanted leaves the queue"

    plans = _plans(stack, statements)
    assert plans, "the claim ran statements"
    for plan in plans:
        assert "ix_subscribers_status_created" not in plan, plan
        assert "SCAN subscribers" not in plan, plan
