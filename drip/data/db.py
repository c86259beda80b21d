"""Engine and sessions for SQLite (development) and PostgreSQL (production)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, bindparam, create_engine, event, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from drip.data.wal_checkpoints import WalCheckpoints


def normalize_url(url: str) -> str:
    # psycopg 3 is the driver we ship; a plain postgresql:// URL would ask for psycopg2.
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def _configure_sqlite(engine: Engine) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE for every transaction.

    SQLite has no FOR UPDATE (SQLAlchemy silently drops it on that dialect).
    Taking the write lock at BEGIN makes each transaction's reads and
    conditional updates one atomic step, and a second writer waits instead of
    failing half-way with "database is locked".
    """

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


# How the single-statement pool's connections name themselves to PostgreSQL
# (pg_stat_activity.application_name).
STATEMENTS_APPLICATION_NAME = "drip single statements"


class Database:
    """One engine and its session factory; created by create_app, never at import."""

    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = normalize_url(url)
        if self.is_sqlite:
            self._ensure_sqlite_dir()
            # Workers run in threads in tests and in-process tools: a connection may change thread.
            engine_options.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        else:
            engine_options.setdefault("pool_pre_ping", True)
            # psycopg prepares a statement after five runs and PostgreSQL then
            # plans it once for any parameters: for "id IN (1000 ids) AND
            # status = 'queued'" that generic plan scans every queued row
            # through the partial index instead of a thousand primary-key
            # lookups (measured: 1 s instead of 10 ms a batch at 1M rows).
            # connect_timeout: a database that does not answer is reported as
            # unreachable in seconds, not after the system's TCP timeout.
            engine_options.setdefault(
                "connect_args", {"prepare_threshold": None, "connect_timeout": 5}
            )
        self.engine = create_engine(self.url, **engine_options)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._statement_engine: Engine | None = None
        self._statement_lock = threading.Lock()
        # SQLite: checkpoints for the connections that write signups (wal_checkpoints.py).
        path = self.engine.url.database if self.is_sqlite else None
        self.wal_checkpoints = WalCheckpoints(path) if path and path != ":memory:" else None

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    def _ensure_sqlite_dir(self) -> None:
        path = self.url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self.sessions() as session, session.begin():
            yield session

    @property
    def statements(self) -> Engine:
        """PostgreSQL: a second, small pool for single statements on a hot path (a signup).

        Each statement commits by itself (autocommit: no BEGIN and COMMIT round
        trips), a connection is not pinged before use (the caller retries once
        on a dropped connection instead), and statements are prepared on the
        server at once, so PostgreSQL plans each only once per connection. Only
        for statements whose every lookup is by a unique key: a generic plan is
        then the right plan (see the main engine for why it is not elsewhere).
        SQLite: the main engine.
        """
        if self.is_sqlite:
            return self.engine
        with self._statement_lock:
            if self._statement_engine is None:
                self._statement_engine = create_engine(
                    self.url,
                    isolation_level="AUTOCOMMIT",
                    pool_pre_ping=False,
                    # Each statement commits by itself: a connection given back holds
                    # no transaction, so there is nothing to roll back.
                    pool_reset_on_return=None,
                    connect_args={
                        "prepare_threshold": 0,
                        "connect_timeout": 5,
                        "application_name": STATEMENTS_APPLICATION_NAME,
                    },
                )
            return self._statement_engine

    def dispose(self) -> None:
        if self.wal_checkpoints is not None:
            self.wal_checkpoints.stop()
        self.engine.dispose()
        with self._statement_lock:
            if self._statement_engine is not None:
                self._statement_engine.dispose()
                self._statement_engine = None


def bulk_update(
    session: Session, table: Table, rows: list[dict[str, Any]], match: dict[str, str]
) -> int:
    """UPDATE many rows, each with its own values, in one statement on PostgreSQL;
    returns how many rows matched.

    ``match`` maps row keys to the columns they must equal (the WHERE); every
    other key is a column to set. On PostgreSQL the rows travel as arrays
    through unnest(), one round trip however many rows; elsewhere (SQLite,
    in-process, no round trips to save) it is an executemany.
    """
    if not rows:
        return 0
    keys = list(rows[0])
    setting = [key for key in keys if key not in match]
    if session.get_bind().dialect.name != "postgresql":
        statement = (
            update(table)
            .where(*(table.c[column] == bindparam(key) for key, column in match.items()))
            .values({key: bindparam(key) for key in setting})
        )
        return int(session.connection().execute(statement, rows).rowcount)
    dialect = postgresql.dialect()
    arrays = ", ".join(
        f"CAST(:{key} AS {table.c[match.get(key, key)].type.compile(dialect=dialect)}[])"
        for key in keys
    )
    sql = (
        f"UPDATE {table.name} AS t SET {', '.join(f'{key} = v.{key}' for key in setting)} "
        f"FROM unnest({arrays}) AS v({', '.join(keys)}) "
        f"WHERE {' AND '.join(f't.{column} = v.{key}' for key, column in match.items())}"
    )
    result = session.execute(text(sql), {key: [row[key] for row in rows] for key in keys})
    return int(getattr(result, "rowcount", 0))


def upsert_into(bind: Any, table: Any) -> Any:
    """An INSERT with ON CONFLICT for ``bind``'s dialect (PostgreSQL or SQLite).

    ``bind`` is a Session or a Connection; ``table`` a Table or a mapped class.
    Both dialects spell ON CONFLICT the same way, so callers need not care which.
    """
    engine = bind.get_bind() if isinstance(bind, Session) else bind
    dialect = engine.dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
