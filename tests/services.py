"""Where the test suite finds the real services it needs, and what happens when one is missing.

In CI (CI=true) a missing PostgreSQL or Redis fails the run; elsewhere the
tests that need it are skipped with the reason.
"""

from __future__ import annotations

import os

import pytest

REDIS_URL = os.environ.get("DRIP_TEST_REDIS_URL", "redis://127.0.0.1:6379")
POSTGRES_URL = os.environ.get("DRIP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(what: str) -> None:
    message = f"{what} is not available"
    if in_ci():
        pytest.fail(f"{message} (in CI a missing service is a failure)")
    pytest.skip(message)


def redis_available() -> bool:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def postgres_available() -> bool:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=2):
            return True
    except psycopg.Error:
        return False
