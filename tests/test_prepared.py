"""Hot-path statements run by libpq on a connection of the thread's own
(drip/data/prepared.py): parameters in order, rows as text, errors as psycopg's, a
connection the server dropped replaced once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import psycopg
import pytest

from drip.data.prepared import STATEMENTS_APPLICATION_NAME, PreparedStatements, Statement
from tests.conftest import scratch_postgres_database

ECHO = Statement.from_named(
    "drip_test_echo",
    "SELECT %(word)s::text, %(at)s, %(word)s || %(other)s, NULL::text",
    timestamps=frozenset({"at"}),
)

BACKEND = Statement.from_named(
    "drip_test_pid", "SELECT pg_backend_pid()::text", timestamps=frozenset()
)


def test_named_parameters_are_numbered_once_each_in_order() -> None:
    assert ECHO.sql == b"SELECT $1::text, $2, $1 || $3, NULL::text"
    assert ECHO.parameters == ("word", "at", "other")
    assert ECHO.types == (0, 1184, 0)


@pytest.fixture()
def prepared() -> object:
    with scratch_postgres_database("prepared") as url:
        statements = PreparedStatements(url)
        yield statements
        statements.close()


def test_a_row_comes_back_as_text_and_each_thread_has_its_connection(
    prepared: PreparedStatements,
) -> None:
    at = datetime(2026, 12, 1, 3, 4, 5, 600_000, tzinfo=UTC)
    row = prepared.first_row(ECHO, {"word": "ça", "at": at, "other": "!"})
    assert row is not None
    assert row[0] == "ça".encode() and row[2] == "ça!".encode() and row[3] is None
    assert datetime.fromisoformat(row[1].decode().replace(" ", "T") + ":00") == at  # type: ignore[union-attr]
    pids = []
    lock = threading.Lock()

    def other_thread() -> None:
        backend = Statement.from_named(
            "drip_test_pid", "SELECT pg_backend_pid()::text", timestamps=frozenset()
        )
        found = prepared.first_row(backend, {})
        with lock:
            pids.append(found)

    threads = [threading.Thread(target=other_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(pids)) == 2


def test_errors_are_psycopgs_and_a_dropped_connection_is_replaced(
    prepared: PreparedStatements,
) -> None:
    broken = Statement.from_named("drip_test_div", "SELECT (1 / 0)::text", timestamps=frozenset())
    with pytest.raises(psycopg.errors.DivisionByZero):
        prepared.first_row(broken, {})
    at = datetime(2026, 12, 1, tzinfo=UTC)
    assert prepared.first_row(ECHO, {"word": "a", "at": at, "other": "b"}) is not None
    with psycopg.connect(prepared.conninfo.decode(), autocommit=True) as admin:
        ended = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (STATEMENTS_APPLICATION_NAME,),
        ).fetchone()
    assert ended is not None and ended[0] >= 1
    row = prepared.first_row(ECHO, {"word": "again", "at": at, "other": ""})
    assert row is not None and row[0] == b"again"


def test_no_server_is_an_operational_error() -> None:
    nowhere = PreparedStatements("postgresql://postgres@127.0.0.1:9/nowhere")
    with pytest.raises(psycopg.OperationalError):
        nowhere.first_row(ECHO, {"word": "a", "at": datetime.now(UTC), "other": "b"})
