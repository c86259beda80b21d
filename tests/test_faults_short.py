"""The fault suite, short: real worker and beat processes, a worker killed while it
sends and PostgreSQL gone right after SendGrid's 202 (`make faults` runs them all)."""

from __future__ import annotations

from pathlib import Path

import pytest

from faults import scenarios
from faults.scenarios import Config
from tests import services as real
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture()
def config(tmp_path: Path) -> Config:
    if not (real.postgres_available() and real.redis_available()):
        real.missing("PostgreSQL and Redis for the fault suite")
    return Config(
        tmp_path,
        real.POSTGRES_URL,
        ROOT / "tests" / "course_fixtures" / "three-day",
        subscribers=200,
        day_seconds=5,
        lease_seconds=10,
        postgres_away=10.0,
        kills=2,
    )


def test_a_worker_killed_mid_send_loses_nothing_and_flags_every_duplicate(
    config: Config,
) -> None:
    outcome = scenarios.run("sigkill", config, log=lambda _: None)
    assert outcome.faults >= 1
    assert outcome.counts.delivered == outcome.counts.expected == 600
    assert outcome.misses() == []


def test_postgresql_gone_right_after_a_202_sends_nothing_twice(config: Config) -> None:
    outcome = scenarios.run("postgres", config, log=lambda _: None)
    assert outcome.faults == 1
    assert outcome.counts.delivered == outcome.counts.expected == 600
    assert outcome.counts.duplicates == 0
    assert outcome.counts.flagged == 0
    assert outcome.misses() == []
