"""Send one claimed batch of same-lesson deliveries and record every outcome.

1. Claim: queued -> sending, with a lease, only for rows still queued.
2. Re-check each subscriber right before sending: unsubscribed, bounced,
   complained or erased since the tick means skipped, never sent.
3. Render the lesson once, or twice when some recipients already bought
   (buyers get the course's note for buyers instead of the call to action);
   each recipient gets only their substitutions.
4. Send. A refused request is split in halves until the bad recipient is
   alone, so one bad address never blocks 999 good ones.
5. Record: sent (with the provider's message id), failed, retrying (a 429
   after its reset; 503 or a refused connection with backoff; a timeout or
   500/502/504 with backoff and flagged possible_duplicate), or back to
   queued, attempt not counted, when our credentials were refused: that opens
   the circuit (drip/circuit.py), and the next accepted batch closes it.

While it works, the worker renews the batch's lease (drip/sending/lease.py)
and keeps a send journal in Redis (drip/sending/journal.py), so that a
provider's answer is never dropped: the outcome is written with retries until
the database answers, and a worker that takes over a batch whose outcome was
never written learns from the journal whether it was accepted (recorded as
sent, not resent), may have been posted (resent, flagged possible_duplicate)
or never left (resent, unflagged). Outcomes are written only for rows this
worker still holds (status sending, its own attempt), so a late write never
overwrites the work of a worker that took over.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    Integer,
    String,
    Table,
    and_,
    any_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType
from tenacity import (
    Retrying,
    before_sleep_log,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

from drip.clock import system_clock
from drip.course import render
from drip.course.model import Course
from drip.data.db import Database, bulk_update
from drip.data.models import (
    SENDABLE_ENROLLMENT,
    Delivery,
    DeliveryStatus,
    Enrollment,
    EnrollmentStatus,
    Subscriber,
)
from drip.mail.base import (
    Batch,
    Mailer,
    OutcomeUnknown,
    PermanentBatchError,
    RateLimited,
    Recipient,
    SendingDisabled,
    SendResult,
    TransientError,
)
from drip.sending import circuit
from drip.sending.buyers import buyers, has_bought
from drip.sending.dispatch import MAX_ATTEMPTS, retry_delay
from drip.sending.journal import ACCEPTED, POSTING, JournalUnavailable, SendJournal
from drip.sending.lease import LeaseKeeper
from drip.tokens import Links

log = logging.getLogger(__name__)

PAUSED = EnrollmentStatus.PAUSED.value
# When a 429 carries no X-RateLimit-Reset, and how widely to spread the return after one.
RATE_LIMIT_FALLBACK_SECONDS = 60.0
RATE_LIMIT_JITTER_SECONDS = 5.0
# Marks a delivery waiting for a rate limit's reset: the provider said when, so it waits.
WAITING_FOR_RESET = "waiting for the rate limit to reset: "
# How long a worker keeps trying to record a batch's outcome while the database is
# away. Past it the journal still tells the next claimant what happened.
OUTCOME_WRITE_SECONDS = 900.0


@dataclass
class BatchReport:
    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    retrying: int = 0
    released: int = 0
    requests: int = 0
    possible_duplicates: int = 0
    disabled: str = ""  # why the provider refused our credentials; the circuit opens
    errors: list[str] = field(default_factory=list)


def unsubscribe_headers(unsubscribe_url: str) -> dict[str, str]:
    # RFC 8058 one-click: exactly one https URI and the One-Click POST marker.
    return {
        "List-Unsubscribe": f"<{unsubscribe_url}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


@lru_cache(maxsize=64)
def rendered_lesson(
    course: Course, number: int, base_url: str, buyer: bool = False
) -> render.RenderedEmail:
    return render.render_lesson(course, course.lesson(number), base_url, buyer=buyer)


# A send task takes a batch the tick handed out already claimed without writing it
# while this share of a lease is left on it: its first renewal (lease.py, a third of
# a lease after the take) then lands with a third of a lease to spare.
TAKE_LEFT = 2 / 3

# What sending a delivery needs to know, read as it is claimed.
_LOADED = (
    Delivery.id,
    Delivery.lesson,
    Delivery.attempts,
    Delivery.subscriber_id,
    Delivery.enrollment_id,
    Subscriber.email,
    Subscriber.first_name,
    Subscriber.status.label("subscriber_status"),
    Enrollment.status.label("enrollment_status"),
)
# And what tells whether this task may take it.
_STATE = (Delivery.status, Delivery.enqueued_at, Delivery.lease_until)


class _Loaded(NamedTuple):
    id: int
    lesson: int
    attempts: int  # including this attempt
    subscriber_id: int
    enrollment_id: int
    email: str | None
    first_name: str
    subscriber_status: str
    enrollment_status: str


def _by_id(session: Session) -> None:
    """Plan this transaction's statements from the batch's ids, whatever the statistics say.

    A batch's statements name their thousand rows by primary key. On a table that grew
    since it was last analyzed (a morning's million fresh rows) the planner took a
    "status = 'sending'" for rare and walked the partial index of open rows, or
    hashed the whole table, for every batch: 40-200 ms of the server a batch at
    200,000 rows instead of 15-20 (EXPLAIN ANALYZE). The conditions on status are
    therefore checked on the rows read by id, and no table is scanned or hashed.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "SELECT set_config('enable_seqscan', 'off', true),"
                " set_config('enable_hashjoin', 'off', true),"
                " set_config('enable_mergejoin', 'off', true)"
            )
        )


