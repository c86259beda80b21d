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

from drip.data.prepared import PreparedStatements
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
        self._prepared: PreparedStatements | None = None
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
    def prepared(self) -> PreparedStatements:
        """PostgreSQL: hot-path statements on libpq connections of each thread (prepared.py)."""
        if self.is_sqlite:
            raise TypeError("prepared statements are for PostgreSQL")
        with self._statement_lock:
            if self._prepared is None:
                self._prepared = PreparedStatements(self.url)
            return self._prepared

    def dispose(self) -> None:
        if self.wal_checkpoints is not None:
            self.wal_checkpoints.stop()
        self.engine.dispose()
        with self._statement_lock:
            if self._prepared is not None:
                self._prepared.close()
                self._prepared = None


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
