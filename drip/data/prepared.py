"""PostgreSQL: a statement on a hot path run by libpq itself, on a connection of the thread's own.

A signup is one statement (drip/subscribers/subscriptions.py). Run through
psycopg's connection and a SQLAlchemy pool, the Python around that one round
trip (taking a connection and giving it back, a cursor, adapting thirteen
parameters, psycopg's prepared-statement bookkeeping, its wait loop) cost
more CPU than every other part of the signup (profiled in one process: 35%
of the request). Here the statement is prepared once per connection and
then run with libpq's PQexecPrepared through `psycopg.pq`, psycopg's
documented wrapper of libpq, which lets other threads run while it waits.

Each connection commits every statement by itself (no transaction is ever
open) and names itself STATEMENTS_APPLICATION_NAME in pg_stat_activity. A
connection the server dropped (a restart) is noticed on its next statement,
which then runs once more on a new one: a statement that failed on a broken
connection did not commit. Only for statements whose parameters are text or
a `datetime` (sent as timestamptz), never NULL, looked up by unique keys (a
generic plan is then the right plan).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import pq
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

# How these connections name themselves to PostgreSQL (pg_stat_activity.application_name).
STATEMENTS_APPLICATION_NAME = "drip single statements"
CONNECT_TIMEOUT_SECONDS = 5
# Parameter types as psycopg sends them: text as "unknown" (PostgreSQL takes the
# type the statement needs there), datetimes as timestamptz.
_UNKNOWN_OID = 0
_TIMESTAMPTZ_OID = 1184
_NAMED = re.compile(r"%\((\w+)\)s")

Value = str | datetime


@dataclass(frozen=True)
class Statement:
    """A statement with %(name)s parameters, turned into $1, $2... once."""

    name: bytes
    sql: bytes
    parameters: tuple[str, ...]
    types: tuple[int, ...]

    @classmethod
    def from_named(cls, name: str, sql: str, *, timestamps: frozenset[str]) -> Statement:
        order: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match[1] not in order:
                order.append(match[1])
            return f"${order.index(match[1]) + 1}"

        numbered = _NAMED.sub(number, sql)
        types = tuple(_TIMESTAMPTZ_OID if p in timestamps else _UNKNOWN_OID for p in order)
        return cls(name.encode(), numbered.encode(), tuple(order), types)


def _encoded(value: Value) -> bytes:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("a timestamptz parameter needs a time zone")
        return value.isoformat().encode()
    return value.encode()


class _ThreadConnection(threading.local):
    def __init__(self) -> None:
        self.pgconn: pq.abc.PGconn | None = None
        self.pid = 0
        self.prepared: set[bytes] = set()


class PreparedStatements:
    """Runs `Statement`s on one libpq connection per thread (and process)."""

    def __init__(self, url: str) -> None:
        uri = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.conninfo = make_conninfo(
            uri,
            application_name=STATEMENTS_APPLICATION_NAME,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
        ).encode()
        self._local = _ThreadConnection()
        self._opened: list[pq.abc.PGconn] = []
        self._lock = threading.Lock()

    def first_row(
        self, statement: Statement, values: Mapping[str, Value]
    ) -> tuple[bytes | None, ...] | None:
        """Run `statement`; its first row as text (None for NULL), or None without rows.

        Raises psycopg.OperationalError when no connection can be had or the
        server dropped it twice, and psycopg's error for the statement's own.
        """
        params = [_encoded(values[name]) for name in statement.parameters]
        for attempt in (1, 2):
            pgconn = self._connection()
            if statement.name not in self._local.prepared:
                self._check(pgconn, pgconn.prepare(statement.name, statement.sql, statement.types))
                self._local.prepared.add(statement.name)
            result = pgconn.exec_prepared(statement.name, params)
            if result.status == pq.ExecStatus.TUPLES_OK:
                if result.ntuples == 0:
                    return None
                return tuple(result.get_value(0, column) for column in range(result.nfields))
            if pgconn.status == pq.ConnStatus.BAD and attempt == 1:
                self._forget()
                continue
            self._check(pgconn, result)
            return None
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close every connection opened so far (by any thread): at shutdown only."""
        with self._lock:
            opened, self._opened = self._opened, []
        for pgconn in opened:
            pgconn.finish()

    def _connection(self) -> pq.abc.PGconn:
        local = self._local
        if local.pgconn is None or local.pid != os.getpid():
            pgconn = pq.PGconn.connect(self.conninfo)
            if pgconn.status != pq.ConnStatus.OK:
                message = pgconn.get_error_message()
                pgconn.finish()
                raise psycopg.OperationalError(f"connection failed: {message}")
            local.pgconn, local.pid, local.prepared = pgconn, os.getpid(), set()
            with self._lock:
                self._opened.append(pgconn)
        return local.pgconn

    def _forget(self) -> None:
        local = self._local
        if local.pgconn is not None:
            with self._lock:
                if local.pgconn in self._opened:
                    self._opened.remove(local.pgconn)
            local.pgconn.finish()
        local.pgconn, local.prepared = None, set()

    def _check(self, pgconn: pq.abc.PGconn, result: pq.abc.PGresult) -> None:
        if result.status in (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK):
            return
        if pgconn.status == pq.ConnStatus.BAD:
            message = pgconn.get_error_message()
            self._forget()
            raise psycopg.OperationalError(f"the server closed the connection: {message}")
        raise psycopg.errors.error_from_result(result, encoding="utf-8")