def _read(
    session: Session, ids: list[int], *, lock: bool, state: Sequence[Any] = _STATE
) -> tuple[list[Any], set[int]]:
    """The batch's rows by id, with their subscriber and enrollment, and who bought.

    On PostgreSQL one statement reads and asks who bought; the ids travel as one
    array (``= ANY``) rather than a thousand parameters that SQLAlchemy renders and
    psycopg parses every batch. With ``lock`` the rows are locked in id order (on
    SQLite the transaction holds the database's write lock from its start).
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    columns: tuple[Any, ...] = (*_LOADED, *state)
    if postgres:
        columns += (has_bought(Delivery.subscriber_id).label("buyer"),)
    query = (
        select(*columns)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .join(Enrollment, Enrollment.id == Delivery.enrollment_id)
        .where(_among(session, ids))
        .order_by(Delivery.id)
    )
    if lock and postgres:
        query = query.with_for_update(of=Delivery)
    rows = list(session.execute(query).all())
    if postgres:
        return rows, {row.subscriber_id for row in rows if row.buyer}
    return rows, buyers(session, {row.subscriber_id for row in rows})


def _claim(
    session: Session,
    delivery_ids: Sequence[int],
    now: datetime,
    lease: int,
    handed_over: datetime | None = None,
) -> tuple[list[_Loaded], set[int]]:
    """Claim the deliveries still queued among ``delivery_ids``: their rows and who bought.

    With ``handed_over`` (the tick's mark of a pre-claimed hand-out this task run
    alone may take, see ``_take_handed_out``) it also takes the rows still as the
    tick claimed them, renewing their lease; their attempt stays the first, and
    they lose the mark, so that no other run of the hand-out can take them.

    The rows are read and locked by id, the conditions checked on what was read, and
    the claimed ones updated by id (``_by_id``): a second claimant waits for the
    first one's transaction and then finds them claimed.
    """
    ids = list(delivery_ids)
    if not ids:
        return [], set()
    _by_id(session)
    if session.get_bind().dialect.name == "postgresql":
        return _claim_in_one_statement(session, ids, now, lease, handed_over)
    rows, bought = _read(session, ids, lock=True)
    queued = [row for row in rows if row.status == DeliveryStatus.QUEUED.value]
    as_made = [] if handed_over is None else [r for r in rows if _as_made(r, handed_over)]
    until = now + timedelta(seconds=lease)
    if queued:
        session.execute(
            update(Delivery)
            .where(_among(session, [row.id for row in queued]))
            .values(
                status=DeliveryStatus.SENDING.value,
                lease_until=until,
                attempts=Delivery.attempts + 1,
            )
        )
    if as_made:
        session.execute(
            update(Delivery)
            .where(_among(session, [row.id for row in as_made]))
            .values(lease_until=until, enqueued_at=None)
        )
    claimed = [_loaded(row, row.attempts + 1) for row in queued]
    claimed += [_loaded(row, row.attempts) for row in as_made]
    return claimed, {row.subscriber_id for row in claimed} & bought


def _claim_in_one_statement(
    session: Session, ids: list[int], now: datetime, lease: int, handed_over: datetime | None
) -> tuple[list[Any], set[int]]:
    """PostgreSQL: claim, read each subscriber and enrollment and ask who bought, at once.

    The ids travel with the statuses to match as arrays through unnest(): a status
    compared with a constant would let the planner walk the partial index of open
    rows instead of the primary key (``_by_id``).
    """
    wanted = (
        func.unnest(
            _as_array("ids", ids, _IDS),
            _as_array("queued", [_QUEUED] * len(ids), _STATUSES),
            _as_array("sending", [_SENDING] * len(ids), _STATUSES),
        )
        .table_valued("id", "queued", "sending")
        .render_derived(name="wanted")
    )
    queued = Delivery.status == wanted.c.queued
    claimable: Any = queued
    claiming = update(Delivery).values(
        status=DeliveryStatus.SENDING.value,
        lease_until=now + timedelta(seconds=lease),
        attempts=Delivery.attempts + case((queued, 1), else_=0),
    )
    if handed_over is not None:
        claimable = or_(
            queued,
            and_(
                Delivery.status == wanted.c.sending,
                Delivery.attempts == 1,
                Delivery.enqueued_at == handed_over,
            ),
        )
        claiming = claiming.values(enqueued_at=case((queued, Delivery.enqueued_at), else_=None))
    rows = session.execute(
        claiming.where(
            Delivery.id == wanted.c.id,
            claimable,
            Subscriber.id == Delivery.subscriber_id,
            Enrollment.id == Delivery.enrollment_id,
        ).returning(*_LOADED, has_bought(Delivery.subscriber_id).label("buyer"))
    ).all()
    loaded = list(rows)
    return loaded, {row.subscriber_id for row in loaded if row.buyer}


_STATUSES = postgresql.ARRAY(String(16))
_QUEUED, _SENDING = DeliveryStatus.QUEUED.value, DeliveryStatus.SENDING.value


def _loaded(row: Any, attempts: int) -> _Loaded:
    return _Loaded(*row[: len(_LOADED)])._replace(attempts=attempts)


def _as_made(row: Any, handed_out_at: datetime) -> bool:
    """Still as the tick inserted it: claimed, first attempt, its hand-out mark.

    Whoever took a row since changed one of these: a claim after a reclaim counts
    a second attempt, a reclaim or a release leaves "sending", a takeover
    through ``_claim`` drops the mark.
    """
    return (
        row.status == DeliveryStatus.SENDING.value
        and row.attempts == 1
        and row.enqueued_at == handed_out_at
    )


def _take_handed_out(
    database: Database,
    delivery_ids: Sequence[int],
    handed_out_at: datetime,
    hand_out: str,
    now: datetime,
    lease: int,
    journal: SendJournal | None,
) -> tuple[list[Any], set[int]]:
    """Take a batch the tick handed out already claimed (dispatch.run_tick).

    The broker may deliver one hand-out to more than one task run (a worker killed
    mid-batch gets its message redelivered; a task retried after an outage runs
    again), so the first run marks it taken in the journal, atomically. That run
    reads the rows still as the tick made them without writing a thing, if
    TAKE_LEFT of a lease is left (a reclaim needs the lease run out, and this
    worker renews it a third of a lease from now, and every third after);
    the rest it claims, the mark moved on so that no later run can match them.
    A later run claims only what went back to the queue meanwhile: rows the first
    run may have sent are left to the reclaim once their lease runs out, which
    counts a second attempt and reads the journal, as after any dead worker.
    Without a journal no run can be told from another, so each claims.
    """
    ids = list(delivery_ids)
    if journal is None:
        with database.session() as session:
            return _claim(session, ids, now, lease, handed_over=handed_out_at)
    try:
        first = journal.take(hand_out)
    except JournalUnavailable as exc:
        # Nothing could be noted before posting either: leave them to the reclaim.
        log.warning("%s", exc)
        first = False
    with database.session() as session:
        if not first:
            return _claim(session, ids, now, lease)
        _by_id(session)
        # Told by the server in one column, not a thousand times in Python; a column,
        # not a condition, so that the rows are still found by id (``_by_id``).
        free = and_(
            Delivery.status == DeliveryStatus.SENDING.value,
            Delivery.attempts == 1,
            Delivery.enqueued_at == handed_out_at,
            Delivery.lease_until >= now + timedelta(seconds=lease * TAKE_LEFT),
        ).label("free")
        rows, bought = _read(session, ids, lock=False, state=(free,))
        taken = [row for row in rows if row.free]
        if len(taken) == len(ids):
            return taken, bought
        held = {row.id for row in taken}
        more, more_bought = _claim(
            session, [i for i in ids if i not in held], now, lease, handed_over=handed_out_at
        )
        return taken + more, ({row.subscriber_id for row in taken} & bought) | more_bought


def _among(session: Session, ids: list[int]) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        return Delivery.id == any_(_as_array("ids", ids, _IDS))
    return Delivery.id.in_(ids)


_IDS = postgresql.ARRAY(Integer)
_PLAIN = re.compile(r"[a-z_]+")


def _as_array(name: str, values: list[Any], type_: Any) -> Any:
    """A parameter of ``values`` as an array literal cast to ``type_``.

    Untyped, so that the server reads the literal as the array it is cast to, once,
    while planning: a text parameter would be cast at run time, and a planner that
    cannot see the array's length planned parallel scans for a batch of ids.
    """
    return sql_cast(bindparam(name, _array(values), type_=NullType()), type_)


def _array(values: list[Any]) -> Any:
    """A list of ids, counts or plain words as PostgreSQL's array literal, else the list.

    psycopg adapts a list element by element in Python (0.5 ms for 1,000 ids, a few
    lists a batch); the literal is one join, cast to the array type in the statement.
    """
    if all(type(value) is int for value in values):
        return "{" + ",".join(map(str, values)) + "}"
    if all(type(v) is str and _PLAIN.fullmatch(v) and v != "null" for v in values):
        return "{" + ",".join(values) + "}"
    return values


def _recipients(rows: list[Any], links: Links) -> tuple[Recipient, ...]:
    # The links of a batch differ only in their tokens, whose characters (base 36, ".",
    # "~" and URL-safe base64) are all usable in an email: checking the first recipient's
    # links checks the base URL they all share.
    return tuple(_recipient(row, links, check=index == 0) for index, row in enumerate(rows))


def _recipient(row: Any, links: Links, check: bool = True) -> Recipient:
    unsubscribe_url, preferences_url, cta_url = links.lesson(row.subscriber_id, row.id)
    values = render.personal_values(
        first_name=row.first_name,
        unsubscribe_url=unsubscribe_url,
        preferences_url=preferences_url,
        cta_url=cta_url,
        check=check,
    )
    return Recipient(
        key=str(row.id),
        email=row.email,
        name=row.first_name,
        substitutions=values,
        headers=unsubscribe_headers(unsubscribe_url),
    )


class _Outcomes:
    """Collects what happened to each delivery, then writes it in a few statements."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}
        self.flagged: set[int] = set()  # may have reached the provider before: possible_duplicate

    def set(self, delivery_id: int, **values: Any) -> None:
        self.rows[delivery_id] = values

    def write(self, session: Session, attempts: dict[int, int]) -> bool:
        """Write every outcome for rows this worker still holds; True if it held them all."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        sending = DeliveryStatus.SENDING.value
        for delivery_id, values in self.rows.items():
            row = {"b_id": delivery_id, "b_attempts": attempts[delivery_id], "b_status": sending}
            row.update(values)
            if delivery_id in self.flagged:
                row["possible_duplicate"] = True
            # Keys in the order they were set: each outcome sets its columns in one order.
            groups.setdefault(tuple(row), []).append(row)
        written = sum(_update_held(session, rows) for rows in groups.values())
        return written == len(self.rows)


def _update_held(session: Session, rows: list[dict[str, Any]]) -> int:
    """Set each row's values on the deliveries still in b_status under its attempt count.

    On PostgreSQL one statement: the ids and attempt counts travel as arrays
    through unnest(), and so does any value that differs between rows; a value
    the whole batch shares (sent, its time and message id, after an accepted
    request) is one parameter. Elsewhere an executemany.
    """
    table = cast(Table, Delivery.__table__)
    # The status to match (b_status, "sending") travels as an array on PostgreSQL, though
    # it is the same for every row: compared with a constant, the planner may pick the
    # partial index of open rows for status = 'sending' (whose dead entries pile up
    # during a send) over a thousand primary-key lookups.
    if session.get_bind().dialect.name != "postgresql":
        match = {"b_id": "id", "b_status": "status", "b_attempts": "attempts"}
        return bulk_update(session, table, rows, match=match)
    first = rows[0]
    shared = [key for key in first if key[:2] != "b_" and all(r[key] == first[key] for r in rows)]
    varying = [key for key in first if key not in shared]
    dialect = postgresql.dialect()

    def type_of(key: str) -> str:
        column = {"b_id": "id", "b_attempts": "attempts", "b_status": "status"}.get(key, key)
        return str(table.c[column].type.compile(dialect=dialect))

    setting = [f"{key} = CAST(:{key} AS {type_of(key)})" for key in shared] + [
        f"{key} = v.{key}" for key in varying if key[:2] != "b_"
    ]
    arrays = ", ".join(f"CAST(:{key} AS {type_of(key)}[])" for key in varying)
    sql = (
        f"UPDATE {table.name} AS t SET {', '.join(setting)} "
        f"FROM unnest({arrays}) AS v({', '.join(varying)}) "
        "WHERE t.id = v.b_id AND t.attempts = v.b_attempts AND t.status = v.b_status"
    )
    params: dict[str, Any] = {key: first[key] for key in shared}
    params |= {key: _array([row[key] for row in rows]) for key in varying}
    result = session.execute(text(sql), params)
    return int(getattr(result, "rowcount", 0))


def _until_the_database_answers() -> Retrying:
    """Retry a write while the database is unreachable: bounded, each wait logged."""
    return Retrying(
        retry=retry_if_exception_type((OperationalError, InterfaceError)),
        wait=wait_exponential(multiplier=0.5, max=5),
        stop=stop_after_delay(OUTCOME_WRITE_SECONDS),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )


def deliver_batch(
    database: Database,
    course: Course,
    mailer: Mailer,
    links: Links,
    delivery_ids: Sequence[int],
    *,
    lease_seconds: int,
    now: datetime | None = None,
    clock: Callable[[], datetime] | None = None,
    journal: SendJournal | None = None,
    claimed_at: datetime | None = None,
    hand_out: str = "",
) -> BatchReport:
    """Send the deliveries still queued among ``delivery_ids``.

    ``clock`` is the app's clock (a fake one in tests); ``now`` pins it to one moment.
    The ``journal`` is what lets a worker taking over a batch tell accepted from
    lost; in-process callers that never take over another's batch may go without.
    ``claimed_at`` says the tick handed the batch out already claimed, with that
    mark (``dispatch.run_tick``): its rows need no claiming write. ``hand_out``
    names that hand-out, the same for every run of it (the Celery task id).
    """
    clock = _pinned(now) if now is not None else clock or system_clock
    now = clock()
    report = BatchReport()
    taken = None
    if claimed_at is not None and delivery_ids:
        ids = list(delivery_ids)
        taken = hand_out or f"{claimed_at.isoformat()}:{ids[0]}:{ids[-1]}:{len(ids)}"
        rows, bought = _take_handed_out(
            database, ids, claimed_at, taken, now, lease_seconds, journal
        )
    else:
        with database.session() as session:
            rows, bought = _claim(session, delivery_ids, now, lease_seconds)
    claimed = [row.id for row in rows]
    report.claimed = len(claimed)
    if not claimed:
        return report
    with LeaseKeeper(database, claimed, lease_seconds=lease_seconds, clock=clock):
        _deliver_claimed(
            database, course, mailer, links, rows, bought, report, clock, journal, taken
        )
    return report


def _deliver_claimed(
    database: Database,
    course: Course,
    mailer: Mailer,
    links: Links,
    rows: list[Any],
    bought: set[int],
    report: BatchReport,
    clock: Callable[[], datetime],
    journal: SendJournal | None,
    taken: str | None = None,
) -> None:
    claimed = [row.id for row in rows]
    sender = _Sender(mailer, {row.id: row.attempts for row in rows}, report, clock, journal)
    rows = sender.recall(rows)
    sendable: dict[tuple[int, bool], list[Any]] = {}
    paused: list[Any] = []
    for row in rows:
        if row.subscriber_status == "active" and row.enrollment_status == PAUSED:
            paused.append(row)
        elif (
            row.subscriber_status != "active"
            or row.enrollment_status not in SENDABLE_ENROLLMENT
            or not row.email
        ):
            sender.outcomes.set(
                row.id, status=DeliveryStatus.SKIPPED.value, error=row.subscriber_status
            )
            report.skipped += 1
        else:
            sendable.setdefault((row.lesson, row.subscriber_id in bought), []).append(row)
    for (lesson, buyer), lesson_rows in sendable.items():
        sender.send(_lesson_batch(course, links, lesson, lesson_rows, buyer=buyer))
    if report.disabled:
        # The circuit first: released rows must not be queued again before it is open,
        # or a tick in between hands them out to a provider that refuses our key.
        for attempt in _until_the_database_answers():
            with attempt:
                circuit.open_circuit(database, report.disabled, now=clock())
    for attempt in _until_the_database_answers():
        # One transaction: the outcomes, and after an accepted request the circuit closed
        # and the lessons backing off after the provider's errors pulled forward.
        with attempt, database.session() as session:
            _by_id(session)
            held_all = sender.outcomes.write(session, sender.attempts)
            _hand_back(session, paused)
            if report.sent and not report.disabled:
                _provider_takes_batches(session, clock())
    report.skipped += len(paused)
    if held_all and journal is not None:
        # The database holds every outcome now; a row another worker took over keeps
        # its entry for that worker to read. No row of the hand-out is as the tick
        # made it any more, so a later run of it could take none: its mark may go too.
        _quietly(journal.forget, claimed, taken)


def _quietly(operation: Callable[..., None], *args: Any) -> None:
    """A journal write whose failure costs at most a needless flag later: logged, not raised."""
    try:
        operation(*args)
    except JournalUnavailable as exc:
        log.warning("%s", exc)


def _hand_back(session: Session, rows: list[Any]) -> None:
    """Lessons of a course paused after the tick claimed them: not sent, not lost.

    Pausing removes the lessons still queued and rewinds the course; one a send
    task had already claimed is removed here the same way, so resuming sends it.
    """
    for row in rows:
        session.execute(delete(Delivery).where(Delivery.id == row.id))
        session.execute(
            update(Enrollment)
            .where(
                Enrollment.id == row.enrollment_id,
                Enrollment.status == PAUSED,
                Enrollment.next_lesson > row.lesson,
            )
            .values(next_lesson=row.lesson)
        )


def _pinned(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def _provider_takes_batches(session: Session, now: datetime) -> None:
    """An accepted batch proves the credentials work again (a half-open probe closes the
    circuit), and lessons backing off after the provider's errors go at the next tick,
    not minutes or an hour later when their backoff would have run out.

    Retrying rows only ever come from a batch the provider did not take as a whole (a 5xx,
    a refused connection, no answer), so one accepted batch says they may go now. Rows
    waiting for a rate limit's reset keep waiting: the provider said when they may go.
    """
    circuit.close_in(session, now=now)
    session.execute(
        update(Delivery)
        .where(
            Delivery.status == DeliveryStatus.RETRYING.value,
            Delivery.next_attempt_at > now,
            Delivery.error.not_like(f"{WAITING_FOR_RESET}%"),
        )
        .values(next_attempt_at=now)
        .execution_options(synchronize_session=False)
    )


def possible_duplicates(database: Database, course_slug: str | None = None) -> int:
    """Deliveries that may have reached a subscriber twice (a retry after an unknown outcome)."""
    query = select(func.count()).select_from(Delivery).where(Delivery.possible_duplicate)
    if course_slug is not None:
        query = query.where(Delivery.course_slug == course_slug)
    with database.session() as session:
        return int(session.scalar(query) or 0)


def _lesson_batch(
    course: Course, links: Links, lesson: int, rows: list[Any], *, buyer: bool = False
) -> Batch:
    rendered = rendered_lesson(course, lesson, links.base_url, buyer)
    return Batch(
        from_email=course.sender_email,
        from_name=course.sender_name,
        reply_to=course.reply_to,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        recipients=_recipients(rows, links),
        category=f"lesson-{lesson:02d}",
    )


class _Sender:
    """Sends batches and notes each delivery's outcome; one per claimed set of deliveries.

    ``attempts`` holds each delivery's attempt count including this one.
    """

    def __init__(
        self,
        mailer: Mailer,
        attempts: dict[int, int],
        report: BatchReport,
        clock: Callable[[], datetime],
        journal: SendJournal | None = None,
    ) -> None:
        self.mailer = mailer
        self.attempts = attempts
        self.report = report
        # Read after each send: a batch may have waited for the send rate first.
        self.clock = clock
        self.journal = journal
        self.outcomes = _Outcomes()

    def recall(self, rows: list[Any]) -> list[Any]:
        """What the journal knows of earlier attempts; returns the rows still to send.

        Accepted ones are recorded as sent; ones that may have been posted go
        again flagged. Without a journal to read, nothing is posted: the batch
        goes back to the queue.
        """
        if self.journal is None:
            return rows
        if all(row.attempts == 1 for row in rows):
            # Claimed for the first time (attempts counts this claim): no earlier
            # attempt of theirs can have a note. A released row gets its attempt back
            # only when its request was refused for certain or never made; an operator's
            # retry (attempts back to 0) follows a written outcome, whose notes went then.
            return rows
        try:
            known = self.journal.read([row.id for row in rows])
        except JournalUnavailable as exc:
            self.report.errors.append(str(exc))
            for row in rows:
                self._release_one(row.id, str(exc))
            self.report.released += len(rows)
            return []
        still: list[Any] = []
        now = self.clock()
        for row in rows:
            entry = known.get(row.id)
            if entry is not None and entry.state == ACCEPTED:
                self._sent(row.id, entry.message_id, now)
                continue
            if entry is not None and entry.state == POSTING:
                self.outcomes.flagged.add(row.id)
                self.report.possible_duplicates += 1
            still.append(row)
        return still

    def send(self, batch: Batch) -> None:
        """Send a batch; a refused one is split in halves until each bad recipient is alone.

        One bad address among n costs at most 2*ceil(log2(n)) + 1 requests.
        """
        if self.report.disabled:
            self.release(batch, self.report.disabled)  # the key was refused a moment ago
            return
        keys = [recipient.key for recipient in batch.recipients]
        if not self._journal(batch, self._posting, keys):
            return
        self.report.requests += 1
        try:
            results = self.mailer.send(batch)
        except OutcomeUnknown as exc:
            self.retry(batch, exc)  # the journal keeps "posting": it may have arrived
            return
        except (PermanentBatchError, SendingDisabled, RateLimited, TransientError) as exc:
            # A definite answer, or no connection at all: nothing arrived.
            self._forget(keys)
            self.refused(batch, exc)
            return
        if self.journal is not None:
            accepted = {r.key: r.message_id for r in results if r.accepted}
            _quietly(self.journal.accepted, accepted)
        self.record(results)

    def _journal(self, batch: Batch, write: Callable[[list[str]], None], keys: list[str]) -> bool:
        """Note the request before it leaves; a batch that cannot be noted is not posted,
        since a lost answer could then not be told from a request never made."""
        try:
            write(keys)
        except JournalUnavailable as exc:
            self.report.errors.append(str(exc))
            self.release(batch, str(exc))
            return False
        return True

    def _posting(self, keys: list[str]) -> None:
        if self.journal is not None:
            self.journal.posting(keys)

    def _forget(self, keys: list[str]) -> None:
        if self.journal is not None:
            _quietly(self.journal.forget, keys)

    def refused(self, batch: Batch, exc: Exception) -> None:
        if isinstance(exc, PermanentBatchError):
            if len(batch.recipients) == 1 or not exc.splittable:
                self.fail(batch, str(exc))
                return
            middle = len(batch.recipients) // 2
            self.send(replace(batch, recipients=batch.recipients[:middle]))
            self.send(replace(batch, recipients=batch.recipients[middle:]))
        elif isinstance(exc, SendingDisabled):
            self.report.disabled = str(exc)
            self.release(batch, str(exc))
        elif isinstance(exc, RateLimited):
            self.wait_for_reset(batch, exc)
        elif isinstance(exc, TransientError):
            self.retry(batch, exc)

    def fail(self, batch: Batch, error: str) -> None:
        for recipient in batch.recipients:
            self.outcomes.set(
                int(recipient.key), status=DeliveryStatus.FAILED.value, error=error[:500]
            )
        self.report.failed += len(batch.recipients)

    def release(self, batch: Batch, error: str) -> None:
        """Back to queued, as if never tried: the circuit decides when they go again."""
        for recipient in batch.recipients:
            self._release_one(int(recipient.key), error)
        self.report.released += len(batch.recipients)

    def _release_one(self, delivery_id: int, error: str) -> None:
        self.outcomes.set(
            delivery_id,
            status=DeliveryStatus.QUEUED.value,
            enqueued_at=None,
            lease_until=None,
            attempts=self.attempts[delivery_id] - 1,
            error=error[:500],
        )

    def _sent(self, delivery_id: int, message_id: str, at: datetime) -> None:
        self.outcomes.set(
            delivery_id,
            status=DeliveryStatus.SENT.value,
            sent_at=at,
            message_id=message_id[:100],
            error="",
        )
        self.report.sent += 1

    def wait_for_reset(self, batch: Batch, exc: RateLimited) -> None:
        """Try again once the provider's limit resets; waiting is no fault of the delivery."""
        reset = (
            datetime.fromtimestamp(exc.reset_at, UTC)
            if exc.reset_at
            else self.clock() + timedelta(seconds=RATE_LIMIT_FALLBACK_SECONDS)
        )
        # Jitter, so that the workers turned away together do not all come back together.
        at = max(reset, self.clock()) + timedelta(
            seconds=random.uniform(0, RATE_LIMIT_JITTER_SECONDS)
        )
        for recipient in batch.recipients:
            delivery_id = int(recipient.key)
            self.outcomes.set(
                delivery_id,
                status=DeliveryStatus.RETRYING.value,
                next_attempt_at=at,
                attempts=self.attempts[delivery_id] - 1,
                error=(WAITING_FOR_RESET + str(exc))[:500],
            )
        self.report.retrying += len(batch.recipients)
        self.report.errors.append(str(exc))

    def retry(self, batch: Batch, exc: TransientError | OutcomeUnknown) -> None:
        """Exponential backoff; after an unknown outcome the retry may deliver twice
        (SendGrid has no idempotency key)."""
        self.report.errors.append(str(exc))
        unknown = isinstance(exc, OutcomeUnknown)
        now = self.clock()
        for recipient in batch.recipients:
            delivery_id = int(recipient.key)
            tries = self.attempts[delivery_id]
            values: dict[str, Any] = {"error": str(exc)[:500]}
            if unknown:
                values["possible_duplicate"] = True
                self.report.possible_duplicates += 1
            if tries >= MAX_ATTEMPTS:
                self.outcomes.set(delivery_id, status=DeliveryStatus.FAILED.value, **values)
                self.report.failed += 1
                continue
            at = now + timedelta(seconds=retry_delay(tries))
            self.outcomes.set(
                delivery_id, status=DeliveryStatus.RETRYING.value, next_attempt_at=at, **values
            )
            self.report.retrying += 1

    def record(self, results: list[SendResult]) -> None:
        now = self.clock()  # one answer, one moment: the batch's rows share one write
        for result in results:
            if result.accepted:
                self._sent(int(result.key), result.message_id, now)
            else:
                self.outcomes.set(
                    int(result.key), status=DeliveryStatus.FAILED.value, error=result.error[:500]
                )
                self.report.failed += 1
