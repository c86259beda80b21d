"""The API against its own OpenAPI document, fuzzed: every operation, every check, no failure."""

from __future__ import annotations

import pytest

from tests.api_fuzzer import fuzz
from tests.conftest import Stack


@pytest.fixture(scope="module")
def backend() -> str:
    # One backend is enough here: the fuzzer tests the HTTP contract, not the SQL.
    return "sqlite"


# The time zone enum (every IANA name) makes hypothesis's own debugging repr large; harmless.
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
def test_every_operation_meets_its_documented_contract(stack: Stack) -> None:
    report = fuzz(stack.app, headers={}, seed=13, max_examples=30)
    assert report.errors == []
    assert report.failures == []
    assert report.cases > 100
