"""The API against its own OpenAPI document, fuzzed: every operation, every check, no failure."""

from __future__ import annotations

import pytest

from drip.integrations.api_keys import Scope, create
from tests.api_fuzzer import fuzz
from tests.conftest import Stack


@pytest.fixture(scope="module")
def backend() -> str:
    # One backend is enough here: the fuzzer tests the HTTP contract, not the SQL.
    return "sqlite"


def write_key(stack: Stack) -> str:
    with stack.session() as session:
        _, key = create(session, "fuzzer", Scope.WRITE, now=stack.clock())
    return key


# The time zone enum (every IANA name) makes hypothesis's own debugging repr large; harmless.
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
def test_every_operation_meets_its_documented_contract(stack: Stack) -> None:
    for email in ("ann@example.com", "bob@example.com"):
        stack.client.post("/api/v1/subscribers", json={"email": email})
    headers = {"Authorization": f"Bearer {write_key(stack)}"}
    report = fuzz(stack.app, headers=headers, seed=13, max_examples=15)
    assert report.errors == []
    assert report.failures == []
    assert len(report.operations) >= 12
    assert report.cases > 300
